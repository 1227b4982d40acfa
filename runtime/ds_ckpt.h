/* ds_ckpt.h - crash-safe checkpoint files: one file per generation in a directory.
 *
 * A checkpoint file is a header (magic, format version, generation, payload length, CRC-32 of
 * the payload) followed by the payload (bytes the caller encoded). Writing goes to a
 * temporary file created exclusively, written in a loop, fsync'd, renamed into place, and the
 * directory fsync'd, so a crash leaves either the previous files or the new complete one.
 * A generation is never reused. Reading checks every header field and the checksum, so a
 * truncated or corrupt file is reported, never half-used. The module owns nothing between
 * calls; buffers it returns belong to the caller (free()). */
#ifndef DS_CKPT_H
#define DS_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define DS_CKPT_VERSION 1

uint32_t ds_crc32(const void *p, size_t len);

/* Writes generation `gen` into dir (which must exist). Returns 0, -EEXIST if that generation
 * exists already, or a negative errno with a message naming the file and the step. */
int ds_ckpt_write(const char *dir, uint64_t gen, const void *data, size_t len, char *err,
                  size_t errlen);
/* Writes one framed file at `path` (in directory `dir`) the same crash-safe way; used for
 * write-ahead log segments. Replaces nothing: the caller picks unused names. */
int ds_ckpt_write_path(const char *path, const char *dir, uint64_t gen, const void *data,
                       size_t len, char *err, size_t errlen);
/* Reads and checks one checkpoint file. On success *data (malloc'd) and *len hold the
 * payload and *gen its generation. Returns 0 or a negative code with a message. */
int ds_ckpt_read(const char *path, char **data, size_t *len, uint64_t *gen, char *err,
                 size_t errlen);
/* Checks one checkpoint file as ds_ckpt_read does (header, length, checksum), reading it in
 * chunks without keeping it. Writes the file's stamp (see ds_ckpt_stamp) as of the check into
 * stamp (64 bytes are enough) when the file could be opened. Returns 0 when it is readable, or
 * a negative code with a message naming the file and what is wrong with it. */
int ds_ckpt_check(const char *path, char *stamp, size_t stamplen, char *err, size_t errlen);
/* A string that changes whenever the file at path is replaced or changed (device, inode,
 * size, modification and change times): a file checked once need not be read again while
 * its stamp stays the same. Returns 0 or a negative errno with a message. */
int ds_ckpt_stamp(const char *path, char *stamp, size_t stamplen, char *err, size_t errlen);
/* The generations present in dir, ascending (*gens malloc'd, may be NULL when *n is 0). */
int ds_ckpt_list(const char *dir, uint64_t **gens, int *n, char *err, size_t errlen);
/* The path of generation gen in dir. */
void ds_ckpt_path(char *out, size_t outlen, const char *dir, uint64_t gen);
/* Deletes the temporary files left by writes that a crash interrupted. Which generations to
 * delete is the caller's choice (dstream.state.checkpoint.prune: never an unreadable one). */
int ds_ckpt_remove_temps(const char *dir, char *err, size_t errlen);

#endif

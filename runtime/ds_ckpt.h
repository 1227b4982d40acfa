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
/* The generations present in dir, ascending (*gens malloc'd, may be NULL when *n is 0). */
int ds_ckpt_list(const char *dir, uint64_t **gens, int *n, char *err, size_t errlen);
/* The path of generation gen in dir. */
void ds_ckpt_path(char *out, size_t outlen, const char *dir, uint64_t gen);
/* Deletes all but the newest `keep` generations and leftover temporary files. */
int ds_ckpt_prune(const char *dir, int keep, char *err, size_t errlen);

#endif

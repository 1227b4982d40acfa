/* ds_text_file.h - the reading side of ctx:text_file: a byte range of a file read into records
 * in DS_FMT_LINES (a 32-bit length, then the bytes: what the worker's pull_line walks). A
 * task reads its part of the file one block at a time with this, so a file is never held
 * whole: the driver only splits it at line ends (dstream.sources.datasets). Called by worker
 * threads through the FFI; it touches nothing shared. */
#ifndef DS_TEXT_FILE_H
#define DS_TEXT_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Reads bytes [start, end) of `path`, which begins at a line start and ends after a "\n" or at
 * the end of the file, and splits it at "\n" as text_file does: a "\r" before the "\n" is
 * dropped, a last line without "\n" is a line, no empty line follows a final "\n". Puts a
 * malloc'd buffer of the records in *out (free it with ds_text_file_free), its length in
 * *outlen and the number of records in *count. Returns 0, or -errno with a message in err
 * (a line longer than DS_RECORD_MAX is -E2BIG, naming the byte it starts at). */
int ds_text_file_read(const char *path, uint64_t start, uint64_t end, char **out, size_t *outlen,
                      uint64_t *count, char *err, size_t errlen);

void ds_text_file_free(char *buf);

#endif

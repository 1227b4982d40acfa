/* ds_text_file.c - ctx:text_file's block reader (see ds_text_file.h). */
#include "ds_text_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds_limits.h"

void ds_text_file_free(char *buf) { free(buf); }

int ds_text_file_read(const char *path, uint64_t start, uint64_t end, char **out, size_t *outlen,
                      uint64_t *count, char *err, size_t errlen) {
  *out = NULL;
  *outlen = 0;
  *count = 0;
  if (end < start) end = start;
  size_t len = (size_t)(end - start);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot read '%s': %s", path, strerror(e));
    return -e;
  }
  /* The raw bytes, then the records: each line gains 4 bytes of length, and loses its "\n". A
   * last line without "\n" gains 4 bytes for none lost, hence the + 4. */
  char *raw = malloc(len ? len : 1);
  size_t lines_max = 0;
  int rc = 0;
  if (!raw) rc = -ENOMEM;
  size_t got = 0;
  while (rc == 0 && got < len) {
    ssize_t n = pread(fd, raw + got, len - got, (off_t)(start + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) rc = -errno;
    else if (n == 0) rc = -EIO;
    else got += (size_t)n;
  }
  close(fd);
  if (rc == -EIO) {
    snprintf(err, errlen, "cannot read bytes %" PRIu64 "-%" PRIu64 " of '%s': the file is shorter"
             " than when text_file split it (changed while the job ran?)", start, end, path);
  } else if (rc == -ENOMEM) {
    snprintf(err, errlen, "out of memory reading '%s'", path);
  } else if (rc < 0) {
    snprintf(err, errlen, "cannot read bytes %" PRIu64 "-%" PRIu64 " of '%s': %s", start, end, path,
             strerror(-rc));
  }
  if (rc < 0) {
    free(raw);
    return rc;
  }
  for (size_t i = 0; i < len; i++) lines_max += raw[i] == '\n';
  size_t cap = len + 4 * (lines_max + 1);
  char *buf = malloc(cap);
  if (!buf) {
    free(raw);
    snprintf(err, errlen, "out of memory reading '%s'", path);
    return -ENOMEM;
  }
  size_t w = 0, pos = 0;
  uint64_t n = 0;
  while (pos < len) {
    const char *nl = memchr(raw + pos, '\n', len - pos);
    size_t e = nl ? (size_t)(nl - raw) : len;
    size_t l = e - pos;
    if (l > 0 && raw[e - 1] == '\r') l--;
    if (l > DS_RECORD_MAX) {
      snprintf(err, errlen, "text_file: the line of '%s' at byte %" PRIu64 " is longer than %u MiB",
               path, start + pos, DS_RECORD_MAX >> 20);
      free(raw);
      free(buf);
      return -E2BIG;
    }
    uint32_t l32 = (uint32_t)l;
    memcpy(buf + w, &l32, 4);
    memcpy(buf + w + 4, raw + pos, l);
    w += 4 + l;
    n++;
    pos = e + 1;
  }
  free(raw);
  *out = buf;
  *outlen = w;
  *count = n;
  return 0;
}

/* ds_ckpt.c - checkpoint files: temp file, write loop, fsync, rename, fsync of the directory. */
#include "ds_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char magic[8] = {'D', 'S', 'C', 'K', 'P', 'T', '0', '1'};

typedef struct header {
  char magic[8];
  uint32_t version;
  uint32_t crc;
  uint64_t generation;
  uint64_t length;
} header;

/* The CRC of bytes that follow those that gave `crc` (0 for the first). */
static uint32_t crc32_more(uint32_t crc, const void *p, size_t len) {
  static uint32_t table[256];
  static int ready;
  if (!ready) { /* the reflected IEEE polynomial, as zlib's crc32 */
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = 1;
  }
  uint32_t c = crc ^ 0xffffffffu;
  const unsigned char *b = p;
  for (size_t i = 0; i < len; i++) c = table[(c ^ b[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t ds_crc32(const void *p, size_t len) { return crc32_more(0, p, len); }

void ds_ckpt_path(char *out, size_t outlen, const char *dir, uint64_t gen) {
  snprintf(out, outlen, "%s/checkpoint-%020" PRIu64, dir, gen);
}

static int fail(char *err, size_t errlen, int code, const char *what, const char *path) {
  snprintf(err, errlen, "%s %s: %s", what, path, strerror(code));
  return -code;
}

static int write_all(int fd, const void *p, size_t len) {
  const char *c = p;
  while (len > 0) {
    ssize_t n = write(fd, c, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    c += n;
    len -= (size_t)n;
  }
  return 0;
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -errno;
  int rc = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}

int ds_ckpt_write(const char *dir, uint64_t gen, const void *data, size_t len, char *err,
                  size_t errlen) {
  char path[4096];
  ds_ckpt_path(path, sizeof path, dir, gen);
  struct stat st;
  if (stat(path, &st) == 0) {
    snprintf(err, errlen, "checkpoint generation %" PRIu64 " exists already in %s", gen, dir);
    return -EEXIST;
  }
  return ds_ckpt_write_path(path, dir, gen, data, len, err, errlen);
}

int ds_ckpt_write_path(const char *path, const char *dir, uint64_t gen, const void *data,
                       size_t len, char *err, size_t errlen) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  unlink(tmp); /* a leftover of a crash during an earlier write of this generation */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return fail(err, errlen, errno, "cannot create", tmp);
  header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, magic, sizeof magic);
  h.version = DS_CKPT_VERSION;
  h.generation = gen;
  h.length = len;
  h.crc = ds_crc32(data, len);
  int rc = write_all(fd, &h, sizeof h);
  if (rc == 0) rc = write_all(fd, data, len);
  if (rc) {
    close(fd);
    unlink(tmp);
    return fail(err, errlen, -rc, "cannot write", tmp);
  }
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return fail(err, errlen, e, "cannot fsync", tmp);
  }
  if (close(fd) != 0) {
    int e = errno;
    unlink(tmp);
    return fail(err, errlen, e, "cannot close", tmp);
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return fail(err, errlen, e, "cannot rename into place", path);
  }
  rc = fsync_dir(dir);
  if (rc) return fail(err, errlen, -rc, "cannot fsync directory", dir);
  return 0;
}

/* What is wrong with a header read from a file of `size` bytes, or NULL. */
static const char *header_problem(const header *h, uint64_t size, char *buf, size_t n) {
  if (memcmp(h->magic, magic, sizeof magic) != 0) return "is not a dstream checkpoint (bad magic)";
  if (h->version != DS_CKPT_VERSION) {
    snprintf(buf, n, "has an unknown format version %" PRIu32 " (this dstream reads version %d)",
             h->version, DS_CKPT_VERSION);
    return buf;
  }
  if (h->length != size - sizeof *h) return "is truncated or has trailing bytes (length mismatch)";
  return NULL;
}

/* A file's identity and version: device, inode, size, modification and change times. */
static void stamp_of(const struct stat *st, char *stamp, size_t n) {
  snprintf(stamp, n, "%llu:%llu:%lld:%lld.%09ld:%lld.%09ld", (unsigned long long)st->st_dev,
           (unsigned long long)st->st_ino, (long long)st->st_size, (long long)st->st_mtim.tv_sec,
           st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

int ds_ckpt_stamp(const char *path, char *stamp, size_t stamplen, char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st) != 0) return fail(err, errlen, errno, "cannot stat", path);
  stamp_of(&st, stamp, stamplen);
  return 0;
}

int ds_ckpt_check(const char *path, char *stamp, size_t stamplen, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(err, errlen, errno, "cannot open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return fail(err, errlen, e, "cannot stat", path);
  }
  stamp_of(&st, stamp, stamplen);
  header h;
  char buf[64 * 1024], why[96];
  const char *problem = NULL;
  size_t got = 0;
  uint32_t crc = 0;
  int rc = 0;
  if ((size_t)st.st_size < sizeof h) {
    snprintf(err, errlen, "%s is truncated (%lld bytes, shorter than its header)", path,
             (long long)st.st_size);
    close(fd);
    return -EINVAL;
  }
  for (;;) { /* the header, then the payload in chunks */
    size_t want = got < sizeof h ? sizeof h - got : sizeof buf;
    ssize_t n = read(fd, got < sizeof h ? (char *)&h + got : buf, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = fail(err, errlen, errno, "cannot read", path);
      break;
    }
    if (n == 0) break;
    if (got >= sizeof h) crc = crc32_more(crc, buf, (size_t)n);
    got += (size_t)n;
    if (got == sizeof h && (problem = header_problem(&h, (uint64_t)st.st_size, why, sizeof why)))
      break;
  }
  close(fd);
  if (rc) return rc;
  if (!problem && got != (size_t)st.st_size) problem = "could not be read whole";
  else if (!problem && crc != h.crc) problem = "is corrupt (checksum mismatch)";
  if (problem) {
    snprintf(err, errlen, "%s %s", path, problem);
    return -EINVAL;
  }
  return 0;
}

int ds_ckpt_read(const char *path, char **data, size_t *len, uint64_t *gen, char *err,
                 size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(err, errlen, errno, "cannot open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return fail(err, errlen, e, "cannot stat", path);
  }
  header h;
  if ((size_t)st.st_size < sizeof h) {
    close(fd);
    snprintf(err, errlen, "%s is truncated (%lld bytes, shorter than its header)", path,
             (long long)st.st_size);
    return -EINVAL;
  }
  char *buf = malloc((size_t)st.st_size);
  if (!buf) {
    close(fd);
    snprintf(err, errlen, "out of memory reading %s", path);
    return -ENOMEM;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  memcpy(&h, buf, sizeof h);
  char why[96];
  const char *problem = NULL;
  if (got != (size_t)st.st_size) problem = "could not be read whole";
  else if ((problem = header_problem(&h, got, why, sizeof why))) {
  } else if (ds_crc32(buf + sizeof h, h.length) != h.crc) problem = "is corrupt (checksum mismatch)";
  if (problem) {
    free(buf);
    snprintf(err, errlen, "%s %s", path, problem);
    return -EINVAL;
  }
  memmove(buf, buf + sizeof h, h.length);
  *data = buf;
  *len = h.length;
  *gen = h.generation;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int ds_ckpt_list(const char *dir, uint64_t **gens, int *n, char *err, size_t errlen) {
  *gens = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return fail(err, errlen, errno, "cannot list", dir);
  struct dirent *e;
  int cap = 0;
  while ((e = readdir(d))) {
    uint64_t g;
    char rest[8];
    if (sscanf(e->d_name, "checkpoint-%" SCNu64 "%7s", &g, rest) != 1) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      uint64_t *more = realloc(*gens, (size_t)cap * sizeof *more);
      if (!more) {
        closedir(d);
        free(*gens);
        *gens = NULL;
        *n = 0;
        snprintf(err, errlen, "out of memory listing %s", dir);
        return -ENOMEM;
      }
      *gens = more;
    }
    (*gens)[(*n)++] = g;
  }
  closedir(d);
  if (*n) qsort(*gens, (size_t)*n, sizeof **gens, cmp_u64);
  return 0;
}

int ds_ckpt_remove_temps(const char *dir, char *err, size_t errlen) {
  DIR *d = opendir(dir);
  if (!d) return fail(err, errlen, errno, "cannot list", dir);
  char path[4200];
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (strncmp(e->d_name, "checkpoint-", 11) == 0 && l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0) {
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    }
  }
  closedir(d);
  return 0;
}

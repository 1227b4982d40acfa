/* check.h - assertions for the C unit tests, in the style of libuv's test/task.h: a failed
 * check prints where it is and both sides, then aborts (ctest reports the test failed).
 * Below the assertions, the helpers more than one test needs (temporary directories, files,
 * a loop's time limit, a store's records); they are static inline so a test that uses none
 * of them compiles without warnings. Their names start with check_ so they never collide
 * with a test's own helpers. */
#ifndef DS_SPEC_CHECK_H
#define DS_SPEC_CHECK_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "ds_store.h"

#define CHECK(expr)                                                            \
  do {                                                                         \
    if (!(expr)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #expr); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define CHECK_INT(a, op, b)                                                          \
  do {                                                                               \
    long long a_ = (long long)(a), b_ = (long long)(b);                              \
    if (!(a_ op b_)) {                                                               \
      fprintf(stderr, "%s:%d: CHECK_INT(%s %s %s) failed: %lld %s %lld\n", __FILE__, \
              __LINE__, #a, #op, #b, a_, #op, b_);                                   \
      abort();                                                                       \
    }                                                                                \
  } while (0)

#define CHECK_STR(a, b)                                                                \
  do {                                                                                 \
    const char *a_ = (a), *b_ = (b);                                                   \
    if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                           \
      fprintf(stderr, "%s:%d: CHECK_STR(%s, %s) failed: \"%s\" != \"%s\"\n", __FILE__, \
              __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");               \
      abort();                                                                         \
    }                                                                                  \
  } while (0)

/* The string hay contains needle. */
#define CHECK_HAS(hay, needle)                                                                 \
  do {                                                                                         \
    const char *h_ = (hay), *n_ = (needle);                                                    \
    if (!h_ || !strstr(h_, n_)) {                                                              \
      fprintf(stderr, "%s:%d: CHECK_HAS(%s, %s) failed: \"%s\" does not contain \"%s\"\n",     \
              __FILE__, __LINE__, #hay, #needle, h_ ? h_ : "(null)", n_);                      \
      abort();                                                                                 \
    }                                                                                          \
  } while (0)

/* ---- shared helpers ------------------------------------------------------------------- */

/* Creates a fresh directory /tmp/<name>.XXXXXX and puts its path in dir. */
static inline void check_temp_dir(char *dir, size_t size, const char *name) {
  CHECK_INT(snprintf(dir, size, "/tmp/%s.XXXXXX", name), <, (long long)size);
  CHECK(mkdtemp(dir) != NULL);
}

static inline int check_remove_entry_(const char *path, const struct stat *st, int flag,
                                      struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* Removes dir and everything in it. */
static inline void check_remove_tree(const char *dir) {
  CHECK_INT(nftw(dir, check_remove_entry_, 8, FTW_DEPTH | FTW_PHYS), ==, 0);
}

/* Writes len bytes to the file at path (created or truncated). */
static inline void check_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  CHECK_INT(fwrite(data, 1, len, f), ==, len);
  CHECK_INT(fclose(f), ==, 0);
}

static inline void check_on_guard_(uv_timer_t *t) {
  const char *why = t->data;
  fprintf(stderr, why ? "test timed out: %s\n" : "test timed out\n", why);
  abort();
}

/* Starts the timer t on loop: if the test is still running after ms, it says so (with why,
 * when not NULL) and aborts, so a hung loop fails the test instead of stalling ctest.
 * Callers close it (or unref it when it watches the whole test). */
static inline void check_guard_start(uv_loop_t *loop, uv_timer_t *t, uint64_t ms, const char *why) {
  CHECK_INT(uv_timer_init(loop, t), ==, 0);
  t->data = (void *)why;
  CHECK_INT(uv_timer_start(t, check_on_guard_, ms, 0), ==, 0);
}

/* Seals the store into one partition and compares its DS_FMT_LINES records with want[0..n). */
static inline void check_store_lines(ds_store *s, const char **want, int nwant) {
  ds_sealed *sb;
  CHECK_INT(ds_store_seal(s, 1, &sb), ==, 0);
  CHECK_INT(sb->count, ==, nwant);
  int i = 0;
  ds_part *p = &sb->parts[0];
  for (int k = 0; k < p->nslices; k++) {
    const char *d = p->slices[k].data, *end = d + p->slices[k].len;
    while (d < end) {
      uint32_t len;
      memcpy(&len, d, 4);
      char rec[256];
      CHECK(len < sizeof rec);
      memcpy(rec, d + 4, len);
      rec[len] = 0;
      CHECK(i < nwant);
      CHECK_STR(rec, want[i]);
      i++;
      d += 4 + len;
    }
  }
  CHECK_INT(i, ==, nwant);
  ds_sealed_free(sb);
}

#endif

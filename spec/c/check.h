/* check.h - assertions for the C unit tests, in the style of libuv's test/task.h: a failed
 * check prints where it is and both sides, then aborts (ctest reports the test failed). */
#ifndef DS_SPEC_CHECK_H
#define DS_SPEC_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#endif

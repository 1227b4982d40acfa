/* test_words.c - ds_words_cut (ds_words.c) against a plain split of each line written here:
 * random lines of words, separators, NULs and high bytes, long words that cross its 64-byte
 * windows, lines that end at the records' last byte (the buffer is exactly the records, so
 * ASan catches a read past it), separator sets it takes 64 bytes at a time and sets it cuts
 * byte at a time, and callers taking 1, 7 or 1024 words per call; each with and without a
 * VM's string table to prefetch into (the words must not depend on it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <luajit.h>

#include "ds_words.h"

#include "check.h"

typedef struct word {
  uint32_t off, len;
} word;

/* The reference: each record's words, one byte at a time. */
static size_t split(const uint8_t *recs, size_t n, const uint8_t *is_space, word *out) {
  size_t k = 0, at = 0;
  while (at + 4 <= n) {
    uint32_t len;
    memcpy(&len, recs + at, 4);
    size_t i = at + 4, end = at + 4 + len;
    while (i < end) {
      if (is_space[recs[i]]) {
        i++;
        continue;
      }
      size_t start = i;
      while (i < end && !is_space[recs[i]]) i++;
      out[k].off = (uint32_t)start;
      out[k].len = (uint32_t)(i - start);
      k++;
    }
    at = end;
  }
  return k;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

/* A random byte: mostly letters, then the separators given, NUL, UTF-8 and other bytes. */
static uint8_t random_byte(const char *seps) {
  uint32_t r = next_rand() % 100;
  if (r < 70) return (uint8_t)('a' + next_rand() % 26);
  if (r < 90) return (uint8_t)seps[next_rand() % strlen(seps)];
  if (r < 93) return 0;
  if (r < 97) return (uint8_t)(0x80 + next_rand() % 0x80);
  return (uint8_t)(next_rand() % 256);
}

/* Random records (a 32-bit length, then the bytes) in a buffer of exactly their size. */
static uint8_t *random_records(const char *seps, int lines, size_t *n) {
  size_t cap = 0;
  uint8_t *recs = NULL;
  *n = 0;
  for (int l = 0; l < lines; l++) {
    uint32_t shape = next_rand() % 10, len;
    if (shape == 0) len = 0;
    else if (shape < 3) len = next_rand() % 8;
    else if (shape < 9) len = next_rand() % 160;
    else len = 60 + next_rand() % 300;
    if (*n + 4 + len > cap) {
      cap = (*n + 4 + len) * 2;
      recs = realloc(recs, cap);
      CHECK(recs != NULL);
    }
    memcpy(recs + *n, &len, 4);
    uint8_t *p = recs + *n + 4;
    int long_word = next_rand() % 8 == 0; /* a word of up to 200 bytes, across windows */
    for (uint32_t i = 0; i < len; i++) {
      p[i] = long_word ? (uint8_t)('A' + next_rand() % 26) : random_byte(seps);
      if (long_word && next_rand() % 200 == 0) long_word = 0;
    }
    *n += 4 + len;
  }
  uint8_t *exact = malloc(*n ? *n : 1); /* exactly the records: a read past them is caught */
  CHECK(exact != NULL);
  if (*n) memcpy(exact, recs, *n);
  free(recs);
  return exact;
}

static void check_case(const char *seps, int lines, size_t max, void *strings) {
  uint8_t is_space[256] = { 0 };
  for (const char *c = seps; *c; c++) is_space[(uint8_t)*c] = 1;
  size_t n;
  uint8_t *recs = random_records(seps, lines, &n);
  word *want = malloc((n + 1) * sizeof *want);
  uint32_t *out = malloc(2 * max * sizeof *out);
  CHECK(want != NULL && out != NULL);
  size_t nwant = split(recs, n, is_space, want), got = 0;
  ds_words_pos at = { 0, 0 };
  for (;;) {
    size_t k = ds_words_cut(recs, n, &at, is_space, out, max, strings);
    CHECK_INT(k, <=, max);
    for (size_t i = 0; i < k; i++, got++) {
      CHECK_INT(got, <, nwant);
      CHECK_INT(out[2 * i], ==, want[got].off);
      CHECK_INT(out[2 * i + 1], ==, want[got].len);
    }
    if (k < max) break;
  }
  CHECK_INT(got, ==, nwant);
  free(recs);
  free(want);
  free(out);
}

int main(void) {
  /* " \t\n\v\f\r" (text.SPACE): two runs of byte values, 64 bytes at a time. */
  const char *sets[] = { " \t\n\v\f\r", ",", " ;", "\x01\x03\x05\x07\x09", "\xff " };
  size_t maxes[] = { 1, 7, 1024 };
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  void *strings = ds_words_strings(L);
#ifdef LUAJIT_STR_PREFETCH
  CHECK(strings != NULL); /* dstream's LuaJIT: the reader prefetches */
#endif
  for (size_t s = 0; s < sizeof sets / sizeof *sets; s++) {
    for (size_t m = 0; m < sizeof maxes / sizeof *maxes; m++) {
      for (int round = 0; round < 20; round++) {
        check_case(sets[s], 1 + (int)(next_rand() % 400), maxes[m], round % 2 ? strings : NULL);
      }
    }
  }
  check_case(" ", 0, 1024, NULL); /* no records at all */
  check_case(" ", 0, 1024, strings);
  lua_close(L);
  printf("test_words: ok\n");
  return 0;
}

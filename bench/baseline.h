/* bench/baseline.h - shared by the hand-written C BASELINES (bench/baseline_*.c): loading the
 * corpus, timing, a string-keyed hash table, and the result line bench/run reads.
 *
 * The baselines are what a careful C programmer writes for one computation on one core, with
 * no engine: they are the yardstick dstream's figures are divided by, not part of dstream. */
#ifndef BENCH_BASELINE_H
#define BENCH_BASELINE_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

typedef struct {
  const char *p;
  uint32_t len;
} bl_str;

typedef struct {
  char *data;    /* the whole file */
  size_t size;
  bl_str *lines; /* views into data, '\n' excluded */
  size_t nlines;
} bl_corpus;

static void bl_die(const char *msg) {
  fprintf(stderr, "baseline: %s\n", msg);
  exit(1);
}

/* Reads the file and indexes its lines (not timed: dstream's figures exclude loading too). */
static void bl_load(const char *path, bl_corpus *c) {
  FILE *f = fopen(path, "rb");
  if (!f) bl_die("cannot open the corpus");
  struct stat st;
  if (fstat(fileno(f), &st)) bl_die("cannot stat the corpus");
  c->size = (size_t)st.st_size;
  c->data = malloc(c->size + 1);
  if (!c->data || fread(c->data, 1, c->size, f) != c->size) bl_die("cannot read the corpus");
  fclose(f);
  size_t cap = 1 << 16;
  c->lines = malloc(cap * sizeof *c->lines);
  c->nlines = 0;
  for (size_t off = 0; off < c->size;) {
    char *nl = memchr(c->data + off, '\n', c->size - off);
    size_t end = nl ? (size_t)(nl - c->data) : c->size;
    if (c->nlines == cap) {
      cap *= 2;
      c->lines = realloc(c->lines, cap * sizeof *c->lines);
      if (!c->lines) bl_die("out of memory");
    }
    c->lines[c->nlines].p = c->data + off;
    c->lines[c->nlines++].len = (uint32_t)(end - off);
    off = end + 1;
  }
}

static double bl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double bl_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* Whitespace as Lua's %s in the C locale: \t \n \v \f \r and space. */
static const unsigned char *bl_space_table(void) {
  static unsigned char t[256];
  t[' '] = t['\t'] = t['\n'] = t['\v'] = t['\f'] = t['\r'] = 1;
  return t;
}

/* ---- open-addressing hash table: string key -> int64 count ---------------------------- */

typedef struct {
  const char *key; /* NULL: empty slot */
  uint32_t len;
  uint32_t hash;
  int64_t value;
} bl_slot;

typedef struct {
  bl_slot *slots;
  size_t cap, n; /* cap is a power of two */
} bl_map;

static uint32_t bl_hash(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
  return (uint32_t)(h ^ (h >> 32));
}

static void bl_map_init(bl_map *m, size_t cap) {
  m->cap = cap;
  m->n = 0;
  m->slots = calloc(cap, sizeof *m->slots);
  if (!m->slots) bl_die("out of memory");
}

static void bl_map_grow(bl_map *m) {
  bl_map g;
  bl_map_init(&g, m->cap * 2);
  for (size_t i = 0; i < m->cap; i++) {
    bl_slot *s = &m->slots[i];
    if (!s->key) continue;
    size_t j = s->hash & (g.cap - 1);
    while (g.slots[j].key) j = (j + 1) & (g.cap - 1);
    g.slots[j] = *s;
  }
  g.n = m->n;
  free(m->slots);
  *m = g;
}

/* The slot of key (the key is not copied: it must outlive the map). */
static bl_slot *bl_map_get(bl_map *m, const char *p, uint32_t len) {
  uint32_t h = bl_hash(p, len);
  size_t j = h & (m->cap - 1);
  for (;;) {
    bl_slot *s = &m->slots[j];
    if (!s->key) {
      if ((m->n + 1) * 4 > m->cap * 3) {
        bl_map_grow(m);
        return bl_map_get(m, p, len);
      }
      s->key = p;
      s->len = len;
      s->hash = h;
      s->value = 0;
      m->n++;
      return s;
    }
    if (s->hash == h && s->len == len && memcmp(s->key, p, len) == 0) return s;
    j = (j + 1) & (m->cap - 1);
  }
}

/* Splits [p, p + len) on whitespace and counts each word in m (its keys point into the
 * text, which must outlive m); returns the number of words. */
static int64_t bl_count_words(bl_map *m, const char *p, size_t len) {
  static const unsigned char *sp;
  if (!sp) sp = bl_space_table();
  const char *end = p + len;
  int64_t words = 0;
  while (p < end) {
    while (p < end && sp[(unsigned char)*p]) p++;
    if (p == end) break;
    const char *w = p;
    while (p < end && !sp[(unsigned char)*p]) p++;
    bl_map_get(m, w, (uint32_t)(p - w))->value++;
    words++;
  }
  return words;
}

/* The line bench/run reads: "result key=value ...". */
#define bl_result(...) printf("result " __VA_ARGS__)

#endif

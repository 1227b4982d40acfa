/* test_store.c - blocks (ds_block.c) and the block store with its batch slicing (ds_store.c). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds_block.h"
#include "ds_store.h"

#include "check.h"

#define CHECK_MEM(p, plen, q, qlen)                                                          \
  do {                                                                                       \
    const char *p_ = (const char *)(p), *q_ = (const char *)(q);                             \
    size_t pl_ = (size_t)(plen), ql_ = (size_t)(qlen);                                       \
    if (pl_ != ql_ || (pl_ && memcmp(p_, q_, pl_) != 0)) {                                   \
      fprintf(stderr, "%s:%d: CHECK_MEM(%s, %s) failed: \"%.*s\" (%zu) != \"%.*s\" (%zu)\n", \
              __FILE__, __LINE__, #p, #q, (int)(pl_ > 200 ? 200 : pl_), p_, pl_,            \
              (int)(ql_ > 200 ? 200 : ql_), q_, ql_);                                        \
      abort();                                                                               \
    }                                                                                        \
  } while (0)

/* ---- helpers ------------------------------------------------------------------------- */

/* The text of record i in the sliced-batch tests: varied lengths, empty records included. */
static size_t record_text(int i, char *out, size_t cap) {
  if (i % 11 == 5) return 0; /* an empty line is a record too */
  int n = snprintf(out, cap, "rec-%d", i);
  int pad = i % 7;
  for (int k = 0; k < pad && (size_t)n + 1 < cap; k++) out[n++] = (char)('a' + k);
  out[n] = '\0';
  return (size_t)n;
}

/* Walks the DS_FMT_LINES records of a slice; calls fn(rec, len, ud) for each. Checks that the
 * slice's byte length holds exactly `count` records. Returns the number of records. */
typedef void (*record_fn)(const char *rec, size_t len, void *ud);
static uint64_t walk_slice(const ds_slice *sl, record_fn fn, void *ud) {
  CHECK(sl->block != NULL);
  CHECK_INT(sl->format, ==, DS_FMT_LINES);
  /* The view lies inside its block. */
  CHECK(sl->data >= sl->block->data);
  CHECK(sl->data + sl->len <= sl->block->data + sl->block->len);
  const char *d = sl->data, *end = sl->data + sl->len;
  uint64_t n = 0;
  while (d < end) {
    CHECK(end - d >= 4);
    uint32_t len;
    memcpy(&len, d, 4);
    CHECK((size_t)(end - d - 4) >= len);
    if (fn) fn(d + 4, len, ud);
    d += 4 + len;
    n++;
  }
  CHECK_INT(n, ==, sl->count);
  return n;
}

/* Collects the records of a sealed batch, partition by partition, in order. */
typedef struct collected {
  char **recs;
  size_t *lens;
  int n, cap;
} collected;

static void collect_one(const char *rec, size_t len, void *ud) {
  collected *c = ud;
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 64;
    c->recs = realloc(c->recs, (size_t)c->cap * sizeof *c->recs);
    c->lens = realloc(c->lens, (size_t)c->cap * sizeof *c->lens);
    CHECK(c->recs && c->lens);
  }
  c->recs[c->n] = malloc(len + 1);
  CHECK(c->recs[c->n] != NULL);
  memcpy(c->recs[c->n], rec, len);
  c->recs[c->n][len] = '\0';
  c->lens[c->n] = len;
  c->n++;
}

static void collected_free(collected *c) {
  for (int i = 0; i < c->n; i++) free(c->recs[i]);
  free(c->recs);
  free(c->lens);
  memset(c, 0, sizeof *c);
}

/* Checks the invariants of a sealed batch (counts, bytes, views) and collects its records
 * in partition order into *c. Fills part_counts (if not NULL) with each partition's count. */
static void check_sealed(const ds_sealed *sb, int nparts, collected *c, uint64_t *part_counts) {
  CHECK_INT(sb->nparts, ==, nparts);
  CHECK(sb->parts != NULL);
  uint64_t total = 0, bytes = 0;
  for (int p = 0; p < sb->nparts; p++) {
    const ds_part *part = &sb->parts[p];
    CHECK_INT(part->nslices, >=, 0);
    uint64_t in_part = 0;
    for (int k = 0; k < part->nslices; k++) {
      in_part += walk_slice(&part->slices[k], collect_one, c);
      bytes += part->slices[k].len;
    }
    CHECK_INT(in_part, ==, part->count);
    if (part_counts) part_counts[p] = part->count;
    total += part->count;
  }
  CHECK_INT(total, ==, sb->count);
  CHECK_INT(bytes, ==, sb->bytes);
  CHECK_INT(c->n, ==, sb->count);
}

/* ---- blocks --------------------------------------------------------------------------- */

static void test_block_append(void) {
  ds_block *b = ds_block_new(DS_FMT_LINES, 0);
  CHECK(b != NULL);
  CHECK_INT(atomic_load(&b->refs), ==, 1);
  CHECK_INT(b->format, ==, DS_FMT_LINES);
  CHECK_INT(b->count, ==, 0);
  CHECK_INT(b->len, ==, 0);

  const char *recs[] = {"hello", "", "a line with spaces", "x"};
  size_t want_len = 0;
  for (int i = 0; i < 4; i++) {
    CHECK_INT(ds_block_append_record(b, recs[i], strlen(recs[i])), ==, 0);
    want_len += 4 + strlen(recs[i]);
    CHECK_INT(b->count, ==, i + 1);
    CHECK_INT(b->len, ==, want_len);
    CHECK_INT(b->cap, >=, b->len);
  }
  /* Length-prefixed records, little-endian uint32 lengths, back to back. */
  const char *d = b->data;
  for (int i = 0; i < 4; i++) {
    uint32_t len;
    memcpy(&len, d, 4);
    CHECK_INT(len, ==, strlen(recs[i]));
    CHECK_MEM(d + 4, len, recs[i], strlen(recs[i]));
    d += 4 + len;
  }
  CHECK(d == b->data + b->len);

  /* Many appends grow the block and keep earlier records intact. */
  for (int i = 0; i < 5000; i++) {
    char rec[32];
    int n = snprintf(rec, sizeof rec, "grow-%d", i);
    CHECK_INT(ds_block_append_record(b, rec, (size_t)n), ==, 0);
  }
  CHECK_INT(b->count, ==, 5004);
  ds_slice s;
  ds_slice_of_block(&s, b);
  CHECK_INT(atomic_load(&b->refs), ==, 2);
  CHECK_INT(s.count, ==, 5004);
  CHECK_INT(s.len, ==, b->len);
  CHECK(s.data == b->data);
  int i = 0;
  d = s.data;
  while (d < s.data + s.len) {
    uint32_t len;
    memcpy(&len, d, 4);
    if (i >= 4) {
      char rec[32];
      int n = snprintf(rec, sizeof rec, "grow-%d", i - 4);
      CHECK_MEM(d + 4, len, rec, n);
    }
    d += 4 + len;
    i++;
  }
  CHECK_INT(i, ==, 5004);

  /* The slice keeps the block alive after its creator lets go. */
  ds_block_release(b);
  CHECK_INT(atomic_load(&s.block->refs), ==, 1);
  CHECK_INT(((const char *)s.data)[4], ==, 'h');
  ds_slice_clear(&s);
  CHECK(s.block == NULL);
  CHECK(s.data == NULL);
  CHECK_INT(s.count, ==, 0);
  ds_slice_clear(&s); /* clearing a cleared slice does nothing */
  ds_block_release(NULL);
}

static void test_block_copy_and_reserve(void) {
  const char bytes[] = "\x03\x00\x00\x00" "abc" "\x00\x00\x00\x00";
  ds_block *b = ds_block_copy(DS_FMT_LINES, 0, bytes, sizeof bytes - 1, 2);
  CHECK(b != NULL);
  CHECK_INT(b->len, ==, sizeof bytes - 1);
  CHECK_INT(b->count, ==, 2);
  CHECK_INT(b->pairs, ==, 0);
  CHECK_MEM(b->data, b->len, bytes, sizeof bytes - 1);
  ds_slice s;
  ds_slice_of_block(&s, b);
  ds_block_release(b);
  CHECK_INT(walk_slice(&s, NULL, NULL), ==, 2);
  ds_slice_clear(&s);

  ds_block *e = ds_block_copy(DS_FMT_SBUF, 1, NULL, 0, 0);
  CHECK(e != NULL);
  CHECK_INT(e->len, ==, 0);
  CHECK_INT(e->format, ==, DS_FMT_SBUF);
  CHECK_INT(e->pairs, ==, 1);
  CHECK_INT(ds_block_reserve(e, 10000), ==, 0);
  CHECK_INT(e->cap, >=, 10000);
  CHECK_INT(e->len, ==, 0);
  ds_block_release(e);
}

static void test_block_oversized(void) {
  ds_block *b = ds_block_new(DS_FMT_LINES, 64);
  CHECK(b != NULL);
  CHECK_INT(ds_block_append_record(b, "kept", 4), ==, 0);
  char *big = calloc(1, (size_t)DS_RECORD_MAX + 1); /* untouched pages: cheap */
  CHECK(big != NULL);
  CHECK_INT(ds_block_append_record(b, big, (size_t)DS_RECORD_MAX + 1), ==, -E2BIG);
  CHECK_INT(b->count, ==, 1);
  CHECK_INT(b->len, ==, 8);
  CHECK_INT(b->cap, ==, 64); /* nothing was reserved for it either */
  free(big);
  ds_block_release(b);
}

/* ---- the store ------------------------------------------------------------------------ */

static void test_store_append_seal(void) {
  ds_store *s = ds_store_new(0);
  CHECK(s != NULL);
  CHECK_INT(ds_store_pending(s), ==, 0);
  CHECK_INT(ds_store_total(s), ==, 0);
  const char *recs[] = {"the quick", "brown fox", "", "jumps", "over\tthe lazy dog"};
  for (int i = 0; i < 5; i++) CHECK_INT(ds_store_append(s, recs[i], strlen(recs[i])), ==, 0);
  CHECK_INT(ds_store_pending(s), ==, 5);
  CHECK_INT(ds_store_total(s), ==, 5);

  ds_sealed *sb = NULL;
  CHECK_INT(ds_store_seal(s, 1, &sb), ==, 0);
  CHECK(sb != NULL);
  collected c = {0};
  check_sealed(sb, 1, &c, NULL);
  CHECK_INT(c.n, ==, 5);
  for (int i = 0; i < 5; i++) CHECK_MEM(c.recs[i], c.lens[i], recs[i], strlen(recs[i]));
  uint64_t want_bytes = 0;
  for (int i = 0; i < 5; i++) want_bytes += 4 + strlen(recs[i]);
  CHECK_INT(sb->bytes, ==, want_bytes);
  collected_free(&c);
  ds_sealed_free(sb);

  /* Sealing empties the store; the total keeps counting. */
  CHECK_INT(ds_store_pending(s), ==, 0);
  CHECK_INT(ds_store_total(s), ==, 5);
  CHECK_INT(ds_store_append(s, "next batch", 10), ==, 0);
  CHECK_INT(ds_store_pending(s), ==, 1);
  CHECK_INT(ds_store_total(s), ==, 6);
  CHECK_INT(ds_store_seal(s, 2, &sb), ==, 0);
  check_sealed(sb, 2, &c, NULL);
  CHECK_INT(c.n, ==, 1);
  CHECK_MEM(c.recs[0], c.lens[0], "next batch", 10);
  collected_free(&c);
  ds_sealed_free(sb);

  /* Bad partition counts are refused and leave the records in the store. */
  CHECK_INT(ds_store_append(s, "still here", 10), ==, 0);
  sb = NULL;
  CHECK_INT(ds_store_seal(s, 0, &sb), ==, -EINVAL);
  CHECK_INT(ds_store_seal(s, -3, &sb), ==, -EINVAL);
  CHECK(sb == NULL);
  CHECK_INT(ds_store_pending(s), ==, 1);
  CHECK_INT(ds_store_seal(s, 1, &sb), ==, 0);
  CHECK_INT(sb->count, ==, 1);
  ds_sealed_free(sb);
  ds_sealed_free(NULL);
  ds_store_free(s);
  ds_store_free(NULL);
}

static void test_store_empty_seal(void) {
  ds_store *s = ds_store_new(32);
  CHECK(s != NULL);
  for (int nparts = 1; nparts <= 8; nparts++) {
    ds_sealed *sb = NULL;
    CHECK_INT(ds_store_seal(s, nparts, &sb), ==, 0);
    CHECK(sb != NULL);
    CHECK_INT(sb->nparts, ==, nparts);
    CHECK_INT(sb->count, ==, 0);
    CHECK_INT(sb->bytes, ==, 0);
    for (int p = 0; p < nparts; p++) {
      CHECK_INT(sb->parts[p].count, ==, 0);
      CHECK_INT(sb->parts[p].nslices, ==, 0);
    }
    ds_sealed_free(sb);
  }
  /* Empty blocks given directly slice to empty partitions too. */
  ds_block *blocks[2] = {ds_block_new(DS_FMT_LINES, 16), ds_block_new(DS_FMT_LINES, 0)};
  CHECK(blocks[0] && blocks[1]);
  ds_sealed *sb;
  CHECK_INT(ds_sealed_from_blocks(blocks, 2, 3, &sb), ==, 0);
  CHECK_INT(sb->count, ==, 0);
  for (int p = 0; p < 3; p++) CHECK_INT(sb->parts[p].count, ==, 0);
  ds_sealed_free(sb);
  CHECK_INT(ds_sealed_from_blocks(blocks, 0, 2, &sb), ==, 0);
  CHECK_INT(sb->count, ==, 0);
  CHECK_INT(sb->nparts, ==, 2);
  ds_sealed_free(sb);
  CHECK_INT(ds_sealed_from_blocks(blocks, 2, 0, &sb), ==, -EINVAL);
  ds_block_release(blocks[0]);
  ds_block_release(blocks[1]);
  ds_store_free(s);
}

/* Every combination of 0..50 records over 1..8 partitions, with blocks small enough that a
 * batch spans many of them: partitions are consecutive runs of records, their sizes differ
 * by at most one, and every record appears exactly once, in order. */
static void test_store_slicing(void) {
  static const size_t block_sizes[] = {1, 16, 24, 40, 100, 1 << 20};
  int combos = 0;
  for (size_t bi = 0; bi < sizeof block_sizes / sizeof block_sizes[0]; bi++) {
    for (int n = 0; n <= 50; n++) {
      for (int nparts = 1; nparts <= 8; nparts++) {
        ds_store *s = ds_store_new(block_sizes[bi]);
        CHECK(s != NULL);
        /* Records from an earlier, sealed batch must not show up in this one. */
        CHECK_INT(ds_store_append(s, "old", 3), ==, 0);
        ds_sealed *old;
        CHECK_INT(ds_store_seal(s, 1, &old), ==, 0);
        ds_sealed_free(old);

        char rec[64];
        for (int i = 0; i < n; i++) {
          size_t len = record_text(i, rec, sizeof rec);
          CHECK_INT(ds_store_append(s, rec, len), ==, 0);
        }
        CHECK_INT(ds_store_pending(s), ==, n);
        ds_sealed *sb;
        CHECK_INT(ds_store_seal(s, nparts, &sb), ==, 0);
        CHECK_INT(ds_store_pending(s), ==, 0);

        collected c = {0};
        uint64_t counts[8];
        check_sealed(sb, nparts, &c, counts);
        CHECK_INT(c.n, ==, n);
        /* In order, each exactly once: partition order concatenated is the input order. */
        for (int i = 0; i < n; i++) {
          size_t len = record_text(i, rec, sizeof rec);
          CHECK_MEM(c.recs[i], c.lens[i], rec, len);
        }
        uint64_t lo = counts[0], hi = counts[0];
        for (int p = 0; p < nparts; p++) {
          if (counts[p] < lo) lo = counts[p];
          if (counts[p] > hi) hi = counts[p];
        }
        if (hi - lo > 1) {
          fprintf(stderr, "n=%d nparts=%d block_bytes=%zu: partition sizes", n, nparts,
                  block_sizes[bi]);
          for (int p = 0; p < nparts; p++) fprintf(stderr, " %llu", (unsigned long long)counts[p]);
          fprintf(stderr, "\n");
        }
        CHECK_INT(hi - lo, <=, 1);
        /* Slices of one partition that share a block are adjacent in it, and a partition's
         * slices follow each other through the blocks (consecutive records). */
        for (int p = 0; p < nparts; p++) {
          const ds_part *part = &sb->parts[p];
          for (int k = 1; k < part->nslices; k++) {
            CHECK(part->slices[k].block != part->slices[k - 1].block);
            CHECK(part->slices[k].data == part->slices[k].block->data);
            CHECK(part->slices[k - 1].data + part->slices[k - 1].len ==
                  part->slices[k - 1].block->data + part->slices[k - 1].block->len);
          }
        }
        collected_free(&c);

        /* The sealed batch outlives the store. */
        ds_store_free(s);
        c = (collected){0};
        check_sealed(sb, nparts, &c, NULL);
        CHECK_INT(c.n, ==, n);
        collected_free(&c);
        ds_sealed_free(sb);
        combos++;
      }
    }
  }
  CHECK_INT(combos, ==, 6 * 51 * 8);
}

/* Each block is referenced exactly once per slice that views it, the store's own references
 * are gone after sealing, and ds_sealed_free drops every reference. */
static void test_store_refcounts(void) {
  ds_store *s = ds_store_new(40);
  CHECK(s != NULL);
  char rec[64];
  for (int i = 0; i < 37; i++) CHECK_INT(ds_store_append(s, rec, record_text(i, rec, sizeof rec)), ==, 0);
  ds_sealed *sb;
  CHECK_INT(ds_store_seal(s, 5, &sb), ==, 0);
  ds_store_free(s); /* before anything reads the batch */

  /* Count the slices per block. */
  ds_block *blocks[256];
  int uses[256], nblocks = 0;
  for (int p = 0; p < sb->nparts; p++) {
    for (int k = 0; k < sb->parts[p].nslices; k++) {
      ds_block *b = sb->parts[p].slices[k].block;
      int j = 0;
      while (j < nblocks && blocks[j] != b) j++;
      if (j == nblocks) {
        CHECK(nblocks < 256);
        blocks[nblocks] = b;
        uses[nblocks++] = 0;
      }
      uses[j]++;
    }
  }
  CHECK_INT(nblocks, >, 5); /* small blocks: the batch spans many */
  for (int j = 0; j < nblocks; j++) CHECK_INT(atomic_load(&blocks[j]->refs), ==, uses[j]);
  /* Keep one block alive past ds_sealed_free: its count drops back to our reference. */
  ds_block *keep = blocks[0];
  ds_block_retain(keep);
  CHECK_INT(atomic_load(&keep->refs), ==, uses[0] + 1);
  collected c = {0};
  check_sealed(sb, 5, &c, NULL);
  CHECK_INT(c.n, ==, 37);
  collected_free(&c);
  ds_sealed_free(sb);
  CHECK_INT(atomic_load(&keep->refs), ==, 1);
  CHECK_INT(keep->count, >, 0);
  uint32_t len;
  memcpy(&len, keep->data, 4);
  CHECK_MEM(keep->data + 4, len, "rec-0", 5);
  ds_block_release(keep); /* ASan's leak check (sanitizer build) sees anything left */

  /* ds_sealed_from_blocks takes its own references: the caller's may go at once. */
  ds_block *own[3];
  for (int j = 0; j < 3; j++) {
    own[j] = ds_block_new(DS_FMT_LINES, 0);
    CHECK(own[j] != NULL);
    for (int i = 0; i < 4; i++) {
      int n = snprintf(rec, sizeof rec, "b%d-%d", j, i);
      CHECK_INT(ds_block_append_record(own[j], rec, (size_t)n), ==, 0);
    }
  }
  CHECK_INT(ds_sealed_from_blocks(own, 3, 4, &sb), ==, 0);
  for (int j = 0; j < 3; j++) CHECK_INT(atomic_load(&own[j]->refs), >, 1);
  for (int j = 0; j < 3; j++) ds_block_release(own[j]);
  c = (collected){0};
  check_sealed(sb, 4, &c, NULL);
  CHECK_INT(c.n, ==, 12);
  for (int j = 0; j < 3; j++) {
    for (int i = 0; i < 4; i++) {
      int n = snprintf(rec, sizeof rec, "b%d-%d", j, i);
      CHECK_MEM(c.recs[j * 4 + i], c.lens[j * 4 + i], rec, n);
    }
  }
  for (int p = 0; p < 4; p++) CHECK_INT(sb->parts[p].count, ==, 3);
  collected_free(&c);
  ds_sealed_free(sb);
}

static void test_store_oversized(void) {
  ds_store *s = ds_store_new(64);
  CHECK(s != NULL);
  CHECK_INT(ds_store_append(s, "before", 6), ==, 0);
  char *big = calloc(1, (size_t)DS_RECORD_MAX + 1);
  CHECK(big != NULL);
  CHECK_INT(ds_store_append(s, big, (size_t)DS_RECORD_MAX + 1), ==, -E2BIG);
  CHECK_INT(ds_store_pending(s), ==, 1);
  CHECK_INT(ds_store_total(s), ==, 1);
  CHECK_INT(ds_store_append(s, "after", 5), ==, 0);
  ds_sealed *sb;
  CHECK_INT(ds_store_seal(s, 1, &sb), ==, 0);
  collected c = {0};
  check_sealed(sb, 1, &c, NULL);
  CHECK_INT(c.n, ==, 2);
  CHECK_MEM(c.recs[0], c.lens[0], "before", 6);
  CHECK_MEM(c.recs[1], c.lens[1], "after", 5);
  CHECK_INT(sb->bytes, ==, 4 + 6 + 4 + 5);
  collected_free(&c);
  ds_sealed_free(sb);

  /* The largest record allowed is stored whole, in a block of its own size. */
  big[0] = 'B';
  big[DS_RECORD_MAX - 1] = 'E';
  CHECK_INT(ds_store_append(s, "x", 1), ==, 0);
  CHECK_INT(ds_store_append(s, big, DS_RECORD_MAX), ==, 0);
  CHECK_INT(ds_store_append(s, "y", 1), ==, 0);
  CHECK_INT(ds_store_seal(s, 3, &sb), ==, 0);
  CHECK_INT(sb->count, ==, 3);
  for (int p = 0; p < 3; p++) CHECK_INT(sb->parts[p].count, ==, 1);
  const ds_slice *mid = &sb->parts[1].slices[0];
  uint32_t len;
  memcpy(&len, mid->data, 4);
  CHECK_INT(len, ==, DS_RECORD_MAX);
  CHECK_INT(mid->data[4], ==, 'B');
  CHECK_INT(mid->data[4 + DS_RECORD_MAX - 1], ==, 'E');
  ds_sealed_free(sb);
  free(big);
  ds_store_free(s);
}

/* ---- concurrency ---------------------------------------------------------------------- */

enum { NTHREADS = 4, PER_THREAD = 20000 };

typedef struct appender {
  ds_store *store;
  int id;
  pthread_barrier_t *start;
} appender;

static void *append_main(void *arg) {
  appender *a = arg;
  pthread_barrier_wait(a->start);
  char rec[32];
  for (int i = 0; i < PER_THREAD; i++) {
    int n = snprintf(rec, sizeof rec, "%d:%d", a->id, i);
    CHECK_INT(ds_store_append(a->store, rec, (size_t)n), ==, 0);
  }
  return NULL;
}

/* Checks that the records seen hold every "T:I" exactly once, each thread's in its order. */
typedef struct tally {
  int next[NTHREADS]; /* next index expected from each thread */
  uint64_t seen;
} tally;

static void tally_one(const char *rec, size_t len, void *ud) {
  tally *t = ud;
  char buf[32];
  CHECK(len < sizeof buf);
  memcpy(buf, rec, len);
  buf[len] = '\0';
  int id = -1, i = -1;
  CHECK_INT(sscanf(buf, "%d:%d", &id, &i), ==, 2);
  CHECK(id >= 0 && id < NTHREADS);
  if (i != t->next[id]) fprintf(stderr, "record \"%s\": expected index %d\n", buf, t->next[id]);
  CHECK_INT(i, ==, t->next[id]);
  t->next[id]++;
  t->seen++;
}

static void tally_sealed(tally *t, const ds_sealed *sb) {
  uint64_t before = t->seen;
  for (int p = 0; p < sb->nparts; p++)
    for (int k = 0; k < sb->parts[p].nslices; k++) walk_slice(&sb->parts[p].slices[k], tally_one, t);
  CHECK_INT(t->seen - before, ==, sb->count);
}

static void run_appenders(ds_store *s, pthread_t *th, appender *a, pthread_barrier_t *start) {
  for (int k = 0; k < NTHREADS; k++) {
    a[k] = (appender){s, k, start};
    CHECK_INT(pthread_create(&th[k], NULL, append_main, &a[k]), ==, 0);
  }
}

static void test_store_concurrent_appends(void) {
  ds_store *s = ds_store_new(256);
  CHECK(s != NULL);
  pthread_barrier_t start;
  CHECK_INT(pthread_barrier_init(&start, NULL, NTHREADS), ==, 0);
  pthread_t th[NTHREADS];
  appender a[NTHREADS];
  run_appenders(s, th, a, &start);
  for (int k = 0; k < NTHREADS; k++) CHECK_INT(pthread_join(th[k], NULL), ==, 0);
  pthread_barrier_destroy(&start);

  CHECK_INT(ds_store_pending(s), ==, NTHREADS * PER_THREAD);
  CHECK_INT(ds_store_total(s), ==, NTHREADS * PER_THREAD);
  ds_sealed *sb;
  CHECK_INT(ds_store_seal(s, 3, &sb), ==, 0);
  CHECK_INT(sb->count, ==, NTHREADS * PER_THREAD);
  tally t = {{0}, 0};
  tally_sealed(&t, sb);
  for (int k = 0; k < NTHREADS; k++) CHECK_INT(t.next[k], ==, PER_THREAD);
  ds_sealed_free(sb);
  ds_store_free(s);
}

/* Seals while 4 threads append: the batches together hold every record exactly once. */
static void test_store_seal_during_appends(void) {
  ds_store *s = ds_store_new(128);
  CHECK(s != NULL);
  pthread_barrier_t start;
  CHECK_INT(pthread_barrier_init(&start, NULL, NTHREADS + 1), ==, 0);
  pthread_t th[NTHREADS];
  appender a[NTHREADS];
  run_appenders(s, th, a, &start);
  pthread_barrier_wait(&start);
  tally t = {{0}, 0};
  int batches = 0;
  while (ds_store_total(s) < (uint64_t)NTHREADS * PER_THREAD) {
    ds_sealed *sb;
    CHECK_INT(ds_store_seal(s, 1 + batches % 5, &sb), ==, 0);
    tally_sealed(&t, sb);
    ds_sealed_free(sb);
    batches++;
  }
  for (int k = 0; k < NTHREADS; k++) CHECK_INT(pthread_join(th[k], NULL), ==, 0);
  pthread_barrier_destroy(&start);
  ds_sealed *last;
  CHECK_INT(ds_store_seal(s, 2, &last), ==, 0);
  tally_sealed(&t, last);
  ds_sealed_free(last);
  CHECK_INT(t.seen, ==, NTHREADS * PER_THREAD);
  for (int k = 0; k < NTHREADS; k++) CHECK_INT(t.next[k], ==, PER_THREAD);
  CHECK_INT(ds_store_pending(s), ==, 0);
  ds_store_free(s);
}

int main(void) {
  test_block_append();
  test_block_copy_and_reserve();
  test_block_oversized();
  test_store_append_seal();
  test_store_empty_seal();
  test_store_slicing();
  test_store_refcounts();
  test_store_oversized();
  test_store_concurrent_appends();
  test_store_seal_during_appends();
  printf("test_store: ok\n");
  return 0;
}

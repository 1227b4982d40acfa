/* ds_block.c - refcounted record blocks in C memory. */
#include "ds_block.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

ds_block *ds_block_new(int format, size_t cap) {
  ds_block *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  if (cap) {
    b->data = malloc(cap);
    if (!b->data) {
      free(b);
      return NULL;
    }
  }
  atomic_init(&b->refs, 1);
  b->format = format;
  b->cap = cap;
  return b;
}

ds_block *ds_block_copy(int format, int pairs, const void *p, size_t len, uint64_t count) {
  ds_block *b = ds_block_new(format, len ? len : 1);
  if (!b) return NULL;
  if (len) memcpy(b->data, p, len);
  b->len = len;
  b->count = count;
  b->pairs = pairs;
  return b;
}

int ds_block_reserve(ds_block *b, size_t extra) {
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra) cap *= 2;
  char *data = realloc(b->data, cap);
  if (!data) return -ENOMEM;
  b->data = data;
  b->cap = cap;
  return 0;
}

int ds_block_append_record(ds_block *b, const void *p, size_t len) {
  if (len > DS_RECORD_MAX) return -E2BIG;
  int rc = ds_block_reserve(b, 4 + len);
  if (rc) return rc;
  uint32_t n = (uint32_t)len;
  memcpy(b->data + b->len, &n, 4); /* x86-64 and aarch64 are little-endian */
  if (len) memcpy(b->data + b->len + 4, p, len);
  b->len += 4 + len;
  b->count++;
  return 0;
}

void ds_block_retain(ds_block *b) { atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed); }

void ds_block_release(ds_block *b) {
  if (!b) return;
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
    free(b->data);
    free(b);
  }
}

void ds_slice_of_block(ds_slice *s, ds_block *b) {
  ds_block_retain(b);
  s->block = b;
  s->data = b->data;
  s->len = b->len;
  s->count = b->count;
  s->format = b->format;
  s->pairs = b->pairs;
}

void ds_slice_clear(ds_slice *s) {
  if (s->block) ds_block_release(s->block);
  memset(s, 0, sizeof *s);
}

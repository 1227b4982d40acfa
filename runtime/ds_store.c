/* ds_store.c - per-stream block store and the slicing of a batch into partitions. */
#include "ds_store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ds_limits.h"

struct ds_store {
  pthread_mutex_t lock;
  size_t block_bytes;
  ds_block **blocks; /* full or current; the last one is the one being appended to */
  int nblocks, capblocks;
  uint64_t pending;
  uint64_t total;
};

ds_store *ds_store_new(size_t block_bytes) {
  ds_store *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  pthread_mutex_init(&s->lock, NULL);
  s->block_bytes = block_bytes ? block_bytes : DS_BLOCK_BYTES;
  return s;
}

void ds_store_free(ds_store *s) {
  if (!s) return;
  for (int i = 0; i < s->nblocks; i++) ds_block_release(s->blocks[i]);
  free(s->blocks);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* Caller holds the lock. Starts a new block big enough for a record of `len` bytes. */
static int store_new_block(ds_store *s, size_t len) {
  if (s->nblocks == s->capblocks) {
    int cap = s->capblocks ? s->capblocks * 2 : 8;
    ds_block **blocks = realloc(s->blocks, (size_t)cap * sizeof *blocks);
    if (!blocks) return -ENOMEM;
    s->blocks = blocks;
    s->capblocks = cap;
  }
  size_t cap = s->block_bytes > len + 4 ? s->block_bytes : len + 4;
  ds_block *b = ds_block_new(DS_FMT_LINES, cap);
  if (!b) return -ENOMEM;
  s->blocks[s->nblocks++] = b;
  return 0;
}

int ds_store_append(ds_store *s, const void *rec, size_t len) {
  if (len > DS_RECORD_MAX) return -E2BIG;
  pthread_mutex_lock(&s->lock);
  int rc = 0;
  ds_block *cur = s->nblocks ? s->blocks[s->nblocks - 1] : NULL;
  if (!cur || cur->len + 4 + len > cur->cap) {
    rc = store_new_block(s, len);
    if (rc == 0) cur = s->blocks[s->nblocks - 1];
  }
  if (rc == 0) rc = ds_block_append_record(cur, rec, len);
  if (rc == 0) {
    s->pending++;
    s->total++;
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

uint64_t ds_store_pending(ds_store *s) {
  pthread_mutex_lock(&s->lock);
  uint64_t n = s->pending;
  pthread_mutex_unlock(&s->lock);
  return n;
}

uint64_t ds_store_total(ds_store *s) {
  pthread_mutex_lock(&s->lock);
  uint64_t n = s->total;
  pthread_mutex_unlock(&s->lock);
  return n;
}

int ds_store_seal(ds_store *s, int nparts, ds_sealed **out) {
  if (nparts < 1) return -EINVAL;
  pthread_mutex_lock(&s->lock);
  ds_block **blocks = s->blocks;
  int nblocks = s->nblocks;
  s->blocks = NULL;
  s->nblocks = s->capblocks = 0;
  s->pending = 0;
  pthread_mutex_unlock(&s->lock);

  int rc = ds_sealed_from_blocks(blocks, nblocks, nparts, out);
  for (int i = 0; i < nblocks; i++) ds_block_release(blocks[i]);
  free(blocks);
  return rc;
}

int ds_part_add_slice(ds_part *p, ds_block *b, size_t off, size_t len, uint64_t count) {
  ds_slice *slices = realloc(p->slices, (size_t)(p->nslices + 1) * sizeof *slices);
  if (!slices) return -ENOMEM;
  p->slices = slices;
  ds_slice *sl = &p->slices[p->nslices++];
  ds_block_retain(b);
  sl->block = b;
  sl->data = b->data + off;
  sl->len = len;
  sl->count = count;
  sl->format = b->format;
  sl->pairs = b->pairs;
  p->count += count;
  return 0;
}

int ds_sealed_from_blocks(ds_block **blocks, int nblocks, int nparts, ds_sealed **out) {
  if (nparts < 1) return -EINVAL;
  ds_sealed *sb = calloc(1, sizeof *sb);
  if (!sb) return -ENOMEM;
  sb->parts = calloc((size_t)nparts, sizeof *sb->parts);
  if (!sb->parts) {
    free(sb);
    return -ENOMEM;
  }
  sb->nparts = nparts;
  for (int i = 0; i < nblocks; i++) {
    sb->count += blocks[i]->count;
    sb->bytes += blocks[i]->len;
  }

  /* Partition p gets records [p*N/P, (p+1)*N/P): consecutive, sizes differ by at most one. */
  uint64_t n = sb->count, seen = 0;
  int part = 0;
  for (int i = 0; i < nblocks; i++) {
    ds_block *b = blocks[i];
    size_t off = 0, start = 0;
    uint64_t in_slice = 0;
    while (off < b->len) {
      while (part < nparts - 1 && seen >= (uint64_t)(part + 1) * n / (uint64_t)nparts) {
        if (in_slice && ds_part_add_slice(&sb->parts[part], b, start, off - start, in_slice)) goto oom;
        start = off;
        in_slice = 0;
        part++;
      }
      uint32_t len;
      memcpy(&len, b->data + off, 4);
      off += 4 + (size_t)len;
      in_slice++;
      seen++;
    }
    if (in_slice && ds_part_add_slice(&sb->parts[part], b, start, off - start, in_slice)) goto oom;
  }
  *out = sb;
  return 0;
oom:
  ds_sealed_free(sb);
  return -ENOMEM;
}

void ds_sealed_free(ds_sealed *sb) {
  if (!sb) return;
  for (int p = 0; p < sb->nparts; p++) {
    for (int i = 0; i < sb->parts[p].nslices; i++) ds_slice_clear(&sb->parts[p].slices[i]);
    free(sb->parts[p].slices);
  }
  free(sb->parts);
  free(sb);
}

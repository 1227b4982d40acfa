/* ds_block.h - blocks: refcounted runs of records in C memory.
 *
 * A block owns one contiguous byte region. Two record formats exist:
 *   DS_FMT_LINES  each record is a little-endian uint32 length followed by that many bytes;
 *                 receivers write text records this way, workers read them through the FFI.
 *   DS_FMT_SBUF   records are values in LuaJIT's string.buffer serialization format, one value
 *                 per record, or two consecutive values (key, value) when `pairs` is set.
 * A block is mutable only while its creator appends to it; once shared (a ds_slice holds it)
 * it is read-only and freed when the last reference is released. Reference counts are atomic
 * so blocks can cross threads (driver, workers). */
#ifndef DS_BLOCK_H
#define DS_BLOCK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ds_limits.h" /* DS_RECORD_MAX */

enum { DS_FMT_LINES = 1, DS_FMT_SBUF = 2 };

typedef struct ds_block {
  atomic_int refs;
  int32_t format;
  int32_t pairs;
  uint64_t count; /* records */
  size_t len;     /* bytes used */
  size_t cap;     /* bytes allocated */
  char *data;
} ds_block;

/* A view of consecutive records inside one block. Holds one reference to `block`.
 * Laid out for the FFI: workers read slices as a C array, so lua/dstream/worker/cdefs.lua
 * mirrors it (spec/layout_spec.lua compares the two through core.struct_layouts()). */
typedef struct ds_slice {
  ds_block *block;
  const char *data;
  size_t len;
  uint64_t count;
  int32_t format;
  int32_t pairs;
} ds_slice;

#if UINTPTR_MAX == UINT64_MAX
/* A field added or moved here must be added or moved in cdefs.lua too; then fix the size. */
_Static_assert(sizeof(ds_slice) == 40, "ds_slice changed: change lua/dstream/worker/cdefs.lua too");
#endif

/* Returns a new empty block with one reference, or NULL when memory is exhausted. */
ds_block *ds_block_new(int format, size_t cap);
/* Returns a new block holding a copy of `len` bytes, or NULL when memory is exhausted. */
ds_block *ds_block_copy(int format, int pairs, const void *p, size_t len, uint64_t count);
/* Grows the block so that `extra` more bytes fit. Returns 0 or -ENOMEM. */
int ds_block_reserve(ds_block *b, size_t extra);
/* Appends one DS_FMT_LINES record. Returns 0, -E2BIG (record over DS_RECORD_MAX) or -ENOMEM. */
int ds_block_append_record(ds_block *b, const void *p, size_t len);
void ds_block_retain(ds_block *b);
void ds_block_release(ds_block *b);

/* Fills `s` with a view of the whole block and takes a reference for it. */
void ds_slice_of_block(ds_slice *s, ds_block *b);
/* Releases the slice's reference and clears it. */
void ds_slice_clear(ds_slice *s);

#endif

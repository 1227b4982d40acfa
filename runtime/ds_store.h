/* ds_store.h - the block store of one input stream, and batch slicing.
 *
 * A receiver appends text records to its store as they arrive; records go into blocks of
 * about `block_bytes`. At each batch boundary the driver seals the store: every record
 * appended so far becomes the batch's input, split into `nparts` partitions of consecutive
 * records (as even as the record count allows), and the store starts empty again.
 * Appending is thread-safe, so a receiver may run on any thread. The store owns its
 * unsealed blocks; a sealed batch owns references to the blocks it covers. */
#ifndef DS_STORE_H
#define DS_STORE_H

#include <pthread.h>
#include <stdint.h>

#include "ds_block.h"

typedef struct ds_store ds_store;

/* One partition of a sealed batch: consecutive records as views into one or more blocks. */
typedef struct ds_part {
  ds_slice *slices;
  int32_t nslices;
  uint64_t count;
} ds_part;

typedef struct ds_sealed {
  int32_t nparts;
  uint64_t count; /* records in all partitions */
  uint64_t bytes; /* bytes of all slices: records with their 4-byte length prefixes */
  ds_part *parts;
} ds_sealed;

/* Returns a new store, or NULL when memory is exhausted. block_bytes 0 means DS_BLOCK_BYTES. */
ds_store *ds_store_new(size_t block_bytes);
void ds_store_free(ds_store *s);

/* Appends one record (a text line without its terminator). Returns 0, -E2BIG for a record
 * over DS_RECORD_MAX (nothing is stored), or -ENOMEM. */
int ds_store_append(ds_store *s, const void *rec, size_t len);

/* Records appended and not yet sealed. */
uint64_t ds_store_pending(ds_store *s);
/* Records appended since the store was created (sealed or not). */
uint64_t ds_store_total(ds_store *s);

/* Moves everything appended so far into a new sealed batch of `nparts` partitions.
 * Returns 0 and sets *out (free with ds_sealed_free), or -EINVAL / -ENOMEM. */
int ds_store_seal(ds_store *s, int nparts, ds_sealed **out);

/* Adds a view of `count` records at [off, off + len) of block b to partition p, taking a
 * reference to b. Returns 0 or -ENOMEM. For sources that cut partitions themselves. */
int ds_part_add_slice(ds_part *p, ds_block *b, size_t off, size_t len, uint64_t count);

/* Splits the records of `blocks` (DS_FMT_LINES) into `nparts` partitions; used by
 * ds_store_seal and usable on its own. Takes its own references to the blocks. */
int ds_sealed_from_blocks(ds_block **blocks, int nblocks, int nparts, ds_sealed **out);
void ds_sealed_free(ds_sealed *b);

#endif

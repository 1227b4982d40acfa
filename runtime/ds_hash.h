/* ds_hash.h - the key hash that decides shuffle partitions.
 *
 * It must be the same on every worker and in every run (state is matched to partitions
 * across restarts), so it hashes the key's bytes or its numeric value, never an address.
 * Called by worker Lua code through the FFI, once per distinct key per task. */
#ifndef DS_HASH_H
#define DS_HASH_H

#include <stddef.h>
#include <stdint.h>

uint32_t ds_hash_bytes(const char *p, size_t len);
/* Equal numbers hash alike whatever their representation (1 and 1.0; 0 and -0). */
uint32_t ds_hash_number(double v);

#endif

/* ds_hash.h - the key hash that decides shuffle partitions, and the string hash of the
 * runtime's own hash tables (one FNV-1a for both).
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
/* 64-bit FNV-1a with a final avalanche, for hash tables in C memory (the file source's
 * remembered names): every bit of the result depends on every byte, so the low bits index a
 * power-of-two table well. */
uint64_t ds_hash_bytes64(const char *p, size_t len);

#endif

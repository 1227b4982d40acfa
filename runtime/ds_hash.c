/* ds_hash.c - stable hashes: 32-bit of shuffle keys, 64-bit of table keys (FNV-1a with a
 * final avalanche). */
#include "ds_hash.h"

#include <string.h>

static uint32_t avalanche(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

uint32_t ds_hash_bytes(const char *p, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)p[i];
    h *= 16777619u;
  }
  return avalanche(h);
}

uint32_t ds_hash_number(double v) {
  if (v == 0) v = 0; /* -0 and 0 are the same key */
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  return avalanche((uint32_t)bits ^ (uint32_t)(bits >> 32) ^ 0x9e3779b9u);
}

uint64_t ds_hash_bytes64(const char *p, size_t len) {
  uint64_t h = 1469598103934665603u;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)p[i];
    h *= 1099511628211u;
  }
  /* MurmurHash3's fmix64: FNV-1a's low bits alone depend weakly on the last bytes. */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdu;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53u;
  h ^= h >> 33;
  return h;
}

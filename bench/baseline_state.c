/* bench/baseline_state.c - BASELINE (not dstream): running per-key counts in plain C on one
 * core: BATCHES x KEYS records, record i of batch b has the key "u<i * stride(b) % KEYS>"
 * (bench/state.lua's: each batch visits every key once, in an order of its own),
 * one hash table from key (copied into an arena) to its count. Memory per key: the table's
 * slots and the key bytes; key_bytes is the keys' own bytes (characters and a NUL).
 *   baseline_state KEYS BATCHES */
#include "baseline.h"

static const long long strides[8] = {7919, 104729, 224737, 350377, 479909, 611953, 746773, 882377};

int main(int argc, char **argv) {
  if (argc != 3) bl_die("usage: baseline_state KEYS BATCHES");
  long long nkeys = atoll(argv[1]), nbatches = atoll(argv[2]);
  double t0 = bl_now(), c0 = bl_cpu();
  bl_map m;
  bl_map_init(&m, 1 << 16);
  size_t arena_cap = (size_t)nkeys * 16, arena_len = 0;
  char *arena = malloc(arena_cap);
  if (!arena) bl_die("out of memory");
  for (long long i = 0; i < nkeys * nbatches; i++) {
    char key[24];
    long long k = i * strides[(i / nkeys) % 8] % nkeys;
    int len = 0;
    key[len++] = 'u';
    char digits[20];
    int nd = 0;
    do digits[nd++] = (char)('0' + k % 10); while ((k /= 10) > 0);
    while (nd) key[len++] = digits[--nd];
    bl_slot *s = bl_map_get(&m, key, (uint32_t)len);
    if (s->key == key) { /* new: the key moves into the arena */
      if (arena_len + (size_t)len + 1 > arena_cap) bl_die("arena full");
      memcpy(arena + arena_len, key, (size_t)len);
      arena[arena_len + (size_t)len] = 0;
      s->key = arena + arena_len;
      arena_len += (size_t)len + 1;
    }
    s->value++;
  }
  double secs = bl_now() - t0, cpu = bl_cpu() - c0;
  long long sum = 0;
  for (size_t i = 0; i < m.cap; i++)
    if (m.slots[i].key) sum += m.slots[i].value;
  double bytes = (double)(m.cap * sizeof(bl_slot) + arena_len);
  bl_result("workload=state impl=c records=%lld keys=%zu sum=%lld secs=%.4f cpu=%.4f "
            "bytes_per_key=%.1f key_bytes=%.1f\n",
            nkeys * nbatches, m.n, sum, secs, cpu, bytes / (double)m.n,
            (double)arena_len / (double)m.n);
  return 0;
}

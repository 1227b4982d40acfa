/* bench/baseline_topk.c - BASELINE (not dstream): the 10 most frequent words of every batch in
 * plain C on one core: count the batch's words in a hash table, then keep the top 10 (count
 * descending, then word ascending) while scanning it. The checksum sums the winners' counts.
 *   baseline_topk CORPUS BATCHES */
#include "baseline.h"

#define K 10

static int before(const bl_slot *a, const bl_slot *b) { /* a ranks before b */
  if (a->value != b->value) return a->value > b->value;
  uint32_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->key, b->key, n);
  return c < 0 || (c == 0 && a->len < b->len);
}

int main(int argc, char **argv) {
  if (argc != 3) bl_die("usage: baseline_topk CORPUS BATCHES");
  bl_corpus c;
  bl_load(argv[1], &c);
  size_t nbatches = (size_t)atol(argv[2]);
  size_t per_batch = (c.nlines + nbatches - 1) / nbatches;
  double t0 = bl_now(), c0 = bl_cpu();
  long long checksum = 0;
  for (size_t b = 0; b < nbatches; b++) {
    bl_map m;
    bl_map_init(&m, 1 << 12);
    size_t end = (b + 1) * per_batch < c.nlines ? (b + 1) * per_batch : c.nlines;
    for (size_t i = b * per_batch; i < end; i++) bl_count_words(&m, c.lines[i].p, c.lines[i].len);
    const bl_slot *top[K];
    int n = 0;
    for (size_t i = 0; i < m.cap; i++) {
      const bl_slot *s = &m.slots[i];
      if (!s->key || (n == K && !before(s, top[K - 1]))) continue;
      int j = n < K ? n++ : K - 1;
      while (j > 0 && before(s, top[j - 1])) {
        top[j] = top[j - 1];
        j--;
      }
      top[j] = s;
    }
    for (int i = 0; i < n; i++) checksum += top[i]->value;
    free(m.slots);
  }
  double secs = bl_now() - t0, cpu = bl_cpu() - c0;
  bl_result("workload=topk impl=c records=%zu batches=%zu checksum=%lld secs=%.4f cpu=%.4f\n",
            c.nlines, nbatches, checksum, secs, cpu);
  return 0;
}

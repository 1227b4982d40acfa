/* bench/baseline_window.c - BASELINE (not dstream): windowed word count in plain C on one core.
 * The corpus is cut into BATCHES batches of consecutive lines; each batch's counts form a pane,
 * the running window (30 panes) adds the new pane and subtracts the one that left, and the
 * number of words with a positive count is taken after every batch (summed as a checksum).
 *   baseline_window CORPUS BATCHES */
#include "baseline.h"

#define WINDOW 30

static void add_pane(bl_map *running, const bl_map *pane, int sign) {
  for (size_t i = 0; i < pane->cap; i++) {
    const bl_slot *s = &pane->slots[i];
    if (s->key) bl_map_get(running, s->key, s->len)->value += sign * s->value;
  }
}

int main(int argc, char **argv) {
  if (argc != 3) bl_die("usage: baseline_window CORPUS BATCHES");
  bl_corpus c;
  bl_load(argv[1], &c);
  size_t nbatches = (size_t)atol(argv[2]);
  size_t per_batch = (c.nlines + nbatches - 1) / nbatches;
  double t0 = bl_now(), c0 = bl_cpu();
  bl_map panes[WINDOW + 1], running;
  bl_map_init(&running, 1 << 16);
  long long checksum = 0;
  for (size_t b = 0; b < nbatches; b++) {
    bl_map *pane = &panes[b % (WINDOW + 1)];
    bl_map_init(pane, 1 << 12);
    size_t end = (b + 1) * per_batch < c.nlines ? (b + 1) * per_batch : c.nlines;
    for (size_t i = b * per_batch; i < end; i++) bl_count_words(pane, c.lines[i].p, c.lines[i].len);
    add_pane(&running, pane, 1);
    if (b >= WINDOW) {
      bl_map *old = &panes[(b - WINDOW) % (WINDOW + 1)];
      add_pane(&running, old, -1);
      free(old->slots);
    }
    size_t distinct = 0;
    for (size_t i = 0; i < running.cap; i++)
      if (running.slots[i].key && running.slots[i].value > 0) distinct++;
    checksum += (long long)distinct;
  }
  double secs = bl_now() - t0, cpu = bl_cpu() - c0;
  bl_result("workload=window impl=c records=%zu batches=%zu checksum=%lld secs=%.4f cpu=%.4f\n",
            c.nlines, nbatches, checksum, secs, cpu);
  return 0;
}

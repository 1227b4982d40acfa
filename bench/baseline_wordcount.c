/* bench/baseline_wordcount.c - BASELINE (not dstream): word count of the corpus in plain C on
 * one core: split each line on whitespace, count each word in an open-addressing hash table.
 *   baseline_wordcount CORPUS */
#include "baseline.h"

int main(int argc, char **argv) {
  if (argc != 2) bl_die("usage: baseline_wordcount CORPUS");
  bl_corpus c;
  bl_load(argv[1], &c);
  double t0 = bl_now(), c0 = bl_cpu();
  bl_map m;
  bl_map_init(&m, 1 << 16);
  int64_t words = 0;
  for (size_t i = 0; i < c.nlines; i++) words += bl_count_words(&m, c.lines[i].p, c.lines[i].len);
  double secs = bl_now() - t0, cpu = bl_cpu() - c0;
  bl_result("workload=wordcount impl=c records=%zu words=%lld distinct=%zu secs=%.4f cpu=%.4f\n",
            c.nlines, (long long)words, m.n, secs, cpu);
  return 0;
}

/* bench/baseline_grep.c - BASELINE (not dstream): the lines of the corpus containing a string,
 * counted, in plain C on one core (memmem per line).
 *   baseline_grep CORPUS NEEDLE */
#include "baseline.h"

int main(int argc, char **argv) {
  if (argc != 3) bl_die("usage: baseline_grep CORPUS NEEDLE");
  bl_corpus c;
  bl_load(argv[1], &c);
  const char *needle = argv[2];
  size_t nlen = strlen(needle);
  double t0 = bl_now(), c0 = bl_cpu();
  size_t matched = 0;
  for (size_t i = 0; i < c.nlines; i++)
    if (memmem(c.lines[i].p, c.lines[i].len, needle, nlen)) matched++;
  double secs = bl_now() - t0, cpu = bl_cpu() - c0;
  bl_result("workload=grep impl=c records=%zu matched=%zu secs=%.4f cpu=%.4f\n", c.nlines, matched,
            secs, cpu);
  return 0;
}

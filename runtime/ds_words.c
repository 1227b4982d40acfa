/* ds_words.c - the words of lines in C memory (see ds_words.h). */
#include "ds_words.h"

#include <string.h>

static uint32_t record_len(const uint8_t *p) {
  uint32_t len;
  memcpy(&len, p, sizeof len); /* the records' 32-bit lengths need not be aligned */
  return len;
}

size_t ds_words_cut(const uint8_t *recs, size_t n, ds_words_pos *at, const uint8_t *is_space,
                    uint32_t *out, size_t max) {
  uint64_t pos = at->pos, end = at->line_end;
  size_t k = 0;
  while (k < max) {
    while (pos < end && is_space[recs[pos]]) pos++;
    if (pos < end) {
      uint64_t start = pos++;
      while (pos < end && !is_space[recs[pos]]) pos++;
      out[2 * k] = (uint32_t)start;
      out[2 * k + 1] = (uint32_t)(pos - start);
      k++;
    } else if (end + 4 <= n) { /* the next line */
      pos = end + 4;
      end = pos + record_len(recs + end);
    } else {
      break;
    }
  }
  at->pos = pos;
  at->line_end = end;
  return k;
}

uint64_t ds_words_line_of(const uint8_t *recs, size_t n, uint64_t off) {
  uint64_t line = 0;
  while (line + 4 <= n) {
    uint64_t next = line + 4 + record_len(recs + line);
    if (off < next) return line;
    line = next;
  }
  return line;
}

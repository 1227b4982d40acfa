/* ds_words.c - the words of lines in C memory (see ds_words.h). */
#include "ds_words.h"

#include <string.h>

#include <luajit.h>

static uint32_t record_len(const uint8_t *p) {
  uint32_t len;
  memcpy(&len, p, sizeof len); /* the records' 32-bit lengths need not be aligned */
  return len;
}

/* One byte at a time (the separators' table): a line's last bytes near the end of the
 * records, or a separator set too large for the vector path. */
static size_t cut_bytes(const uint8_t *recs, size_t n, ds_words_pos *at, const uint8_t *is_space,
                        uint32_t *out, size_t max, size_t k) {
  uint64_t pos = at->pos, end = at->line_end;
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

#if defined(__SSE2__)
#include <emmintrin.h>

/* The separators as runs of consecutive byte values (" \t\n\v\f\r": 9-13 and 32); more than
 * RUNS_MAX runs: byte at a time. */
enum { RUNS_MAX = 4 };
typedef struct runs {
  int n;
  __m128i lo[RUNS_MAX], width[RUNS_MAX]; /* b is in run i when b - lo <= width, unsigned */
} runs;

static int runs_of(const uint8_t *is_space, runs *r) {
  r->n = 0;
  for (int b = 0; b < 256; b++) {
    if (!is_space[b] || (b > 0 && is_space[b - 1])) continue;
    int e = b;
    while (e < 255 && is_space[e + 1]) e++;
    if (r->n == RUNS_MAX) return -1;
    r->lo[r->n] = _mm_set1_epi8((char)b);
    r->width[r->n] = _mm_set1_epi8((char)(e - b));
    r->n++;
  }
  return r->n > 0 ? 0 : -1;
}

static __m128i in_run(__m128i v, const runs *r, int i) {
  __m128i t = _mm_sub_epi8(v, r->lo[i]);
  return _mm_cmpeq_epi8(_mm_min_epu8(t, r->width[i]), t);
}

/* Bit i set when byte p[i] is a separator (64 bytes read: the caller checked that they are
 * inside the records). Two runs, the default separators, without a loop over the runs. */
static uint64_t separators64(const uint8_t *p, const runs *r) {
  uint64_t mask = 0;
  for (int c = 0; c < 4; c++) {
    __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * c));
    __m128i sep = in_run(v, r, 0);
    if (r->n == 2) {
      sep = _mm_or_si128(sep, in_run(v, r, 1));
    } else {
      for (int i = 1; i < r->n; i++) sep = _mm_or_si128(sep, in_run(v, r, i));
    }
    mask |= (uint64_t)(uint16_t)_mm_movemask_epi8(sep) << (16 * c);
  }
  return mask;
}

static int ctz64(uint64_t x) { return __builtin_ctzll(x); }
#endif

static size_t cut(const uint8_t *recs, size_t n, ds_words_pos *at, const uint8_t *is_space,
                  uint32_t *out, size_t max) {
#if defined(__SSE2__)
  /* 64 bytes at a time: a mask of the separators of the next 64 bytes of the line (bytes past
   * the line's end count as separators), then each word of it from the mask's bits; a word
   * that runs past the 64 bytes is finished byte at a time (rare: words are short). */
  runs seps;
  if (runs_of(is_space, &seps) != 0) return cut_bytes(recs, n, at, is_space, out, max, 0);
  uint64_t pos = at->pos, end = at->line_end;
  size_t k = 0;
  while (k < max) {
    if (pos >= end) {
      if (end + 4 > n) break;
      pos = end + 4; /* the next line */
      end = pos + record_len(recs + end);
      continue;
    }
    if (pos + 64 > n) { /* near the end of the records: no 64-byte read */
      at->pos = pos;
      at->line_end = end;
      return cut_bytes(recs, n, at, is_space, out, max, k);
    }
    uint64_t avail = end - pos;
    uint64_t sep = separators64(recs + pos, &seps);
    if (avail < 64) sep |= ~0ULL << avail;
    uint64_t word = ~sep, base = pos;
    pos = base + (avail < 64 ? avail : 64); /* unless a word stops short of it, below */
    while (word) {
      int s = ctz64(word);
      uint64_t after = sep & (~0ULL << s);
      uint64_t start = base + s, stop;
      if (after == 0) { /* runs past these 64 bytes */
        stop = base + 64;
        while (stop < end && !is_space[recs[stop]]) stop++;
        pos = stop;
        word = 0;
      } else {
        int e = ctz64(after);
        stop = base + (uint64_t)e;
        word &= ~0ULL << e; /* (e < 64: a separator bit) */
        if (k + 1 == max) pos = stop; /* the caller's array is full: go on from here */
      }
      out[2 * k] = (uint32_t)start;
      out[2 * k + 1] = (uint32_t)(stop - start);
      if (++k == max) break;
    }
  }
  at->pos = pos;
  at->line_end = end;
  return k;
#else
  return cut_bytes(recs, n, at, is_space, out, max, 0);
#endif
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

size_t ds_words_cut(const uint8_t *recs, size_t n, ds_words_pos *at, const uint8_t *is_space,
                    uint32_t *out, size_t max, void *strings) {
  size_t k = cut(recs, n, at, is_space, out, max);
#ifdef LUAJIT_STR_PREFETCH
  if (strings) luaJIT_str_prefetch(strings, (const char *)recs, out, k);
#else
  (void)strings;
#endif
  return k;
}

void *ds_words_strings(lua_State *L) {
#ifdef LUAJIT_STR_PREFETCH
  return luaJIT_str_handle(L);
#else
  (void)L;
  return NULL;
#endif
}

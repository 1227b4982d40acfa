/* ds_recv.c - line splitting shared by the socket and directory receivers. */
#include "ds_recv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

void ds_recv_lines_init(ds_recv_lines *l, ds_store *store, size_t max_line,
                        void (*on_skip)(void *ud, uint64_t lineno), void *ud) {
  memset(l, 0, sizeof *l);
  l->store = store;
  /* The store refuses records over DS_RECORD_MAX, so a larger limit could never be met. */
  l->max_line = (max_line == 0 || max_line > DS_RECORD_MAX) ? DS_RECORD_MAX : max_line;
  l->on_skip = on_skip;
  l->ud = ud;
}

void ds_recv_lines_free(ds_recv_lines *l) {
  free(l->buf);
  l->buf = NULL;
  l->len = l->cap = 0;
}

void ds_recv_lines_reset(ds_recv_lines *l) {
  l->len = 0;
  l->skipping = 0;
}

/* Counts and reports the current line as dropped. */
static void lines_skip(ds_recv_lines *l) {
  l->skipped++;
  l->len = 0;
  if (l->on_skip) l->on_skip(l->ud, l->lines + 1);
}

/* Stores one finished line (its terminator already removed). */
static int lines_emit(ds_recv_lines *l, const char *rec, size_t len) {
  if (len && rec[len - 1] == '\r') len--;
  if (len > l->max_line) {
    lines_skip(l);
    return 0;
  }
  int rc = ds_store_append(l->store, rec, len);
  if (rc == 0) l->records++;
  return rc;
}

/* Adds bytes to the unfinished line. The caller has checked they fit in max_line + 1. */
static int lines_keep(ds_recv_lines *l, const char *p, size_t n) {
  if (l->len + n > l->cap) {
    size_t cap = l->cap ? l->cap : 256;
    while (cap < l->len + n) cap *= 2;
    char *buf = realloc(l->buf, cap);
    if (!buf) return -ENOMEM;
    l->buf = buf;
    l->cap = cap;
  }
  memcpy(l->buf + l->len, p, n);
  l->len += n;
  return 0;
}

int ds_recv_lines_feed(ds_recv_lines *l, const char *p, size_t n) {
  const char *end = p + n;
  int err = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t seg = (size_t)((nl ? nl : end) - p);
    /* max_line + 1 so that a line of exactly max_line bytes plus '\r' is still kept. */
    int too_long = l->len + seg > l->max_line + 1;
    if (l->skipping) {
      /* Already counted when the line went over the limit; drop the rest of it. */
    } else if (too_long) {
      lines_skip(l);
      l->skipping = nl == NULL;
    } else if (!nl) {
      if (lines_keep(l, p, seg)) {
        /* Cannot hold the line: drop it whole rather than store a truncated record. */
        l->len = 0;
        l->skipping = 1;
        err = -ENOMEM;
      }
    } else if (l->len == 0) {
      /* Common case: the whole line is in this read, store it without copying. */
      if (lines_emit(l, p, seg)) err = -ENOMEM;
    } else {
      if (lines_keep(l, p, seg) || lines_emit(l, l->buf, l->len)) err = -ENOMEM;
      l->len = 0;
    }
    if (nl) {
      l->lines++;
      l->skipping = 0;
    }
    p = nl ? nl + 1 : end;
  }
  return err;
}

int ds_recv_lines_flush(ds_recv_lines *l) {
  int rc = 0;
  if (l->skipping) {
    l->lines++;
  } else if (l->len) {
    rc = lines_emit(l, l->buf, l->len);
    l->lines++;
  }
  ds_recv_lines_reset(l);
  return rc < 0 ? -ENOMEM : 0;
}

/* ---- rate limit ---- */

static double rate_burst(double rate) { return rate / 10 > 1 ? rate / 10 : 1; }

void ds_recv_rate_set(ds_recv_rate *b, double rate) {
  if (!(rate > 0) || isinf(rate)) rate = 0; /* NaN, negatives and infinity mean no limit */
  if (rate > 0 && !(b->rate > 0)) b->tokens = rate_burst(rate);
  b->rate = rate;
  b->last_ns = uv_hrtime();
  if (rate > 0 && b->tokens > rate_burst(rate)) b->tokens = rate_burst(rate);
}

double ds_recv_rate_available(ds_recv_rate *b) {
  if (!(b->rate > 0)) return 1e18;
  uint64_t now = uv_hrtime();
  b->tokens += (double)(now - b->last_ns) * b->rate / 1e9;
  b->last_ns = now;
  double burst = rate_burst(b->rate);
  if (b->tokens > burst) b->tokens = burst;
  return b->tokens;
}

void ds_recv_rate_take(ds_recv_rate *b, uint64_t records) {
  if (b->rate > 0) b->tokens -= (double)records;
}

uint64_t ds_recv_rate_wait_ms(const ds_recv_rate *b) {
  if (!(b->rate > 0) || b->tokens >= 1) return 1;
  double ms = ceil((1 - b->tokens) * 1000 / b->rate);
  return ms < 1 ? 1 : ms > 3.6e6 ? 3600000 : (uint64_t)ms;
}

size_t ds_recv_rate_read_size(ds_recv_rate *b, uint64_t bytes, uint64_t records, size_t max) {
  if (!(b->rate > 0)) return max;
  /* Before the first record the size of one is unknown: read little. */
  double per_record = records ? (double)bytes / (double)records : 1;
  double want = ds_recv_rate_available(b) * per_record;
  if (want < 64) want = 64;
  return want < (double)max ? (size_t)want : max;
}

/* ds_recv.h - what the receivers share: their statistics and the splitting of bytes into lines.
 *
 * Each receiver owns one ds_recv_lines splitter per input (connection, file). The splitter
 * carries an unfinished line across reads in a buffer it owns (at most max_line + 1 bytes)
 * and appends every finished line to the receiver's store. ds_recv_stats is a snapshot the
 * receiver copies out; the caller owns the copy. */
#ifndef DS_RECV_H
#define DS_RECV_H

#include <stddef.h>
#include <stdint.h>

#include "ds_store.h"

typedef struct ds_recv_stats {
  uint64_t records;     /* records appended to the store */
  uint64_t bytes;       /* raw bytes read: terminators and skipped lines included */
  uint64_t skipped;     /* lines longer than max_line, dropped */
  uint64_t errors;      /* socket: failed resolves, connects and reads; files: unreadable files */
  uint64_t reconnects;  /* socket: connections made after the first one */
  int connected;        /* socket: connected now; file source: watching its directory */
  char last_error[256]; /* text of the last failure, "" if none */
  double rate_limit;    /* records per second the receiver is held to now; 0 = no limit */
  int throttled;        /* reading is paused by the rate limit now */
  uint64_t pauses;      /* times reading was paused by the rate limit */
} ds_recv_stats;

/* A token bucket in records: receivers read while it holds a record, and pause reading
 * (never drop) when it is empty. A read may take more records than the bucket holds: the
 * excess is a debt paid back before reading again, so the long-run rate is exact. */
typedef struct ds_recv_rate {
  double rate;      /* records per second; 0 = no limit */
  double tokens;    /* records that may be read now; negative while in debt */
  uint64_t last_ns; /* uv_hrtime() of the last refill */
} ds_recv_rate;

/* The limit in force of two (max_rate and set_rate's): the lower one; 0 = no limit. */
static inline double ds_recv_rate_lower(double a, double b) {
  if (a > 0 && b > 0) return a < b ? a : b;
  return a > 0 ? a : b;
}

/* Sets the rate (0 = no limit). A new limit starts with a full bucket (a tenth of a second
 * of records, at least one); changing a limit keeps the current tokens and debt. */
void ds_recv_rate_set(ds_recv_rate *b, double rate);
/* Refills the bucket; returns the records that may be read now (a huge number without a
 * limit, < 1 when reading must wait). */
double ds_recv_rate_available(ds_recv_rate *b);
/* Records read: taken from the bucket (may go into debt). */
void ds_recv_rate_take(ds_recv_rate *b, uint64_t records);
/* Milliseconds until a record may be read again (>= 1). */
uint64_t ds_recv_rate_wait_ms(const ds_recv_rate *b);
/* How many bytes to read next: about the available records times the bytes per record seen
 * so far, from 64 bytes to `max`; `max` without a limit. */
size_t ds_recv_rate_read_size(ds_recv_rate *b, uint64_t bytes, uint64_t records, size_t max);

typedef struct ds_recv_lines {
  ds_store *store;
  size_t max_line;    /* longest record kept, '\r' excluded; at most DS_RECORD_MAX */
  char *buf;          /* the unfinished line */
  size_t len, cap;
  int skipping;       /* inside an oversized line: drop bytes up to the next '\n' */
  uint64_t lines;     /* lines finished, skipped ones included */
  uint64_t records;   /* lines appended to the store */
  uint64_t skipped;   /* lines dropped for their length */
  /* Called once per dropped line with its 1-based line number, so the receiver can log it. */
  void (*on_skip)(void *ud, uint64_t lineno);
  void *ud;
} ds_recv_lines;

/* max_line 0 means DS_RECORD_MAX. on_skip may be NULL. */
void ds_recv_lines_init(ds_recv_lines *l, ds_store *store, size_t max_line,
                        void (*on_skip)(void *ud, uint64_t lineno), void *ud);
/* Splits `n` bytes at '\n', strips one trailing '\r' per line and appends the finished lines.
 * Processing always continues to the end of the input; returns 0, or -ENOMEM when a line
 * was lost for lack of memory. */
int ds_recv_lines_feed(ds_recv_lines *l, const char *p, size_t n);
/* End of input: an unfinished line becomes a record. Returns 0 or -ENOMEM. */
int ds_recv_lines_flush(ds_recv_lines *l);
/* Drops an unfinished line without storing it (a new input starts clean). */
void ds_recv_lines_reset(ds_recv_lines *l);
void ds_recv_lines_free(ds_recv_lines *l);

#endif

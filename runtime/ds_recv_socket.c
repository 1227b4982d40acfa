/* ds_recv_socket.c - TCP text receiver with reconnection, backoff and a rate limit on libuv. */
#include "ds_recv_socket.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "ds_log.h"

#define BACKOFF_START_MS 100u
#define BACKOFF_MAX_MS 2000u
#define LOG_EVERY 10 /* while failing, repeat the warning every this many attempts */
#define DRAIN_MAX ((uint64_t)64 << 20) /* most bytes a stop reads (against an endless sender) */
/* TCP keepalive: probes after 30 s without traffic, 10 s apart, 3 unanswered end the
 * connection: a peer that vanished without FIN or RST is noticed in about a minute. */
#define KEEPALIVE_IDLE_S 30
#define KEEPALIVE_INTERVAL_S 10
#define KEEPALIVE_PROBES 3

struct ds_recv_socket {
  uv_loop_t *loop;
  char *host;
  char service[8];
  char name[300]; /* "host:port" for messages */
  ds_recv_lines lines;
  uint64_t delay_ms, backoff_max_ms;

  uv_getaddrinfo_t gai;
  int gai_busy;
  struct addrinfo *ai, *next_ai; /* resolved addresses, and the next one to try */
  uv_connect_t conn;
  uv_tcp_t tcp;
  int tcp_open;          /* tcp initialised and its close callback not yet run */
  char attempt_err[128]; /* why the current attempt failed, once its handle has closed */
  uv_timer_t timer;
  int timer_open;
  ds_recv_rate bucket;   /* max records per second; reading pauses when it is empty */
  uv_timer_t rate_timer; /* resumes reading once the bucket holds a record again */
  int rate_timer_open;
  uint64_t idle_ms;      /* a connection silent this long is closed and reopened; 0 = never */
  uv_timer_t idle_timer;
  int idle_timer_open;

  int ever_connected;
  int got_data;           /* the current connection delivered bytes */
  uint64_t failures;      /* attempts failed since data last arrived */
  int logged_down;        /* we told the user we are disconnected */
  char logged_err[128];   /* the failure text last logged */
  ds_recv_stats st;

  int stopping;
  void (*on_closed)(void *ud);
  void *ud;
  char rbuf[64 * 1024];
};

static void attempt(ds_recv_socket *r);
static void on_tcp_closed(uv_handle_t *h);

static void fmt_ms(char *buf, size_t n, uint64_t ms) {
  if (ms % 1000 == 0) snprintf(buf, n, "%" PRIu64 " s", ms / 1000);
  else snprintf(buf, n, "%" PRIu64 " ms", ms);
}

static void on_skip(void *ud, uint64_t lineno) {
  ds_recv_socket *r = ud;
  (void)lineno; /* line numbers of an endless stream mean little */
  ds_log(DS_LOG_WARN, "socket %s: line longer than %zu bytes; skipped", r->name,
         r->lines.max_line);
}

/* The free happens once every handle has closed and no resolution is outstanding. */
static void maybe_finish(ds_recv_socket *r) {
  if (!r->stopping || r->gai_busy || r->tcp_open || r->timer_open || r->rate_timer_open ||
      r->idle_timer_open)
    return;
  void (*cb)(void *) = r->on_closed;
  void *ud = r->ud;
  if (r->ai) uv_freeaddrinfo(r->ai);
  ds_recv_lines_free(&r->lines);
  free(r->host);
  free(r);
  if (cb) cb(ud);
}

static void on_timer(uv_timer_t *t) { attempt(t->data); }

static void on_timer_closed(uv_handle_t *h) {
  ds_recv_socket *r = h->data;
  if (h == (uv_handle_t *)&r->rate_timer) r->rate_timer_open = 0;
  else if (h == (uv_handle_t *)&r->idle_timer) r->idle_timer_open = 0;
  else r->timer_open = 0;
  maybe_finish(r);
}

static void schedule_retry(ds_recv_socket *r) {
  uv_timer_start(&r->timer, on_timer, r->delay_ms, 0);
  r->delay_ms = r->delay_ms * 2 < r->backoff_max_ms ? r->delay_ms * 2 : r->backoff_max_ms;
}

/* The source is down: log the first time, when the reason changes, and every LOG_EVERY
 * attempts, so a long outage does not flood the log. Then wait and try again. */
static void went_down(ds_recv_socket *r, const char *why) {
  snprintf(r->st.last_error, sizeof r->st.last_error, "%s", why);
  r->failures++;
  char delay[32];
  if (r->failures == 1 || strcmp(why, r->logged_err) != 0) {
    fmt_ms(delay, sizeof delay, r->backoff_max_ms);
    ds_log(DS_LOG_WARN, "socket %s: %s; reconnecting with backoff up to %s", r->name, why, delay);
  } else if (r->failures % LOG_EVERY == 0) {
    fmt_ms(delay, sizeof delay, r->delay_ms);
    ds_log(DS_LOG_WARN, "socket %s: %s (%" PRIu64 " attempts); retrying every %s", r->name, why,
           r->failures, delay);
  } else {
    schedule_retry(r);
    return;
  }
  snprintf(r->logged_err, sizeof r->logged_err, "%s", why);
  r->logged_down = 1;
  schedule_retry(r);
}

/* A failure that counts as an error: resolution, connect, or a broken connection. */
static void failed(ds_recv_socket *r, const char *why) {
  r->st.errors++;
  went_down(r, why);
}

/* Starts closing the connection handle; on_tcp_closed decides what comes next. */
static void close_tcp(ds_recv_socket *r, const char *why) {
  snprintf(r->attempt_err, sizeof r->attempt_err, "%s", why ? why : "");
  r->st.connected = 0;
  r->st.throttled = 0;
  uv_timer_stop(&r->rate_timer);
  uv_timer_stop(&r->idle_timer);
  if (!uv_is_closing((uv_handle_t *)&r->tcp)) uv_close((uv_handle_t *)&r->tcp, on_tcp_closed);
}

/* No byte for idle_ms on a connection we were reading: the server may be gone without a FIN
 * or RST (a crashed host, a dropped NAT entry). Reconnect as after a close; a line it left
 * unfinished is dropped, as for a broken connection. Time spent throttled does not count. */
static void on_idle(uv_timer_t *t) {
  ds_recv_socket *r = t->data;
  if (r->stopping || !r->st.connected || !r->tcp_open || uv_is_closing((uv_handle_t *)&r->tcp))
    return;
  if (r->st.throttled) {
    uv_timer_start(&r->idle_timer, on_idle, r->idle_ms, 0);
    return;
  }
  char why[96], d[32];
  fmt_ms(d, sizeof d, r->idle_ms);
  snprintf(why, sizeof why, "no data for %s (idle_timeout)", d);
  uv_read_stop((uv_stream_t *)&r->tcp);
  ds_recv_lines_reset(&r->lines);
  r->st.records = r->lines.records;
  close_tcp(r, why);
}

/* Keepalive on the connection, with probes tighter than the kernel's defaults (2 h idle,
 * 9 probes 75 s apart). Best effort: a failure leaves the connection as it was. */
static void set_keepalive(ds_recv_socket *r) {
  if (uv_tcp_keepalive(&r->tcp, 1, KEEPALIVE_IDLE_S) != 0) return;
#if defined(TCP_KEEPINTVL) && defined(TCP_KEEPCNT)
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&r->tcp, &fd) != 0) return;
  int intvl = KEEPALIVE_INTERVAL_S, cnt = KEEPALIVE_PROBES;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#endif
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  ds_recv_socket *r = h->data;
  (void)hint;
  /* Under a limit, read about as many bytes as the bucket allows records, so that a read
   * does not run far past the limit (lines are cut by the splitter, never lost). */
  size_t n = ds_recv_rate_read_size(&r->bucket, r->st.bytes, r->lines.records, sizeof r->rbuf);
  *buf = uv_buf_init(r->rbuf, (unsigned)n);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reading may go on while the connection is up and the bucket holds a record. */
static int can_read(ds_recv_socket *r) {
  return !r->stopping && r->st.connected && r->tcp_open &&
         !uv_is_closing((uv_handle_t *)&r->tcp);
}

static void on_rate_timer(uv_timer_t *t) {
  ds_recv_socket *r = t->data;
  if (!r->st.throttled || !can_read(r)) return;
  if (ds_recv_rate_available(&r->bucket) < 1) {
    uv_timer_start(&r->rate_timer, on_rate_timer, ds_recv_rate_wait_ms(&r->bucket), 0);
    return;
  }
  r->st.throttled = 0;
  ds_log(DS_LOG_DEBUG, "socket %s: reading again (under its rate limit)", r->name);
  int rc = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
  if (rc < 0) close_tcp(r, uv_strerror(rc));
}

/* Over the limit: stop reading, so the kernel's buffers fill and TCP slows the sender. */
static void throttle_if_needed(ds_recv_socket *r) {
  if (r->st.throttled || !can_read(r) || ds_recv_rate_available(&r->bucket) >= 1) return;
  uv_read_stop((uv_stream_t *)&r->tcp);
  r->st.throttled = 1;
  r->st.pauses++;
  ds_log(DS_LOG_DEBUG, "socket %s: paused reading (over its rate limit)", r->name);
  uv_timer_start(&r->rate_timer, on_rate_timer, ds_recv_rate_wait_ms(&r->bucket), 0);
}

void ds_recv_socket_set_rate(ds_recv_socket *r, double rate) {
  ds_recv_rate_set(&r->bucket, rate);
  r->st.rate_limit = r->bucket.rate;
  if (!r->st.throttled) return;
  uv_timer_stop(&r->rate_timer);
  if (r->bucket.rate > 0) uv_timer_start(&r->rate_timer, on_rate_timer, ds_recv_rate_wait_ms(&r->bucket), 0);
  else on_rate_timer(&r->rate_timer); /* no limit any more: read now */
}

/* Bytes received: split into records, counted, taken from the bucket. */
static void take_bytes(ds_recv_socket *r, const char *p, size_t n) {
  if (!r->got_data) {
    /* Only a connection that delivers data resets the backoff: a server that accepts
     * and closes at once must not make us reconnect in a tight loop. */
    r->got_data = 1;
    r->failures = 0;
    r->delay_ms = BACKOFF_START_MS < r->backoff_max_ms ? BACKOFF_START_MS : r->backoff_max_ms;
  }
  r->st.bytes += (uint64_t)n;
  uint64_t before = r->lines.records;
  if (ds_recv_lines_feed(&r->lines, p, n) < 0) {
    r->st.errors++;
    snprintf(r->st.last_error, sizeof r->st.last_error, "out of memory; records lost");
    ds_log(DS_LOG_ERROR, "socket %s: out of memory; records lost", r->name);
  }
  r->st.records = r->lines.records;
  r->st.skipped = r->lines.skipped;
  ds_recv_rate_take(&r->bucket, r->lines.records - before);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  ds_recv_socket *r = s->data;
  if (nread > 0) {
    if (r->idle_ms) uv_timer_start(&r->idle_timer, on_idle, r->idle_ms, 0);
    take_bytes(r, buf->base, (size_t)nread);
    throttle_if_needed(r);
    return;
  }
  if (nread == 0) return; /* EAGAIN */
  uv_read_stop(s);
  if (nread == UV_EOF) {
    /* An orderly end: the last line is complete even without its '\n'. */
    ds_recv_lines_flush(&r->lines);
    close_tcp(r, NULL);
  } else {
    /* A broken connection may have cut the last line short: drop it, never store half. */
    ds_recv_lines_reset(&r->lines);
    close_tcp(r, uv_strerror((int)nread));
  }
  r->st.records = r->lines.records;
  r->st.skipped = r->lines.skipped;
}

static void on_connect(uv_connect_t *req, int status) {
  ds_recv_socket *r = req->data;
  if (r->stopping) return; /* the handle is closing; on_tcp_closed finishes */
  if (status < 0) {
    close_tcp(r, uv_strerror(status));
    return;
  }
  uv_freeaddrinfo(r->ai);
  r->ai = r->next_ai = NULL;
  if (r->ever_connected) r->st.reconnects++;
  r->ever_connected = 1;
  r->got_data = 0;
  r->st.connected = 1;
  /* Connecting is news, not a problem: info, even after a warned disconnect (whose warning
   * says it reconnects). */
  ds_log(DS_LOG_INFO, "socket %s: connected", r->name);
  r->logged_down = 0;
  set_keepalive(r);
  if (r->idle_ms) uv_timer_start(&r->idle_timer, on_idle, r->idle_ms, 0);
  int rc = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
  if (rc < 0) close_tcp(r, uv_strerror(rc));
}

/* Tries the next resolved address; a failure comes back through on_tcp_closed. */
static void connect_next(ds_recv_socket *r) {
  struct addrinfo *ai = r->next_ai;
  r->next_ai = ai->ai_next;
  uv_tcp_init(r->loop, &r->tcp);
  r->tcp.data = r;
  r->tcp_open = 1;
  r->conn.data = r;
  int rc = uv_tcp_connect(&r->conn, &r->tcp, ai->ai_addr, on_connect);
  if (rc < 0) close_tcp(r, uv_strerror(rc));
}

static void on_tcp_closed(uv_handle_t *h) {
  ds_recv_socket *r = h->data;
  r->tcp_open = 0;
  if (r->stopping) {
    maybe_finish(r);
    return;
  }
  /* "localhost" may resolve to ::1 and 127.0.0.1: try each address before giving up. */
  if (r->attempt_err[0] && r->next_ai) {
    connect_next(r);
    return;
  }
  if (r->ai) uv_freeaddrinfo(r->ai);
  r->ai = r->next_ai = NULL;
  if (r->attempt_err[0]) failed(r, r->attempt_err);
  else went_down(r, "connection closed by server");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  ds_recv_socket *r = req->data;
  r->gai_busy = 0;
  if (r->stopping) {
    if (res) uv_freeaddrinfo(res);
    maybe_finish(r);
    return;
  }
  if (status < 0 || !res) {
    char why[160];
    snprintf(why, sizeof why, "cannot resolve '%s': %s", r->host,
             uv_strerror(status < 0 ? status : UV_EAI_NONAME));
    failed(r, why);
    return;
  }
  r->ai = r->next_ai = res;
  connect_next(r);
}

/* Each attempt resolves the name again, so a changed DNS entry is picked up. */
static void attempt(ds_recv_socket *r) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  r->gai.data = r;
  int rc = uv_getaddrinfo(r->loop, &r->gai, on_resolved, r->host, r->service, &hints);
  if (rc < 0) {
    char why[160];
    snprintf(why, sizeof why, "cannot resolve '%s': %s", r->host, uv_strerror(rc));
    failed(r, why);
    return;
  }
  r->gai_busy = 1;
}

int ds_recv_socket_start(uv_loop_t *loop, const char *host, int port, ds_store *store,
                         const ds_recv_socket_opts *opts, ds_recv_socket **out, char *err,
                         size_t errlen) {
  if (!host || !*host) {
    snprintf(err, errlen, "socket source: host is empty");
    return -EINVAL;
  }
  if (port < 1 || port > 65535) {
    snprintf(err, errlen, "socket source %s: port %d is out of range (1-65535)", host, port);
    return -EINVAL;
  }
  ds_recv_socket *r = calloc(1, sizeof *r);
  if (!r || !(r->host = strdup(host))) {
    free(r);
    snprintf(err, errlen, "socket source %s:%d: out of memory", host, port);
    return -ENOMEM;
  }
  r->loop = loop;
  snprintf(r->service, sizeof r->service, "%d", port);
  /* An IPv6 literal needs brackets to be read as host:port. */
  snprintf(r->name, sizeof r->name, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
  r->backoff_max_ms = opts && opts->backoff_max_ms ? opts->backoff_max_ms : BACKOFF_MAX_MS;
  r->delay_ms = BACKOFF_START_MS < r->backoff_max_ms ? BACKOFF_START_MS : r->backoff_max_ms;
  ds_recv_lines_init(&r->lines, store, opts ? opts->max_line : 0, on_skip, r);
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  r->timer_open = 1;
  uv_timer_init(loop, &r->rate_timer);
  r->rate_timer.data = r;
  r->rate_timer_open = 1;
  r->idle_ms = opts ? opts->idle_timeout_ms : 0;
  uv_timer_init(loop, &r->idle_timer);
  r->idle_timer.data = r;
  r->idle_timer_open = 1;
  if (opts && opts->max_rate > 0) ds_recv_socket_set_rate(r, opts->max_rate);
  attempt(r);
  *out = r;
  return 0;
}

void ds_recv_socket_stats(ds_recv_socket *r, ds_recv_stats *st) { *st = r->st; }

/* Reads, now and ignoring the rate limit, what the connection's kernel buffer already holds:
 * it was received, and a stop (a graceful one seals it into the last batch) must not lose it.
 * Ends at EAGAIN, at EOF (the last line then counts, as in on_read), at an error (a line it
 * cut short is dropped, as in on_read), or after DRAIN_MAX bytes. */
static void drain(ds_recv_socket *r) {
  if (!r->st.connected || !r->tcp_open || uv_is_closing((uv_handle_t *)&r->tcp)) return;
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&r->tcp, &fd) != 0) return;
  uint64_t left = DRAIN_MAX;
  while (left > 0) {
    size_t want = left < sizeof r->rbuf ? (size_t)left : sizeof r->rbuf;
    ssize_t n = recv(fd, r->rbuf, want, MSG_DONTWAIT);
    if (n > 0) {
      take_bytes(r, r->rbuf, (size_t)n);
      left -= (uint64_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
      return; /* EOF or nothing more: the stop keeps the unfinished line */
    } else {
      int e = errno;
      ds_recv_lines_reset(&r->lines);
      r->st.errors++;
      snprintf(r->st.last_error, sizeof r->st.last_error, "%s", strerror(e));
      return;
    }
  }
  ds_log(DS_LOG_WARN, "socket %s: stopped after reading %" PRIu64 " MiB the server kept sending",
         r->name, DRAIN_MAX >> 20);
}

void ds_recv_socket_stop(ds_recv_socket *r, void (*on_closed)(void *ud), void *ud) {
  if (r->stopping) return;
  r->stopping = 1;
  r->on_closed = on_closed;
  r->ud = ud;
  drain(r);
  /* Stopping is an orderly end of input, like EOF: keep the last line. */
  ds_recv_lines_flush(&r->lines);
  r->st.records = r->lines.records;
  r->st.connected = 0;
  r->st.throttled = 0;
  /* If the resolution already runs in the thread pool this fails; on_resolved then sees
   * `stopping` and finishes. */
  if (r->gai_busy) uv_cancel((uv_req_t *)&r->gai);
  if (r->tcp_open && !uv_is_closing((uv_handle_t *)&r->tcp))
    uv_close((uv_handle_t *)&r->tcp, on_tcp_closed);
  uv_close((uv_handle_t *)&r->timer, on_timer_closed);
  uv_close((uv_handle_t *)&r->rate_timer, on_timer_closed);
  uv_close((uv_handle_t *)&r->idle_timer, on_timer_closed);
}

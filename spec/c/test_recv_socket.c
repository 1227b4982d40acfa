/* test_recv_socket.c - the TCP receiver against a real server on the same libuv loop: lines,
 * reconnects, refused connections, and a stop under max_rate that keeps what was received. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <uv.h>

#include "ds_recv_socket.h"
#include "ds_store.h"

#include "check.h"

static uv_loop_t loop;
static uv_timer_t guard;

static void start_guard(void) { check_guard_start(&loop, &guard, 20000, NULL); }

/* ---- a scripted server: each connection gets its own list of chunks ---- */

typedef struct conn {
  uv_tcp_t tcp;
  uv_timer_t pause;
  const char **chunks; /* NULL entry = pause 20 ms, to split a line across reads */
  int next;
  int close_at_end;
  int done; /* every chunk has been queued */
} conn;

static uv_tcp_t server;
static conn *conns[2];
static int nconns;
static size_t bytes_sent;

static const char *conn1[] = {"alpha\nbeta\r\ngam", NULL, "ma\ntail", "END"};
static const char *conn2[] = {"delta\n0123456789abcdefXYZ",
                              NULL,
                              "more-oversized\nafter\n",
                              "exactly-16-bytes\r\nseventeen-bytes!!\r\n",
                              "last",
                              "END"};

static void conn_closed(uv_handle_t *h) { (void)h; }
static void free_conn(uv_handle_t *h) { free(h->data); }
static void send_next(conn *c);

static void on_pause(uv_timer_t *t) { send_next(t->data); }
static void on_written(uv_write_t *w, int status) {
  CHECK_INT(status, ==, 0);
  free(w);
}
static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  uv_close((uv_handle_t *)req->handle, conn_closed);
  free(req);
}

static void send_next(conn *c) {
  for (;;) {
    const char *chunk = c->chunks[c->next++];
    if (!chunk) {
      uv_timer_start(&c->pause, on_pause, 20, 0);
      return;
    }
    if (strcmp(chunk, "END") == 0) {
      c->done = 1;
      if (c->close_at_end) {
        /* shutdown waits for the queued writes, then the server closes: EOF for the client */
        uv_shutdown_t *req = malloc(sizeof *req);
        CHECK_INT(uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown), ==, 0);
      }
      return;
    }
    uv_write_t *w = malloc(sizeof *w);
    uv_buf_t buf = uv_buf_init((char *)chunk, (unsigned)strlen(chunk));
    CHECK_INT(uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, on_written), ==, 0);
    bytes_sent += strlen(chunk);
  }
}

static void on_connection(uv_stream_t *srv, int status) {
  CHECK_INT(status, ==, 0);
  CHECK(nconns < 2);
  conn *c = calloc(1, sizeof *c);
  conns[nconns] = c;
  c->chunks = nconns == 0 ? conn1 : conn2;
  c->close_at_end = nconns == 0; /* the second stays open: stop() must flush "last" */
  nconns++;
  uv_tcp_init(&loop, &c->tcp);
  uv_timer_init(&loop, &c->pause);
  c->pause.data = c;
  CHECK_INT(uv_accept(srv, (uv_stream_t *)&c->tcp), ==, 0);
  send_next(c);
}

static int listen_local(uv_tcp_t *t) {
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(&loop, t);
  CHECK_INT(uv_tcp_bind(t, (const struct sockaddr *)&addr, 0), ==, 0);
  struct sockaddr_storage got;
  int len = sizeof got;
  CHECK_INT(uv_tcp_getsockname(t, (struct sockaddr *)&got, &len), ==, 0);
  return ntohs(((struct sockaddr_in *)&got)->sin_port);
}

/* ---- test 1: lines, CRLF, split lines, EOF partial line, reconnect, oversized lines ---- */

static ds_recv_socket *recv1;
static uv_timer_t monitor;
static int closed_calls;

static void after_stop(void *ud) {
  CHECK(ud == &closed_calls);
  closed_calls++;
  uv_close((uv_handle_t *)&server, NULL);
  for (int i = 0; i < nconns; i++) {
    uv_close((uv_handle_t *)&conns[i]->pause, free_conn);
    if (!uv_is_closing((uv_handle_t *)&conns[i]->tcp)) uv_close((uv_handle_t *)&conns[i]->tcp, NULL);
  }
  uv_close((uv_handle_t *)&monitor, NULL);
  uv_close((uv_handle_t *)&guard, NULL);
}

/* Waits until the client has read every byte of both connections, then stops it. */
static void on_monitor(uv_timer_t *t) {
  ds_recv_stats st;
  ds_recv_socket_stats(recv1, &st);
  if (nconns < 2 || !conns[1]->done || st.bytes < bytes_sent) return;
  CHECK_INT(st.bytes, ==, bytes_sent);
  CHECK_INT(st.connected, ==, 1);
  CHECK_INT(st.reconnects, ==, 1);
  CHECK_INT(st.skipped, ==, 2);
  CHECK_INT(st.records, ==, 7); /* "last" is still an unfinished line */
  CHECK_STR(st.last_error, "connection closed by server");
  uv_timer_stop(t);
  ds_recv_socket_stop(recv1, after_stop, &closed_calls);
  ds_recv_socket_stop(recv1, after_stop, &closed_calls); /* a second stop does nothing */
  ds_recv_socket_stats(recv1, &st);                       /* valid until after_stop */
  CHECK_INT(st.records, ==, 8);
  CHECK_INT(st.connected, ==, 0);
}

static void test_lines_and_reconnect(void) {
  int port = listen_local(&server);
  CHECK_INT(uv_listen((uv_stream_t *)&server, 8, on_connection), ==, 0);
  ds_store *store = ds_store_new(0);
  char err[256];
  ds_recv_socket_opts opts = {.max_line = 16, .backoff_max_ms = 0};
  CHECK_INT(ds_recv_socket_start(&loop, "127.0.0.1", port, store, &opts, &recv1, err, sizeof err),
            ==, 0);
  uv_timer_init(&loop, &monitor);
  uv_timer_start(&monitor, on_monitor, 5, 5);
  start_guard();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(closed_calls, ==, 1);
  CHECK_INT(nconns, ==, 2);
  const char *want[] = {"alpha", "beta", "gamma", "tail", "delta", "after", "exactly-16-bytes",
                        "last"};
  check_store_lines(store, want, 8);
  ds_store_free(store);
}

/* ---- test 2: nobody listening: failures are counted and retried, never fatal ---- */

static ds_recv_socket *recv2;
static int closed2;

static void after_stop2(void *ud) {
  (void)ud;
  closed2++;
  uv_close((uv_handle_t *)&monitor, NULL);
  uv_close((uv_handle_t *)&guard, NULL);
}

static void on_monitor2(uv_timer_t *t) {
  ds_recv_stats st;
  ds_recv_socket_stats(recv2, &st);
  if (st.errors < 3) return; /* a first failure and two retries */
  CHECK_INT(st.connected, ==, 0);
  CHECK_INT(st.records, ==, 0);
  CHECK_INT(st.reconnects, ==, 0);
  CHECK_STR(st.last_error, "connection refused");
  uv_timer_stop(t);
  ds_recv_socket_stop(recv2, after_stop2, NULL);
}

static void test_refused(void) {
  uv_tcp_t probe; /* find a free port: bind, read the port, close */
  int port = listen_local(&probe);
  uv_close((uv_handle_t *)&probe, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);

  ds_store *store = ds_store_new(0);
  char err[256];
  ds_recv_socket_opts opts = {.max_line = 0, .backoff_max_ms = 200};
  CHECK_INT(ds_recv_socket_start(&loop, "127.0.0.1", port, store, &opts, &recv2, err, sizeof err),
            ==, 0);
  uv_timer_init(&loop, &monitor);
  uv_timer_start(&monitor, on_monitor2, 5, 5);
  start_guard();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(closed2, ==, 1);
  ds_store_free(store);
}

/* ---- test 3: argument errors, and a stop while the name is being resolved ---- */

static int closed3;
static void after_stop3(void *ud) { *(int *)ud += 1; }

static void test_start_errors_and_early_stop(void) {
  ds_store *store = ds_store_new(0);
  ds_recv_socket *r = NULL;
  char err[256];
  CHECK_INT(ds_recv_socket_start(&loop, "localhost", 0, store, NULL, &r, err, sizeof err), ==,
            -EINVAL);
  CHECK(strstr(err, "port 0") != NULL);
  CHECK_INT(ds_recv_socket_start(&loop, "", 80, store, NULL, &r, err, sizeof err), ==, -EINVAL);
  CHECK(strstr(err, "host") != NULL);

  CHECK_INT(ds_recv_socket_start(&loop, "localhost", 9, store, NULL, &r, err, sizeof err), ==, 0);
  ds_recv_socket_stop(r, after_stop3, &closed3);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(closed3, ==, 1);
  CHECK_INT(ds_store_pending(store), ==, 0);
  ds_store_free(store);
}

/* ---- test 4: a stop under max_rate reads what the kernel already holds (issue 14) ---- */

#define DRAIN_LINES 20000
static uv_tcp_t drain_conn;
static uv_write_t drain_write;
static char *drain_text;
static size_t drain_len;
static int drain_written, closed4;
static ds_recv_socket *recv4;
static uint64_t records_before_stop;

static void on_drain_written(uv_write_t *w, int status) {
  (void)w;
  CHECK_INT(status, ==, 0);
  drain_written = 1;
}

static void on_drain_connection(uv_stream_t *srv, int status) {
  CHECK_INT(status, ==, 0);
  uv_tcp_init(&loop, &drain_conn);
  CHECK_INT(uv_accept(srv, (uv_stream_t *)&drain_conn), ==, 0);
  uv_buf_t buf = uv_buf_init(drain_text, (unsigned)drain_len);
  CHECK_INT(uv_write(&drain_write, (uv_stream_t *)&drain_conn, &buf, 1, on_drain_written), ==, 0);
}

static void after_stop4(void *ud) {
  (void)ud;
  closed4++;
  uv_close((uv_handle_t *)&server, NULL);
  uv_close((uv_handle_t *)&drain_conn, NULL); /* open until now: the stop saw no EOF */
  uv_close((uv_handle_t *)&monitor, NULL);
  uv_close((uv_handle_t *)&guard, NULL);
}

/* Once every byte has left the server's socket (its send queue is empty: the client's kernel
 * holds them) while the limit holds the client back, stops the client. */
static void on_monitor4(uv_timer_t *t) {
  if (!drain_written) return;
  uv_os_fd_t fd;
  CHECK_INT(uv_fileno((uv_handle_t *)&drain_conn, &fd), ==, 0);
  int unsent = -1;
  CHECK_INT(ioctl(fd, TIOCOUTQ, &unsent), ==, 0);
  ds_recv_stats st;
  ds_recv_socket_stats(recv4, &st);
  if (unsent != 0 || !st.throttled) return;
  records_before_stop = st.records;
  uv_timer_stop(t);
  ds_recv_socket_stop(recv4, after_stop4, NULL);
  ds_recv_socket_stats(recv4, &st);
  CHECK_INT(st.records, ==, DRAIN_LINES);
  CHECK_INT(st.bytes, ==, drain_len);
  CHECK_INT(st.errors, ==, 0);
}

static void test_stop_drains_under_rate(void) {
  drain_text = malloc(DRAIN_LINES * 8);
  CHECK(drain_text != NULL);
  for (int i = 1; i <= DRAIN_LINES; i++) drain_len += (size_t)sprintf(drain_text + drain_len, "%d\n", i);
  int port = listen_local(&server);
  CHECK_INT(uv_listen((uv_stream_t *)&server, 8, on_drain_connection), ==, 0);
  ds_store *store = ds_store_new(0);
  char err[256];
  ds_recv_socket_opts opts = {.max_rate = 100};
  CHECK_INT(ds_recv_socket_start(&loop, "127.0.0.1", port, store, &opts, &recv4, err, sizeof err),
            ==, 0);
  uv_timer_init(&loop, &monitor);
  uv_timer_start(&monitor, on_monitor4, 5, 5);
  start_guard();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(closed4, ==, 1);
  /* The limit had let in a burst (a tenth of a second) and what came since, not the rest. */
  CHECK(records_before_stop < DRAIN_LINES / 10);
  /* Every line, in order, once. */
  ds_sealed *sb;
  CHECK_INT(ds_store_seal(store, 1, &sb), ==, 0);
  CHECK_INT(sb->count, ==, DRAIN_LINES);
  int next = 1;
  ds_part *p = &sb->parts[0];
  for (int k = 0; k < p->nslices; k++) {
    const char *d = p->slices[k].data, *end = d + p->slices[k].len;
    while (d < end) {
      uint32_t len;
      memcpy(&len, d, 4);
      char want[16];
      int wl = sprintf(want, "%d", next++);
      CHECK_INT(len, ==, wl);
      CHECK(memcmp(d + 4, want, len) == 0);
      d += 4 + len;
    }
  }
  CHECK_INT(next, ==, DRAIN_LINES + 1);
  ds_sealed_free(sb);
  ds_store_free(store);
  free(drain_text);
}

/* ---- test 5: a server that accepts and goes silent (a peer gone without FIN or RST) ---- */

static uv_tcp_t silent_server, silent_conn[2];
static int silent_accepts, closed5;
static uint64_t silent_at[2];
static ds_recv_socket *recv5;
static int keepalive_checked;

static void silent_written(uv_write_t *w, int status) {
  CHECK_INT(status, ==, 0);
  free(w);
}

/* The receiver's own socket, found among this process's descriptors by its local port (the
 * server's peer port): keepalive must be on, with dstream's probe settings. */
static void check_client_keepalive(uv_tcp_t *accepted) {
  struct sockaddr_storage peer;
  int plen = sizeof peer;
  CHECK_INT(uv_tcp_getpeername(accepted, (struct sockaddr *)&peer, &plen), ==, 0);
  int port = ntohs(((struct sockaddr_in *)&peer)->sin_port);
  for (int fd = 3; fd < 1024; fd++) {
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    if (getsockname(fd, (struct sockaddr *)&me, &len) != 0 || me.sin_family != AF_INET ||
        ntohs(me.sin_port) != port)
      continue;
    int on = 0, idle = 0, intvl = 0, cnt = 0;
    socklen_t l = sizeof on;
    CHECK_INT(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &l), ==, 0);
    CHECK_INT(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &l), ==, 0);
    CHECK_INT(getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, &l), ==, 0);
    CHECK_INT(getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, &l), ==, 0);
    CHECK_INT(on, ==, 1);
    CHECK_INT(idle, ==, 30);
    CHECK_INT(intvl, ==, 10);
    CHECK_INT(cnt, ==, 3);
    keepalive_checked = 1;
    return;
  }
  CHECK(!"the receiver's socket was not found");
}

static void on_silent_connection(uv_stream_t *srv, int status) {
  CHECK_INT(status, ==, 0);
  CHECK(silent_accepts < 2);
  uv_tcp_t *c = &silent_conn[silent_accepts];
  uv_tcp_init(&loop, c);
  CHECK_INT(uv_accept(srv, (uv_stream_t *)c), ==, 0);
  silent_at[silent_accepts] = uv_now(&loop);
  /* The first connection sends a line and half of one, then nothing, ever, and stays open;
   * the second one sends a line. */
  const char *text = silent_accepts == 0 ? "one\ntwo-unfinished" : "three\n";
  silent_accepts++;
  uv_write_t *w = malloc(sizeof *w);
  uv_buf_t buf = uv_buf_init((char *)text, (unsigned)strlen(text));
  CHECK_INT(uv_write(w, (uv_stream_t *)c, &buf, 1, silent_written), ==, 0);
}

static void after_stop5(void *ud) {
  (void)ud;
  closed5++;
  uv_close((uv_handle_t *)&silent_server, NULL);
  for (int i = 0; i < silent_accepts; i++) uv_close((uv_handle_t *)&silent_conn[i], NULL);
  uv_close((uv_handle_t *)&monitor, NULL);
  uv_close((uv_handle_t *)&guard, NULL);
}

static void on_monitor5(uv_timer_t *t) {
  ds_recv_stats st;
  ds_recv_socket_stats(recv5, &st);
  if (silent_accepts < 2 || st.records < 2) return;
  CHECK_INT(st.reconnects, ==, 1);
  CHECK_INT(st.errors, ==, 1);
  CHECK_STR(st.last_error, "no data for 300 ms (idle_timeout)");
  /* Reconnected after the idle timeout plus the first backoff (100 ms), not before. */
  CHECK(silent_at[1] - silent_at[0] >= 300);
  CHECK(silent_at[1] - silent_at[0] < 1000);
  check_client_keepalive(&silent_conn[1]); /* connected: its on_connect has run */
  uv_timer_stop(t);
  ds_recv_socket_stop(recv5, after_stop5, NULL);
}

static void test_idle_timeout(void) {
  int port = listen_local(&silent_server);
  CHECK_INT(uv_listen((uv_stream_t *)&silent_server, 8, on_silent_connection), ==, 0);
  ds_store *store = ds_store_new(0);
  char err[256];
  ds_recv_socket_opts opts = {.idle_timeout_ms = 300};
  CHECK_INT(ds_recv_socket_start(&loop, "127.0.0.1", port, store, &opts, &recv5, err, sizeof err),
            ==, 0);
  uv_timer_init(&loop, &monitor);
  uv_timer_start(&monitor, on_monitor5, 5, 5);
  start_guard();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(closed5, ==, 1);
  CHECK(keepalive_checked);
  /* The silent connection's unfinished line is dropped, as for a broken connection. */
  const char *want[] = {"one", "three"};
  check_store_lines(store, want, 2);
  ds_store_free(store);
}

int main(void) {
  CHECK_INT(uv_loop_init(&loop), ==, 0);
  test_lines_and_reconnect();
  test_refused();
  test_start_errors_and_early_stop();
  test_stop_drains_under_rate();
  test_idle_timeout();
  CHECK_INT(uv_loop_close(&loop), ==, 0);
  printf("test_recv_socket: ok\n");
  return 0;
}

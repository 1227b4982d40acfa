/* test_http.c - the HTTP server against a raw TCP client on the same libuv loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ds_http.h"

#include "check.h"

static uv_loop_t loop;
static uv_timer_t guard;

/* ---- the handler: echoes what it saw ---- */

static int handler_calls;

static void handler(void *ud, ds_http_request *req) {
  CHECK(ud == &handler_calls);
  handler_calls++;
  char body[1024];
  if (strcmp(req->path, "/missing") == 0) {
    CHECK_INT(ds_http_respond(req, 404, NULL, "not found\n", 10), ==, 0);
    return;
  }
  if (strcmp(req->path, "/silent") == 0) return; /* the server answers 500 */
  int n = snprintf(body, sizeof body, "method=%s path=%s query=%s host=%s\n", req->method,
                   req->path, req->query, req->host);
  CHECK_INT(ds_http_respond(req, 200, "text/x-test", body, (size_t)n), ==, 0);
  CHECK_INT(ds_http_respond(req, 200, NULL, "x", 1), ==, -EALREADY);
}

/* ---- a client: sends one text, collects everything until the server closes ---- */

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t conn;
  const char *request;
  char *got;
  size_t len;
  int done;
} client;

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(hint);
  buf->len = hint;
}

static void client_closed(uv_handle_t *h) { ((client *)h->data)->done = 1; }

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  client *c = s->data;
  if (n > 0) {
    c->got = realloc(c->got, c->len + (size_t)n + 1);
    memcpy(c->got + c->len, buf->base, (size_t)n);
    c->len += (size_t)n;
    c->got[c->len] = 0;
  }
  free(buf->base);
  if (n < 0) uv_close((uv_handle_t *)&c->tcp, client_closed);
}

static void client_written(uv_write_t *w, int status) {
  CHECK_INT(status, ==, 0);
  free(w);
}

static void client_shut(uv_shutdown_t *req, int status) {
  CHECK_INT(status, ==, 0);
  free(req);
}

static void client_connected(uv_connect_t *req, int status) {
  client *c = req->data;
  CHECK_INT(status, ==, 0);
  uv_write_t *w = malloc(sizeof *w);
  uv_buf_t buf = uv_buf_init((char *)c->request, (unsigned)strlen(c->request));
  CHECK_INT(uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, client_written), ==, 0);
  if (strstr(c->request, "/half")) { /* done sending: the server sees EOF */
    uv_shutdown_t *sh = malloc(sizeof *sh);
    CHECK_INT(uv_shutdown(sh, (uv_stream_t *)&c->tcp, client_shut), ==, 0);
  }
  CHECK_INT(uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read), ==, 0);
}

/* Runs one exchange and returns everything the server sent (caller frees). */
static char *exchange(int port, const char *request) {
  client c;
  memset(&c, 0, sizeof c);
  c.request = request;
  c.got = calloc(1, 1);
  uv_tcp_init(&loop, &c.tcp);
  c.tcp.data = c.conn.data = &c;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  CHECK_INT(uv_tcp_connect(&c.conn, &c.tcp, (struct sockaddr *)&addr, client_connected), ==, 0);
  while (!c.done) uv_run(&loop, UV_RUN_ONCE);
  return c.got;
}

static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}


/* ---- a slow client: sends a request line, then one header line every 100 ms, forever ---- */

typedef struct slow_client {
  uv_tcp_t tcp;
  uv_connect_t conn;
  uv_timer_t tick;
  char got[512];
  size_t len;
  int connected, closed;
  uint64_t closed_at;
} slow_client;

static void slow_write(slow_client *c, const char *text) {
  uv_write_t *w = malloc(sizeof *w);
  uv_buf_t buf = uv_buf_init((char *)text, (unsigned)strlen(text));
  if (uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, client_written) != 0) free(w);
}

static void slow_tick(uv_timer_t *t) {
  slow_client *c = t->data;
  if (!c->closed) slow_write(c, "X-Slow: 1\r\n");
}

static void slow_closed(uv_handle_t *h) { (void)h; }

static void slow_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  slow_client *c = s->data;
  if (n > 0 && c->len + (size_t)n < sizeof c->got) {
    memcpy(c->got + c->len, buf->base, (size_t)n);
    c->len += (size_t)n;
  }
  free(buf->base);
  if (n < 0 && !c->closed) {
    c->closed = 1;
    c->closed_at = uv_now(&loop);
    uv_timer_stop(&c->tick);
    uv_close((uv_handle_t *)&c->tcp, slow_closed);
    uv_close((uv_handle_t *)&c->tick, slow_closed);
  }
}

static void slow_connected(uv_connect_t *req, int status) {
  slow_client *c = req->data;
  CHECK_INT(status, ==, 0);
  c->connected = 1;
  slow_write(c, "GET / HTTP/1.1\r\n");
  CHECK_INT(uv_read_start((uv_stream_t *)&c->tcp, client_alloc, slow_read), ==, 0);
  uv_timer_start(&c->tick, slow_tick, 100, 100);
}

/* Connects from the loopback address `from` (e.g. "127.0.0.2": another client address). */
static void slow_start_from(slow_client *c, int port, const char *from) {
  memset(c, 0, sizeof *c);
  uv_tcp_init(&loop, &c->tcp);
  uv_timer_init(&loop, &c->tick);
  c->tcp.data = c->conn.data = c->tick.data = c;
  struct sockaddr_in addr;
  if (from) {
    uv_ip4_addr(from, 0, &addr);
    CHECK_INT(uv_tcp_bind(&c->tcp, (struct sockaddr *)&addr, 0), ==, 0);
  }
  uv_ip4_addr("127.0.0.1", port, &addr);
  CHECK_INT(uv_tcp_connect(&c->conn, &c->tcp, (struct sockaddr *)&addr, slow_connected), ==, 0);
  while (!c->connected) uv_run(&loop, UV_RUN_ONCE);
}

static void slow_start(slow_client *c, int port) { slow_start_from(c, port, NULL); }

static void noop_timer(uv_timer_t *t) { (void)t; }

static uv_timer_t run_timer; /* a wake-up at the end, so UV_RUN_ONCE never waits past it */

static void run_for(uint64_t ms) {
  uint64_t end = uv_now(&loop) + ms;
  uv_timer_start(&run_timer, noop_timer, ms, 0);
  while (uv_now(&loop) < end) uv_run(&loop, UV_RUN_ONCE);
}

static int stopped;
static void on_stopped(void *ud) { *(int *)ud += 1; }

int main(void) {
  CHECK_INT(uv_loop_init(&loop), ==, 0);
  check_guard_start(&loop, &guard, 20000, NULL);
  uv_unref((uv_handle_t *)&guard);
  uv_timer_init(&loop, &run_timer);
  char err[256];
  ds_http *s;

  /* Refusals: a public address without allow_public, garbage, a bad port. */
  CHECK_INT(ds_http_start(&loop, "0.0.0.0", 0, NULL, handler, &handler_calls, &s, err, sizeof err),
            ==, -EACCES);
  CHECK_HAS(err, "0.0.0.0");
  CHECK_INT(ds_http_start(&loop, "::", 0, NULL, handler, &handler_calls, &s, err, sizeof err), ==,
            -EACCES);
  CHECK_INT(ds_http_start(&loop, "example.com", 0, NULL, handler, &handler_calls, &s, err,
                          sizeof err),
            ==, -EINVAL);
  CHECK_INT(ds_http_start(&loop, "127.0.0.1", 70000, NULL, handler, &handler_calls, &s, err,
                          sizeof err),
            ==, -EINVAL);

  CHECK_INT(ds_http_start(&loop, "localhost", 0, NULL, handler, &handler_calls, &s, err, sizeof err),
            ==, 0);
  char host[64];
  int port;
  ds_http_address(s, host, sizeof host, &port);
  CHECK(strcmp(host, "127.0.0.1") == 0);
  CHECK(port > 0);

  /* A port in use is an error of the call. */
  ds_http *s2;
  CHECK_INT(ds_http_start(&loop, "127.0.0.1", port, NULL, handler, &handler_calls, &s2, err,
                          sizeof err),
            ==, -EADDRINUSE);

  /* Two pipelined requests on one keep-alive connection, then one that closes it. */
  char *got = exchange(port,
                       "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:4040\r\n\r\n"
                       "GET /api/batches?n=5 HTTP/1.1\r\nHOST: localhost\r\n\r\n"
                       "GET /missing HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK_INT(count_of(got, "HTTP/1.1 "), ==, 3);
  CHECK_HAS(got, "HTTP/1.1 200 OK\r\nContent-Type: text/x-test\r\n");
  CHECK_HAS(got, "method=GET path=/metrics query= host=127.0.0.1:4040\n");
  CHECK_HAS(got, "method=GET path=/api/batches query=n=5 host=localhost\n");
  CHECK_HAS(got, "HTTP/1.1 404 Not Found\r\n");
  CHECK_HAS(got, "Connection: close\r\n\r\nnot found\n");
  CHECK(strstr(got, "method=GET") < strstr(got, "not found")); /* answered in order */
  free(got);

  /* HTTP/1.0 without keep-alive: one answer and the server closes. HEAD: headers only. */
  got = exchange(port, "HEAD /x HTTP/1.0\r\n\r\n");
  CHECK_HAS(got, "HTTP/1.1 200 OK\r\n");
  CHECK_HAS(got, "Content-Length: 33\r\n"); /* "method=HEAD path=/x query= host=\n" */
  CHECK(strstr(got, "method=") == NULL);
  free(got);

  /* Only GET and HEAD; malformed requests; a handler that does not answer. */
  got = exchange(port, "POST /x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
  CHECK_HAS(got, "HTTP/1.1 405 Method Not Allowed\r\n");
  CHECK_HAS(got, "Allow: GET, HEAD\r\n");
  free(got);
  got = exchange(port, "NOT HTTP AT ALL\r\n\r\n");
  CHECK_HAS(got, "HTTP/1.1 400 Bad Request\r\n");
  free(got);
  got = exchange(port, "GET /silent HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK_HAS(got, "HTTP/1.1 500 Internal Server Error\r\n");
  free(got);
  /* An absolute-form target is reduced to its path and query. */
  got = exchange(port, "GET http://127.0.0.1/p?q=1 HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK_HAS(got, "path=/p query=q=1");
  free(got);
  /* The client goes away right after sending: the queued answer still goes out. */
  got = exchange(port, "GET /half HTTP/1.1\r\n\r\n");
  CHECK_HAS(got, "path=/half");
  free(got);


  /* Slow clients cannot lock the server out (issue 15): a head that trickles in one header
   * line at a time is cut at its deadline with a 408, and a new request is served at once
   * however many slow connections are open: at the cap per client address, the longest-idle
   * connection of that client is dropped for it. */
  ds_http_opts lim = {.head_timeout_ms = 600, .max_per_client = 4, .max_connections = 8};
  ds_http *s3;
  CHECK_INT(ds_http_start(&loop, "127.0.0.1", 0, &lim, handler, &handler_calls, &s3, err,
                          sizeof err),
            ==, 0);
  int port3;
  ds_http_address(s3, NULL, 0, &port3);
  enum { NSLOW = 12 };
  slow_client slow[NSLOW];
  uint64_t t0 = uv_now(&loop);
  for (int k = 0; k < NSLOW; k++) slow_start(&slow[k], port3);
  run_for(150); /* every slow client has sent a line or two */
  uint64_t t1 = uv_now(&loop);
  got = exchange(port3, "GET /fresh HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK_HAS(got, "path=/fresh");
  CHECK(uv_now(&loop) - t1 < 300); /* answered at once, not after a slow client left */
  free(got);
  int open_slow = 0;
  for (int k = 0; k < NSLOW; k++) open_slow += !slow[k].closed;
  CHECK_INT(open_slow, <=, 3); /* 4 per address, one of them the new request's */
  run_for(900);                /* past the head deadline (600 ms from each accept) */
  int timed_out = 0;
  for (int k = 0; k < NSLOW; k++) {
    CHECK(slow[k].closed); /* trickling bytes did not keep any of them open */
    CHECK(slow[k].closed_at - t0 < 600 + 300);
    if (strstr(slow[k].got, "HTTP/1.1 408 ")) timed_out++;
  }
  CHECK_INT(timed_out, ==, open_slow); /* the ones still open at the deadline got a 408 */
  ds_http_stop(s3, NULL, NULL);

  /* The global cap: 4 clients from 127.0.0.2 and 3 from 127.0.0.3 (7 of 8), then two slow
   * ones from 127.0.0.4 and .5: the 9th connection drops the longest-idle one of the address
   * holding the most (.2's first), not another client's. */
  ds_http *s4;
  CHECK_INT(ds_http_start(&loop, "127.0.0.1", 0, &lim, handler, &handler_calls, &s4, err,
                          sizeof err),
            ==, 0);
  int port4;
  ds_http_address(s4, NULL, 0, &port4);
  slow_client many[9];
  const char *from[9] = {"127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3",
                         "127.0.0.3", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
  for (int k = 0; k < 9; k++) {
    slow_start_from(&many[k], port4, from[k]);
    run_for(20); /* accepted in this order, and idle in this order */
  }
  run_for(50);
  CHECK(many[0].closed);
  for (int k = 1; k < 9; k++) CHECK(!many[k].closed);
  ds_http_stop(s4, NULL, NULL);
  run_for(50);
  for (int k = 0; k < 9; k++) CHECK(many[k].closed);

  CHECK_INT(handler_calls, ==, 8);
  CHECK_INT(ds_http_requests(s), ==, 8); /* the malformed one never completed */

  ds_http_stop(s, on_stopped, &stopped);
  ds_http_stop(s, on_stopped, &stopped); /* a second stop does nothing */
  uv_close((uv_handle_t *)&guard, NULL);
  uv_close((uv_handle_t *)&run_timer, NULL);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), ==, 0);
  CHECK_INT(stopped, ==, 1);
  CHECK_INT(uv_loop_close(&loop), ==, 0);
  printf("test_http: ok\n");
  return 0;
}

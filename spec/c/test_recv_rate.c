/* test_recv_rate.c - receivers under max_rate: reading slows down, TCP pushes back, nothing is lost. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ds_recv.h"
#include "ds_recv_file.h"
#include "ds_recv_socket.h"
#include "ds_store.h"

#include "check.h"

static uv_loop_t loop;
static uv_timer_t guard;

static double elapsed_s(uint64_t since_ns) { return (double)(uv_hrtime() - since_ns) / 1e9; }

/* Most records a limited receiver may hold after `secs`: the rate, its burst (a tenth of a
 * second) and one read past the limit. Slow machines only make the bound looser. */
static double limit_bound(double rate, double secs) { return rate * secs + rate / 10 + 64; }

/* ---- the token bucket ---- */

static void test_bucket(void) {
  ds_recv_rate b;
  memset(&b, 0, sizeof b);
  CHECK(ds_recv_rate_available(&b) > 1e17); /* no limit */
  CHECK_INT(ds_recv_rate_read_size(&b, 100, 10, 4096), ==, 4096);
  ds_recv_rate_set(&b, 1000);
  CHECK(ds_recv_rate_available(&b) <= 100.5); /* a full bucket is a tenth of a second */
  ds_recv_rate_take(&b, 150);                 /* a read past the limit is a debt */
  CHECK(ds_recv_rate_available(&b) < 0);
  CHECK(ds_recv_rate_wait_ms(&b) >= 40);
  CHECK(ds_recv_rate_read_size(&b, 1000, 10, 4096) == 64); /* in debt: the smallest read */
  ds_recv_rate_set(&b, -5); /* nonsense means no limit */
  CHECK(b.rate == 0);
}

/* ---- a socket: a server sends far more than the kernel buffers hold ---- */

static uv_tcp_t server, peer;
static uv_write_t wreq;
static char *payload;
static size_t payload_len, nlines;
static int wrote_all;
static ds_recv_socket *recv_s;
static ds_store *store_s;
static uv_timer_t watch;
static uint64_t t0;
static int phase; /* 0: limited, 1: limit removed, 2: stopping */
static uint64_t checks;

static void on_written(uv_write_t *w, int status) {
  CHECK_INT(status, ==, 0);
  wrote_all = 1;
  uv_close((uv_handle_t *)w->handle, NULL); /* EOF for the receiver once it read it all */
}

static void on_connection(uv_stream_t *srv, int status) {
  CHECK_INT(status, ==, 0);
  uv_tcp_init(&loop, &peer);
  CHECK_INT(uv_accept(srv, (uv_stream_t *)&peer), ==, 0);
  uv_buf_t buf = uv_buf_init(payload, (unsigned)payload_len);
  CHECK_INT(uv_write(&wreq, (uv_stream_t *)&peer, &buf, 1, on_written), ==, 0);
  uv_close((uv_handle_t *)srv, NULL);
}

static void socket_closed(void *ud) {
  (void)ud;
  uv_close((uv_handle_t *)&watch, NULL);
}

static void on_watch(uv_timer_t *t) {
  ds_recv_stats st;
  ds_recv_socket_stats(recv_s, &st);
  if (phase == 0) {
    CHECK((double)st.records <= limit_bound(1000, elapsed_s(t0)));
    if (elapsed_s(t0) < 0.4 || !st.connected) return;
    /* Reading paused, and the server could not hand everything to the kernel. */
    CHECK(st.pauses > 0);
    CHECK(st.rate_limit == 1000);
    CHECK(!wrote_all);
    CHECK(uv_stream_get_write_queue_size((uv_stream_t *)&peer) > 0);
    checks++;
    ds_recv_socket_set_rate(recv_s, 0); /* no limit: the rest comes at once */
    phase = 1;
  } else if (phase == 1) {
    if (st.records < nlines) return;
    CHECK_INT(st.records, ==, nlines);
    CHECK(wrote_all);
    CHECK_INT(st.rate_limit, ==, 0);
    phase = 2;
    uv_timer_stop(t);
    ds_recv_socket_stop(recv_s, socket_closed, NULL);
  }
}

/* The most the kernel may buffer on one loopback connection: both ends' maximum buffers. */
static size_t kernel_buffers(void) {
  size_t total = 0;
  const char *files[] = {"/proc/sys/net/ipv4/tcp_rmem", "/proc/sys/net/ipv4/tcp_wmem"};
  for (int i = 0; i < 2; i++) {
    unsigned long a, b, c;
    FILE *f = fopen(files[i], "r");
    if (f && fscanf(f, "%lu %lu %lu", &a, &b, &c) == 3) total += c;
    else total += 16u << 20;
    if (f) fclose(f);
  }
  return total;
}

static void test_socket(void) {
  payload_len = 2 * kernel_buffers() + (4u << 20);
  nlines = payload_len / 16;
  payload_len = nlines * 16;
  payload = malloc(payload_len);
  CHECK(payload != NULL);
  for (size_t i = 0; i < nlines; i++) {
    char line[24];
    snprintf(line, sizeof line, "%015zu\n", i);
    memcpy(payload + i * 16, line, 16);
  }
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(&loop, &server);
  CHECK_INT(uv_tcp_bind(&server, (struct sockaddr *)&addr, 0), ==, 0);
  CHECK_INT(uv_listen((uv_stream_t *)&server, 4, on_connection), ==, 0);
  struct sockaddr_storage got;
  int len = sizeof got;
  CHECK_INT(uv_tcp_getsockname(&server, (struct sockaddr *)&got, &len), ==, 0);
  int port = ntohs(((struct sockaddr_in *)&got)->sin_port);

  store_s = ds_store_new(0);
  char err[256];
  ds_recv_socket_opts opts = {.max_line = 0, .backoff_max_ms = 0, .max_rate = 1000};
  t0 = uv_hrtime();
  CHECK_INT(ds_recv_socket_start(&loop, "127.0.0.1", port, store_s, &opts, &recv_s, err, sizeof err),
            ==, 0);
  uv_timer_init(&loop, &watch);
  uv_timer_start(&watch, on_watch, 20, 20);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(phase, ==, 2);
  CHECK_INT(checks, ==, 1);
  CHECK_INT(ds_store_pending(store_s), ==, nlines); /* every line, none dropped */
  ds_store_free(store_s);
  free(payload);
}

/* ---- files: read in chunks under the limit, the rest waits on disk ---- */

static char dir[64];

static void put_lines(const char *name, int n) {
  char tmp[256], path[256];
  snprintf(tmp, sizeof tmp, "%s/.%s", dir, name);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(tmp, "w");
  CHECK(f != NULL);
  for (int i = 0; i < n; i++) fprintf(f, "%s-%06d\n", name, i);
  CHECK_INT(fclose(f), ==, 0);
  CHECK_INT(rename(tmp, path), ==, 0);
}

static ds_recv_file *recv_f;
static int fphase;

static void file_closed(void *ud) { *(int *)ud += 1; }

static void on_fwatch(uv_timer_t *t) {
  ds_recv_stats st;
  ds_recv_file_stats(recv_f, &st);
  CHECK((double)st.records <= limit_bound(2000, elapsed_s(t0)));
  if (st.records < 3000) return;
  CHECK_INT(st.records, ==, 3000);
  fphase = 1;
  uv_timer_stop(t);
}

static void test_files(void) {
  check_temp_dir(dir, sizeof dir, "ds_recv_rate");
  ds_store *store = ds_store_new(0);
  char err[256];
  ds_recv_file_opts opts = {.new_files_only = 1, .max_line = 0, .max_rate = 2000};
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &recv_f, err, sizeof err), ==, 0);
  put_lines("a", 1000);
  put_lines("b", 2000);
  t0 = uv_hrtime();
  CHECK_INT(ds_recv_file_scan(recv_f), ==, 0); /* a first chunk, then the limit */
  ds_recv_stats st;
  ds_recv_file_stats(recv_f, &st);
  CHECK(st.records > 0);
  CHECK(st.records <= 300);
  CHECK_INT(st.throttled, ==, 1);
  CHECK(st.rate_limit == 2000);
  uv_timer_init(&loop, &watch);
  uv_timer_start(&watch, on_fwatch, 20, 20);
  while (!fphase) uv_run(&loop, UV_RUN_ONCE);
  CHECK_INT(ds_store_pending(store), ==, 3000);

  /* A slow limit, then stop: what was found is read at once, nothing is lost. */
  ds_recv_file_set_rate(recv_f, 10);
  put_lines("c", 5000);
  ds_recv_file_scan(recv_f);
  ds_recv_file_stats(recv_f, &st);
  CHECK(st.records < 3000 + 100);
  int closed = 0;
  ds_recv_file_stop(recv_f, file_closed, &closed);
  ds_recv_file_stats(recv_f, &st);
  CHECK_INT(st.records, ==, 8000);
  uv_close((uv_handle_t *)&watch, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(closed, ==, 1);
  CHECK_INT(ds_store_pending(store), ==, 8000);
  ds_store_free(store);
}

int main(void) {
  CHECK_INT(uv_loop_init(&loop), ==, 0);
  check_guard_start(&loop, &guard, 60000, NULL);
  uv_unref((uv_handle_t *)&guard);
  test_bucket();
  test_socket();
  test_files();
  check_remove_tree(dir);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), ==, 0);
  printf("test_recv_rate: ok\n");
  return 0;
}

/* test_recv_file.c - the directory source: new files, ignored names, unreadable entries, and
 * the window of remembered names (ctime threshold, forgetting, restart, cost per scan). */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "ds_recv_file.h"
#include "ds_store.h"

#include "check.h"

static uv_loop_t loop;
static char dir[128];

/* Writes text to dir/name. */
static void write_file(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  check_write_file(path, text, strlen(text));
}

/* The way producers are told to publish: write under a dot name, then rename into place. */
static void put_file(const char *name, const char *text) {
  char tmp[64], from[256], to[256];
  snprintf(tmp, sizeof tmp, ".%s", name);
  write_file(tmp, text);
  snprintf(from, sizeof from, "%s/%s", dir, tmp);
  snprintf(to, sizeof to, "%s/%s", dir, name);
  CHECK_INT(rename(from, to), ==, 0);
}

static void on_closed(void *ud) { *(int *)ud += 1; }

static void stop_and_wait(ds_recv_file *r) {
  int closed = 0;
  ds_recv_file_stop(r, on_closed, &closed);
  ds_recv_file_stop(r, on_closed, &closed); /* a second stop does nothing */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(closed, ==, 1);
}

typedef struct seen_list {
  char names[16][32];
  int n;
} seen_list;

static void add_seen(const char *name, int64_t ctime_ms, void *ud) {
  seen_list *l = ud;
  CHECK(ctime_ms > 0);
  CHECK(l->n < 16);
  snprintf(l->names[l->n++], sizeof l->names[0], "%s", name);
}

static int has_seen(seen_list *l, const char *name) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->names[i], name) == 0) return 1;
  return 0;
}

/* ---- new files are read once; ignored names, unreadable entries, oversized lines ---- */

static void test_scan(void) {
  write_file("old.txt", "old\n"); /* present at start: not read with new_files_only */
  ds_store *store = ds_store_new(0);
  ds_recv_file *r;
  char err[256];
  ds_recv_file_opts opts = {.new_files_only = 1, .max_line = 16};
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &r, err, sizeof err), ==, 0);

  put_file("a.txt", "one\ntwo\r\nthree"); /* no final newline: "three" is still a record */
  put_file("b.log", "four\nxxxxxxxxxxxxxxxxxxxx\nfive\n"); /* 20 x's > max_line 16 */
  write_file("c.tmp", "ignored\n");
  write_file("_d.txt", "ignored\n");
  write_file(".e.txt", "ignored\n");
  write_file("f.COPYING", "ignored\n");
  char path[256];
  /* Entries that fail even for root: a dangling symlink, a directory, a FIFO (which would
   * block a plain open for reading). */
  snprintf(path, sizeof path, "%s/g.txt", dir);
  CHECK_INT(symlink("/nonexistent/ds_recv_file_test", path), ==, 0);
  snprintf(path, sizeof path, "%s/h", dir);
  CHECK_INT(mkdir(path, 0755), ==, 0);
  snprintf(path, sizeof path, "%s/j.fifo", dir);
  CHECK_INT(mkfifo(path, 0644), ==, 0);

  CHECK_INT(ds_recv_file_scan(r), ==, 2);
  ds_recv_stats st;
  ds_recv_file_stats(r, &st);
  CHECK_INT(st.records, ==, 5);
  CHECK_INT(st.skipped, ==, 1);
  CHECK_INT(st.errors, ==, 3);
  CHECK_INT(st.connected, ==, 1);
  CHECK_INT(st.bytes, ==, strlen("one\ntwo\r\nthree") + strlen("four\nxxxxxxxxxxxxxxxxxxxx\nfive\n"));
  CHECK_STR(st.last_error, "cannot read 'j.fifo': not a regular file");
  const char *want[] = {"one", "two", "three", "four", "five"};
  check_store_lines(store, want, 5);

  /* Nothing is read twice, and failed entries are not retried. */
  CHECK_INT(ds_recv_file_scan(r), ==, 0);
  ds_recv_file_stats(r, &st);
  CHECK_INT(st.records, ==, 5);
  CHECK_INT(st.errors, ==, 3);
  CHECK_INT(ds_store_pending(store), ==, 0);

  seen_list seen = {.n = 0};
  ds_recv_file_list_remembered(r, add_seen, &seen);
  CHECK_INT(seen.n, ==, 6);
  const char *names[] = {"old.txt", "a.txt", "b.log", "g.txt", "h", "j.fifo"};
  for (int i = 0; i < 6; i++) CHECK(has_seen(&seen, names[i]));

  stop_and_wait(r);
  ds_store_free(store);
}

/* ---- a file moved in is found without an explicit scan (watch or rescan) ---- */

static ds_recv_file *watched;
static ds_store *watched_store;
static uv_timer_t monitor, guard;
static int watched_closed;

static void on_monitor(uv_timer_t *t) {
  if (ds_store_pending(watched_store) == 0) return;
  uv_close((uv_handle_t *)t, NULL);
  uv_close((uv_handle_t *)&guard, NULL);
  ds_recv_file_stop(watched, on_closed, &watched_closed);
}

static void test_watch(void) {
  watched_store = ds_store_new(0);
  char err[256];
  CHECK_INT(ds_recv_file_start(&loop, dir, watched_store, NULL, &watched, err, sizeof err), ==, 0);
  put_file("i.txt", "six\n");
  uv_timer_init(&loop, &monitor);
  uv_timer_start(&monitor, on_monitor, 5, 5);
  check_guard_start(&loop, &guard, 20000, "the moved-in file was never read");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(watched_closed, ==, 1);
  const char *want[] = {"six"};
  check_store_lines(watched_store, want, 1);
  ds_store_free(watched_store);
}

/* ---- new_files_only = 0 reads what is there; a restored name is skipped ---- */

static void test_existing_files(void) {
  ds_store *store = ds_store_new(0);
  ds_recv_file *r;
  char err[256];
  ds_recv_file_opts opts = {.new_files_only = 0, .max_line = 0};
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &r, err, sizeof err), ==, 0);
  int64_t ct = -1; /* as if from a checkpoint of an older dstream: no ctime */
  CHECK_INT(ds_recv_file_mark_seen(r, "old.txt", &ct), ==, 0);
  CHECK(ct > 0); /* looked up */
  ct = -1;
  CHECK_INT(ds_recv_file_mark_seen(r, "gone.txt", &ct), ==, -ENOENT); /* nothing to remember */
  CHECK_INT(ds_recv_file_scan(r), ==, 3);                 /* a.txt, b.log, i.txt */
  const char *want[] = {"one", "two", "three", "four", "xxxxxxxxxxxxxxxxxxxx", "five", "six"};
  check_store_lines(store, want, 7);
  ds_recv_stats st;
  ds_recv_file_stats(r, &st);
  CHECK_INT(st.errors, ==, 3);
  CHECK_INT(st.skipped, ==, 0);
  stop_and_wait(r);
  ds_store_free(store);
}

/* ---- start() refuses a missing directory and a non-directory, naming the path ---- */

static void test_bad_dirs(void) {
  ds_store *store = ds_store_new(0);
  ds_recv_file *r = NULL;
  char err[256], path[256];
  snprintf(path, sizeof path, "%s/missing", dir);
  CHECK_INT(ds_recv_file_start(&loop, path, store, NULL, &r, err, sizeof err), ==, -ENOENT);
  CHECK_HAS(err, path);
  CHECK_HAS(err, "does not exist");
  snprintf(path, sizeof path, "%s/a.txt", dir);
  CHECK_INT(ds_recv_file_start(&loop, path, store, NULL, &r, err, sizeof err), ==, -ENOTDIR);
  CHECK_HAS(err, path);
  CHECK(r == NULL);
  ds_store_free(store);
}

/* ---- the window of remembered names ---- */

static int64_t fake_now; /* the receivers' wall clock in these tests */
static int64_t fake_clock(void) { return fake_now; }

static int64_t real_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t ctime_of(const char *name) {
  char path[256];
  struct stat sb;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  CHECK_INT(lstat(path, &sb), ==, 0);
  return (int64_t)sb.st_ctim.tv_sec * 1000 + sb.st_ctim.tv_nsec / 1000000;
}

static void remove_file(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  CHECK_INT(unlink(path), ==, 0);
}

/* Runs the tests of a section in an empty subdirectory (the global `dir` names it). */
static char top[64];
static void enter_subdir(const char *name) {
  snprintf(dir, sizeof dir, "%.60s/%.60s", top, name);
  CHECK_INT(mkdir(dir, 0755), ==, 0);
}

static int count_remembered(ds_recv_file *r) {
  seen_list l = {.n = 0};
  ds_recv_file_list_remembered(r, add_seen, &l);
  return l.n;
}

/* New means: name not remembered and ctime >= the threshold (mtime does not count); the
 * threshold follows listings; a name outside the window is forgotten once its file is gone,
 * and an old file still there is not stat'ed again. */
static void test_window(void) {
  enter_subdir("window");
  fake_now = real_now();
  ds_store *store = ds_store_new(0);
  ds_recv_file *r;
  char err[256];
  ds_recv_file_opts opts = {.new_files_only = 1, .remember_ms = 10000, .now_ms = fake_clock};
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &r, err, sizeof err), ==, 0);
  CHECK_INT(ds_recv_file_threshold(r), ==, fake_now - 10000); /* the start's listing counts */

  /* mv keeps a file's mtime: one a day old is new all the same (its ctime is now). */
  write_file(".a.txt", "a\n");
  char from[256], to[256];
  snprintf(from, sizeof from, "%s/.a.txt", dir);
  snprintf(to, sizeof to, "%s/a.txt", dir);
  struct timespec day_ago[2] = {{time(NULL) - 86400, 0}, {time(NULL) - 86400, 0}};
  CHECK_INT(utimensat(AT_FDCWD, from, day_ago, 0), ==, 0);
  CHECK_INT(rename(from, to), ==, 0);
  CHECK_INT(ds_recv_file_scan(r), ==, 1);
  const char *want_a[] = {"a"};
  check_store_lines(store, want_a, 1);
  CHECK_INT(count_remembered(r), ==, 1);

  /* Within the window the name is remembered: rewritten in place, it is not read again. */
  write_file("a.txt", "a again\n");
  CHECK_INT(ds_recv_file_scan(r), ==, 0);

  /* A day later: a.txt is outside the window, and stays old while it is there. */
  fake_now += 86400000;
  CHECK_INT(ds_recv_file_scan(r), ==, 0);
  CHECK_INT(ds_recv_file_threshold(r), ==, fake_now - 10000);
  CHECK_INT(count_remembered(r), ==, 0); /* a checkpoint carries nothing */
  ds_recv_file_counts c;
  ds_recv_file_counts_get(r, &c);
  CHECK_INT(c.remembered, ==, 1); /* the old file still there, known by its inode */
  uint64_t stats = c.stats_done;
  for (int i = 0; i < 10; i++) CHECK_INT(ds_recv_file_scan(r), ==, 0);
  ds_recv_file_counts_get(r, &c);
  CHECK_INT(c.stats_done, ==, stats); /* no stat per listing for it */

  /* Gone, and a window later: forgotten. */
  remove_file("a.txt");
  fake_now += 10000;
  CHECK_INT(ds_recv_file_scan(r), ==, 0);
  ds_recv_file_counts_get(r, &c);
  CHECK_INT(c.remembered, ==, 0);
  CHECK_INT(c.forgotten, ==, 1);
  CHECK_INT(ds_store_pending(store), ==, 0);
  stop_and_wait(r);
  ds_store_free(store);
}

/* A restart given the threshold and names of a checkpoint reads the files that arrived while
 * it was down, and not the old ones; a file found but held back by the rate limit keeps the
 * threshold below its ctime, so a checkpoint taken meanwhile still sees it as new. */
static void test_restart_window(void) {
  enter_subdir("restart");
  fake_now = real_now();
  put_file("x.txt", "x\n");
  ds_store *store = ds_store_new(0);
  ds_recv_file *r;
  char err[256];
  ds_recv_file_opts opts = {.new_files_only = 1, .remember_ms = 10000, .now_ms = fake_clock};
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &r, err, sizeof err), ==, 0);
  int64_t threshold = ds_recv_file_threshold(r);
  int64_t x_ctime = ctime_of("x.txt");
  CHECK_INT(count_remembered(r), ==, 1); /* x.txt: present at start, not read */
  stop_and_wait(r);

  put_file("y.txt", "y\n"); /* while the job is down */
  opts.new_files_only = 0;
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &r, err, sizeof err), ==, 0);
  ds_recv_file_set_threshold(r, threshold);
  CHECK_INT(ds_recv_file_mark_seen(r, "x.txt", &x_ctime), ==, 0);
  CHECK_INT(ds_recv_file_scan(r), ==, 1);
  const char *want_y[] = {"y"};
  check_store_lines(store, want_y, 1);
  stop_and_wait(r);

  /* A checkpoint taken a day later carries a threshold past both: a restart with no names
   * reads neither. */
  fake_now += 86400000;
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &r, err, sizeof err), ==, 0);
  ds_recv_file_set_threshold(r, fake_now - 10000);
  CHECK_INT(ds_recv_file_scan(r), ==, 0);
  CHECK_INT(ds_store_pending(store), ==, 0);
  stop_and_wait(r);

  /* Held back by the rate limit: the threshold stops at the pending files' ctime. */
  fake_now = real_now();
  put_file("z1.txt", "1\n2\n3\n4\n5\n");
  put_file("z2.txt", "6\n7\n8\n9\n10\n");
  opts.max_rate = 1;
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &r, err, sizeof err), ==, 0);
  ds_recv_file_set_threshold(r, threshold);
  int64_t known = x_ctime, y_ctime = ctime_of("y.txt");
  CHECK_INT(ds_recv_file_mark_seen(r, "x.txt", &known), ==, 0);
  CHECK_INT(ds_recv_file_mark_seen(r, "y.txt", &y_ctime), ==, 0);
  ds_recv_file_scan(r);
  ds_recv_stats st;
  ds_recv_file_stats(r, &st);
  CHECK(st.records < 10); /* throttled */
  fake_now += 86400000;
  ds_recv_file_scan(r);
  CHECK_INT(ds_recv_file_threshold(r), <=, ctime_of("z1.txt"));
  stop_and_wait(r); /* reads what was held back */
  CHECK_INT(ds_store_pending(store), ==, 10);
  ds_sealed *sb;
  CHECK_INT(ds_store_seal(store, 1, &sb), ==, 0);
  ds_sealed_free(sb);
  ds_store_free(store);
}

/* 100 000 names outside the window (an old checkpoint's) are forgotten by one sweep, and
 * later listings of an empty directory do no work for them. */
static void test_forget_cost(void) {
  enter_subdir("cost");
  ds_store *store = ds_store_new(0);
  ds_recv_file *r;
  char err[256];
  ds_recv_file_opts opts = {.new_files_only = 0, .remember_ms = 10000};
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &r, err, sizeof err), ==, 0);
  for (int i = 0; i < 100000; i++) {
    char name[32];
    snprintf(name, sizeof name, "f%06d.txt", i);
    int64_t ct = real_now() - 3600000; /* an hour ago */
    CHECK_INT(ds_recv_file_mark_seen(r, name, &ct), ==, 0);
  }
  ds_recv_file_counts c;
  ds_recv_file_counts_get(r, &c);
  CHECK_INT(c.remembered, ==, 100000);
  CHECK_INT(ds_recv_file_scan(r), ==, 0);
  ds_recv_file_counts_get(r, &c);
  CHECK_INT(c.remembered, ==, 0);
  CHECK_INT(c.forgotten, ==, 100000);
  uint64_t visits = c.sweep_visits;
  for (int i = 0; i < 1000; i++) CHECK_INT(ds_recv_file_scan(r), ==, 0);
  ds_recv_file_counts_get(r, &c);
  CHECK_INT(c.sweep_visits - visits, <, 1000); /* not 1000 x 100 000 */
  CHECK_INT(c.stats_done, ==, 0);
  stop_and_wait(r);
  ds_store_free(store);
}

/* Watch events for 300 old files moved in: one listing for the burst, not one per event. */
static ds_recv_file *burst;
static ds_recv_file_counts burst_counts;
static void on_burst_done(uv_timer_t *t) {
  uv_close((uv_handle_t *)t, NULL);
  ds_recv_file_counts_get(burst, &burst_counts);
  ds_recv_file_stop(burst, on_closed, &watched_closed);
}

static void test_event_burst(void) {
  enter_subdir("burst");
  fake_now = real_now() + 86400000; /* everything moved in is a day old */
  ds_store *store = ds_store_new(0);
  char err[256];
  ds_recv_file_opts opts = {.new_files_only = 1, .remember_ms = 10000, .now_ms = fake_clock};
  CHECK_INT(ds_recv_file_start(&loop, dir, store, &opts, &burst, err, sizeof err), ==, 0);
  for (int i = 0; i < 300; i++) {
    char name[32];
    snprintf(name, sizeof name, "old%03d.txt", i);
    put_file(name, "x\n");
  }
  watched_closed = 0;
  uv_timer_t done;
  uv_timer_init(&loop, &done);
  uv_update_time(&loop); /* the loop's clock stood still while the files were moved in */
  uv_timer_start(&done, on_burst_done, 150, 0);
  ds_recv_file_counts c;
  ds_recv_file_counts_get(burst, &c);
  uint64_t before = c.listings;
  uv_run(&loop, UV_RUN_DEFAULT); /* the events, for 150 ms (before the 200 ms rescan) */
  CHECK_INT(watched_closed, ==, 1);
  CHECK_INT(burst_counts.listings - before, >=, 1);
  CHECK_INT(burst_counts.listings - before, <=, 5);
  CHECK_INT(ds_store_pending(store), ==, 0); /* old files: none read */
  ds_store_free(store);
}

int main(void) {
  CHECK_INT(uv_loop_init(&loop), ==, 0);
  check_temp_dir(dir, sizeof dir, "ds_recv_file");
  test_scan();
  test_watch();
  test_existing_files();
  test_bad_dirs();
  snprintf(top, sizeof top, "%.63s", dir);
  test_window();
  test_restart_window();
  test_forget_cost();
  test_event_burst();
  snprintf(dir, sizeof dir, "%s", top);
  check_remove_tree(dir);
  CHECK_INT(uv_loop_close(&loop), ==, 0);
  printf("test_recv_file: ok\n");
  return 0;
}

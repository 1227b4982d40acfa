/* ds_recv_file.c - directory source (textFileStream): watch, rescan, read each new file once,
 * at most max_rate records per second. */
#include "ds_recv_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds_log.h"

#define RESCAN_MS 200 /* backstop for events the watch misses (overflow, network mounts) */

struct ds_recv_file {
  uv_loop_t *loop;
  char *dir;
  ds_recv_lines lines;
  const char *cur_name;  /* file being read (owned by the seen set), NULL if none */
  int cur_fd;            /* its descriptor, -1 if none */
  int cur_oom;           /* records of the current file were lost for lack of memory */
  uint64_t line_base;    /* lines.lines when the current file started */
  uint64_t cur_off;      /* bytes of the current file read so far */
  uint64_t cur_end;      /* where its last finished line ends: the store holds it up to here */
  ds_recv_file_part *parts; /* files that added records since the last take (take_parts) */
  size_t nparts, capparts;
  char *resume_name;     /* a file to read from resume_off on (ds_recv_file_resume) */
  uint64_t resume_off;
  const char **pending;  /* names found and not read yet, oldest first (owned by the seen set) */
  size_t pending_head, npending, cappending;
  ds_recv_rate bucket;   /* max records per second; reading pauses when it is empty */
  uv_timer_t rate_timer; /* resumes reading once the bucket holds a record again */
  int rate_timer_open;
  uv_fs_event_t ev;
  int ev_open;
  uv_timer_t timer;
  int timer_open;
  char **seen; /* hash set of names, open addressing, NULL = empty slot */
  size_t nseen, capseen;
  int list_failed; /* the last listing failed and was logged */
  ds_recv_stats st;
  int stopping;
  void (*on_closed)(void *ud);
  void *ud;
  char rbuf[64 * 1024];
};

/* ---- the set of seen names ---- */

static size_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
  return (size_t)h;
}

static int seen_has(ds_recv_file *r, const char *name) {
  if (!r->capseen) return 0;
  for (size_t i = name_hash(name) & (r->capseen - 1); r->seen[i]; i = (i + 1) & (r->capseen - 1))
    if (strcmp(r->seen[i], name) == 0) return 1;
  return 0;
}

/* Takes ownership of `name` (a malloc'd string not yet in the set). */
static int seen_put(ds_recv_file *r, char *name) {
  if ((r->nseen + 1) * 2 > r->capseen) {
    size_t cap = r->capseen ? r->capseen * 2 : 64;
    char **slots = calloc(cap, sizeof *slots);
    if (!slots) return -ENOMEM;
    for (size_t j = 0; j < r->capseen; j++) {
      if (!r->seen[j]) continue;
      size_t i = name_hash(r->seen[j]) & (cap - 1);
      while (slots[i]) i = (i + 1) & (cap - 1);
      slots[i] = r->seen[j];
    }
    free(r->seen);
    r->seen = slots;
    r->capseen = cap;
  }
  size_t i = name_hash(name) & (r->capseen - 1);
  while (r->seen[i]) i = (i + 1) & (r->capseen - 1);
  r->seen[i] = name;
  r->nseen++;
  return 0;
}

int ds_recv_file_mark_seen(ds_recv_file *r, const char *name) {
  if (seen_has(r, name)) return 0;
  char *copy = strdup(name);
  if (!copy) return -ENOMEM;
  if (seen_put(r, copy)) {
    free(copy);
    return -ENOMEM;
  }
  return 0;
}

int ds_recv_file_resume(ds_recv_file *r, const char *name, uint64_t offset) {
  char *copy = strdup(name);
  if (!copy || ds_recv_file_mark_seen(r, name) != 0) {
    free(copy);
    return -ENOMEM;
  }
  const char *owned = NULL; /* the seen set's copy: pending names must outlive the call */
  for (size_t i = name_hash(name) & (r->capseen - 1); r->seen[i]; i = (i + 1) & (r->capseen - 1))
    if (strcmp(r->seen[i], name) == 0) owned = r->seen[i];
  if (r->npending == r->cappending) {
    size_t cap = r->cappending ? r->cappending * 2 : 16;
    const char **grown = realloc(r->pending, cap * sizeof *grown);
    if (!grown) {
      free(copy);
      return -ENOMEM;
    }
    r->pending = grown;
    r->cappending = cap;
  }
  /* First in line: it was being read when the job stopped. */
  memmove(r->pending + r->pending_head + 1, r->pending + r->pending_head,
          (r->npending - r->pending_head) * sizeof *r->pending);
  r->pending[r->pending_head] = owned;
  r->npending++;
  free(r->resume_name);
  r->resume_name = copy;
  r->resume_off = offset;
  return 0;
}

/* Starts the record of the current file in the parts list. -1 when memory is short (the
 * batch log then misses the file: it is read again after a crash, never lost). */
static int part_open(ds_recv_file *r) {
  if (r->nparts == r->capparts) {
    size_t cap = r->capparts ? r->capparts * 2 : 8;
    ds_recv_file_part *grown = realloc(r->parts, cap * sizeof *grown);
    if (!grown) return -1;
    r->parts = grown;
    r->capparts = cap;
  }
  r->parts[r->nparts++] = (ds_recv_file_part){r->cur_name, r->cur_end, r->cur_end, 0};
  return 0;
}

static ds_recv_file_part *part_current(ds_recv_file *r) {
  if (!r->nparts || r->parts[r->nparts - 1].name != r->cur_name) return NULL;
  return &r->parts[r->nparts - 1];
}

void ds_recv_file_take_parts(ds_recv_file *r, void (*fn)(const ds_recv_file_part *p, void *ud),
                             void *ud) {
  for (size_t i = 0; i < r->nparts; i++)
    if (r->parts[i].end > r->parts[i].start || r->parts[i].done) fn(&r->parts[i], ud);
  r->nparts = 0;
  if (r->cur_fd >= 0) part_open(r); /* the file being read goes on in the next batch */
}

int64_t ds_recv_file_read_range(const char *path, uint64_t start, uint64_t end, size_t max_line,
                                ds_store *store, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
    return -errno;
  }
  ds_recv_lines lines;
  ds_recv_lines_init(&lines, store, max_line, NULL, NULL);
  char buf[64 * 1024];
  uint64_t off = start;
  int rc = 0;
  while (off < end) {
    size_t want = end - off < sizeof buf ? (size_t)(end - off) : sizeof buf;
    ssize_t n = pread(fd, buf, want, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      rc = n < 0 ? -errno : -EIO;
      snprintf(err, errlen, "cannot read bytes %" PRIu64 "-%" PRIu64 " of '%s': %s", start, end,
               path, n < 0 ? strerror(errno) : "the file is shorter than when it was read");
      break;
    }
    if (ds_recv_lines_feed(&lines, buf, (size_t)n) < 0) rc = -ENOMEM;
    off += (uint64_t)n;
  }
  if (rc == 0 && ds_recv_lines_flush(&lines) < 0) rc = -ENOMEM;
  if (rc == -ENOMEM) snprintf(err, errlen, "out of memory reading '%s'", path);
  close(fd);
  ds_recv_lines_free(&lines);
  return rc < 0 ? rc : (int64_t)lines.records;
}

void ds_recv_file_list_seen(ds_recv_file *r, void (*fn)(const char *name, void *ud), void *ud) {
  for (size_t i = 0; i < r->capseen; i++)
    if (r->seen[i]) fn(r->seen[i], ud);
}

/* ---- reading ---- */

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Names under which tools write files that are not finished yet. */
static int eligible(const char *name) {
  return name[0] != '.' && name[0] != '_' && !ends_with(name, ".tmp") &&
         !ends_with(name, ".COPYING");
}

static void file_failed(ds_recv_file *r, const char *name, const char *why) {
  r->st.errors++;
  snprintf(r->st.last_error, sizeof r->st.last_error, "cannot read '%s': %s", name, why);
  ds_log(DS_LOG_WARN, "text_file_stream %s: cannot read '%s': %s; skipped", r->dir, name, why);
}

static void on_skip(void *ud, uint64_t lineno) {
  ds_recv_file *r = ud;
  ds_log(DS_LOG_WARN, "text_file_stream %s: '%s' line %" PRIu64 " is longer than %zu bytes; skipped",
         r->dir, r->cur_name, lineno - r->line_base, r->lines.max_line);
}

/* Opens the next file for reading. Returns 0, or -1 when it cannot be read (reported). */
static int open_file(ds_recv_file *r, const char *name) {
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", r->dir, name) >= sizeof path) {
    file_failed(r, name, "path too long");
    return -1;
  }
  /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    file_failed(r, name, strerror(errno));
    return -1;
  }
  struct stat sb;
  const char *why = NULL;
  if (fstat(fd, &sb) < 0) why = strerror(errno);
  else if (S_ISDIR(sb.st_mode)) why = "is a directory";
  else if (!S_ISREG(sb.st_mode)) why = "not a regular file";
  if (why) {
    file_failed(r, name, why);
    close(fd);
    return -1;
  }
  r->cur_name = name;
  r->cur_fd = fd;
  r->cur_oom = 0;
  r->cur_off = r->cur_end = 0;
  if (r->resume_name && strcmp(r->resume_name, name) == 0) {
    if (lseek(fd, (off_t)r->resume_off, SEEK_SET) >= 0) r->cur_off = r->cur_end = r->resume_off;
    free(r->resume_name);
    r->resume_name = NULL;
  }
  r->line_base = r->lines.lines;
  ds_recv_lines_reset(&r->lines);
  part_open(r);
  return 0;
}

static void close_file(ds_recv_file *r) {
  ds_recv_file_part *p = part_current(r);
  if (p) {
    p->end = r->cur_end;
    p->done = 1;
  }
  close(r->cur_fd);
  r->cur_fd = -1;
  r->cur_name = NULL;
  r->st.records = r->lines.records;
  r->st.skipped = r->lines.skipped;
}

/* Reads up to `want` bytes of the current file into the store. Returns 0 (more to read),
 * 1 (the file is done), or -1 (it failed: reported, and closed). */
static int read_chunk(ds_recv_file *r, size_t want) {
  ssize_t n;
  do n = read(r->cur_fd, r->rbuf, want);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    /* Records before the failure stay; a line cut short by it is dropped. */
    file_failed(r, r->cur_name, strerror(errno));
    ds_recv_lines_reset(&r->lines);
    close_file(r);
    return -1;
  }
  if (n == 0) {
    r->cur_end = r->cur_off; /* a last line without '\n' is a record too */
    r->cur_oom |= ds_recv_lines_flush(&r->lines) < 0;
    if (r->cur_oom) file_failed(r, r->cur_name, "out of memory; records lost");
    close_file(r);
    return 1;
  }
  r->st.bytes += (uint64_t)n;
  uint64_t before = r->lines.records;
  r->cur_oom |= ds_recv_lines_feed(&r->lines, r->rbuf, (size_t)n) < 0;
  const char *nl = memrchr(r->rbuf, '\n', (size_t)n);
  if (nl) r->cur_end = r->cur_off + (uint64_t)(nl - r->rbuf) + 1;
  r->cur_off += (uint64_t)n;
  ds_recv_file_part *p = part_current(r);
  if (p) p->end = r->cur_end;
  ds_recv_rate_take(&r->bucket, r->lines.records - before);
  r->st.records = r->lines.records;
  r->st.skipped = r->lines.skipped;
  return 0;
}

static void on_rate_timer(uv_timer_t *t);

/* Reads pending files in order while the rate limit allows; returns the files finished. */
static int pump(ds_recv_file *r) {
  int done = 0;
  for (;;) {
    if (r->cur_fd < 0) {
      if (r->pending_head == r->npending) {
        r->pending_head = r->npending = 0;
        return done;
      }
      if (open_file(r, r->pending[r->pending_head++]) < 0) continue;
    }
    if (ds_recv_rate_available(&r->bucket) < 1) {
      /* Over the limit: the rest waits on disk until the bucket refills. */
      if (!r->st.throttled && r->rate_timer_open) {
        r->st.throttled = 1;
        r->st.pauses++;
        uv_timer_start(&r->rate_timer, on_rate_timer, ds_recv_rate_wait_ms(&r->bucket), 0);
      }
      return done;
    }
    size_t want = ds_recv_rate_read_size(&r->bucket, r->st.bytes, r->lines.records, sizeof r->rbuf);
    if (read_chunk(r, want) == 1) done++;
  }
}

static void on_rate_timer(uv_timer_t *t) {
  ds_recv_file *r = t->data;
  r->st.throttled = 0;
  if (!r->stopping) pump(r);
}

void ds_recv_file_set_rate(ds_recv_file *r, double rate) {
  ds_recv_rate_set(&r->bucket, rate);
  r->st.rate_limit = r->bucket.rate;
  if (!r->st.throttled) return;
  uv_timer_stop(&r->rate_timer);
  r->st.throttled = 0;
  pump(r); /* reads now if the new limit allows, else waits again */
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the directory; returns 0 and the eligible names not seen yet (sorted), or -errno. */
static int list_new(ds_recv_file *r, char ***out, size_t *nout) {
  DIR *d = opendir(r->dir);
  if (!d) return -errno;
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!eligible(e->d_name) || seen_has(r, e->d_name)) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      char **grown = realloc(names, cap * sizeof *names);
      if (!grown) {
        rc = -ENOMEM;
        break;
      }
      names = grown;
    }
    if (!(names[n] = strdup(e->d_name))) {
      rc = -ENOMEM;
      break;
    }
    n++;
  }
  closedir(d);
  if (rc) {
    while (n) free(names[--n]);
    free(names);
    return rc;
  }
  if (n) qsort(names, n, sizeof *names, by_name);
  *out = names;
  *nout = n;
  return 0;
}

int ds_recv_file_scan(ds_recv_file *r) {
  char **names;
  size_t n;
  int rc = list_new(r, &names, &n);
  if (rc < 0) {
    snprintf(r->st.last_error, sizeof r->st.last_error, "cannot list directory: %s",
             strerror(-rc));
    /* Logged once per outage: the rescan timer repeats this every RESCAN_MS. */
    if (!r->list_failed)
      ds_log(DS_LOG_WARN, "text_file_stream %s: cannot list directory: %s; will retry", r->dir,
             strerror(-rc));
    r->list_failed = 1;
    return rc;
  }
  if (r->list_failed) ds_log(DS_LOG_WARN, "text_file_stream %s: directory readable again", r->dir);
  r->list_failed = 0;
  if (r->npending + n > r->cappending) {
    size_t cap = r->cappending ? r->cappending : 16;
    while (cap < r->npending + n) cap *= 2;
    const char **grown = realloc(r->pending, cap * sizeof *grown);
    if (!grown) { /* nothing remembered, so nothing lost: the next scan tries again */
      while (n) free(names[--n]);
      free(names);
      return -ENOMEM;
    }
    r->pending = grown;
    r->cappending = cap;
  }
  for (size_t i = 0; i < n; i++) {
    /* Remember the name before reading, so a failure is never retried. */
    if (rc == 0 && seen_put(r, names[i]) == 0) {
      r->pending[r->npending++] = names[i];
    } else {
      rc = -ENOMEM; /* not remembered, so not read: the next scan tries again */
      free(names[i]);
    }
  }
  free(names);
  int nread = pump(r);
  return rc < 0 ? rc : nread;
}

/* ---- handles ---- */

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status) {
  ds_recv_file *r = h->data;
  (void)events;
  /* Writes to temp files and removals of old names fire events too: only an unknown
   * eligible name (or an overflow, which has no name) is worth a scan. */
  if (status < 0 || (filename && (!eligible(filename) || seen_has(r, filename)))) return;
  ds_recv_file_scan(r);
}

static void on_tick(uv_timer_t *t) { ds_recv_file_scan(t->data); }

static void maybe_finish(ds_recv_file *r) {
  if (!r->stopping || r->ev_open || r->timer_open || r->rate_timer_open) return;
  void (*cb)(void *) = r->on_closed;
  void *ud = r->ud;
  for (size_t i = 0; i < r->capseen; i++) free(r->seen[i]);
  free(r->seen);
  free(r->pending);
  free(r->parts);
  free(r->resume_name);
  ds_recv_lines_free(&r->lines);
  free(r->dir);
  free(r);
  if (cb) cb(ud);
}

static void on_ev_closed(uv_handle_t *h) {
  ds_recv_file *r = h->data;
  r->ev_open = 0;
  maybe_finish(r);
}

static void on_timer_closed(uv_handle_t *h) {
  ds_recv_file *r = h->data;
  if (h == (uv_handle_t *)&r->rate_timer) r->rate_timer_open = 0;
  else r->timer_open = 0;
  maybe_finish(r);
}

int ds_recv_file_start(uv_loop_t *loop, const char *dir, ds_store *store,
                       const ds_recv_file_opts *opts, ds_recv_file **out, char *err,
                       size_t errlen) {
  struct stat sb;
  if (!dir || !*dir) {
    snprintf(err, errlen, "text_file_stream: directory name is empty");
    return -EINVAL;
  }
  if (stat(dir, &sb) < 0) {
    int e = errno;
    if (e == ENOENT) snprintf(err, errlen, "text_file_stream: directory '%s' does not exist", dir);
    else snprintf(err, errlen, "text_file_stream: cannot access directory '%s': %s", dir, strerror(e));
    return -e;
  }
  if (!S_ISDIR(sb.st_mode)) {
    snprintf(err, errlen, "text_file_stream: '%s' is not a directory", dir);
    return -ENOTDIR;
  }
  ds_recv_file *r = calloc(1, sizeof *r);
  if (!r || !(r->dir = strdup(dir))) {
    free(r);
    snprintf(err, errlen, "text_file_stream %s: out of memory", dir);
    return -ENOMEM;
  }
  r->loop = loop;
  r->cur_fd = -1;
  ds_recv_lines_init(&r->lines, store, opts ? opts->max_line : 0, on_skip, r);

  /* List once now: it proves the directory is readable, and with new_files_only the
   * files already there are marked seen so they are never read. */
  char **names;
  size_t n;
  int rc = list_new(r, &names, &n);
  if (rc < 0) {
    snprintf(err, errlen, "text_file_stream: cannot list directory '%s': %s", dir, strerror(-rc));
    free(r->dir);
    free(r);
    return rc;
  }
  int new_only = opts ? opts->new_files_only : 1;
  for (size_t i = 0; i < n; i++) {
    if (new_only && rc == 0 && (rc = seen_put(r, names[i])) == 0) continue;
    free(names[i]);
  }
  free(names);
  if (rc < 0) {
    for (size_t i = 0; i < r->capseen; i++) free(r->seen[i]);
    free(r->seen);
    free(r->dir);
    free(r);
    snprintf(err, errlen, "text_file_stream %s: out of memory", dir);
    return rc;
  }

  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  r->timer_open = 1;
  uv_timer_start(&r->timer, on_tick, RESCAN_MS, RESCAN_MS);
  uv_timer_init(loop, &r->rate_timer);
  r->rate_timer.data = r;
  r->rate_timer_open = 1;
  if (opts && opts->max_rate > 0) ds_recv_file_set_rate(r, opts->max_rate);
  uv_fs_event_init(loop, &r->ev);
  r->ev.data = r;
  r->ev_open = 1;
  rc = uv_fs_event_start(&r->ev, on_fs_event, dir, 0);
  if (rc < 0) /* e.g. out of inotify watches: the rescan timer still finds every file */
    ds_log(DS_LOG_INFO, "text_file_stream %s: cannot watch directory (%s); rescanning every %d ms",
           dir, uv_strerror(rc), RESCAN_MS);
  r->st.connected = 1;
  *out = r;
  return 0;
}

void ds_recv_file_stats(ds_recv_file *r, ds_recv_stats *st) { *st = r->st; }

void ds_recv_file_stop(ds_recv_file *r, void (*on_closed)(void *ud), void *ud) {
  if (r->stopping) return;
  r->stopping = 1;
  r->on_closed = on_closed;
  r->ud = ud;
  /* Files already found are input: read what the rate limit held back now, so stopping
   * (a graceful stop seals it into a last batch) loses nothing. */
  ds_recv_rate_set(&r->bucket, 0);
  pump(r);
  r->st.rate_limit = 0;
  r->st.throttled = 0;
  r->st.connected = 0;
  uv_close((uv_handle_t *)&r->ev, on_ev_closed);
  uv_close((uv_handle_t *)&r->timer, on_timer_closed);
  uv_close((uv_handle_t *)&r->rate_timer, on_timer_closed);
}

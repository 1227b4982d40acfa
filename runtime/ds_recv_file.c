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
#include <time.h>
#include <unistd.h>

#include "ds_hash.h"
#include "ds_log.h"

#define RESCAN_MS 200 /* backstop for events the watch misses (overflow, network mounts) */
#define SOON_MS 10    /* events within this are answered by one listing */

typedef struct name_entry name_entry;

/* A part as kept until taken: its own copy of the name (the entry may be forgotten first). */
typedef struct file_part {
  ds_recv_file_part p;
  uint64_t seq; /* which opening of a file it belongs to */
} file_part;

struct ds_recv_file {
  uv_loop_t *loop;
  char *dir;
  ds_recv_lines lines;
  name_entry *cur;       /* file being read, NULL if none */
  const char *cur_name;  /* its name (cur->name) */
  uint64_t cur_seq;      /* counts openings: ties parts to the file being read */
  int cur_fd;            /* its descriptor, -1 if none */
  int cur_oom;           /* records of the current file were lost for lack of memory */
  uint64_t line_base;    /* lines.lines when the current file started */
  uint64_t cur_off;      /* bytes of the current file read so far */
  uint64_t cur_end;      /* where its last finished line ends: the store holds it up to here */
  file_part *parts;      /* files that added records since the last take (take_parts) */
  size_t nparts, capparts;
  char *resume_name;     /* a file to read from resume_off on (ds_recv_file_resume) */
  uint64_t resume_off;
  name_entry **pending;  /* files found and not read yet, oldest first (busy entries) */
  size_t pending_head, npending, cappending;
  ds_recv_rate bucket;   /* max records per second; reading pauses when it is empty */
  uv_timer_t rate_timer; /* resumes reading once the bucket holds a record again */
  int rate_timer_open;
  uv_fs_event_t ev;
  int ev_open;
  uv_timer_t timer;
  int timer_open;
  uv_timer_t soon;       /* a listing asked for by watch events */
  int soon_open;
  uint64_t listed_ms;    /* uv_now() of the last listing */
  name_entry **seen;     /* remembered names, open addressing, NULL = empty slot */
  size_t nseen, capseen;
  size_t kept;           /* names kept by the last sweep */
  int64_t threshold;     /* ms since the epoch: a ctime below it is not new */
  int64_t swept_at;      /* the threshold at the last sweep */
  int64_t remember_ms;
  int64_t (*now_ms)(void);
  uint64_t gen;          /* counts listings */
  uint64_t forgotten, sweep_visits, stats_done;
  int list_failed; /* the last listing failed and was logged */
  ds_recv_stats st;
  int stopping;
  void (*on_closed)(void *ud);
  void *ud;
  char rbuf[64 * 1024];
};

/* ---- remembered names ---- */

/* A remembered name. Entries are separate allocations, so the table can grow and be swept
 * while the pending list and the file being read point at them. */
typedef struct name_entry {
  uint64_t hash;
  int64_t ctime_ms; /* st_ctim when listed (or restored), ms since the epoch */
  uint64_t ino;     /* d_ino when last listed, 0 when not listed yet */
  uint64_t gen;     /* the last listing that found it */
  int busy;         /* pending or being read: never forgotten, and it holds the threshold */
  char name[];
} name_entry;

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t ctime_ms_of(const struct stat *sb) {
  return (int64_t)sb->st_ctim.tv_sec * 1000 + sb->st_ctim.tv_nsec / 1000000;
}

static uint64_t name_hash(const char *s) { return ds_hash_bytes64(s, strlen(s)); }

/* Within the window, or held by reading: a listing does not take the name as new. */
static int entry_live(const ds_recv_file *r, const name_entry *e) {
  return e->busy || e->ctime_ms >= r->threshold;
}

static name_entry *set_find(ds_recv_file *r, const char *name, uint64_t h) {
  if (!r->capseen) return NULL;
  for (size_t i = h & (r->capseen - 1); r->seen[i]; i = (i + 1) & (r->capseen - 1))
    if (r->seen[i]->hash == h && strcmp(r->seen[i]->name, name) == 0) return r->seen[i];
  return NULL;
}

static void slot_put(name_entry **slots, size_t cap, name_entry *e) {
  size_t i = e->hash & (cap - 1);
  while (slots[i]) i = (i + 1) & (cap - 1);
  slots[i] = e;
}

/* Adds an entry not in the set yet. 0 or -ENOMEM (the entry is then the caller's). */
static int set_put(ds_recv_file *r, name_entry *e) {
  if ((r->nseen + 1) * 2 > r->capseen) {
    size_t cap = r->capseen ? r->capseen * 2 : 64;
    name_entry **slots = calloc(cap, sizeof *slots);
    if (!slots) return -ENOMEM;
    for (size_t j = 0; j < r->capseen; j++)
      if (r->seen[j]) slot_put(slots, cap, r->seen[j]);
    free(r->seen);
    r->seen = slots;
    r->capseen = cap;
  }
  slot_put(r->seen, r->capseen, e);
  r->nseen++;
  return 0;
}

static name_entry *entry_new(const char *name, uint64_t h, int64_t ctime_ms) {
  size_t len = strlen(name);
  name_entry *e = malloc(sizeof *e + len + 1);
  if (!e) return NULL;
  *e = (name_entry){.hash = h, .ctime_ms = ctime_ms};
  memcpy(e->name, name, len + 1);
  return e;
}

/* The entry for `name`, added with ctime_ms when missing; NULL when memory is short. */
static name_entry *set_get(ds_recv_file *r, const char *name, int64_t ctime_ms) {
  uint64_t h = name_hash(name);
  name_entry *e = set_find(r, name, h);
  if (e) return e;
  if (!(e = entry_new(name, h, ctime_ms))) return NULL;
  if (set_put(r, e) < 0) {
    free(e);
    return NULL;
  }
  return e;
}

/* Forgets the names outside the window whose file the last listing did not find (an old
 * file still there stays, so the next listing knows it without a stat). Rebuilds the table
 * at the size of what is kept. Run after a listing, when enough may be forgotten to pay for
 * the walk: the table doubled since the last sweep, or the threshold moved a whole window. */
static void sweep(ds_recv_file *r) {
  if (r->nseen < 2 * r->kept + 64 && r->threshold - r->swept_at < r->remember_ms) return;
  size_t keep = 0;
  for (size_t i = 0; i < r->capseen; i++) {
    name_entry *e = r->seen[i];
    if (e && (entry_live(r, e) || e->gen == r->gen)) keep++;
  }
  size_t cap = 64;
  while (cap < keep * 2 + 2) cap *= 2;
  name_entry **slots = calloc(cap, sizeof *slots);
  if (!slots) return; /* forgetting waits: remembering longer loses nothing */
  for (size_t i = 0; i < r->capseen; i++) {
    name_entry *e = r->seen[i];
    if (!e) continue;
    if (entry_live(r, e) || e->gen == r->gen) {
      slot_put(slots, cap, e);
    } else {
      free(e);
      r->forgotten++;
    }
  }
  r->sweep_visits += 2 * r->capseen;
  free(r->seen);
  r->seen = slots;
  r->capseen = cap;
  r->nseen = r->kept = keep;
  r->swept_at = r->threshold;
}

int64_t ds_recv_file_threshold(ds_recv_file *r) { return r->threshold; }

void ds_recv_file_set_threshold(ds_recv_file *r, int64_t threshold_ms) {
  if (threshold_ms > r->threshold) r->threshold = threshold_ms;
}

void ds_recv_file_counts_get(ds_recv_file *r, ds_recv_file_counts *c) {
  *c = (ds_recv_file_counts){r->nseen, r->forgotten, r->sweep_visits, r->stats_done, r->gen};
}

/* The ctime of dir/name without following a symlink (a link moved in arrives then). */
static int stat_ctime(ds_recv_file *r, const char *name, int64_t *ctime_ms, uint64_t *ino) {
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", r->dir, name) >= sizeof path)
    return -ENAMETOOLONG;
  struct stat sb;
  if (lstat(path, &sb) < 0) return -errno;
  *ctime_ms = ctime_ms_of(&sb);
  if (ino) *ino = (uint64_t)sb.st_ino;
  return 0;
}

int ds_recv_file_mark_seen(ds_recv_file *r, const char *name, int64_t *ctime_ms) {
  if (*ctime_ms < 0) {
    int rc = stat_ctime(r, name, ctime_ms, NULL);
    if (rc == -ENOENT) return rc;
    if (rc < 0) *ctime_ms = r->now_ms(); /* cannot tell: remembered for a whole window */
  }
  name_entry *e = set_get(r, name, *ctime_ms);
  if (!e) return -ENOMEM;
  if (e->ctime_ms < *ctime_ms) e->ctime_ms = *ctime_ms;
  return 0;
}

static int pending_reserve(ds_recv_file *r, size_t more) {
  if (r->npending + more <= r->cappending) return 0;
  size_t cap = r->cappending ? r->cappending : 16;
  while (cap < r->npending + more) cap *= 2;
  name_entry **grown = realloc(r->pending, cap * sizeof *grown);
  if (!grown) return -ENOMEM;
  r->pending = grown;
  r->cappending = cap;
  return 0;
}

int ds_recv_file_resume(ds_recv_file *r, const char *name, uint64_t offset, int64_t ctime_ms) {
  if (ctime_ms < 0 && stat_ctime(r, name, &ctime_ms, NULL) < 0)
    ctime_ms = r->now_ms(); /* gone or unreadable: opening it will say so */
  char *copy = strdup(name);
  name_entry *e = copy ? set_get(r, name, ctime_ms) : NULL;
  if (!e || pending_reserve(r, 1) < 0) {
    free(copy);
    return -ENOMEM;
  }
  if (e->ctime_ms < ctime_ms) e->ctime_ms = ctime_ms;
  e->busy = 1;
  /* First in line: it was being read when the job stopped. */
  memmove(r->pending + r->pending_head + 1, r->pending + r->pending_head,
          (r->npending - r->pending_head) * sizeof *r->pending);
  r->pending[r->pending_head] = e;
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
    file_part *grown = realloc(r->parts, cap * sizeof *grown);
    if (!grown) return -1;
    r->parts = grown;
    r->capparts = cap;
  }
  char *name = strdup(r->cur_name);
  if (!name) return -1;
  r->parts[r->nparts++] = (file_part){
      {name, r->cur_end, r->cur_end, 0, r->cur->ctime_ms}, r->cur_seq};
  return 0;
}

static ds_recv_file_part *part_current(ds_recv_file *r) {
  if (!r->nparts || r->cur_fd < 0 || r->parts[r->nparts - 1].seq != r->cur_seq) return NULL;
  return &r->parts[r->nparts - 1].p;
}

void ds_recv_file_take_parts(ds_recv_file *r, void (*fn)(const ds_recv_file_part *p, void *ud),
                             void *ud) {
  for (size_t i = 0; i < r->nparts; i++) {
    ds_recv_file_part *p = &r->parts[i].p;
    if (p->end > p->start || p->done) fn(p, ud);
    free((char *)p->name);
  }
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

void ds_recv_file_list_remembered(ds_recv_file *r,
                                  void (*fn)(const char *name, int64_t ctime_ms, void *ud),
                                  void *ud) {
  for (size_t i = 0; i < r->capseen; i++)
    if (r->seen[i] && entry_live(r, r->seen[i])) fn(r->seen[i]->name, r->seen[i]->ctime_ms, ud);
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

/* Opens the next file for reading. Returns 0, or -1 when it cannot be read (reported; the
 * entry stops being busy, and is remembered for the window so it is not retried). */
static int open_file(ds_recv_file *r, name_entry *e) {
  const char *name = e->name;
  e->busy = 0;
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
  e->busy = 1;
  r->cur = e;
  r->cur_name = name;
  r->cur_seq++;
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
  ds_log(DS_LOG_DEBUG, "text_file_stream %s: reading '%s' (%lld bytes, from byte %llu)", r->dir, name,
         (long long)sb.st_size, (unsigned long long)r->cur_off);
  return 0;
}

static void close_file(ds_recv_file *r) {
  ds_log(DS_LOG_DEBUG, "text_file_stream %s: read '%s' to its end (byte %llu)", r->dir, r->cur_name,
         (unsigned long long)r->cur_end);
  ds_recv_file_part *p = part_current(r);
  if (p) {
    p->end = r->cur_end;
    p->done = 1;
  }
  close(r->cur_fd);
  r->cur_fd = -1;
  r->cur->busy = 0;
  r->cur = NULL;
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

/* A file a listing found new. */
typedef struct found {
  char *name;
  int64_t ctime_ms;
  uint64_t ino;
} found;

static int by_name(const void *a, const void *b) {
  return strcmp(((const found *)a)->name, ((const found *)b)->name);
}

static void free_found(found *f, size_t n) {
  while (n) free(f[--n].name);
  free(f);
}

/* Lists the directory; returns 0 and the new files in name order, or -errno. *listed_at is
 * the wall time before the listing: a file it did not find arrived after that. An old file
 * is remembered as old with its inode, so that the next listings, finding it again with the
 * same inode, need no stat. */
static int list_new(ds_recv_file *r, found **out, size_t *nout, int64_t *listed_at) {
  *listed_at = r->now_ms();
  uv_update_time(r->loop);
  r->listed_ms = uv_now(r->loop);
  DIR *d = opendir(r->dir);
  if (!d) return -errno;
  uint64_t gen = ++r->gen;
  found *names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!eligible(de->d_name)) continue;
    name_entry *e = set_find(r, de->d_name, name_hash(de->d_name));
    if (e) {
      /* Found by the previous listing too, under the same inode: not replaced since. */
      int same = e->ino == (uint64_t)de->d_ino && e->gen + 1 == gen;
      e->gen = gen;
      if (entry_live(r, e)) {
        e->ino = (uint64_t)de->d_ino;
        continue;
      }
      if (same) continue;
    }
    struct stat sb;
    r->stats_done++;
    if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
      continue; /* gone since readdir: a file that comes back is listed again */
    int64_t ctime_ms = ctime_ms_of(&sb);
    if (ctime_ms < r->threshold) {
      if (!e && (e = entry_new(de->d_name, name_hash(de->d_name), ctime_ms)) &&
          set_put(r, e) < 0) {
        free(e); /* not remembered as old: the next listing stats it again */
        continue;
      }
      if (e) {
        e->ctime_ms = ctime_ms;
        e->ino = (uint64_t)sb.st_ino;
        e->gen = gen;
      }
      continue;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      found *grown = realloc(names, cap * sizeof *names);
      if (!grown) {
        rc = -ENOMEM;
        break;
      }
      names = grown;
    }
    if (!(names[n].name = strdup(de->d_name))) {
      rc = -ENOMEM;
      break;
    }
    names[n].ctime_ms = ctime_ms;
    names[n++].ino = (uint64_t)sb.st_ino;
  }
  closedir(d);
  if (rc) {
    free_found(names, n);
    return rc;
  }
  if (n) qsort(names, n, sizeof *names, by_name);
  *out = names;
  *nout = n;
  return 0;
}

/* The entry of a file found new (an old entry of its name is reused); NULL for lack of
 * memory. */
static name_entry *remember_found(ds_recv_file *r, const found *f) {
  name_entry *e = set_get(r, f->name, f->ctime_ms);
  if (!e) return NULL;
  e->ctime_ms = f->ctime_ms;
  e->ino = f->ino;
  e->gen = r->gen;
  return e;
}

/* After a listing at wall time `at` that remembered everything it found: what arrived
 * before at - remember is old, except files found and not read whole yet (a checkpoint taken
 * now must still see them as new after a restart). */
static void advance(ds_recv_file *r, int64_t at) {
  int64_t t = at - r->remember_ms;
  for (size_t i = r->pending_head; i < r->npending; i++)
    if (r->pending[i]->ctime_ms < t) t = r->pending[i]->ctime_ms;
  if (r->cur && r->cur->ctime_ms < t) t = r->cur->ctime_ms;
  if (t > r->threshold) r->threshold = t;
}

int ds_recv_file_scan(ds_recv_file *r) {
  found *names;
  size_t n;
  int64_t at;
  int rc = list_new(r, &names, &n, &at);
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
  if (pending_reserve(r, n) < 0) { /* nothing remembered, so nothing lost: the next scan tries again */
    free_found(names, n);
    return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    /* Remember the name before reading, so a failure is never retried. */
    name_entry *e = remember_found(r, &names[i]);
    if (e) {
      e->busy = 1;
      r->pending[r->npending++] = e;
    } else {
      rc = -ENOMEM; /* not remembered, so not read: the next scan tries again */
    }
  }
  free_found(names, n);
  if (rc == 0) { /* else the threshold stays, so the next scan still finds what was missed */
    advance(r, at);
    sweep(r);
  }
  int nread = pump(r);
  return rc < 0 ? rc : nread;
}

/* ---- handles ---- */

static void on_soon(uv_timer_t *t) { ds_recv_file_scan(t->data); }

/* The rescan backstop: not needed right after a listing (seals list, at short batch
 * intervals many times per RESCAN_MS, and a big directory costs per listing). */
static void on_tick(uv_timer_t *t) {
  ds_recv_file *r = t->data;
  if (uv_now(r->loop) - r->listed_ms < RESCAN_MS / 2) return;
  ds_recv_file_scan(r);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status) {
  ds_recv_file *r = h->data;
  (void)events;
  /* Writes to temp files and removals of old names fire events too: only an eligible name
   * outside the window (or an overflow, which has no name) is worth a scan. */
  if (status < 0) return;
  if (filename) {
    if (!eligible(filename)) return;
    name_entry *e = set_find(r, filename, name_hash(filename));
    if (e && entry_live(r, e)) return;
    /* An old name: the file may have been replaced, even by one that got the same inode
     * number, so the next listing stats it. */
    if (e) e->gen = 0;
  }
  /* One listing for a burst of events, not one each: moving or deleting 100 000 old files
   * queues as many events, and each listing reads the whole directory. */
  if (!uv_is_active((uv_handle_t *)&r->soon)) uv_timer_start(&r->soon, on_soon, SOON_MS, 0);
}


static void maybe_finish(ds_recv_file *r) {
  if (!r->stopping || r->ev_open || r->timer_open || r->soon_open || r->rate_timer_open) return;
  void (*cb)(void *) = r->on_closed;
  void *ud = r->ud;
  for (size_t i = 0; i < r->capseen; i++) free(r->seen[i]);
  free(r->seen);
  free(r->pending);
  for (size_t i = 0; i < r->nparts; i++) free((char *)r->parts[i].p.name);
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
  else if (h == (uv_handle_t *)&r->soon) r->soon_open = 0;
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
  r->threshold = INT64_MIN;
  r->swept_at = INT64_MIN / 2; /* no sweep before the threshold has moved a whole window */
  r->remember_ms = opts && opts->remember_ms > 0 ? opts->remember_ms : DS_RECV_FILE_REMEMBER_MS;
  r->now_ms = opts && opts->now_ms ? opts->now_ms : wall_ms;
  ds_recv_lines_init(&r->lines, store, opts ? opts->max_line : 0, on_skip, r);

  /* List once now: it proves the directory is readable, and with new_files_only the files
   * already there are remembered (those of the window) so they are never read. Without it
   * the listing only proves the directory readable: names restored from a checkpoint come
   * before the first scan. */
  int new_only = opts ? opts->new_files_only : 1;
  found *names = NULL;
  size_t n = 0;
  int64_t at = 0;
  int rc = 0;
  if (new_only) {
    rc = list_new(r, &names, &n, &at);
  } else {
    DIR *d = opendir(dir);
    if (d) closedir(d);
    else rc = -errno;
  }
  if (rc < 0) {
    snprintf(err, errlen, "text_file_stream: cannot list directory '%s': %s", dir, strerror(-rc));
    free(r->dir);
    free(r);
    return rc;
  }
  for (size_t i = 0; i < n && rc == 0; i++)
    if (!remember_found(r, &names[i])) rc = -ENOMEM;
  free_found(names, n);
  if (rc < 0) {
    for (size_t i = 0; i < r->capseen; i++) free(r->seen[i]);
    free(r->seen);
    free(r->dir);
    free(r);
    snprintf(err, errlen, "text_file_stream %s: out of memory", dir);
    return rc;
  }
  if (new_only) advance(r, at);

  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  r->timer_open = 1;
  uv_timer_start(&r->timer, on_tick, RESCAN_MS, RESCAN_MS);
  uv_timer_init(loop, &r->soon);
  r->soon.data = r;
  r->soon_open = 1;
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
  uv_close((uv_handle_t *)&r->soon, on_timer_closed);
  uv_close((uv_handle_t *)&r->rate_timer, on_timer_closed);
}

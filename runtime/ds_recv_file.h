/* ds_recv_file.h - directory source: files moved into a directory are read once, as lines.
 *
 * Like Spark's textFileStream, a file is input once it appears in the directory, so it should
 * be moved in whole (written elsewhere or under an ignored name, then renamed). Names that
 * start with '.' or '_' or end in ".tmp" or ".COPYING" are never read. The receiver owns a
 * uv_fs_event watch, a rescan timer and the names it remembers. It runs on the loop's thread
 * and reads files synchronously there. A file that cannot be read is logged, counted and not
 * retried.
 *
 * What is new (Spark's FileInputDStream with its minRememberDuration, on the inode change
 * time): a listing at wall time L finds a file new when its name is not remembered and its
 * st_ctim is at least the threshold. Afterwards the threshold advances to L - remember (never
 * past a file found and not read whole yet), and names whose ctime is below it are forgotten:
 * such a file can never be new again unless its ctime changes. ctime, not mtime: a rename,
 * cp and a write set it to now, while `mv` and `cp -p` keep an old mtime. The threshold moves
 * only after a listing, so a restarted receiver given the old threshold and names (a
 * checkpoint) reads every file that arrived while it was down. Memory: the names of the
 * window, plus the old files still in the directory (kept with their inode number so that a
 * listing need not stat them again).
 *
 * The store belongs to the caller and must stay alive until on_closed has run. */
#ifndef DS_RECV_FILE_H
#define DS_RECV_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ds_recv.h"
#include "ds_store.h"

typedef struct ds_recv_file ds_recv_file;

#define DS_RECV_FILE_REMEMBER_MS 60000 /* Spark's spark.streaming.fileStream.minRememberDuration */
#define DS_RECV_FILE_REMEMBER_MIN_MS 1000 /* well above the lag of the kernel's coarse ctime clock */

/* Passing NULL opts means { .new_files_only = 1 } and zeros. */
typedef struct ds_recv_file_opts {
  int new_files_only;  /* 1: files present at start are seen but not read */
  size_t max_line;     /* longest line kept ('\r' excluded); 0 means DS_RECORD_MAX */
  double max_rate;     /* records per second read at most; 0 means no limit */
  int64_t remember_ms; /* the window of remembered names; 0 means DS_RECV_FILE_REMEMBER_MS */
  int64_t (*now_ms)(void); /* wall clock, ms since the epoch; NULL: CLOCK_REALTIME (tests) */
} ds_recv_file_opts;

/* Starts watching `dir`. Returns 0 and sets *out, or a negative errno with a message in err
 * (-ENOENT "directory '/x' does not exist", -ENOTDIR, -EACCES, -ENOMEM). */
int ds_recv_file_start(uv_loop_t *loop, const char *dir, ds_store *store,
                       const ds_recv_file_opts *opts, ds_recv_file **out, char *err,
                       size_t errlen);

/* Reads every file not seen before, now, in name order, so that a file moved in before a
 * batch boundary lands in that batch. Returns the number of files finished, or a negative
 * errno when the directory cannot be listed (logged once; the periodic rescan keeps trying).
 * Under a rate limit, files are read in chunks while the limit allows and the rest waits
 * on disk (in order) until later. */
int ds_recv_file_scan(ds_recv_file *r);

/* Limits reading to `rate` records per second (0: no limit). Stopping reads what the limit
 * held back, so nothing found is lost. */
void ds_recv_file_set_rate(ds_recv_file *r, double rate);

/* Copies the current statistics into *st. Valid until on_closed of a stop has run. */
void ds_recv_file_stats(ds_recv_file *r, ds_recv_stats *st);

/* The threshold: a file whose ctime (ms since the epoch) is below it is not new. INT64_MIN
 * until the first listing that counts: with new_files_only = 0 everything there is new. */
int64_t ds_recv_file_threshold(ds_recv_file *r);
/* Sets the threshold before the first scan (restoring a checkpoint). It only moves forward. */
void ds_recv_file_set_threshold(ds_recv_file *r, int64_t threshold_ms);

/* Calls fn for every remembered name (read, failed, or present at start) whose ctime is not
 * below the threshold, in no particular order: what a checkpoint must carry. The names
 * belong to the receiver and last only for the call. */
void ds_recv_file_list_remembered(ds_recv_file *r,
                                  void (*fn)(const char *name, int64_t ctime_ms, void *ud),
                                  void *ud);
/* Remembers a name so that it is not read (restoring a checkpoint) while its ctime is within
 * the window. *ctime_ms < 0 means unknown (an old checkpoint): the file's is looked up and
 * stored in *ctime_ms. 0; -ENOENT when unknown and the file is gone (nothing to remember);
 * -ENOMEM. */
int ds_recv_file_mark_seen(ds_recv_file *r, const char *name, int64_t *ctime_ms);
/* Reads `name` from byte `offset` on, before any other file (a file half read by batches
 * that completed before a restart), and remembers it. ctime_ms < 0: looked up. 0 or -ENOMEM. */
int ds_recv_file_resume(ds_recv_file *r, const char *name, uint64_t offset, int64_t ctime_ms);

/* How much the receiver holds and has done to forget: for tests and stats. */
typedef struct ds_recv_file_counts {
  size_t remembered;     /* names held: the window's and old files still in the directory */
  uint64_t forgotten;    /* names dropped so far */
  uint64_t sweep_visits; /* table slots visited by the sweeps that forget (amortized O(1) per
                          * name added or forgotten, however many are held) */
  uint64_t stats_done;   /* files stat'ed by listings (names neither remembered nor known
                          * old with the same inode) */
  uint64_t listings;     /* directory listings */
} ds_recv_file_counts;
void ds_recv_file_counts_get(ds_recv_file *r, ds_recv_file_counts *c);

/* What the store got from one file since the last take: the bytes [start, end) of the file,
 * cut at line ends (a record is in the store exactly when its line ends before `end`);
 * done when the file was read to its end (or failed: the bytes before the failure). */
typedef struct ds_recv_file_part {
  const char *name; /* owned by the receiver: valid during the callback only */
  uint64_t start, end;
  int done;
  int64_t ctime_ms; /* the file's ctime when listed: how long a checkpoint must remember it */
} ds_recv_file_part;

/* Calls fn for every file that added records (or ended) since the last call, in reading
 * order, and starts a new list. Called right after the store is sealed, it names the byte
 * ranges of the files the sealed records came from: what a batch log needs to read the same
 * records again (ds_recv_file_read_range) after a crash. */
void ds_recv_file_take_parts(ds_recv_file *r, void (*fn)(const ds_recv_file_part *p, void *ud),
                             void *ud);

/* Appends the lines of bytes [start, end) of file `path` to `store`, split as the receiver
 * splits them (max_line as in the options; the line cut at `end` is kept, as at the end of a
 * file). Returns the records appended, or a negative errno with a message in err. */
int64_t ds_recv_file_read_range(const char *path, uint64_t start, uint64_t end, size_t max_line,
                                ds_store *store, char *err, size_t errlen);

/* Closes the handles asynchronously, frees the receiver and then calls on_closed(ud)
 * (on_closed may be NULL). A second call does nothing. */
void ds_recv_file_stop(ds_recv_file *r, void (*on_closed)(void *ud), void *ud);

#endif

/* ds_recv_file.h - directory source: files moved into a directory are read once, as lines.
 *
 * Like Spark's textFileStream, a file is input once it appears in the directory, so it should
 * be moved in whole (written elsewhere or under an ignored name, then renamed). Names that
 * start with '.' or '_' or end in ".tmp" or ".COPYING" are never read. The receiver owns a
 * uv_fs_event watch, a rescan timer and the set of names it has seen; each name is handled
 * once, even if another file takes that name later. It runs on the loop's thread and reads
 * files synchronously there. A file that cannot be read is logged, counted and not retried.
 * The store belongs to the caller and must stay alive until on_closed has run. */
#ifndef DS_RECV_FILE_H
#define DS_RECV_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ds_recv.h"
#include "ds_store.h"

typedef struct ds_recv_file ds_recv_file;

/* Passing NULL opts means { .new_files_only = 1, .max_line = 0, .max_rate = 0 }. */
typedef struct ds_recv_file_opts {
  int new_files_only; /* 1: files present at start are seen but not read */
  size_t max_line;    /* longest line kept ('\r' excluded); 0 means DS_RECORD_MAX */
  double max_rate;    /* records per second read at most; 0 means no limit */
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

/* Calls fn for every name seen (read, failed, or present at start), in no particular order;
 * for checkpoints. The names belong to the receiver and last only for the call. */
void ds_recv_file_list_seen(ds_recv_file *r, void (*fn)(const char *name, void *ud), void *ud);
/* Marks a name as seen so it will never be read (restoring a checkpoint). 0 or -ENOMEM. */
int ds_recv_file_mark_seen(ds_recv_file *r, const char *name);
/* Reads `name` from byte `offset` on, before any other file (a file half read by batches
 * that completed before a restart). Marks it seen. 0 or -ENOMEM. */
int ds_recv_file_resume(ds_recv_file *r, const char *name, uint64_t offset);

/* What the store got from one file since the last take: the bytes [start, end) of the file,
 * cut at line ends (a record is in the store exactly when its line ends before `end`);
 * done when the file was read to its end (or failed: the bytes before the failure). */
typedef struct ds_recv_file_part {
  const char *name; /* owned by the receiver's seen set: valid until the receiver is freed */
  uint64_t start, end;
  int done;
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

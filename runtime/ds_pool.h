/* ds_pool.h - the worker pool: N threads, each owning one Lua state, fed by task queues.
 *
 * The pool owns its threads, their Lua states, the queues of tasks not yet run and the
 * registry of shipped closures ("blobs": encoded by the driver, decoded once per worker).
 * A submitted task belongs to the pool until it comes back through `done` on the driver's
 * loop (after it ran, successfully or not); then it belongs to the callback. A task with an
 * affinity (a worker index) runs on that worker; one with a preferred worker runs there unless
 * that worker is busy or gone when another is free; others go to the shared queue, taken by
 * whichever worker is free. Workers never print: a failure is the task's status and error. */
#ifndef DS_POOL_H
#define DS_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ds_task.h"

typedef struct ds_pool ds_pool;
typedef void (*ds_pool_done_cb)(void *ud, ds_task *t);

/* Workers beyond DS_POOL_MAX_WORKERS_PER_CORE per core (or beyond DS_POOL_MAX_WORKERS) are
 * refused at start (the command line's --workers and context{ workers = }): each is a thread
 * with its own Lua state (a few hundred KB at boot, more as it runs), and 30000 of them took a
 * minute and 10 GB before failing. Above DS_POOL_WARN_WORKERS_PER_CORE a warning is logged. */
#define DS_POOL_MAX_WORKERS_PER_CORE 64
#define DS_POOL_MAX_WORKERS 1024
#define DS_POOL_WARN_WORKERS_PER_CORE 4

/* The most workers a machine with `cores` cores may start. */
static inline long ds_pool_max_workers(long cores) {
  long max = (cores < 1 ? 1 : cores) * DS_POOL_MAX_WORKERS_PER_CORE;
  return max > DS_POOL_MAX_WORKERS ? DS_POOL_MAX_WORKERS : max;
}

/* The status of a task given up on: it ran past the task timeout and its worker did not come
 * back when interrupted (a loop in a compiled trace, which checks no hooks, or a C call). The
 * worker is abandoned; the task delivered is a copy (the worker may still be using its own). */
enum { DS_POOL_TASK_LOST = 3 };

typedef struct ds_pool_config {
  int workers;          /* >= 1 */
  size_t worker_memory; /* byte limit of each worker's Lua state; 0 = none */
  const char *package_path;  /* the driver's package.path, so workers resolve modules alike */
  const char *package_cpath;
  const char *boot_module; /* module whose run(task) the worker calls: "dstream.worker" */
  const char *boot_arg;    /* bytes passed to boot_module.boot(pool, index, boot_arg) */
  size_t boot_arg_len;
  double task_timeout_ms; /* 0: none. A task running longer is interrupted (see ds_pool_new) */
} ds_pool_config;

/* A task running on a worker now, for status and stop messages. */
typedef struct ds_pool_running {
  uint64_t id;
  int worker;
  double ms; /* how long it has run */
  int lost;  /* given up on after the task timeout: its worker is abandoned */
  uint64_t progress[4]; /* the task's report (ds_task.progress): {tag, a, b, since_ms} */
} ds_pool_running;

/* Starts the workers and waits until each has built its Lua state and loaded boot_module.
 * Returns 0, or a negative code with the first worker's error in err.
 * With a task timeout, a timer on `loop` watches the running tasks: the thread of one that
 * has run longer gets a signal (SIGRTMIN + 4) whose handler sets a count hook on its state
 * (lua_sethook may be called asynchronously, as LuaJIT's own SIGINT handling does); the hook
 * raises "task timed out" in the task, which fails like any error. Compiled code runs no hooks: a task still
 * running a second later is delivered as failed (DS_POOL_TASK_LOST) and its worker is
 * abandoned (it takes no more tasks; close does not wait for it). */
int ds_pool_new(uv_loop_t *loop, const ds_pool_config *cfg, ds_pool_done_cb done, void *ud,
                ds_pool **out, char *err, size_t errlen);
/* Queues a task. affinity >= 0: it runs on that worker only. Else prefer >= 0: it runs on that
 * worker, or on another one when that one is busy, lost or exited as another worker goes idle
 * (locality: its input is kept in that worker's VM, and any worker can still read the bytes).
 * Both -1: any worker. Returns 0 or -ESHUTDOWN after close began. */
int ds_pool_submit(ds_pool *p, ds_task *t, int affinity, int prefer);
/* Stores a copy of a shipped closure under `id` (ids are the driver's; reuse is refused). */
int ds_pool_put_blob(ds_pool *p, uint32_t id, const void *data, size_t len);
/* For workers (FFI): copies the bytes stored under `id` into buf when they fit in cap;
 * returns their length either way (call again with a buffer that large), or -1 when there is
 * no such blob (never stored, or dropped). A copy, taken under the lock: a blob may be dropped
 * by the driver while a worker reads it. */
int64_t ds_pool_copy_blob(ds_pool *p, uint32_t id, char *buf, size_t cap);
/* The driver lets a blob go (a broadcast destroyed, or unpersisted when free_bytes is 0: the
 * bytes stay for the next use). Either way the id goes into the drops ring, which workers
 * read at the start of each task to forget their decoded copies (ds_pool_blob_drops). */
void ds_pool_drop_blob(ds_pool *p, uint32_t id, int free_bytes);
/* For workers (FFI): how many drops there were so far; with ds_pool_blob_dropped, the id of
 * drop number i (0-based), or -1 when the ring no longer holds it (forget every copy then). */
uint64_t ds_pool_blob_drops(ds_pool *p);
int64_t ds_pool_blob_dropped(ds_pool *p, uint64_t i);
/* The blobs held now and their bytes (for /metrics). */
void ds_pool_blob_stats(ds_pool *p, uint64_t *count, uint64_t *bytes);
int ds_pool_size(ds_pool *p);
/* Whether the calling thread is a pool's worker (its Lua state must not touch the driver's
 * loop: contexts, timers, signals and actions are the driver's). */
int ds_pool_on_worker(void);
/* Tasks queued or running. */
int ds_pool_inflight(ds_pool *p);
/* Lua memory in use by worker i (bytes), for status and metrics. */
size_t ds_pool_worker_memory(ds_pool *p, int i);
/* Fills `out` (up to `max`) with the tasks running now; returns how many there are. */
int ds_pool_running_tasks(ds_pool *p, ds_pool_running *out, int max);
/* Stops the workers after their current task, waits up to wait_ms (< 0: forever) for them to
 * end, drops queued tasks, closes the loop handles. A worker still running a task then (stuck
 * in a loop, or just slow) is abandoned: detached, its state and the pool are left to the
 * process's exit (never freed under it). Returns how many workers were abandoned. The pool is
 * freed once its handles are closed, unless one was. Tasks finished but not yet delivered are
 * freed without a callback. */
int ds_pool_close(ds_pool *p, int wait_ms);

#endif

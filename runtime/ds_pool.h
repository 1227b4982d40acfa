/* ds_pool.h - the worker pool: N threads, each owning one Lua state, fed by task queues.
 *
 * The pool owns its threads, their Lua states, the queues of tasks not yet run and the
 * registry of shipped closures ("blobs": encoded by the driver, decoded once per worker).
 * A submitted task belongs to the pool until it comes back through `done` on the driver's
 * loop (after it ran, successfully or not); then it belongs to the callback. A task with an
 * affinity (a worker index) runs on that worker; others go to the shared queue, taken by
 * whichever worker is free. Workers never print: a failure is the task's status and error. */
#ifndef DS_POOL_H
#define DS_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ds_task.h"

typedef struct ds_pool ds_pool;
typedef void (*ds_pool_done_cb)(void *ud, ds_task *t);

typedef struct ds_pool_config {
  int workers;          /* >= 1 */
  size_t worker_memory; /* byte limit of each worker's Lua state; 0 = none */
  const char *package_path;  /* the driver's package.path, so workers resolve modules alike */
  const char *package_cpath;
  const char *boot_module; /* module whose run(task) the worker calls: "dstream.worker" */
  const char *boot_arg;    /* bytes passed to boot_module.boot(pool, index, boot_arg) */
  size_t boot_arg_len;
} ds_pool_config;

/* Starts the workers and waits until each has built its Lua state and loaded boot_module.
 * Returns 0, or a negative code with the first worker's error in err. */
int ds_pool_new(uv_loop_t *loop, const ds_pool_config *cfg, ds_pool_done_cb done, void *ud,
                ds_pool **out, char *err, size_t errlen);
/* Queues a task (affinity -1: any worker). Returns 0 or -ESHUTDOWN after close began. */
int ds_pool_submit(ds_pool *p, ds_task *t, int affinity);
/* Stores a copy of a shipped closure under `id` (ids are the driver's; reuse is refused). */
int ds_pool_put_blob(ds_pool *p, uint32_t id, const void *data, size_t len);
/* For workers (FFI): the bytes stored under `id`, or NULL. Valid until the pool is freed. */
const char *ds_pool_get_blob(ds_pool *p, uint32_t id, size_t *len);
int ds_pool_size(ds_pool *p);
/* Tasks queued or running. */
int ds_pool_inflight(ds_pool *p);
/* Lua memory in use by worker i (bytes), for status and metrics. */
size_t ds_pool_worker_memory(ds_pool *p, int i);
/* Stops the workers after their current task, joins them, drops queued tasks, closes the
 * loop handle; the pool is freed once the handle is closed. Tasks finished but not yet
 * delivered are freed without a callback. */
void ds_pool_close(ds_pool *p);

#endif

/* ds_task.h - a task: one partition of one stage, sent from the driver to a worker.
 *
 * The driver fills the descriptor (a string.buffer-encoded table naming the pipeline and its
 * parameters) and the input slices; the worker fills the outputs, the status and the error.
 * The struct is read by worker Lua code through the FFI, so its layout is mirrored in
 * lua/dstream/worker/cdefs.lua: change both together (spec/layout_spec.lua compares them). A task owns its descriptor, its inputs'
 * references, its outputs and its error text. */
#ifndef DS_TASK_H
#define DS_TASK_H

#include <stdint.h>

#include "ds_block.h"

/* DS_TASK_NO_RETRY: failed on its records (a key that cannot be a key), set by worker Lua; the
 * driver does not run it again (DS_POOL_TASK_LOST, 3, is ds_pool.h's). */
enum { DS_TASK_OK = 0, DS_TASK_FAILED = 1, DS_TASK_OOM = 2, DS_TASK_NO_RETRY = 4 };

typedef struct ds_output {
  int32_t target; /* partition of the next stage, or 0 for results */
  ds_slice slice;
} ds_output;

typedef struct ds_task {
  uint64_t id;
  int32_t attempt;
  int32_t worker; /* set by the pool: which worker ran it */
  char *desc;
  size_t desc_len;
  ds_slice *inputs;
  int32_t ninputs;
  int32_t status;
  char *error;
  ds_output *outputs;
  int32_t noutputs;
  int32_t capoutputs;
  double run_ms;
  uint64_t records_in; /* set by the worker's Lua code */
  struct ds_task *next;
  /* What a long step of the running task has done so far, for the driver's status pages
   * (cluster mode's restores): written by its worker (ds_task_progress), read by the driver
   * while the task runs (ds_pool_running_tasks), both atomically. {tag, a, b, since_ms};
   * tag 0: nothing to report. */
  uint64_t progress[4];
} ds_task;

#if UINTPTR_MAX == UINT64_MAX
/* A field added or moved here must be added or moved in cdefs.lua too; then fix the size. */
_Static_assert(sizeof(ds_output) == 48, "ds_output changed: change lua/dstream/worker/cdefs.lua too");
_Static_assert(sizeof(ds_task) == 128, "ds_task changed: change lua/dstream/worker/cdefs.lua too");
#endif

/* Allocates a task copying `desc`; inputs are added with ds_task_add_input. NULL on OOM. */
ds_task *ds_task_new(uint64_t id, const void *desc, size_t desc_len);
/* Adds a view of `s` as the next input, taking a new reference to its block. 0 or -ENOMEM. */
int ds_task_add_input(ds_task *t, const ds_slice *s);
/* Called by worker Lua (FFI): copies `len` bytes into a new block and records it as an output
 * for `target`. Returns 0 or -ENOMEM. */
int ds_task_emit(ds_task *t, int32_t target, int32_t format, int32_t pairs, const void *p,
                 size_t len, uint64_t count);
/* Called by worker Lua (FFI): records the failure text (copied). */
/* Called by worker Lua (FFI) while the task runs: reports its progress (see ds_task.progress);
 * tag 0 clears it. Relaxed atomic stores: the driver reads the fields without the worker's
 * help, and a reading that mixes two reports is good enough for a status page. */
void ds_task_progress(ds_task *t, uint64_t tag, uint64_t a, uint64_t b, uint64_t since_ms);
void ds_task_set_error(ds_task *t, int32_t status, const char *msg, size_t len);
/* Drops outputs and error so the task can run again (a retry). */
void ds_task_reset(ds_task *t);
void ds_task_free(ds_task *t);

#endif

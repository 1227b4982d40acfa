/* ds_task.c - task descriptors, inputs and outputs crossing between driver and workers. */
#include "ds_task.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

ds_task *ds_task_new(uint64_t id, const void *desc, size_t desc_len) {
  ds_task *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->desc = malloc(desc_len ? desc_len : 1);
  if (!t->desc) {
    free(t);
    return NULL;
  }
  memcpy(t->desc, desc, desc_len);
  t->desc_len = desc_len;
  t->id = id;
  t->worker = -1;
  return t;
}

int ds_task_add_input(ds_task *t, const ds_slice *s) {
  ds_slice *inputs = realloc(t->inputs, (size_t)(t->ninputs + 1) * sizeof *inputs);
  if (!inputs) return -ENOMEM;
  t->inputs = inputs;
  inputs[t->ninputs] = *s;
  ds_block_retain(s->block);
  t->ninputs++;
  return 0;
}

int ds_task_emit(ds_task *t, int32_t target, int32_t format, int32_t pairs, const void *p,
                 size_t len, uint64_t count) {
  if (t->noutputs == t->capoutputs) {
    int cap = t->capoutputs ? t->capoutputs * 2 : 4;
    ds_output *outs = realloc(t->outputs, (size_t)cap * sizeof *outs);
    if (!outs) return -ENOMEM;
    t->outputs = outs;
    t->capoutputs = cap;
  }
  ds_block *b = ds_block_copy(format, pairs, p, len, count);
  if (!b) return -ENOMEM;
  ds_output *o = &t->outputs[t->noutputs++];
  o->target = target;
  ds_slice_of_block(&o->slice, b);
  ds_block_release(b); /* the slice holds the only reference now */
  return 0;
}

void ds_task_set_error(ds_task *t, int32_t status, const char *msg, size_t len) {
  free(t->error);
  t->error = malloc(len + 1);
  if (t->error) {
    memcpy(t->error, msg, len);
    t->error[len] = '\0';
  }
  t->status = status;
}

void ds_task_reset(ds_task *t) {
  for (int i = 0; i < t->noutputs; i++) ds_slice_clear(&t->outputs[i].slice);
  t->noutputs = 0;
  free(t->error);
  t->error = NULL;
  t->status = DS_TASK_OK;
  t->records_in = 0;
}

void ds_task_free(ds_task *t) {
  if (!t) return;
  ds_task_reset(t);
  for (int i = 0; i < t->ninputs; i++) ds_slice_clear(&t->inputs[i]);
  free(t->inputs);
  free(t->outputs);
  free(t->desc);
  free(t);
}

void ds_task_progress(ds_task *t, uint64_t tag, uint64_t a, uint64_t b, uint64_t since_ms) {
  /* tag last when setting, first when clearing: a reader seeing a tag sees its figures */
  if (tag == 0) __atomic_store_n(&t->progress[0], 0, __ATOMIC_RELEASE);
  __atomic_store_n(&t->progress[1], a, __ATOMIC_RELAXED);
  __atomic_store_n(&t->progress[2], b, __ATOMIC_RELAXED);
  __atomic_store_n(&t->progress[3], since_ms, __ATOMIC_RELAXED);
  if (tag != 0) __atomic_store_n(&t->progress[0], tag, __ATOMIC_RELEASE);
}

/* ds_recv_lua.h - receivers written in Lua: a thread of their own with its own Lua state.
 *
 * A Lua receiver (ctx:receiver_stream) runs on one thread this module starts; the thread owns
 * its Lua state (ds_vm) and runs `boot_module`.run(receiver, blob, name) in it, which decodes
 * the shipped receiver table and calls its on_start/on_stop (lua/dstream/sources/
 * receiver_thread.lua). What the receiver stores reaches C as chunks: each a DS_FMT_SBUF block
 * of many records (one string.buffer value, { values } or { keys, values }), appended by the
 * thread through the FFI (ds_recv_lua_append), so there is no C call per record. A seal (any
 * thread, usually the driver's) takes every chunk appended so far and deals them, whole and in
 * order, into consecutive partitions of about equal record counts.
 *
 * The struct begins with a ds_recv_lua_ctl that the thread's Lua reads through the FFI
 * (volatile fields, no call): `stop` once ds_recv_lua_stop was called, `tick` bumped every
 * few ms by the owner (ds_recv_lua_tick) so buffered records are handed over soon, and
 * `chunk_max`, the most records per chunk (lower under a rate limit, so chunks stay small).
 * A stop asks the thread to end and waits a bounded time; a thread still in user code then is
 * abandoned: left running to the process's exit, and whatever it appends is dropped.
 * The owner holds one reference, the running thread another; the last one frees. */
#ifndef DS_RECV_LUA_H
#define DS_RECV_LUA_H

#include <stddef.h>
#include <stdint.h>

#include "ds_store.h"

typedef struct ds_recv_lua ds_recv_lua;

/* Read by the thread's Lua through the FFI (lua/dstream/sources/receiver_thread.lua mirrors
 * it); it is the first member of ds_recv_lua. */
typedef struct ds_recv_lua_ctl {
  volatile int32_t stop;      /* 1 once a stop was asked */
  volatile uint32_t tick;     /* bumped by ds_recv_lua_tick */
  volatile int32_t chunk_max; /* most records per chunk */
  int32_t pad_;
} ds_recv_lua_ctl;

/* What the receiver is doing, as the thread reports it (ds_recv_lua_state). */
enum {
  DS_RECV_LUA_STARTING = 0, /* the thread is building its state */
  DS_RECV_LUA_RUNNING = 1,  /* on_start runs */
  DS_RECV_LUA_WAITING = 2,  /* waiting to restart (backoff_ms) */
  DS_RECV_LUA_FINISHED = 3, /* on_start returned: nothing more to receive */
  DS_RECV_LUA_STOPPED = 4,  /* the thread ended */
  DS_RECV_LUA_ABANDONED = 5 /* the stop gave up waiting for the thread */
};

/* Kinds of ds_recv_lua_error. */
enum { DS_RECV_LUA_RAISED = 1, DS_RECV_LUA_RESTART = 2, DS_RECV_LUA_REPORTED = 3 };

typedef struct ds_recv_lua_stats {
  uint64_t records;   /* records appended */
  uint64_t bytes;     /* encoded bytes appended */
  uint64_t pending;   /* records appended and not yet sealed */
  uint64_t errors;    /* raises and report_error calls */
  uint64_t restarts;  /* on_start started again (after a raise or restart()) */
  uint64_t dropped;   /* records appended after the receiver was abandoned */
  int state;          /* DS_RECV_LUA_* */
  double backoff_ms;  /* the wait before the next restart (state WAITING) */
  double rate_limit;  /* records per second now; 0 = none */
  int throttled;      /* the thread waits for the rate limit now */
  uint64_t pauses;    /* times it waited for the rate limit */
  char last_error[512];
} ds_recv_lua_stats;

typedef struct ds_recv_lua_config {
  const char *name;         /* for messages: "receiver_stream <label>" */
  const char *blob;         /* the shipped receiver (dstream.ship), copied */
  size_t blob_len;
  const char *package_path; /* the driver's package.path / cpath, so modules resolve alike */
  const char *package_cpath;
  const char *boot_module;  /* "dstream.sources.receiver_thread" */
  double max_rate;          /* records per second; 0 = none */
} ds_recv_lua_config;

/* Starts the thread. Returns 0 and sets *out, or -ENOMEM / -EAGAIN with a message in err. */
int ds_recv_lua_start(const ds_recv_lua_config *cfg, ds_recv_lua **out, char *err, size_t errlen);
/* Moves every chunk appended so far into a new sealed batch of `nparts` partitions: whole
 * chunks, in order, to consecutive partitions. Returns 0 or -EINVAL / -ENOMEM. */
int ds_recv_lua_seal(ds_recv_lua *r, int nparts, ds_sealed **out);
void ds_recv_lua_get_stats(ds_recv_lua *r, ds_recv_lua_stats *st);
/* Limits appends to `rate` records per second (0: none): an append over the limit waits in
 * the receiver's thread, so the receiver reads its own source more slowly. */
void ds_recv_lua_set_rate(ds_recv_lua *r, double rate);
/* Tells the thread to hand over what it buffered (called every few ms by the owner). */
void ds_recv_lua_tick(ds_recv_lua *r);
/* Asks the thread to stop and waits up to wait_ms for it to end (on_start returning, on_stop
 * run). Returns 0 when it ended, 1 when it was abandoned (logged; its appends are dropped
 * from then on). A second call returns the first one's answer. */
int ds_recv_lua_stop(ds_recv_lua *r, int wait_ms);
/* Drops the owner's reference (stops first, with wait_ms 0, if nobody did). */
void ds_recv_lua_free(ds_recv_lua *r);

/* ---- called by the thread's Lua through the FFI ---- */

/* Appends one chunk of `count` records (a string.buffer encoding of { values }, or of
 * { keys, values } with pairs). Waits first while the rate limit's bucket is in debt (a stop
 * ends the wait). Returns 0, -ENOMEM, or -ECANCELED when the receiver was abandoned. */
int ds_recv_lua_append(ds_recv_lua *r, const char *data, size_t len, uint64_t count, int pairs);
/* Waits up to ms (< 0: until a stop). Returns 1 when a stop was asked, else 0. */
int ds_recv_lua_wait(ds_recv_lua *r, double ms);
/* Counts and logs an error (DS_RECV_LUA_RAISED, _RESTART or _REPORTED); msg names the user's
 * line. A raise or a restart counts a restart too. */
void ds_recv_lua_error(ds_recv_lua *r, int kind, const char *msg, double backoff_ms);
/* The receiver's state (DS_RECV_LUA_*) and, while WAITING, the wait before the restart. */
void ds_recv_lua_state(ds_recv_lua *r, int state, double backoff_ms);

#endif

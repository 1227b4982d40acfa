/* ds_recv_lua.c - receivers written in Lua: their thread, their Lua state, their chunks. */
#include "ds_recv_lua.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ds_log.h"
#include "ds_recv.h"
#include "ds_vm.h"

#define CHUNK_MAX 1024 /* records per chunk without a rate limit */

struct ds_recv_lua {
  ds_recv_lua_ctl ctl; /* first: the thread's Lua casts the struct's address to it */
  pthread_mutex_t lock;
  pthread_cond_t cond; /* a stop asked, the thread ended, or the rate limit changed */
  int refs;
  pthread_t thread;
  int ended, abandoned, stop_answered, stop_answer;
  char *name, *blob, *path, *cpath, *boot;
  size_t blob_len;
  ds_block **chunks; /* appended, not sealed, in order */
  int nchunks, capchunks;
  ds_recv_rate bucket;
  double max_rate;
  ds_recv_lua_stats st;
};

_Static_assert(offsetof(struct ds_recv_lua, ctl) == 0, "the FFI reads ctl at the struct's address");

static void deadline_in(struct timespec *ts, double ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  long long ns = ts->tv_nsec + (long long)(ms * 1e6);
  ts->tv_sec += (time_t)(ns / 1000000000LL);
  ts->tv_nsec = (long)(ns % 1000000000LL);
}

static void fmt_ms(char *buf, size_t n, double ms) {
  if (ms >= 1000) snprintf(buf, n, "%g s", ms / 1000);
  else snprintf(buf, n, "%g ms", ms);
}

static void release(ds_recv_lua *r) {
  pthread_mutex_lock(&r->lock);
  int last = --r->refs == 0;
  pthread_mutex_unlock(&r->lock);
  if (!last) return;
  for (int i = 0; i < r->nchunks; i++) ds_block_release(r->chunks[i]);
  free(r->chunks);
  free(r->name);
  free(r->blob);
  free(r->path);
  free(r->cpath);
  free(r->boot);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->cond);
  free(r);
}

/* Caller holds the lock. The rate in force sets the chunk size: about a tenth of a second of
 * records (the bucket's burst), so a chunk never waits long for its tokens. */
static void apply_rate(ds_recv_lua *r, double rate) {
  ds_recv_rate_set(&r->bucket, rate);
  r->st.rate_limit = r->bucket.rate;
  int max = CHUNK_MAX;
  if (r->bucket.rate > 0) {
    double tenth = r->bucket.rate / 10;
    max = tenth < 1 ? 1 : tenth > CHUNK_MAX ? CHUNK_MAX : (int)tenth;
  }
  r->ctl.chunk_max = max;
  pthread_cond_broadcast(&r->cond);
}

/* ---- the thread ---- */

/* Driver-only functions of dstream.core, in the receiver's state. */
static int not_here(lua_State *L) {
  return luaL_error(L, "contexts, actions and the event loop are the driver's; this receiver runs"
                       " on a thread of its own");
}

static int on_worker_true(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

static int receiver_os_exit(lua_State *L) {
  return luaL_error(L, "os.exit called in a receiver: it would end the whole job at once; raise an"
                       " error (the receiver is restarted) or return from on_start");
}

/* Runs in the thread's state under lua_cpcall: paths, the restricted core, boot_module.run. */
static int thread_body(lua_State *L) {
  ds_recv_lua *r = lua_touserdata(L, 1);
  lua_getglobal(L, "package");
  if (r->path) {
    lua_pushstring(L, r->path);
    lua_setfield(L, -2, "path");
  }
  if (r->cpath) {
    lua_pushstring(L, r->cpath);
    lua_setfield(L, -2, "cpath");
  }
  lua_pop(L, 1);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, receiver_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  /* The driver's loop must never be touched from here (dstream.context checks on_worker). */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "dstream.core");
  lua_call(L, 1, 1);
  static const char *const driver_only[] = {"run",         "stop_loop",     "timer",
                                            "signal",      "pool_new",      "http_server",
                                            "lua_receiver", "socket_source", "file_source",
                                            NULL};
  for (const char *const *n = driver_only; *n; n++) {
    lua_pushcfunction(L, not_here);
    lua_setfield(L, -2, *n);
  }
  lua_pushcfunction(L, on_worker_true);
  lua_setfield(L, -2, "on_worker");
  lua_pop(L, 1);

  lua_getglobal(L, "require");
  lua_pushstring(L, r->boot);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "run");
  lua_pushlightuserdata(L, r);
  lua_pushlstring(L, r->blob, r->blob_len);
  lua_pushstring(L, r->name);
  lua_call(L, 3, 0);
  return 0;
}

static void *thread_main(void *arg) {
  ds_recv_lua *r = arg;
  ds_vm vm;
  if (ds_vm_open(&vm, 0) != 0) {
    ds_recv_lua_error(r, DS_RECV_LUA_REPORTED, "cannot create a Lua state", -1);
  } else {
    if (lua_cpcall(vm.L, thread_body, r) != 0) {
      char msg[400];
      snprintf(msg, sizeof msg, "cannot run: %s", lua_tostring(vm.L, -1));
      ds_recv_lua_error(r, DS_RECV_LUA_REPORTED, msg, -1);
    }
    ds_vm_close(&vm);
  }
  pthread_mutex_lock(&r->lock);
  r->ended = 1;
  if (r->st.state != DS_RECV_LUA_ABANDONED) r->st.state = DS_RECV_LUA_STOPPED;
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
  release(r);
  return NULL;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int ds_recv_lua_start(const ds_recv_lua_config *cfg, ds_recv_lua **out, char *err,
                      size_t errlen) {
  ds_recv_lua *r = calloc(1, sizeof *r);
  if (!r) goto nomem;
  r->name = strdup(cfg->name ? cfg->name : "receiver_stream");
  r->boot = strdup(cfg->boot_module);
  r->path = dup_or_null(cfg->package_path);
  r->cpath = dup_or_null(cfg->package_cpath);
  r->blob = malloc(cfg->blob_len ? cfg->blob_len : 1);
  if (!r->name || !r->boot || !r->blob || (cfg->package_path && !r->path) ||
      (cfg->package_cpath && !r->cpath)) {
    free(r->name), free(r->boot), free(r->path), free(r->cpath), free(r->blob), free(r);
    goto nomem;
  }
  memcpy(r->blob, cfg->blob, cfg->blob_len);
  r->blob_len = cfg->blob_len;
  pthread_mutex_init(&r->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cond, &ca);
  pthread_condattr_destroy(&ca);
  r->max_rate = cfg->max_rate > 0 ? cfg->max_rate : 0;
  apply_rate(r, r->max_rate);
  r->refs = 2; /* the owner's and the thread's */
  int rc = pthread_create(&r->thread, NULL, thread_main, r);
  if (rc != 0) {
    r->refs = 1;
    snprintf(err, errlen, "%s: cannot start its thread: %s", r->name, strerror(rc));
    release(r);
    return -EAGAIN;
  }
  *out = r;
  return 0;
nomem:
  snprintf(err, errlen, "receiver_stream: out of memory");
  return -ENOMEM;
}

/* ---- the owner's calls ---- */

int ds_recv_lua_seal(ds_recv_lua *r, int nparts, ds_sealed **out) {
  if (nparts < 1) return -EINVAL;
  pthread_mutex_lock(&r->lock);
  ds_block **chunks = r->chunks;
  int n = r->nchunks;
  r->chunks = NULL;
  r->nchunks = r->capchunks = 0;
  r->st.pending = 0;
  pthread_mutex_unlock(&r->lock);

  int rc = -ENOMEM;
  ds_sealed *sb = calloc(1, sizeof *sb);
  if (sb && (sb->parts = calloc((size_t)nparts, sizeof *sb->parts))) {
    sb->nparts = nparts;
    uint64_t total = 0, before = 0;
    for (int i = 0; i < n; i++) total += chunks[i]->count;
    rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
      ds_block *b = chunks[i];
      /* The partition of the chunk's middle record: consecutive, about even by records. */
      int p = (int)(((double)before + (double)b->count / 2) * nparts / (double)total);
      if (p >= nparts) p = nparts - 1;
      rc = ds_part_add_slice(&sb->parts[p], b, 0, b->len, b->count);
      before += b->count;
      sb->count += b->count;
      sb->bytes += b->len;
    }
  }
  for (int i = 0; i < n; i++) ds_block_release(chunks[i]);
  free(chunks);
  if (rc != 0) {
    if (sb && sb->parts) ds_sealed_free(sb);
    else free(sb);
    return rc;
  }
  *out = sb;
  return 0;
}

void ds_recv_lua_get_stats(ds_recv_lua *r, ds_recv_lua_stats *st) {
  pthread_mutex_lock(&r->lock);
  *st = r->st;
  pthread_mutex_unlock(&r->lock);
}

void ds_recv_lua_set_rate(ds_recv_lua *r, double rate) {
  pthread_mutex_lock(&r->lock);
  apply_rate(r, rate);
  pthread_mutex_unlock(&r->lock);
}

void ds_recv_lua_tick(ds_recv_lua *r) { r->ctl.tick = r->ctl.tick + 1; }

int ds_recv_lua_stop(ds_recv_lua *r, int wait_ms) {
  pthread_mutex_lock(&r->lock);
  if (r->stop_answered) {
    int answer = r->stop_answer;
    pthread_mutex_unlock(&r->lock);
    return answer;
  }
  r->ctl.stop = 1;
  pthread_cond_broadcast(&r->cond);
  struct timespec deadline;
  deadline_in(&deadline, wait_ms > 0 ? wait_ms : 0);
  while (!r->ended && pthread_cond_timedwait(&r->cond, &r->lock, &deadline) != ETIMEDOUT) {
  }
  int ended = r->ended;
  if (!ended) {
    r->abandoned = 1;
    r->st.state = DS_RECV_LUA_ABANDONED;
  }
  r->stop_answered = 1;
  r->stop_answer = !ended;
  pthread_mutex_unlock(&r->lock);
  if (ended) {
    pthread_join(r->thread, NULL);
  } else {
    pthread_detach(r->thread);
    ds_log(DS_LOG_WARN,
           "%s: on_start did not return within %d ms of the stop (it must return, or poll"
           " self:is_stopped()); abandoned: its thread is left to the process's exit, and what"
           " it stores from now on is dropped",
           r->name, wait_ms);
  }
  return !ended;
}

void ds_recv_lua_free(ds_recv_lua *r) {
  if (!r) return;
  ds_recv_lua_stop(r, 0);
  release(r);
}

/* ---- the thread's calls (FFI) ---- */

int ds_recv_lua_append(ds_recv_lua *r, const char *data, size_t len, uint64_t count, int pairs) {
  pthread_mutex_lock(&r->lock);
  /* Over the rate limit: wait until the bucket's debt is paid (a stop ends the wait). */
  int waited = 0;
  while (!r->ctl.stop && !r->abandoned && ds_recv_rate_available(&r->bucket) < 1) {
    if (!waited) r->st.pauses++;
    waited = 1;
    r->st.throttled = 1;
    struct timespec deadline;
    deadline_in(&deadline, (double)ds_recv_rate_wait_ms(&r->bucket));
    pthread_cond_timedwait(&r->cond, &r->lock, &deadline);
  }
  r->st.throttled = 0;
  if (r->abandoned) {
    r->st.dropped += count;
    pthread_mutex_unlock(&r->lock);
    return -ECANCELED;
  }
  pthread_mutex_unlock(&r->lock);
  ds_block *b = ds_block_copy(DS_FMT_SBUF, pairs != 0, data, len, count);
  if (!b) return -ENOMEM;
  pthread_mutex_lock(&r->lock);
  int rc = 0;
  if (r->nchunks == r->capchunks) {
    int cap = r->capchunks ? r->capchunks * 2 : 16;
    ds_block **chunks = realloc(r->chunks, (size_t)cap * sizeof *chunks);
    if (chunks) {
      r->chunks = chunks;
      r->capchunks = cap;
    } else {
      rc = -ENOMEM;
    }
  }
  if (rc == 0) {
    r->chunks[r->nchunks++] = b;
    r->st.records += count;
    r->st.pending += count;
    r->st.bytes += len;
    ds_recv_rate_take(&r->bucket, count);
  }
  pthread_mutex_unlock(&r->lock);
  if (rc != 0) ds_block_release(b);
  return rc;
}

int ds_recv_lua_wait(ds_recv_lua *r, double ms) {
  pthread_mutex_lock(&r->lock);
  struct timespec deadline;
  if (ms >= 0) deadline_in(&deadline, ms);
  while (!r->ctl.stop) {
    if (ms < 0) pthread_cond_wait(&r->cond, &r->lock);
    else if (pthread_cond_timedwait(&r->cond, &r->lock, &deadline) == ETIMEDOUT) break;
  }
  int stop = r->ctl.stop != 0;
  pthread_mutex_unlock(&r->lock);
  return stop;
}

void ds_recv_lua_error(ds_recv_lua *r, int kind, const char *msg, double backoff_ms) {
  pthread_mutex_lock(&r->lock);
  r->st.errors++;
  /* The message without its traceback (the log has both). */
  snprintf(r->st.last_error, sizeof r->st.last_error, "%.*s", (int)strcspn(msg ? msg : "", "\n"),
           msg ? msg : "");
  int restarting = kind != DS_RECV_LUA_REPORTED && backoff_ms >= 0;
  if (restarting) r->st.restarts++;
  pthread_mutex_unlock(&r->lock);
  char delay[32];
  fmt_ms(delay, sizeof delay, backoff_ms);
  /* One line that says what happens next, then the traceback, if the message has one. */
  const char *text = msg ? msg : "";
  int first = (int)strcspn(text, "\n");
  const char *what = kind == DS_RECV_LUA_RESTART ? "restart asked: " : "";
  if (kind == DS_RECV_LUA_REPORTED)
    ds_log(DS_LOG_WARN, "%s: error reported: %.*s%s", r->name, first, text, text + first);
  else if (!restarting)
    ds_log(DS_LOG_WARN, "%s: %s%.*s (stopping: not restarted)%s", r->name, what, first, text,
           text + first);
  else
    ds_log(DS_LOG_WARN, "%s: %s%.*s; restarting in %s%s", r->name, what, first, text, delay,
           text + first);
}

void ds_recv_lua_state(ds_recv_lua *r, int state, double backoff_ms) {
  pthread_mutex_lock(&r->lock);
  if (r->st.state != DS_RECV_LUA_ABANDONED) r->st.state = state;
  r->st.backoff_ms = state == DS_RECV_LUA_WAITING ? backoff_ms : 0;
  pthread_mutex_unlock(&r->lock);
}

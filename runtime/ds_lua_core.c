/* ds_lua_core.c - the dstream.core module: loop, timers, signals, worker pools and slices, and
 * what C tells Lua about itself: its limits, its FFI struct layouts, the command line's options. */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "ds_limits.h"
#include "ds_lua.h"
#include "ds_pool.h"
#include "ds_task.h"
#include "ds_vm.h"
#include "ds_version.h"
#include "ds_words.h"

#define SLICE_MT "ds.slice"
#define TIMER_MT "ds.timer"
#define SIGNAL_MT "ds.signal"
#define POOL_MT "ds.pool"

static lua_State *running_L; /* the Lua thread inside core.run(), NULL outside */
static int callback_error_ref = LUA_NOREF;

uv_loop_t *ds_lua_loop(void) { return uv_default_loop(); }
lua_State *ds_lua_running_state(void) { return running_L; }

/* ---- callbacks ------------------------------------------------------------------------ */

int ds_lua_traceback(lua_State *L) {
  if (!lua_isstring(L, 1)) return 1; /* keep non-string error values as they are */
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

int ds_lua_callback(lua_State *L, int nargs) {
  if (callback_error_ref != LUA_NOREF) { /* an earlier callback failed: the loop is stopping */
    lua_pop(L, nargs + 1);
    return -1;
  }
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, ds_lua_traceback);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, 0, base);
  lua_remove(L, base);
  if (rc == 0) return 0;
  callback_error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_stop(ds_lua_loop());
  return -1;
}

/* The loop is the driver's: a worker's state must not touch it (a closure calling dstream's
 * driver API). dstream's Lua entry points say so on the user's line; this is the backstop. */
static void driver_only(lua_State *L) {
  if (ds_pool_on_worker())
    luaL_error(L, "contexts and actions run on the driver; this closure runs on a worker");
}

/* core.on_worker() -> whether this state is a worker's. */
static int core_on_worker(lua_State *L) {
  lua_pushboolean(L, ds_pool_on_worker());
  return 1;
}

static int core_run(lua_State *L) {
  driver_only(L);
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const uv_run_mode uv_modes[] = {UV_RUN_DEFAULT, UV_RUN_ONCE, UV_RUN_NOWAIT};
  int mode = luaL_checkoption(L, 1, "once", modes);
  if (running_L) return luaL_error(L, "the event loop is already running (core.run is not reentrant)");
  running_L = L;
  int alive = uv_run(ds_lua_loop(), uv_modes[mode]);
  running_L = NULL;
  if (callback_error_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, callback_error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, callback_error_ref);
    callback_error_ref = LUA_NOREF;
    return lua_error(L);
  }
  lua_pushboolean(L, alive);
  return 1;
}

static int core_stop_loop(lua_State *L) {
  (void)L;
  uv_stop(ds_lua_loop());
  return 0;
}

static int core_running(lua_State *L) {
  lua_pushboolean(L, running_L != NULL);
  return 1;
}

static int core_now_ms(lua_State *L) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  lua_pushnumber(L, (double)tv.tv_sec * 1e3 + tv.tv_usec / 1e3);
  return 1;
}

static int core_hrtime_ms(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e6);
  return 1;
}

static int core_cores(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

/* core.worker_limits() -> { max_workers =, max_per_core =, max_total =, warn_workers =,
 * min_memory = } for this machine: what context{ workers =, worker_memory = } may ask (the
 * command line is checked the same, by dstream.context's functions). */
static int core_worker_limits(lua_State *L) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, ds_pool_max_workers(cores));
  lua_setfield(L, -2, "max_workers");
  lua_pushinteger(L, DS_POOL_MAX_WORKERS_PER_CORE);
  lua_setfield(L, -2, "max_per_core");
  lua_pushinteger(L, DS_POOL_MAX_WORKERS);
  lua_setfield(L, -2, "max_total");
  lua_pushinteger(L, cores * DS_POOL_WARN_WORKERS_PER_CORE);
  lua_setfield(L, -2, "warn_workers");
  lua_pushnumber(L, (lua_Number)DS_VM_MIN_MEMORY);
  lua_setfield(L, -2, "min_memory");
  return 1;
}

/* core.limits() -> { record_max =, block_bytes =, slice_bytes =, buffer_keep_bytes =,
 * worker_memory = }: the sizes of ds_limits.h (and the default worker memory of ds_vm.h). */
static int core_limits(lua_State *L) {
  lua_createtable(L, 0, 5);
  lua_pushnumber(L, (lua_Number)DS_RECORD_MAX);
  lua_setfield(L, -2, "record_max");
  lua_pushnumber(L, (lua_Number)DS_BLOCK_BYTES);
  lua_setfield(L, -2, "block_bytes");
  lua_pushnumber(L, (lua_Number)DS_SLICE_BYTES);
  lua_setfield(L, -2, "slice_bytes");
  lua_pushnumber(L, (lua_Number)DS_BUFFER_KEEP_BYTES);
  lua_setfield(L, -2, "buffer_keep_bytes");
  lua_pushnumber(L, (lua_Number)DS_VM_DEFAULT_MEMORY);
  lua_setfield(L, -2, "worker_memory");
  return 1;
}

/* The registry key of the options table (ds_lua_push_cli_options). */
#define CLI_OPTIONS_KEY "dstream.options"

void ds_lua_push_cli_options(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CLI_OPTIONS_KEY);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 8);
  lua_newtable(L);
  lua_setfield(L, -2, "jit");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, CLI_OPTIONS_KEY);
}

/* core.cli_options() -> the command line's options (what dstream.options returns). */
static int core_cli_options(lua_State *L) {
  ds_lua_push_cli_options(L);
  return 1;
}

/* ---- layouts -------------------------------------------------------------------------- */

/* The structs worker Lua reads and writes through the FFI (lua/dstream/worker/cdefs.lua
 * declares them again), as the C compiler laid them out: spec/layout_spec.lua compares them
 * with ffi.sizeof and ffi.offsetof. (The Kafka record's is ds_lua_kafka.c's.) */
typedef struct field_offset {
  const char *name;
  size_t offset;
} field_offset;

#define FIELD(type, f) {#f, offsetof(type, f)}
static const field_offset slice_fields[] = {
    FIELD(ds_slice, block), FIELD(ds_slice, data),   FIELD(ds_slice, len),
    FIELD(ds_slice, count), FIELD(ds_slice, format), FIELD(ds_slice, pairs),
    {NULL, 0}};
static const field_offset output_fields[] = {FIELD(ds_output, target), FIELD(ds_output, slice),
                                             {NULL, 0}};
static const field_offset task_fields[] = {
    FIELD(ds_task, id),        FIELD(ds_task, attempt),    FIELD(ds_task, worker),
    FIELD(ds_task, desc),      FIELD(ds_task, desc_len),   FIELD(ds_task, inputs),
    FIELD(ds_task, ninputs),   FIELD(ds_task, status),     FIELD(ds_task, error),
    FIELD(ds_task, outputs),   FIELD(ds_task, noutputs),   FIELD(ds_task, capoutputs),
    FIELD(ds_task, run_ms),    FIELD(ds_task, records_in), FIELD(ds_task, next),
    FIELD(ds_task, progress),
    {NULL, 0}};
static const field_offset words_pos_fields[] = {FIELD(ds_words_pos, pos),
                                                FIELD(ds_words_pos, line_end), {NULL, 0}};
#undef FIELD

/* core.struct_layouts() -> { ds_slice = { size = n, fields = { block = 0, ... } }, ... } */
static int core_struct_layouts(lua_State *L) {
  static const struct {
    const char *name;
    size_t size;
    const field_offset *fields;
  } structs[] = {{"ds_slice", sizeof(ds_slice), slice_fields},
                 {"ds_output", sizeof(ds_output), output_fields},
                 {"ds_task", sizeof(ds_task), task_fields},
                 {"ds_words_pos", sizeof(ds_words_pos), words_pos_fields}};
  int n = (int)(sizeof structs / sizeof structs[0]);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)structs[i].size);
    lua_setfield(L, -2, "size");
    lua_newtable(L);
    for (const field_offset *f = structs[i].fields; f->name; f++) {
      lua_pushinteger(L, (lua_Integer)f->offset);
      lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, -2, "fields");
    lua_setfield(L, -2, structs[i].name);
  }
  return 1;
}

/* ---- slices --------------------------------------------------------------------------- */

void ds_lua_push_slice(lua_State *L, ds_slice *s) {
  ds_slice *u = lua_newuserdata(L, sizeof *u);
  *u = *s;
  memset(s, 0, sizeof *s);
  luaL_getmetatable(L, SLICE_MT);
  lua_setmetatable(L, -2);
}

void ds_lua_push_sealed(lua_State *L, ds_sealed *sb) {
  lua_createtable(L, sb->nparts, 2);
  for (int p = 0; p < sb->nparts; p++) {
    ds_part *part = &sb->parts[p];
    lua_createtable(L, part->nslices, 1);
    lua_pushnumber(L, (lua_Number)part->count);
    lua_setfield(L, -2, "count");
    for (int i = 0; i < part->nslices; i++) {
      ds_lua_push_slice(L, &part->slices[i]);
      lua_rawseti(L, -2, i + 1);
    }
    lua_rawseti(L, -2, p + 1);
  }
  lua_pushnumber(L, (lua_Number)sb->count);
  lua_setfield(L, -2, "count");
  lua_pushnumber(L, (lua_Number)sb->bytes);
  lua_setfield(L, -2, "bytes");
  ds_sealed_free(sb);
}

static ds_slice *check_slice(lua_State *L, int i) { return luaL_checkudata(L, i, SLICE_MT); }

static int slice_gc(lua_State *L) {
  ds_slice_clear(check_slice(L, 1));
  return 0;
}

static int slice_count(lua_State *L) {
  lua_pushnumber(L, (lua_Number)check_slice(L, 1)->count);
  return 1;
}

static int slice_len(lua_State *L) {
  lua_pushnumber(L, (lua_Number)check_slice(L, 1)->len);
  return 1;
}

static int slice_ptr(lua_State *L) {
  lua_pushlightuserdata(L, (void *)check_slice(L, 1)->data);
  return 1;
}

static int slice_format(lua_State *L) {
  ds_slice *s = check_slice(L, 1);
  lua_pushstring(L, s->format == DS_FMT_LINES ? "lines" : "sbuf");
  lua_pushboolean(L, s->pairs);
  return 2;
}

static int slice_tostring(lua_State *L) {
  lua_pushlstring(L, check_slice(L, 1)->data, check_slice(L, 1)->len);
  return 1;
}

/* core.slice_from_string(bytes, count, pairs, format) -> slice */
static int core_slice_from_string(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  uint64_t count = (uint64_t)luaL_checknumber(L, 2);
  int pairs = lua_toboolean(L, 3);
  const char *fmt = luaL_optstring(L, 4, "sbuf");
  ds_block *b = ds_block_copy(strcmp(fmt, "lines") == 0 ? DS_FMT_LINES : DS_FMT_SBUF, pairs, p,
                              len, count);
  if (!b) return luaL_error(L, "out of memory");
  ds_slice s;
  ds_slice_of_block(&s, b);
  ds_block_release(b);
  ds_lua_push_slice(L, &s);
  return 1;
}

/* core.lines_slice(array_of_strings) -> slice in DS_FMT_LINES (for tests and text_file). */
static int core_lines_slice(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)lua_objlen(L, 1);
  ds_block *b = ds_block_new(DS_FMT_LINES, 4096);
  if (!b) return luaL_error(L, "out of memory");
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    int rc = s ? ds_block_append_record(b, s, len) : -EINVAL;
    lua_pop(L, 1);
    if (rc) {
      ds_block_release(b);
      return luaL_error(L, "record %d: %s", i, rc == -EINVAL ? "not a string" : strerror(-rc));
    }
  }
  ds_slice s;
  ds_slice_of_block(&s, b);
  ds_block_release(b);
  ds_lua_push_slice(L, &s);
  return 1;
}

/* ---- timers and signals ----------------------------------------------------------------- */

typedef struct lua_handle {
  union {
    uv_handle_t handle;
    uv_timer_t timer;
    uv_signal_t signal;
  } u;
  int fn_ref;
  int closed; /* uv_close called */
  int alive;  /* memory still owned by libuv until the close callback */
} lua_handle;

/* Handles are malloc'd (not Lua userdata) because libuv may still hold them after the Lua
 * object is collected; the userdata holds a pointer. */
static void handle_closed(uv_handle_t *h) { free(h->data); }

static void handle_close(lua_State *L, lua_handle *h) {
  if (h->closed) return;
  h->closed = 1;
  luaL_unref(L, LUA_REGISTRYINDEX, h->fn_ref);
  h->fn_ref = LUA_NOREF;
  h->u.handle.data = h;
  uv_close(&h->u.handle, handle_closed);
}

static lua_handle **check_handle(lua_State *L, int i, const char *mt) {
  lua_handle **hp = luaL_checkudata(L, i, mt);
  if (!*hp) luaL_error(L, "handle already closed");
  return hp;
}

static void on_timer(uv_timer_t *t) {
  lua_handle *h = (lua_handle *)t;
  lua_State *L = running_L;
  if (!L || h->fn_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn_ref);
  ds_lua_callback(L, 0);
}

static int core_timer(lua_State *L) {
  driver_only(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_handle **hp = lua_newuserdata(L, sizeof *hp);
  *hp = calloc(1, sizeof **hp);
  if (!*hp) return luaL_error(L, "out of memory");
  uv_timer_init(ds_lua_loop(), &(*hp)->u.timer);
  lua_pushvalue(L, 1);
  (*hp)->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_getmetatable(L, TIMER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int timer_start(lua_State *L) {
  lua_handle *h = *check_handle(L, 1, TIMER_MT);
  double timeout = luaL_checknumber(L, 2), repeat = luaL_optnumber(L, 3, 0);
  uv_timer_start(&h->u.timer, on_timer, timeout > 0 ? (uint64_t)timeout : 0,
                 repeat > 0 ? (uint64_t)repeat : 0);
  return 0;
}

static int timer_stop(lua_State *L) {
  uv_timer_stop(&(*check_handle(L, 1, TIMER_MT))->u.timer);
  return 0;
}

static int handle_gc(lua_State *L) {
  lua_handle **hp = lua_touserdata(L, 1);
  if (*hp) handle_close(L, *hp);
  *hp = NULL;
  return 0;
}

static void on_signal(uv_signal_t *s, int signum) {
  lua_handle *h = (lua_handle *)s;
  lua_State *L = running_L;
  if (!L || h->fn_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn_ref);
  lua_pushinteger(L, signum);
  ds_lua_callback(L, 1);
}

/* core.signal(signum, fn) -> handle; fn(signum) runs on the loop. */
static int core_signal(lua_State *L) {
  driver_only(L);
  int signum = (int)luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_handle **hp = lua_newuserdata(L, sizeof *hp);
  *hp = calloc(1, sizeof **hp);
  if (!*hp) return luaL_error(L, "out of memory");
  uv_signal_init(ds_lua_loop(), &(*hp)->u.signal);
  lua_pushvalue(L, 2);
  (*hp)->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_getmetatable(L, SIGNAL_MT);
  lua_setmetatable(L, -2);
  int rc = uv_signal_start(&(*hp)->u.signal, on_signal, signum);
  if (rc) return luaL_error(L, "cannot watch signal %d: %s", signum, uv_strerror(rc));
  /* A signal watcher alone must not keep await_termination's loop alive. */
  uv_unref(&(*hp)->u.handle);
  return 1;
}

/* ---- worker pools ------------------------------------------------------------------------ */

typedef struct lua_pool {
  ds_pool *pool;
  int done_ref;
} lua_pool;

static void pool_done(void *ud, ds_task *t) {
  lua_pool *lp = ud;
  lua_State *L = running_L;
  if (!L || lp->done_ref == LUA_NOREF) {
    ds_task_free(t);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->done_ref);
  lua_pushnumber(L, (lua_Number)t->id);
  lua_pushinteger(L, t->status);
  if (t->error)
    lua_pushstring(L, t->error);
  else
    lua_pushnil(L);
  lua_createtable(L, t->noutputs, 0);
  for (int i = 0; i < t->noutputs; i++) {
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, t->outputs[i].target);
    lua_rawseti(L, -2, 1);
    ds_lua_push_slice(L, &t->outputs[i].slice);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, i + 1);
  }
  t->noutputs = 0; /* the slices moved to Lua */
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, t->worker);
  lua_setfield(L, -2, "worker");
  lua_pushnumber(L, t->run_ms);
  lua_setfield(L, -2, "run_ms");
  lua_pushnumber(L, (lua_Number)t->records_in);
  lua_setfield(L, -2, "records_in");
  ds_task_free(t);
  ds_lua_callback(L, 5);
}

static lua_pool *check_pool(lua_State *L) {
  lua_pool *lp = luaL_checkudata(L, 1, POOL_MT);
  if (!lp->pool) luaL_error(L, "the worker pool is closed");
  return lp;
}

static const char *opt_field_string(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the string stays alive: it is referenced by the table */
  return s;
}

/* core.pool_new{ workers=, worker_memory=, package_path=, package_cpath=, on_done=fn } */
static int core_pool_new(lua_State *L) {
  driver_only(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  ds_pool_config cfg = {0};
  lua_getfield(L, 1, "workers");
  cfg.workers = (int)luaL_optinteger(L, -1, 1);
  lua_getfield(L, 1, "worker_memory");
  cfg.worker_memory = (size_t)luaL_optnumber(L, -1, 0);
  lua_getfield(L, 1, "task_timeout_ms");
  cfg.task_timeout_ms = luaL_optnumber(L, -1, 0);
  lua_pop(L, 3);
  cfg.package_path = opt_field_string(L, 1, "package_path");
  cfg.package_cpath = opt_field_string(L, 1, "package_cpath");
  cfg.boot_module = "dstream.worker";
  lua_getfield(L, 1, "boot_arg");
  cfg.boot_arg = lua_tolstring(L, -1, &cfg.boot_arg_len);
  lua_pop(L, 1); /* still referenced by the options table */
  lua_getfield(L, 1, "on_done");
  luaL_checktype(L, -1, LUA_TFUNCTION);

  lua_pool *lp = lua_newuserdata(L, sizeof *lp);
  lp->pool = NULL;
  lua_pushvalue(L, -2);
  lp->done_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_getmetatable(L, POOL_MT);
  lua_setmetatable(L, -2);

  char err[600];
  if (ds_pool_new(ds_lua_loop(), &cfg, pool_done, lp, &lp->pool, err, sizeof err) != 0)
    return luaL_error(L, "%s", err);
  return 1;
}

/* pool:close([wait_ms]) -> workers abandoned: waits up to wait_ms (default 2000) for the
 * running tasks to end; a worker still in one is left running (ds_pool_close). */
static int pool_close(lua_State *L) {
  lua_pool *lp = luaL_checkudata(L, 1, POOL_MT);
  int abandoned = 0;
  if (lp->pool) {
    abandoned = ds_pool_close(lp->pool, (int)luaL_optinteger(L, 2, 2000));
    lp->pool = NULL;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, lp->done_ref);
  lp->done_ref = LUA_NOREF;
  lua_pushinteger(L, abandoned);
  return 1;
}

/* pool:running() -> { {id=, worker=, ms=, lost=, progress=}, ... }: the tasks running now;
 * progress = {tag, a, b, since_ms} while the task reports one (ds_task_progress). */
static int pool_running(lua_State *L) {
  lua_pool *lp = check_pool(L);
  ds_pool_running r[64];
  int n = ds_pool_running_tasks(lp->pool, r, 64);
  if (n > 64) n = 64;
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, (lua_Number)r[i].id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, r[i].worker);
    lua_setfield(L, -2, "worker");
    lua_pushnumber(L, r[i].ms);
    lua_setfield(L, -2, "ms");
    lua_pushboolean(L, r[i].lost);
    lua_setfield(L, -2, "lost");
    if (r[i].progress[0] != 0) {
      lua_createtable(L, 4, 0);
      for (int k = 0; k < 4; k++) {
        lua_pushnumber(L, (lua_Number)r[i].progress[k]);
        lua_rawseti(L, -2, k + 1);
      }
      lua_setfield(L, -2, "progress");
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int pool_put_blob(lua_State *L) {
  lua_pool *lp = check_pool(L);
  uint32_t id = (uint32_t)luaL_checkinteger(L, 2);
  size_t len;
  const char *p = luaL_checklstring(L, 3, &len);
  int rc = ds_pool_put_blob(lp->pool, id, p, len);
  if (rc) return luaL_error(L, "cannot store shipped code %d: %s", (int)id, strerror(-rc));
  return 0;
}

/* pool:drop_blob(id, free_bytes): see ds_pool_drop_blob. */
static int pool_drop_blob(lua_State *L) {
  lua_pool *lp = check_pool(L);
  ds_pool_drop_blob(lp->pool, (uint32_t)luaL_checkinteger(L, 2), lua_toboolean(L, 3));
  return 0;
}

/* pool:blob_stats() -> count, bytes of the blobs held. */
static int pool_blob_stats(lua_State *L) {
  lua_pool *lp = check_pool(L);
  uint64_t count, bytes;
  ds_pool_blob_stats(lp->pool, &count, &bytes);
  lua_pushnumber(L, (lua_Number)count);
  lua_pushnumber(L, (lua_Number)bytes);
  return 2;
}

/* pool:submit(id, desc, slices [, affinity [, prefer]]) (worker indexes; nil or -1: none) */
static int pool_submit(lua_State *L) {
  lua_pool *lp = check_pool(L);
  uint64_t id = (uint64_t)luaL_checknumber(L, 2);
  size_t len;
  const char *desc = luaL_checklstring(L, 3, &len);
  luaL_checktype(L, 4, LUA_TTABLE);
  int affinity = (int)luaL_optinteger(L, 5, -1);
  int prefer = (int)luaL_optinteger(L, 6, -1);
  ds_task *t = ds_task_new(id, desc, len);
  if (!t) return luaL_error(L, "out of memory");
  int n = (int)lua_objlen(L, 4);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 4, i);
    ds_slice *s = luaL_checkudata(L, -1, SLICE_MT);
    int rc = ds_task_add_input(t, s);
    lua_pop(L, 1);
    if (rc) {
      ds_task_free(t);
      return luaL_error(L, "out of memory");
    }
  }
  if (ds_pool_submit(lp->pool, t, affinity, prefer)) {
    ds_task_free(t);
    return luaL_error(L, "the worker pool is shutting down");
  }
  return 0;
}

static int pool_size(lua_State *L) {
  lua_pushinteger(L, ds_pool_size(check_pool(L)->pool));
  return 1;
}

static int pool_inflight(lua_State *L) {
  lua_pushinteger(L, ds_pool_inflight(check_pool(L)->pool));
  return 1;
}

static int pool_worker_memory(lua_State *L) {
  lua_pool *lp = check_pool(L);
  lua_pushnumber(L, (lua_Number)ds_pool_worker_memory(lp->pool, (int)luaL_checkinteger(L, 2)));
  return 1;
}

/* ---- module ------------------------------------------------------------------------------- */

void ds_lua_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction tostring) {
  if (luaL_newmetatable(L, name)) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    if (gc) {
      lua_pushcfunction(L, gc);
      lua_setfield(L, -2, "__gc");
    }
    if (tostring) {
      lua_pushcfunction(L, tostring);
      lua_setfield(L, -2, "__tostring");
    }
  }
  lua_pop(L, 1);
}

int luaopen_dstream_core(lua_State *L) {
  static const luaL_Reg slice_methods[] = {{"count", slice_count}, {"len", slice_len},
                                           {"ptr", slice_ptr},     {"format", slice_format},
                                           {"bytes", slice_tostring}, {NULL, NULL}};
  static const luaL_Reg timer_methods[] = {{"start", timer_start}, {"stop", timer_stop},
                                           {"close", handle_gc}, {NULL, NULL}};
  static const luaL_Reg signal_methods[] = {{"close", handle_gc}, {NULL, NULL}};
  static const luaL_Reg pool_methods[] = {
      {"put_blob", pool_put_blob}, {"drop_blob", pool_drop_blob}, {"blob_stats", pool_blob_stats},
      {"submit", pool_submit},   {"size", pool_size},
      {"inflight", pool_inflight}, {"close", pool_close},     {"worker_memory", pool_worker_memory},
      {"running", pool_running},   {NULL, NULL}};
  static const luaL_Reg functions[] = {{"run", core_run},
                                       {"stop_loop", core_stop_loop},
                                       {"running", core_running},
                                       {"on_worker", core_on_worker},
                                       {"now_ms", core_now_ms},
                                       {"hrtime_ms", core_hrtime_ms},
                                       {"cores", core_cores},
                                       {"worker_limits", core_worker_limits},
                                       {"limits", core_limits},
                                       {"cli_options", core_cli_options},
                                       {"struct_layouts", core_struct_layouts},
                                       {"timer", core_timer},
                                       {"signal", core_signal},
                                       {"pool_new", core_pool_new},
                                       {"slice_from_string", core_slice_from_string},
                                       {"lines_slice", core_lines_slice},
                                       {NULL, NULL}};
  ds_lua_new_class(L, SLICE_MT, slice_methods, slice_gc, NULL);
  ds_lua_new_class(L, TIMER_MT, timer_methods, handle_gc, NULL);
  ds_lua_new_class(L, SIGNAL_MT, signal_methods, handle_gc, NULL);
  ds_lua_new_class(L, POOL_MT, pool_methods, pool_close, NULL);

  lua_newtable(L);
  luaL_register(L, NULL, functions);
  lua_pushstring(L, DS_VERSION);
  lua_setfield(L, -2, "version");
  /* This VM's string table, for its word reader's prefetch (ds_words_cut); nil when the
   * LuaJIT linked cannot prefetch it. */
  void *strings = ds_words_strings(L);
  if (strings) {
    lua_pushlightuserdata(L, strings);
    lua_setfield(L, -2, "string_table");
  }
  lua_pushinteger(L, SIGINT);
  lua_setfield(L, -2, "SIGINT");
  lua_pushinteger(L, SIGTERM);
  lua_setfield(L, -2, "SIGTERM");
  ds_lua_open_sources(L);
  ds_lua_open_ckpt(L);
  ds_lua_open_kafka(L);
  ds_lua_open_monitor(L);
  ds_lua_open_repl(L);
  return 1;
}

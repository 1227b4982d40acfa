/* ds_lua_sources.c - Lua bindings for input sources: core.socket_source and core.file_source. */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds_lua.h"
#include "ds_recv.h"
#include "ds_recv_file.h"
#include "ds_recv_socket.h"
#include "ds_store.h"

#define SOURCE_MT "ds.source"

enum { SRC_SOCKET = 1, SRC_FILE = 2 };

/* The store outlives the userdata while its receiver is still closing (the receiver may
 * still append a last line), so both hold a reference and the last one frees it. */
typedef struct shared_store {
  ds_store *store;
  int refs;
} shared_store;

typedef struct lsource {
  int kind;
  shared_store *sh;   /* NULL once collected */
  void *recv;         /* ds_recv_socket* or ds_recv_file*; NULL once stopped */
  ds_recv_stats last; /* stats taken at stop: the receiver frees itself afterwards */
  double max_rate;    /* the max_rate option (records/s), 0 = none */
  double rate;        /* the limit set by src:set_rate (backpressure), 0 = none */
  char desc[320];     /* for tostring: "socket host:port", "files /dir" */
  ds_recv_file_part *held; /* file parts taken at stop, before the receiver frees itself */
  size_t nheld;
  int64_t held_threshold;  /* the file source's threshold at stop */
  ds_recv_file_counts held_counts;
} lsource;

static void free_held(lsource *s) {
  for (size_t i = 0; i < s->nheld; i++) free((char *)s->held[i].name);
  free(s->held);
  s->held = NULL;
  s->nheld = 0;
}

/* Keeps a copy of a part (the receiver's names die with it). */
static void hold_part(const ds_recv_file_part *p, void *ud) {
  lsource *s = ud;
  ds_recv_file_part *grown = realloc(s->held, (s->nheld + 1) * sizeof *grown);
  char *name = strdup(p->name);
  if (!grown || !name) { /* the batch log misses it: the file is read again after a crash */
    if (grown) s->held = grown;
    free(name);
    return;
  }
  s->held = grown;
  s->held[s->nheld] = *p;
  s->held[s->nheld++].name = name;
}

static void shared_release(void *ud) {
  shared_store *sh = ud;
  if (--sh->refs == 0) {
    ds_store_free(sh->store);
    free(sh);
  }
}

static lsource *check_source(lua_State *L) {
  lsource *s = luaL_checkudata(L, 1, SOURCE_MT);
  if (!s->sh) luaL_error(L, "source is closed");
  return s;
}

static void source_stop(lsource *s) {
  if (!s->recv) return;
  /* stop() stores the unfinished line now; stats stay readable until the close callback. */
  if (s->kind == SRC_SOCKET) {
    ds_recv_socket_stop(s->recv, shared_release, s->sh);
    ds_recv_socket_stats(s->recv, &s->last);
  } else {
    ds_recv_file_stop(s->recv, shared_release, s->sh);
    ds_recv_file_stats(s->recv, &s->last);
    ds_recv_file_take_parts(s->recv, hold_part, s); /* what the stop read, for the last seal */
    s->held_threshold = ds_recv_file_threshold(s->recv);
    ds_recv_file_counts_get(s->recv, &s->held_counts);
  }
  s->recv = NULL;
}

/* ---- options ---- */

/* Unknown keys are errors, so a misspelt option is not silently ignored. */
static void check_opt_names(lua_State *L, int idx, const char *const *names, const char *list) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    /* lua_tostring would convert a number key in place and break lua_next: check the type. */
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "option names must be strings (options: %s)", list);
    int known = 0;
    for (const char *const *n = names; *n; n++) known |= strcmp(lua_tostring(L, -1), *n) == 0;
    if (!known) luaL_error(L, "unknown option '%s' (options: %s)", lua_tostring(L, -1), list);
  }
}

/* A positive integer option in [1, max], or `def` when absent. */
static lua_Number opt_count(lua_State *L, int idx, const char *name, lua_Number def,
                            lua_Number max) {
  lua_getfield(L, idx, name);
  lua_Number v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "option '%s' must be a number", name);
    v = lua_tonumber(L, -1);
    /* Written so that NaN fails too; the cast is safe once the range holds. */
    if (!(v >= 1 && v <= max) || v != (lua_Number)(long long)v)
      luaL_error(L, "option '%s' must be an integer from 1 to %d", name, (int)max);
  }
  lua_pop(L, 1);
  return v;
}

/* max_rate option: a positive number of records per second, or 0 when absent. */
static double opt_rate(lua_State *L, int idx) {
  lua_getfield(L, idx, "max_rate");
  double v = 0;
  if (!lua_isnil(L, -1)) {
    v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
    if (!(v > 0) || v > 1e12)
      luaL_error(L, "option 'max_rate' must be a positive number of records per second");
  }
  lua_pop(L, 1);
  return v;
}

/* The limit in force: the lower of max_rate and the rate set by set_rate (0 = none). */
static double effective_rate(const lsource *s) { return ds_recv_rate_lower(s->max_rate, s->rate); }

/* Pushes a new, not yet started source userdata with its own store. */
static lsource *new_source(lua_State *L, int kind) {
  lsource *s = lua_newuserdata(L, sizeof *s);
  memset(s, 0, sizeof *s);
  s->kind = kind;
  luaL_getmetatable(L, SOURCE_MT);
  lua_setmetatable(L, -2);
  shared_store *sh = malloc(sizeof *sh);
  if (!sh || !(sh->store = ds_store_new(0))) {
    free(sh);
    luaL_error(L, "out of memory");
  }
  sh->refs = 1;
  s->sh = sh;
  return s;
}

/* A duration option as everywhere (seconds, or "30s", "2m"), read by
 * dstream.util.parse_duration, in ms from min_ms to max_ms (`range` says so in the error).
 * 0 when absent. */
static uint64_t opt_duration(lua_State *L, int idx, const char *name, double min_ms,
                             double max_ms, const char *range) {
  lua_getfield(L, idx, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_getglobal(L, "require");
  lua_pushliteral(L, "dstream.util");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "parse_duration");
  lua_pushvalue(L, -3);
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2))
    luaL_error(L, "option '%s': %s", name, lua_tostring(L, -1));
  double ms = lua_tonumber(L, -2);
  if (!(ms >= min_ms && ms <= max_ms)) luaL_error(L, "option '%s' must be from %s", name, range);
  lua_pop(L, 4);
  return (uint64_t)ms;
}

/* core.socket_source(host, port [, {max_line=, backoff_max_ms=, max_rate=, idle_timeout=}]) */
/* Option idle_timeout: at least 1 ms, at most a day; 0 when absent (never). */
static uint64_t opt_idle_timeout(lua_State *L, int idx) {
  return opt_duration(L, idx, "idle_timeout", 1, 86400000.0, "1 ms to 1 day");
}

static int l_socket_source(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port >= 1 && port <= 65535, 2, "port must be from 1 to 65535");
  ds_recv_socket_opts opts = {0};
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    static const char *const names[] = {"max_line", "backoff_max_ms", "max_rate",
                                        "idle_timeout", NULL};
    check_opt_names(L, 3, names, "max_line, backoff_max_ms, max_rate, idle_timeout");
    opts.max_line = (size_t)opt_count(L, 3, "max_line", DS_RECORD_MAX, DS_RECORD_MAX);
    opts.backoff_max_ms = (uint64_t)opt_count(L, 3, "backoff_max_ms", 2000, 86400000);
    opts.max_rate = opt_rate(L, 3);
    opts.idle_timeout_ms = opt_idle_timeout(L, 3);
  }
  lsource *s = new_source(L, SRC_SOCKET);
  s->max_rate = opts.max_rate;
  snprintf(s->desc, sizeof s->desc, strchr(host, ':') ? "socket [%s]:%d" : "socket %s:%d", host,
           (int)port);
  char err[256];
  ds_recv_socket *r;
  if (ds_recv_socket_start(ds_lua_loop(), host, (int)port, s->sh->store, &opts, &r, err,
                           sizeof err) < 0)
    return luaL_error(L, "%s", err); /* __gc frees the store */
  s->recv = r;
  s->sh->refs++; /* the receiver's reference, dropped by its close callback */
  return 1;
}

/* core.file_source(dir [, {new_files_only=bool, max_line=, max_rate=, remember=}]) */
static int l_file_source(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  ds_recv_file_opts opts = {.new_files_only = 1};
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    static const char *const names[] = {"new_files_only", "max_line", "max_rate", "remember",
                                        NULL};
    check_opt_names(L, 2, names, "new_files_only, max_line, max_rate, remember");
    opts.max_rate = opt_rate(L, 2);
    opts.remember_ms = (int64_t)opt_duration(L, 2, "remember", DS_RECV_FILE_REMEMBER_MIN_MS,
                                             30 * 86400000.0, "1s to 30 days");
    lua_getfield(L, 2, "new_files_only");
    if (!lua_isnil(L, -1)) {
      if (!lua_isboolean(L, -1)) luaL_error(L, "option 'new_files_only' must be a boolean");
      opts.new_files_only = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    opts.max_line = (size_t)opt_count(L, 2, "max_line", DS_RECORD_MAX, DS_RECORD_MAX);
  }
  lsource *s = new_source(L, SRC_FILE);
  s->max_rate = opts.max_rate;
  snprintf(s->desc, sizeof s->desc, "files %s", dir);
  char err[256];
  ds_recv_file *r;
  if (ds_recv_file_start(ds_lua_loop(), dir, s->sh->store, &opts, &r, err, sizeof err) < 0)
    return luaL_error(L, "%s", err);
  s->recv = r;
  s->sh->refs++;
  return 1;
}

/* ---- methods ---- */

/* src:seal(nparts) -> array of partitions holding every record received so far. */
static int l_seal(lua_State *L) {
  lsource *s = check_source(L);
  lua_Integer nparts = luaL_checkinteger(L, 2);
  luaL_argcheck(L, nparts >= 1 && nparts <= 65536, 2, "nparts must be from 1 to 65536");
  /* Files moved in before the batch boundary belong to this batch. A listing failure is
   * logged by the receiver and shows in stats().last_error; the batch goes on without it. */
  if (s->kind == SRC_FILE && s->recv) ds_recv_file_scan(s->recv);
  ds_sealed *sealed;
  int rc = ds_store_seal(s->sh->store, (int)nparts, &sealed);
  if (rc < 0) return luaL_error(L, "seal: %s", strerror(-rc));
  ds_lua_push_sealed(L, sealed);
  return 1;
}

static void push_remembered(const char *name, int64_t ctime_ms, void *ud) {
  lua_State *L = ud;
  lua_pushnumber(L, (lua_Number)ctime_ms);
  lua_setfield(L, -2, name);
}

/* src:remembered() -> { [name] = ctime_ms }: the names the file source remembers within its
 * window (read, skipped, or present at start), for the checkpoint written at start. */
static int l_remembered(lua_State *L) {
  lsource *s = check_source(L);
  lua_newtable(L);
  if (s->kind == SRC_FILE && s->recv) ds_recv_file_list_remembered(s->recv, push_remembered, L);
  return 1;
}

/* The file source's threshold (ms since the epoch), or nil before its first listing. */
static void push_threshold(lua_State *L, int64_t t) {
  if (t == INT64_MIN) lua_pushnil(L);
  else lua_pushnumber(L, (lua_Number)t);
}

/* src:threshold() -> ms since the epoch, or nil: a file whose ctime is below it is old. */
static int l_threshold(lua_State *L) {
  lsource *s = check_source(L);
  if (s->kind != SRC_FILE) return luaL_error(L, "threshold: not a file source");
  push_threshold(L, s->recv ? ds_recv_file_threshold(s->recv) : s->held_threshold);
  return 1;
}

/* src:set_threshold(ms): restores the threshold of a checkpoint, before the first seal. */
static int l_set_threshold(lua_State *L) {
  lsource *s = check_source(L);
  lua_Number t = luaL_checknumber(L, 2);
  if (s->kind != SRC_FILE || !s->recv) return luaL_error(L, "set_threshold: not a running file source");
  ds_recv_file_set_threshold(s->recv, (int64_t)t);
  return 0;
}

static void push_part(const ds_recv_file_part *p, void *ud) {
  lua_State *L = ud;
  lua_createtable(L, 4, 0);
  lua_pushstring(L, p->name);
  lua_rawseti(L, -2, 1);
  lua_pushnumber(L, (lua_Number)p->start);
  lua_rawseti(L, -2, 2);
  lua_pushnumber(L, (lua_Number)p->end);
  lua_rawseti(L, -2, 3);
  lua_pushboolean(L, p->done);
  lua_rawseti(L, -2, 4);
  lua_pushnumber(L, (lua_Number)p->ctime_ms);
  lua_rawseti(L, -2, 5);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
}

/* src:take_parts() -> { {name, start, end, done, ctime_ms}, ... }, threshold: the byte
 * ranges of the files whose records the store got since the last call (see
 * ds_recv_file_take_parts), and the threshold as of now (nil before the first listing);
 * call it right after seal. Only what changed crosses into Lua. */
static int l_take_parts(lua_State *L) {
  lsource *s = check_source(L);
  if (s->kind != SRC_FILE) return luaL_error(L, "take_parts: not a file source");
  lua_newtable(L);
  if (s->recv) ds_recv_file_take_parts(s->recv, push_part, L);
  for (size_t i = 0; i < s->nheld; i++) push_part(&s->held[i], L);
  free_held(s);
  push_threshold(L, s->recv ? ds_recv_file_threshold(s->recv) : s->held_threshold);
  return 2;
}

/* An optional ctime argument: -1 (unknown, looked up by the receiver) when nil. */
static int64_t opt_ctime(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) ? -1 : (int64_t)luaL_checknumber(L, idx);
}

/* src:resume(name, offset [, ctime_ms]): reads the file from byte `offset` on, first. */
static int l_resume(lua_State *L) {
  lsource *s = check_source(L);
  const char *name = luaL_checkstring(L, 2);
  lua_Number off = luaL_checknumber(L, 3);
  int64_t ctime_ms = opt_ctime(L, 4);
  if (s->kind != SRC_FILE || !s->recv) return luaL_error(L, "resume: not a running file source");
  if (ds_recv_file_resume(s->recv, name, (uint64_t)off, ctime_ms) != 0)
    return luaL_error(L, "resume: out of memory");
  return 0;
}

/* core.read_file_ranges({ {path, start, end}, ... }, nparts [, max_line]) -> partitions (as
 * seal), records; or nil, message. Reads byte ranges of files again, split into lines as the
 * file receiver split them: a batch of the batch log re-created after a restart. */
static int l_read_file_ranges(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer nparts = luaL_checkinteger(L, 2);
  luaL_argcheck(L, nparts >= 1 && nparts <= 65536, 2, "nparts must be from 1 to 65536");
  size_t max_line = (size_t)luaL_optnumber(L, 3, 0);
  ds_store *store = ds_store_new(0);
  if (!store) return luaL_error(L, "read_file_ranges: out of memory");
  char err[512];
  int n = (int)lua_objlen(L, 1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_rawgeti(L, -3, 3);
    const char *path = lua_tostring(L, -3);
    uint64_t start = (uint64_t)lua_tonumber(L, -2), end = (uint64_t)lua_tonumber(L, -1);
    int64_t rc = path ? ds_recv_file_read_range(path, start, end, max_line, store, err, sizeof err)
                      : -EINVAL;
    lua_pop(L, 4);
    if (rc < 0) {
      ds_store_free(store);
      lua_pushnil(L);
      lua_pushstring(L, path ? err : "read_file_ranges: a range without a path");
      return 2;
    }
  }
  uint64_t records = ds_store_pending(store);
  ds_sealed *sealed;
  int rc = ds_store_seal(store, (int)nparts, &sealed);
  ds_store_free(store);
  if (rc < 0) return luaL_error(L, "read_file_ranges: %s", strerror(-rc));
  ds_lua_push_sealed(L, sealed);
  lua_pushnumber(L, (lua_Number)records);
  return 2;
}

/* src:mark_seen(name [, ctime_ms]) -> ctime_ms, or nil when it was not given and the file is
 * gone: the file is not read while its ctime is in the window (restored from a checkpoint). */
static int l_mark_seen(lua_State *L) {
  lsource *s = check_source(L);
  const char *name = luaL_checkstring(L, 2);
  int64_t ctime_ms = opt_ctime(L, 3);
  if (s->kind != SRC_FILE || !s->recv) return luaL_error(L, "mark_seen: not a running file source");
  int rc = ds_recv_file_mark_seen(s->recv, name, &ctime_ms);
  if (rc == -ENOMEM) return luaL_error(L, "mark_seen: out of memory");
  if (rc < 0) return 0;
  lua_pushnumber(L, (lua_Number)ctime_ms);
  return 1;
}

static void set_int(lua_State *L, const char *k, uint64_t v) {
  lua_pushnumber(L, (lua_Number)v);
  lua_setfield(L, -2, k);
}

/* src:stats() -> {records, bytes, skipped, errors, reconnects, connected, last_error, pending,
 *                 max_rate, rate_limit, throttled, pauses} */
static int l_stats(lua_State *L) {
  lsource *s = check_source(L);
  ds_recv_stats st = s->last;
  if (s->recv && s->kind == SRC_SOCKET) ds_recv_socket_stats(s->recv, &st);
  else if (s->recv) ds_recv_file_stats(s->recv, &st);
  lua_createtable(L, 0, 8);
  set_int(L, "records", st.records);
  set_int(L, "bytes", st.bytes);
  set_int(L, "skipped", st.skipped);
  set_int(L, "errors", st.errors);
  set_int(L, "reconnects", st.reconnects);
  set_int(L, "pending", ds_store_pending(s->sh->store));
  set_int(L, "pauses", st.pauses);
  lua_pushnumber(L, s->max_rate);
  lua_setfield(L, -2, "max_rate");
  lua_pushnumber(L, s->recv ? st.rate_limit : effective_rate(s));
  lua_setfield(L, -2, "rate_limit");
  lua_pushboolean(L, st.throttled);
  lua_setfield(L, -2, "throttled");
  lua_pushboolean(L, st.connected);
  lua_setfield(L, -2, "connected");
  if (st.last_error[0]) {
    lua_pushstring(L, st.last_error);
    lua_setfield(L, -2, "last_error");
  }
  if (s->kind == SRC_FILE) {
    ds_recv_file_counts c = s->held_counts;
    if (s->recv) ds_recv_file_counts_get(s->recv, &c);
    set_int(L, "remembered", c.remembered);
    set_int(L, "forgotten", c.forgotten);
  }
  return 1;
}

/* src:set_rate(records_per_second | nil): a limit besides max_rate (the lower one holds);
 * nil or 0 removes it. Returns the limit now in force (0 = none). */
static int l_set_rate(lua_State *L) {
  lsource *s = check_source(L);
  double r = luaL_optnumber(L, 2, 0);
  s->rate = r > 0 ? r : 0;
  double eff = effective_rate(s);
  if (s->recv && s->kind == SRC_SOCKET) ds_recv_socket_set_rate(s->recv, eff);
  else if (s->recv) ds_recv_file_set_rate(s->recv, eff);
  lua_pushnumber(L, eff);
  return 1;
}

/* src:stop(): no more input; records already received can still be sealed. */
static int l_stop(lua_State *L) {
  source_stop(check_source(L));
  return 0;
}

static int l_gc(lua_State *L) {
  lsource *s = luaL_checkudata(L, 1, SOURCE_MT);
  if (!s->sh) return 0;
  source_stop(s);
  free_held(s);
  shared_release(s->sh);
  s->sh = NULL;
  return 0;
}

static int l_tostring(lua_State *L) {
  lsource *s = luaL_checkudata(L, 1, SOURCE_MT);
  lua_pushfstring(L, "ds.source(%s%s)", s->desc, s->recv ? "" : ", stopped");
  return 1;
}

void ds_lua_open_sources(lua_State *L) {
  int t = lua_gettop(L);
  static const luaL_Reg methods[] = {
      {"seal", l_seal},         {"stats", l_stats}, {"stop", l_stop}, {"set_rate", l_set_rate},
      {"remembered", l_remembered}, {"mark_seen", l_mark_seen}, {"take_parts", l_take_parts},
      {"resume", l_resume},     {"threshold", l_threshold}, {"set_threshold", l_set_threshold},
      {NULL, NULL}};
  ds_lua_new_class(L, SOURCE_MT, methods, l_gc, l_tostring);
  lua_pushcfunction(L, l_socket_source);
  lua_setfield(L, t, "socket_source");
  lua_pushcfunction(L, l_file_source);
  lua_setfield(L, t, "file_source");
  lua_pushcfunction(L, l_read_file_ranges);
  lua_setfield(L, t, "read_file_ranges");
  ds_lua_open_receiver(L); /* receivers written in Lua */
}

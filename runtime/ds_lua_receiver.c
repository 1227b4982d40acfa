/* ds_lua_receiver.c - Lua bindings for receivers written in Lua: core.lua_receiver. */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds_lua.h"
#include "ds_recv.h"
#include "ds_recv_lua.h"

#define RECEIVER_MT "ds.lua_receiver"
#define TICK_MS 10 /* how often the thread is told to hand over what store() buffered */

/* The tick timer lives apart from the userdata: its close callback may run after the
 * userdata was collected. */
typedef struct tick_timer {
  uv_timer_t timer;
  ds_recv_lua *r;
} tick_timer;

typedef struct lreceiver {
  ds_recv_lua *r;   /* NULL once collected */
  tick_timer *tick; /* NULL once stopped */
  int stop_wait_ms;
  double max_rate, rate; /* the max_rate option and the rate set by set_rate; 0 = none */
} lreceiver;

static lreceiver *check_receiver(lua_State *L) {
  lreceiver *s = luaL_checkudata(L, 1, RECEIVER_MT);
  if (!s->r) luaL_error(L, "receiver is closed");
  return s;
}

static void on_tick(uv_timer_t *t) { ds_recv_lua_tick(((tick_timer *)t->data)->r); }

/* The timer was stopped before its close: r is not touched again (it may be freed). */
static void on_tick_closed(uv_handle_t *h) { free(h->data); }

static void receiver_stop(lreceiver *s) {
  if (!s->tick) return;
  ds_recv_lua_stop(s->r, s->stop_wait_ms);
  uv_timer_stop(&s->tick->timer);
  uv_close((uv_handle_t *)&s->tick->timer, on_tick_closed);
  s->tick = NULL;
}

static double opt_number(lua_State *L, int idx, const char *name, double def) {
  lua_getfield(L, idx, name);
  double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.lua_receiver(name, blob, { max_rate =, stop_wait_ms = }) -> receiver: starts the
 * thread now. The options are checked by dstream.sources.receiver. */
static int l_lua_receiver(lua_State *L) {
  ds_recv_lua_config cfg = {0};
  cfg.name = luaL_checkstring(L, 1);
  cfg.blob = luaL_checklstring(L, 2, &cfg.blob_len);
  luaL_checktype(L, 3, LUA_TTABLE);
  cfg.max_rate = opt_number(L, 3, "max_rate", 0);
  double stop_wait = opt_number(L, 3, "stop_wait_ms", 2000);
  cfg.boot_module = "dstream.sources.receiver_thread";
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  cfg.package_path = lua_tostring(L, -2);
  cfg.package_cpath = lua_tostring(L, -1);

  lreceiver *s = lua_newuserdata(L, sizeof *s);
  memset(s, 0, sizeof *s);
  s->stop_wait_ms = stop_wait < 0 ? 0 : stop_wait > 3.6e6 ? 3600000 : (int)stop_wait;
  s->max_rate = cfg.max_rate > 0 ? cfg.max_rate : 0;
  tick_timer *t = malloc(sizeof *t);
  if (!t) return luaL_error(L, "out of memory");
  char err[256];
  if (ds_recv_lua_start(&cfg, &s->r, err, sizeof err) < 0) {
    free(t);
    return luaL_error(L, "%s", err);
  }
  luaL_getmetatable(L, RECEIVER_MT);
  lua_setmetatable(L, -2);
  t->r = s->r;
  uv_timer_init(ds_lua_loop(), &t->timer);
  t->timer.data = t;
  uv_timer_start(&t->timer, on_tick, TICK_MS, TICK_MS);
  uv_unref((uv_handle_t *)&t->timer);
  s->tick = t;
  return 1;
}

/* rcv:seal(nparts) -> partitions, as a socket source's seal. */
static int l_seal(lua_State *L) {
  lreceiver *s = check_receiver(L);
  lua_Integer nparts = luaL_checkinteger(L, 2);
  luaL_argcheck(L, nparts >= 1 && nparts <= 65536, 2, "nparts must be from 1 to 65536");
  ds_sealed *sealed;
  int rc = ds_recv_lua_seal(s->r, (int)nparts, &sealed);
  if (rc < 0) return luaL_error(L, "seal: %s", strerror(-rc));
  ds_lua_push_sealed(L, sealed);
  return 1;
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

/* rcv:stats() -> { records, bytes, pending, errors, restarts, dropped, state, backoff_ms,
 *                  connected, last_error, max_rate, rate_limit, throttled, pauses } */
static int l_stats(lua_State *L) {
  lreceiver *s = check_receiver(L);
  ds_recv_lua_stats st;
  ds_recv_lua_get_stats(s->r, &st);
  static const char *const states[] = {"starting", "running", "waiting", "finished", "stopped",
                                       "abandoned"};
  lua_createtable(L, 0, 14);
  set_num(L, "records", (double)st.records);
  set_num(L, "bytes", (double)st.bytes);
  set_num(L, "pending", (double)st.pending);
  set_num(L, "errors", (double)st.errors);
  set_num(L, "restarts", (double)st.restarts);
  set_num(L, "dropped", (double)st.dropped);
  set_num(L, "backoff_ms", st.backoff_ms);
  set_num(L, "max_rate", s->max_rate);
  set_num(L, "rate_limit", st.rate_limit);
  set_num(L, "pauses", (double)st.pauses);
  lua_pushstring(L, states[st.state >= 0 && st.state <= 5 ? st.state : 0]);
  lua_setfield(L, -2, "state");
  lua_pushboolean(L, st.state == DS_RECV_LUA_RUNNING);
  lua_setfield(L, -2, "connected");
  lua_pushboolean(L, st.throttled);
  lua_setfield(L, -2, "throttled");
  if (st.last_error[0]) {
    lua_pushstring(L, st.last_error);
    lua_setfield(L, -2, "last_error");
  }
  return 1;
}

/* rcv:set_rate(records_per_second | nil): a limit besides max_rate (the lower one holds).
 * Returns the limit now in force (0 = none). */
static int l_set_rate(lua_State *L) {
  lreceiver *s = check_receiver(L);
  double r = luaL_optnumber(L, 2, 0);
  s->rate = r > 0 ? r : 0;
  double eff = ds_recv_rate_lower(s->max_rate, s->rate);
  ds_recv_lua_set_rate(s->r, eff);
  lua_pushnumber(L, eff);
  return 1;
}

/* rcv:stop(): asks on_start to end and waits (bounded) for the thread; what it stored can
 * still be sealed. Returns true when the thread ended, false when it was abandoned. */
static int l_stop(lua_State *L) {
  lreceiver *s = check_receiver(L);
  receiver_stop(s);
  lua_pushboolean(L, ds_recv_lua_stop(s->r, 0) == 0);
  return 1;
}

static int l_gc(lua_State *L) {
  lreceiver *s = luaL_checkudata(L, 1, RECEIVER_MT);
  if (!s->r) return 0;
  receiver_stop(s);
  ds_recv_lua_free(s->r);
  s->r = NULL;
  return 0;
}

static int l_tostring(lua_State *L) {
  lreceiver *s = luaL_checkudata(L, 1, RECEIVER_MT);
  lua_pushfstring(L, "ds.lua_receiver(%s)", s->r ? (s->tick ? "running" : "stopped") : "closed");
  return 1;
}

void ds_lua_open_receiver(lua_State *L) {
  int t = lua_gettop(L);
  static const luaL_Reg methods[] = {{"seal", l_seal},       {"stats", l_stats},
                                     {"set_rate", l_set_rate}, {"stop", l_stop},
                                     {NULL, NULL}};
  ds_lua_new_class(L, RECEIVER_MT, methods, l_gc, l_tostring);
  lua_pushcfunction(L, l_lua_receiver);
  lua_setfield(L, t, "lua_receiver");
}

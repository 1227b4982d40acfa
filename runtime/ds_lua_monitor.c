/* ds_lua_monitor.c - Lua bindings for watching a job: the HTTP server, logging, isatty. */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds_http.h"
#include "ds_log.h"
#include "ds_lua.h"

#define HTTP_MT "ds.http"

/* The server's state outlives the userdata while its handles close: the userdata holds a
 * pointer, and the close callback frees the struct. */
typedef struct lhttp {
  ds_http *srv; /* NULL once stopped */
  int fn_ref;
} lhttp;

/* Calls the Lua handler fn(method, path, query, host) -> status, content_type, body on the
 * state running the loop. A handler that raises is logged and answered 500: a broken page
 * must never stop the job. */
static void on_request(void *ud, ds_http_request *req) {
  lhttp *h = ud;
  lua_State *L = ds_lua_running_state();
  if (!L || h->fn_ref == LUA_NOREF) {
    ds_http_respond(req, 503, NULL, "unavailable\n", 12);
    return;
  }
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8)) {
    ds_http_respond(req, 503, NULL, "unavailable\n", 12);
    return;
  }
  lua_pushcfunction(L, ds_lua_traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn_ref);
  lua_pushstring(L, req->method);
  lua_pushstring(L, req->path);
  lua_pushstring(L, req->query);
  lua_pushstring(L, req->host);
  if (lua_pcall(L, 4, 3, top + 1) != 0) {
    const char *msg = lua_tostring(L, -1);
    ds_log(DS_LOG_WARN, "ui: %s %s failed: %s", req->method, req->path,
           msg ? msg : "(error object is not a string)");
    ds_http_respond(req, 500, NULL, "internal error (see the job's log)\n", 35);
  } else {
    int status = lua_isnumber(L, top + 2) ? (int)lua_tointeger(L, top + 2) : 500;
    if (status < 100 || status > 599) status = 500;
    const char *ctype = lua_tostring(L, top + 3);
    size_t len = 0;
    const char *body = lua_tolstring(L, top + 4, &len);
    ds_http_respond(req, status, ctype, body, body ? len : 0);
  }
  lua_settop(L, top);
}

static void http_closed(void *ud) { free(ud); }

static lhttp *check_http(lua_State *L) {
  lhttp **hp = luaL_checkudata(L, 1, HTTP_MT);
  if (!*hp) luaL_error(L, "the http server is closed");
  return *hp;
}

/* core.http_server(host, port, allow_public, fn) -> server. fn(method, path, query, host)
 * returns status, content_type, body. Raises with the reason when it cannot listen. */
static int l_http_server(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  int allow_public = lua_toboolean(L, 3);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  lhttp **hp = lua_newuserdata(L, sizeof *hp);
  *hp = calloc(1, sizeof **hp);
  if (!*hp) return luaL_error(L, "out of memory");
  (*hp)->fn_ref = LUA_NOREF;
  luaL_getmetatable(L, HTTP_MT);
  lua_setmetatable(L, -2);
  ds_http_opts opts = {.allow_public = allow_public}; /* the defaults: docs/guide.md, --ui */
  char err[256];
  int rc = ds_http_start(ds_lua_loop(), host, port < 0 || port > 65535 ? -1 : (int)port, &opts,
                         on_request, *hp, &(*hp)->srv, err, sizeof err);
  if (rc < 0) {
    free(*hp);
    *hp = NULL;
    return luaL_error(L, "%s", err);
  }
  lua_pushvalue(L, 4);
  (*hp)->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* server:address() -> host, port (the port actually bound) */
static int l_http_address(lua_State *L) {
  lhttp *h = check_http(L);
  char host[64];
  int port;
  ds_http_address(h->srv, host, sizeof host, &port);
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

static int l_http_requests(lua_State *L) {
  lua_pushnumber(L, (lua_Number)ds_http_requests(check_http(L)->srv));
  return 1;
}

static int l_http_close(lua_State *L) {
  lhttp **hp = luaL_checkudata(L, 1, HTTP_MT);
  if (!*hp) return 0;
  luaL_unref(L, LUA_REGISTRYINDEX, (*hp)->fn_ref);
  (*hp)->fn_ref = LUA_NOREF;
  ds_http_stop((*hp)->srv, http_closed, *hp);
  *hp = NULL;
  return 0;
}

/* core.log(level, message): one line on stderr through ds_log, if the level is on. */
static int l_log(lua_State *L) {
  int level = ds_log_parse_level(luaL_checkstring(L, 1));
  luaL_argcheck(L, level >= 0, 1, "level must be error, warn, info or debug");
  ds_log(level, "%s", luaL_checkstring(L, 2));
  return 0;
}

/* core.log_level() -> "error" | "warn" | "info" | "debug" */
static int l_log_level(lua_State *L) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  int level = ds_log_get_level();
  lua_pushstring(L, names[level >= 0 && level <= 3 ? level : 1]);
  return 1;
}

/* core.isatty(fd) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)) == 1);
  return 1;
}

void ds_lua_open_monitor(lua_State *L) {
  int t = lua_gettop(L);
  static const luaL_Reg methods[] = {{"address", l_http_address},
                                     {"requests", l_http_requests},
                                     {"close", l_http_close},
                                     {NULL, NULL}};
  ds_lua_new_class(L, HTTP_MT, methods, l_http_close, NULL);
  static const luaL_Reg functions[] = {{"http_server", l_http_server},
                                       {"log", l_log},
                                       {"log_level", l_log_level},
                                       {"isatty", l_isatty},
                                       {NULL, NULL}};
  for (const luaL_Reg *f = functions; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, t, f->name);
  }
}

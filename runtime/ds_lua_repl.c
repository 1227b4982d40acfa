/* ds_lua_repl.c - the prompt's Lua bindings: core.repl_* over ds_repl (the terminal side). */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "ds_lua.h"
#include "ds_repl.h"

/* The Lua functions the open prompt calls back (registry references). */
static int on_line_ref = LUA_NOREF, complete_ref = LUA_NOREF;

/* A line, or the end of input (line == NULL), to the Lua on_line function. */
static void on_line(void *ud, const char *line, size_t len) {
  (void)ud;
  lua_State *L = ds_lua_running_state();
  if (!L || on_line_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, on_line_ref);
  if (line)
    lua_pushlstring(L, line, len);
  else
    lua_pushnil(L);
  ds_lua_callback(L, 1);
}

/* The Lua complete(word, line_before_cursor) function's list, as C strings. A completion
 * that raises completes nothing. */
static char **complete(void *ud, const char *word, const char *line, size_t line_len, size_t *n) {
  (void)ud;
  *n = 0;
  lua_State *L = ds_lua_running_state();
  if (!L || complete_ref == LUA_NOREF) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, complete_ref);
  lua_pushstring(L, word);
  lua_pushlstring(L, line, line_len);
  if (lua_pcall(L, 2, 1, 0) != 0 || !lua_istable(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  size_t len = lua_objlen(L, -1);
  char **cands = len ? calloc(len, sizeof *cands) : NULL;
  for (size_t i = 1; cands && i <= len; i++) {
    lua_rawgeti(L, -1, (int)i);
    const char *s = lua_tostring(L, -1);
    if (s && (cands[*n] = strdup(s)) != NULL) (*n)++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return cands;
}

static const char *mode_name(void) {
  ds_repl_mode m = ds_repl_input_mode();
  return m == DS_REPL_TTY ? "tty" : m == DS_REPL_PIPE ? "pipe" : "file";
}

/* core.repl_open{ on_line = fn(line|nil), complete = fn(word, line) -> {..}, history = path,
 *                 plain = bool } -> "tty" | "pipe" | "file" */
static int l_repl_open(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (ds_repl_is_open()) return luaL_error(L, "the prompt is already open");
  lua_getfield(L, 1, "on_line");
  luaL_argcheck(L, lua_isfunction(L, -1), 1, "on_line must be a function");
  lua_getfield(L, 1, "complete");
  luaL_argcheck(L, lua_isnil(L, -1) || lua_isfunction(L, -1), 1, "complete must be a function");
  lua_getfield(L, 1, "history");
  const char *history = lua_tostring(L, -1);
  lua_getfield(L, 1, "plain");
  int plain = lua_toboolean(L, -1);
  static const ds_repl_callbacks cb = {on_line, complete, NULL};
  char err[256];
  if (ds_repl_open(ds_lua_loop(), history, plain, &cb, err, sizeof err) != 0)
    return luaL_error(L, "%s", err);
  lua_pushvalue(L, 2);
  on_line_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 3);
  complete_ref = lua_isnil(L, -1) ? (lua_pop(L, 1), LUA_NOREF) : luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushstring(L, mode_name());
  return 1;
}

static void check_open(lua_State *L) {
  if (!ds_repl_is_open()) luaL_error(L, "the prompt is not open");
}

/* core.repl_read(prompt) -> "line", text | "eof" | "wait" (the line comes to on_line). */
static int l_repl_read(lua_State *L) {
  check_open(L);
  const char *prompt = luaL_optstring(L, 1, "> ");
  const char *line;
  size_t len;
  char err[256];
  switch (ds_repl_read(prompt, &line, &len, err, sizeof err)) {
  case DS_REPL_LINE:
    lua_pushliteral(L, "line");
    lua_pushlstring(L, line, len);
    return 2;
  case DS_REPL_EOF:
    lua_pushliteral(L, "eof");
    return 1;
  case DS_REPL_WAIT:
    lua_pushliteral(L, "wait");
    return 1;
  default:
    return luaL_error(L, "%s", err);
  }
}

/* core.repl_cancel(prompt): Ctrl-C at the prompt: the line typed so far is dropped and a
 * fresh prompt drawn. Returns true if a prompt was out. */
static int l_repl_cancel(lua_State *L) {
  check_open(L);
  lua_pushboolean(L, ds_repl_cancel(luaL_optstring(L, 1, "> ")));
  return 1;
}

/* core.repl_stop_reading(): takes the prompt off (before the session ends). */
static int l_repl_stop_reading(lua_State *L) {
  check_open(L);
  ds_repl_stop_reading();
  return 0;
}

static int l_repl_add_history(lua_State *L) {
  check_open(L);
  ds_repl_add_history(luaL_checkstring(L, 1));
  return 0;
}

/* core.repl_history() -> { entries, oldest first } (empty without a terminal). */
static int l_repl_history(lua_State *L) {
  check_open(L);
  lua_newtable(L);
  const char *line;
  for (int i = 0; (line = ds_repl_history_entry(i)) != NULL; i++) {
    lua_pushstring(L, line);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_repl_columns(lua_State *L) {
  lua_pushinteger(L, ds_repl_columns());
  return 1;
}

/* core.repl_interrupt(): Ctrl-C during an evaluation: the action waiting for the loop ends
 * with the error "interrupted" (core.take_interrupt tells it). */
static int l_repl_interrupt(lua_State *L) {
  (void)L;
  ds_repl_interrupt();
  uv_stop(ds_lua_loop());
  return 0;
}

/* core.take_interrupt() -> true once after an interrupt was asked for. Loops that wait on
 * core.run for an action call it after each turn and raise "interrupted". */
static int l_take_interrupt(lua_State *L) {
  lua_pushboolean(L, ds_repl_take_interrupt());
  return 1;
}

static int l_repl_close(lua_State *L) {
  if (on_line_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, on_line_ref);
  if (complete_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, complete_ref);
  on_line_ref = complete_ref = LUA_NOREF;
  ds_repl_close();
  return 0;
}

void ds_lua_open_repl(lua_State *L) {
  static const luaL_Reg functions[] = {{"repl_open", l_repl_open},
                                       {"repl_read", l_repl_read},
                                       {"repl_cancel", l_repl_cancel},
                                       {"repl_stop_reading", l_repl_stop_reading},
                                       {"repl_add_history", l_repl_add_history},
                                       {"repl_history", l_repl_history},
                                       {"repl_columns", l_repl_columns},
                                       {"repl_interrupt", l_repl_interrupt},
                                       {"repl_close", l_repl_close},
                                       {"take_interrupt", l_take_interrupt},
                                       {NULL, NULL}};
  luaL_register(L, NULL, functions);
}

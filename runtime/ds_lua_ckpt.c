/* ds_lua_ckpt.c - Lua bindings of ds_ckpt: core.ckpt_write/read/check/stamp/list/remove_temps. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds_ckpt.h"
#include "ds_lua.h"

/* core.ckpt_write(dir, gen, bytes) -> true | nil, message */
static int l_write(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  uint64_t gen = (uint64_t)luaL_checknumber(L, 2);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  char err[4400];
  if (ds_ckpt_write(dir, gen, data, len, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.ckpt_read(path) -> bytes, generation | nil, message */
static int l_read(lua_State *L) {
  char *data;
  size_t len;
  uint64_t gen;
  char err[4400];
  if (ds_ckpt_read(luaL_checkstring(L, 1), &data, &len, &gen, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, data, len);
  free(data);
  lua_pushnumber(L, (lua_Number)gen);
  return 2;
}

/* core.ckpt_list(dir) -> { gen, ... } ascending | nil, message */
static int l_list(lua_State *L) {
  uint64_t *gens;
  int n;
  char err[4400];
  if (ds_ckpt_list(luaL_checkstring(L, 1), &gens, &n, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, (lua_Number)gens[i]);
    lua_rawseti(L, -2, i + 1);
  }
  free(gens);
  return 1;
}

/* core.durable_write(path, dir, bytes) -> true | nil, message: a framed file, fsync'd. */
static int l_durable_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1), *dir = luaL_checkstring(L, 2);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  char err[4400];
  if (ds_ckpt_write_path(path, dir, 0, data, len, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.list_dir(path) -> { name, ... } (no "." and "..") | nil, message */
static int l_list_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot list %s: %s", path, strerror(errno));
    return 2;
  }
  lua_newtable(L);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  return 1;
}

static int l_path(lua_State *L) {
  char path[4200];
  ds_ckpt_path(path, sizeof path, luaL_checkstring(L, 1), (uint64_t)luaL_checknumber(L, 2));
  lua_pushstring(L, path);
  return 1;
}

/* core.ckpt_check(path) -> stamp | nil, message[, stamp]: whether a checkpoint file is
 * readable (header and checksum), without keeping its bytes; the stamp is the file's as of
 * the check (core.ckpt_stamp). */
static int l_check(lua_State *L) {
  char err[4400], stamp[128];
  stamp[0] = '\0';
  if (ds_ckpt_check(luaL_checkstring(L, 1), stamp, sizeof stamp, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    if (!stamp[0]) return 2;
    lua_pushstring(L, stamp);
    return 3;
  }
  lua_pushstring(L, stamp);
  return 1;
}

/* core.ckpt_stamp(path) -> stamp | nil, message: changes whenever the file does. */
static int l_stamp(lua_State *L) {
  char err[4400], stamp[128];
  if (ds_ckpt_stamp(luaL_checkstring(L, 1), stamp, sizeof stamp, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushstring(L, stamp);
  return 1;
}

/* core.ckpt_remove_temps(dir) -> true | nil, message: temp files of interrupted writes. */
static int l_remove_temps(lua_State *L) {
  char err[4400];
  if (ds_ckpt_remove_temps(luaL_checkstring(L, 1), err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* core.remove_tree(path) -> true | nil, message: removes a directory and what it holds
 * (an output directory replaced by a re-run batch). */
static int l_remove_tree(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot remove %s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

void ds_lua_open_ckpt(lua_State *L) {
  static const luaL_Reg fns[] = {{"ckpt_write", l_write},
                                 {"ckpt_read", l_read},
                                 {"ckpt_check", l_check},
                                 {"ckpt_stamp", l_stamp},
                                 {"ckpt_list", l_list},
                                 {"ckpt_path", l_path},
                                 {"ckpt_remove_temps", l_remove_temps},
                                 {"remove_tree", l_remove_tree},
                                 {"durable_write", l_durable_write},
                                 {"list_dir", l_list_dir},
                                 {NULL, NULL}};
  luaL_register(L, NULL, fns);
}

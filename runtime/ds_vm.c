/* ds_vm.c - Lua states with dstream's paths, preloads and an optional memory limit. */
#include "ds_vm.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "ds_lua.h"
#include "ds_paths.h"

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  ds_vm *vm = ud;
  if (nsize == 0) {
    vm->base_alloc(vm->base_ud, ptr, osize, 0);
    vm->used -= osize;
    return NULL;
  }
  if (vm->limit && nsize > osize && vm->used + (nsize - osize) > vm->limit) return NULL;
  void *p = vm->base_alloc(vm->base_ud, ptr, osize, nsize);
  if (!p) return NULL;
  vm->used = vm->used - osize + nsize;
  if (vm->used > vm->peak) vm->peak = vm->used;
  return p;
}

static int vm_panic(lua_State *L) {
  (void)L;
  abort(); /* unprotected error: a bug in dstream, never in a user's closure */
  return 0;
}

/* The libraries and preloads, run under lua_cpcall: an error here (a limit too small for
 * them) is returned by ds_vm_open, never a panic. */
static int vm_setup(lua_State *L) {
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_dstream_core);
  lua_setfield(L, -2, "dstream.core");
  lua_pop(L, 2);
  return 0;
}

static int vm_setup_paths(lua_State *L);

int ds_vm_open(ds_vm *vm, size_t limit) {
  memset(vm, 0, sizeof *vm);
  vm->limit = limit;
  /* LuaJIT's own allocator (one arena per state, no locks) behind the counting wrapper: worker
   * loops allocate a string per record, and it is faster than malloc there (docs/performance.md). */
  vm->L = luaL_newstate();
  if (!vm->L) return -ENOMEM;
  vm->base_alloc = lua_getallocf(vm->L, &vm->base_ud);
  vm->used = (size_t)lua_gc(vm->L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(vm->L, LUA_GCCOUNTB, 0);
  vm->peak = vm->used;
  lua_setallocf(vm->L, vm_alloc, vm);
  lua_atpanic(vm->L, vm_panic);
  int rc = lua_cpcall(vm->L, vm_setup, NULL);
  if (rc == 0 && lua_cpcall(vm->L, vm_setup_paths, NULL) == 0) return 0;
  ds_vm_close(vm);
  return rc == LUA_ERRMEM || rc == 0 ? -ENOMEM : -EINVAL;
}

static void prepend(lua_State *L, const char *field, const char *prefix) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, field);
  const char *old = lua_tostring(L, -1);
  if (old && strstr(old, prefix) == old) {
    lua_pop(L, 2);
    return;
  }
  lua_pushstring(L, prefix);
  lua_pushstring(L, old ? old : "");
  lua_concat(L, 2);
  lua_setfield(L, -3, field);
  lua_pop(L, 2);
}

static int vm_setup_paths(lua_State *L) {
  const char *prefix = ds_paths_lua_prefix();
  if (prefix) prepend(L, "path", prefix);
  return 0;
}

void ds_vm_set_paths(ds_vm *vm, const char *path, const char *cpath) {
  if (path) prepend(vm->L, "path", path);
  if (cpath) prepend(vm->L, "cpath", cpath);
}

void ds_vm_close(ds_vm *vm) {
  if (vm->L) {
    lua_setallocf(vm->L, vm->base_alloc, vm->base_ud); /* close frees the arena as a whole */
    lua_close(vm->L);
  }
  vm->L = NULL;
}

/* ds_vm.h - building a Lua state for dstream: the driver's and each worker's.
 *
 * Every state gets the standard libraries, dstream's module path in front of package.path,
 * and `dstream.core` preloaded. A worker state also gets an allocator with a byte limit, so a
 * closure that allocates without bound fails its task with "not enough memory" instead of
 * taking the process down. The ds_vm owns its lua_State. */
#ifndef DS_VM_H
#define DS_VM_H

#include <lua.h>
#include <stddef.h>

typedef struct ds_vm {
  lua_State *L;
  size_t used;  /* bytes currently allocated by this state */
  size_t limit; /* 0: no limit */
  size_t peak;
  lua_Alloc base_alloc; /* LuaJIT's allocator, which the state's counting allocator calls */
  void *base_ud;
} ds_vm;

/* The smallest worker_memory a worker can boot with (its libraries and dstream.worker's
 * modules) and still run a small task; the command line refuses less. */
#define DS_VM_MIN_MEMORY ((size_t)1 << 20)
/* A worker's memory limit when neither context{ worker_memory = } nor --worker-memory sets
 * one (Lua reads it as core.limits().worker_memory). */
#define DS_VM_DEFAULT_MEMORY ((size_t)4 << 30)

/* Creates a state (limit 0 = unlimited) with libraries and paths set up, under a protected
 * call: a limit too small for them returns -ENOMEM (the state is closed), never aborts. */
int ds_vm_open(ds_vm *vm, size_t limit);
/* Prepends `path` / `cpath` (may be NULL) to package.path / package.cpath. */
void ds_vm_set_paths(ds_vm *vm, const char *path, const char *cpath);
void ds_vm_close(ds_vm *vm);

#endif

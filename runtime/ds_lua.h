/* ds_lua.h - the dstream.core Lua module: bindings from the driver's Lua state to the C core.
 *
 * The module owns the Lua-visible handles (timers, signals, worker pools, sources, slices).
 * All callbacks into Lua run on the driver thread, inside core.run(), on the Lua thread that
 * called core.run(); a callback that raises stops the loop and core.run() re-raises it. */
#ifndef DS_LUA_H
#define DS_LUA_H

#include <lua.h>
#include <uv.h>

#include "ds_store.h"

/* The driver's libuv loop (one per process). */
uv_loop_t *ds_lua_loop(void);

/* Pushes a sealed batch as a Lua array of partitions, each { count = n, [1..k] = slice }
 * where every slice is a "ds.slice" userdata holding its own block reference.
 * Consumes `sealed` (frees it). */
void ds_lua_push_sealed(lua_State *L, ds_sealed *sealed);

/* Pushes a new "ds.slice" userdata taking over the reference held by `s` (s is cleared). */
void ds_lua_push_slice(lua_State *L, ds_slice *s);

/* Calls the Lua function at the top of the driver stack used by the running core.run(),
 * with `nargs` arguments below it already pushed (lua_pcall convention). If it raises, the
 * error is kept, the loop is stopped and core.run() raises it. Returns 0 or -1. */
int ds_lua_callback(lua_State *L, int nargs);
/* The Lua state on which core.run() is executing, or NULL outside core.run(). */
lua_State *ds_lua_running_state(void);
/* A lua_pcall message handler: a string error gets the stack's traceback appended (from the
 * function that raised); other error values are kept as they are. */
int ds_lua_traceback(lua_State *L);
/* Registers the metatable `name` of a userdata class once: `methods` as its __index, and the
 * __gc and __tostring functions when not NULL. Leaves the stack as it was. */
void ds_lua_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction tostring);

/* Pushes the command line's options (core.cli_options(), the module dstream.options): a table
 * of the `--name value` options by name, values as given (their readers check them), and
 * `jit`, the -j and -O commands in order. One table per state, made on first use; ds_main.c
 * fills it while it reads the command line. */
void ds_lua_push_cli_options(lua_State *L);

/* Registers the source constructors (socket_source, file_source) into the table on top. */
void ds_lua_open_sources(lua_State *L);
/* Registers core.lua_receiver, receivers written in Lua (ds_lua_receiver.c), likewise. */
void ds_lua_open_receiver(lua_State *L);
/* Registers the checkpoint file functions (ckpt_write, ckpt_read, ...) into the table on top. */
void ds_lua_open_ckpt(lua_State *L);
/* Registers the Kafka bindings (kafka_source, kafka_producer, kafka_mock ...) likewise. */
void ds_lua_open_kafka(lua_State *L);
/* Registers http_server, log, log_level and isatty (ds_lua_monitor.c) into the table on top. */
void ds_lua_open_monitor(lua_State *L);
/* Registers the prompt's functions (repl_open, repl_read, ... take_interrupt; ds_lua_repl.c). */
void ds_lua_open_repl(lua_State *L);

int luaopen_dstream_core(lua_State *L);

#endif

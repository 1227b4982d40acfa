/* ds_paths.h - where dstream's own Lua modules live, found without environment variables.
 *
 * An installed dstream finds them beside its executable (<prefix>/share/dstream/lua, or
 * <tree>/share/lua/5.1 in a luarocks tree); a
 * dstream run from its build tree finds them in the source tree it was built from. The
 * DSTREAM_LUA_DIR environment variable, when set, overrides both (for packagers). */
#ifndef DS_PATHS_H
#define DS_PATHS_H

/* Returns the package.path prefix ("dir/?.lua;dir/?/init.lua;...;") for dstream's modules.
 * The string is computed once and lives for the whole process. */
const char *ds_paths_lua_prefix(void);
/* Absolute path of the running executable, or "dstream" when it cannot be found. */
const char *ds_paths_exe(void);

#endif

/* ds_paths.c - locating dstream's Lua modules relative to the executable. */
#include "ds_paths.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DS_SOURCE_DIR
#define DS_SOURCE_DIR "."
#endif

static char exe_path[PATH_MAX] = "dstream";
static char lua_prefix[4 * PATH_MAX + 64];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int has_file(const char *dir, const char *rel) {
  char p[PATH_MAX + 64];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  return stat(p, &st) == 0;
}

static void add_root(const char *dir) {
  size_t n = strlen(lua_prefix);
  snprintf(lua_prefix + n, sizeof lua_prefix - n, "%s/?.lua;%s/?/init.lua;", dir, dir);
}

static void compute(void) {
  ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
  if (n > 0) exe_path[n] = '\0';

  const char *env = getenv("DSTREAM_LUA_DIR");
  if (env && *env) {
    add_root(env);
    return;
  }
  /* Installed layout: <prefix>/bin/dstream and <prefix>/share/dstream/lua/dstream/init.lua. */
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", exe_path);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = '\0';
    char installed[PATH_MAX + 32];
    snprintf(installed, sizeof installed, "%s/../share/dstream/lua", dir);
    if (has_file(installed, "dstream/init.lua")) {
      add_root(installed);
      return;
    }
    /* A luarocks tree: <tree>/bin/dstream and <tree>/share/lua/5.1/dstream/init.lua. */
    snprintf(installed, sizeof installed, "%s/../share/lua/5.1", dir);
    if (has_file(installed, "dstream/init.lua")) {
      add_root(installed);
      return;
    }
  }
  /* Build tree: the sources this binary was built from. */
  add_root(DS_SOURCE_DIR "/lua");
  add_root(DS_SOURCE_DIR "/stdlib");
}

const char *ds_paths_lua_prefix(void) {
  pthread_once(&once, compute);
  return lua_prefix;
}

const char *ds_paths_exe(void) {
  pthread_once(&once, compute);
  return exe_path;
}

rockspec_format = "3.0"
package = "dstream"
version = "scm-1"
-- `luarocks make` in a checkout builds the checkout (the tested path: spec/e2e/luarocks.sh);
-- `luarocks install`/`pack` fetch the source from here. Lua 5.1 is LuaJIT's API: run
-- luarocks with --lua-version 5.1 where its default is another version (Debian 12: 5.2).
source = {
  url = "git+https://github.com/dstream-lua/dstream.git",
  branch = "main",
}
description = {
  summary = "Micro-batch stream processing: a C core with jobs written in Lua (LuaJIT)",
  detailed = [[
dstream is a stream processing runtime in the spirit of Spark Streaming's discretized
streams: a C core receives data, slices it into batches and schedules partition tasks on
worker threads; jobs are Lua scripts whose closures run inside LuaJIT on the workers.
]],
  license = "MIT",
  homepage = "https://github.com/dstream-lua/dstream",
}
dependencies = {
  "lua == 5.1",
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "RelWithDebInfo",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUADIR = "$(LUADIR)",
  },
  install = {
    bin = { dstream = "build.luarocks/dstream" },
  },
}

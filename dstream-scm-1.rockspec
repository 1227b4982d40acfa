rockspec_format = "3.0"
package = "dstream"
version = "scm-1"
source = {
  url = "git+file:///work/main",
}
description = {
  summary = "Micro-batch stream processing: a C core with jobs written in Lua (LuaJIT)",
  detailed = [[
dstream is a stream processing runtime in the spirit of Spark Streaming's discretized
streams: a C core receives data, slices it into batches and schedules partition tasks on
worker threads; jobs are Lua scripts whose closures run inside LuaJIT on the workers.
]],
  license = "MIT",
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

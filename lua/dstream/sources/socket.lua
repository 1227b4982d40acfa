-- dstream/sources/socket.lua: socket_text_stream, lines from a TCP server (a receiver in C,
-- runtime/ds_recv_socket.c).
local core = require("dstream.core")
local sources = require("dstream.sources")
local util = require("dstream.util")

local M = {}

function M.socket_text_stream(self, host, port, opts, ...)
  sources.check_not_started(self, "socket_text_stream")
  sources.check_options("socket_text_stream(host, port [, opts])", 3, opts, ...)
  -- (runtime/ds_lua_sources.c checks their values when the source opens, in ctx:start())
  util.check_names(opts or {}, { "backoff_max_ms", "idle_timeout", "max_line", "max_rate" }, "socket_text_stream")
  if type(host) ~= "string" then util.raise("socket_text_stream: expected a host name, got " .. type(host)) end
  port = tonumber(port)
  if not port or port < 1 or port > 65535 or port ~= math.floor(port) then
    util.raise("socket_text_stream: expected a port number from 1 to 65535")
  end
  local input = sources.receiver(self, "socket_text_stream " .. host .. ":" .. port, function()
    return core.socket_source(host, port, opts)
  end)
  -- A socket cannot send again: with context{ wal = true } its records are logged as they
  -- come (dstream.state.wal).
  if self.wal then require("dstream.state.wal").attach(self, input, #self.inputs) end
  return input
end

return M

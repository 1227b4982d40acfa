-- dstream/sources/receiver.lua: receiver_stream, sources written in Lua (Spark's Receiver).
--
-- A receiver is a table with on_start(self) (required) and on_stop(self), plus whatever fields
-- it needs (a host, a port). It is shipped like a closure (dstream.ship) to a thread of its own
-- with its own Lua state (runtime/ds_recv_lua.c; the thread's side is
-- dstream.sources.receiver_thread), where on_start may block: read a socket through the FFI,
-- poll an HTTP endpoint, read a device. Its records go to C memory in chunks, sealed into
-- batches like a socket's; with context{ wal = true } they are logged like a socket's.
local core = require("dstream.core")
local ship = require("dstream.ship")
local sources = require("dstream.sources")
local util = require("dstream.util")

local M = {}

local OPTIONS = { name = true, max_rate = true, stop_timeout = true }

function M.receiver_stream(self, receiver, opts)
  sources.check_not_started(self, "receiver_stream")
  util.check_table(receiver, "receiver_stream", "the receiver")
  if type(receiver.on_start) ~= "function" then
    util.raise("receiver_stream: the receiver needs an on_start(self) function, got " .. type(receiver.on_start))
  end
  if receiver.on_stop ~= nil and type(receiver.on_stop) ~= "function" then
    util.raise("receiver_stream: on_stop must be a function, got " .. type(receiver.on_stop))
  end
  if opts ~= nil then util.check_table(opts, "receiver_stream", "the options") end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then
      util.raise("receiver_stream: unknown option '" .. tostring(k) .. "' (it takes name, max_rate, stop_timeout)")
    end
  end
  local max_rate = opts.max_rate
  if max_rate ~= nil and (type(max_rate) ~= "number" or not (max_rate > 0)) then
    util.raise("receiver_stream: max_rate must be a positive number of records per second, got " .. tostring(max_rate))
  end
  local stop_ms = 2000
  if opts.stop_timeout ~= nil then
    local ms, err = util.parse_duration(opts.stop_timeout)
    if not ms then util.raise("receiver_stream: stop_timeout: " .. err) end
    stop_ms = ms
  end
  if opts.name ~= nil and type(opts.name) ~= "string" then
    util.raise("receiver_stream: name must be a string, got " .. type(opts.name))
  end
  -- Encoded now: what cannot travel is an error on the user's line, before anything runs.
  local blob, err = ship.try_encode(receiver, "the receiver given to receiver_stream")
  if not blob then util.raise("receiver_stream: " .. err) end
  local label = "receiver_stream " .. (opts.name or receiver.name or "#" .. (#self.inputs + 1))
  local input = sources.receiver(self, label, function()
    return core.lua_receiver(label, blob, { max_rate = max_rate, stop_wait_ms = stop_ms })
  end)
  -- Records that cannot be read again: with context{ wal = true } they are logged as they
  -- come, like a socket's (dstream.state.wal).
  if self.wal then require("dstream.state.wal").attach(self, input, #self.inputs) end
  return input
end

return M

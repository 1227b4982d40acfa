-- dstream/sources/receiver_thread.lua: what runs on a Lua receiver's own thread, in its own Lua
-- state (runtime/ds_recv_lua.c starts it): the receiver's API (store, restart, is_stopped ...)
-- and the loop that calls on_start, restarts it with backoff, and calls on_stop.
--
-- Records given to store() gather in Lua arrays and reach C as one string.buffer chunk
-- (ds_recv_lua_append through the FFI) when chunk_max of them have gathered, when the owner's
-- tick (every 10 ms) has moved since the last hand-over, or at flush(), sleep(), on_start's
-- return and the stop: no C call per record. store_many and store_pairs hand their lists over
-- at once. Loaded only by that state; it requires no driver module.
local ffi = require("ffi")
local buffer = require("string.buffer")
local ship = require("dstream.ship")
local clear = require("table.clear")

ffi.cdef [[
typedef struct ds_recv_lua_ctl { volatile int32_t stop; volatile uint32_t tick;
  volatile int32_t chunk_max; int32_t pad_; } ds_recv_lua_ctl;
int ds_recv_lua_append(void *r, const char *data, size_t len, uint64_t count, int pairs);
int ds_recv_lua_wait(void *r, double ms);
void ds_recv_lua_error(void *r, int kind, const char *msg, double backoff_ms);
void ds_recv_lua_state(void *r, int state, double backoff_ms);
]]
local C = ffi.C

local RUNNING, WAITING, FINISHED = 1, 2, 3   -- DS_RECV_LUA_* (ds_recv_lua.h)
local RAISED, RESTART, REPORTED = 1, 2, 3
local BACKOFF_FIRST_MS, BACKOFF_MAX_MS = 1000, 30000

local M = {}

-- A restart() unwinds on_start with this value.
local RESTART_SIGNAL = setmetatable({}, { __tostring = function() return "restart" end })

-- "file:line: " of the user's code that called a receiver method.
local function where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info or info.currentline < 0 then return "" end
  return info.short_src .. ":" .. info.currentline .. ": "
end

function M.run(handle, blob, name)
  local r = ffi.cast("void *", handle)
  local ctl = ffi.cast("ds_recv_lua_ctl *", handle)
  local receiver = ship.decode(blob)
  local on_start, on_stop = receiver.on_start, receiver.on_stop

  local buf = buffer.new()
  local keys, vals, n, pairs_mode = {}, {}, 0, false
  local seen_tick = ctl.tick
  local stored = 0 -- records handed over, for the backoff (data flowed: start again at 1 s)
  local restart_asked -- { reason, delay_ms }

  local function append(k, v, count)
    buf:reset()
    buf:encode(k and { k, v } or { v })
    local p, len = buf:ref()
    C.ds_recv_lua_append(r, p, len, count, k and 1 or 0)
    stored = stored + count
  end

  local function flush()
    seen_tick = ctl.tick
    if n == 0 then return end
    if pairs_mode then append(keys, vals, n) else append(nil, vals, n) end
    clear(keys)
    clear(vals)
    n = 0
  end

  -- A list in chunks of at most chunk_max records (copied only when it must be cut).
  local function append_list(k, v)
    flush()
    local total, i = #v, 1
    while i <= total do
      local m = math.min(ctl.chunk_max, total - i + 1)
      if i == 1 and m == total then
        append(k, v, m)
      else
        append(k and table.move(k, i, i + m - 1, 1, {}), table.move(v, i, i + m - 1, 1, {}), m)
      end
      i = i + m
    end
    seen_tick = ctl.tick
  end

  local api = {}
  -- store(record) or store(key, value): buffered; see the module's header.
  function api.store(_, v, w)
    if v == nil then error(where(2) .. "store: a record cannot be nil", 0) end
    local pair = w ~= nil
    if pair ~= pairs_mode then
      flush()
      pairs_mode = pair
    end
    n = n + 1
    if pair then keys[n], vals[n] = v, w else vals[n] = v end
    if n >= ctl.chunk_max or ctl.tick ~= seen_tick then flush() end
  end
  -- store_many(list): the records of a list, handed over now.
  function api.store_many(_, list)
    if type(list) ~= "table" then error(where(2) .. "store_many: expected a list of records, got " .. type(list), 0) end
    append_list(nil, list)
  end
  -- store_pairs(keys, values) (two lists of one length) or store_pairs({ {k, v}, ... }).
  function api.store_pairs(_, a, b)
    if type(a) ~= "table" then error(where(2) .. "store_pairs: expected a list, got " .. type(a), 0) end
    if b == nil then
      local k, v = {}, {}
      for i, p in ipairs(a) do k[i], v[i] = p[1], p[2] end
      a, b = k, v
    elseif type(b) ~= "table" or #b ~= #a then
      error(where(2) .. "store_pairs: expected two lists of the same length (keys, values)", 0)
    end
    append_list(a, b)
  end
  function api.flush() flush() end
  -- true once the receiver must end: the job stops, or restart() was called.
  function api.is_stopped()
    if n > 0 and ctl.tick ~= seen_tick then flush() end
    return ctl.stop ~= 0 or restart_asked ~= nil
  end
  -- Sleeps `seconds` unless a stop comes first; returns is_stopped().
  function api.sleep(self, seconds)
    flush()
    if ctl.stop == 0 then C.ds_recv_lua_wait(r, (tonumber(seconds) or 0) * 1000) end
    return self:is_stopped()
  end
  -- Ends this run of on_start (like error()), calls on_stop, and starts again after `delay`
  -- seconds (default: the backoff, 1 s doubling to 30 s).
  function api.restart(_, reason, delay)
    local ms = delay and tonumber(delay) and tonumber(delay) * 1000 or nil
    restart_asked = { where(2) .. tostring(reason or "restart asked"), ms }
    error(RESTART_SIGNAL, 0)
  end
  -- Counts and logs an error; the receiver goes on.
  function api.report_error(_, msg)
    C.ds_recv_lua_error(r, REPORTED, where(2) .. tostring(msg), -1)
  end
  api.name = name
  -- The receiver's own methods (a class as its metatable) stay reachable behind the API.
  local mt = getmetatable(receiver)
  if mt and mt.__index then setmetatable(api, { __index = mt.__index }) end
  setmetatable(receiver, { __index = api })

  -- The user's frames of a traceback: up to this module's.
  local function user_traceback(e)
    local lines = {}
    for line in debug.traceback(tostring(e), 3):gmatch("[^\n]+") do
      if line:find("receiver_thread.lua", 1, true) then break end
      lines[#lines + 1] = line
    end
    if lines[#lines] and lines[#lines]:find("^%s*%[C%]: in function '[%w_]*call'") then lines[#lines] = nil end
    return table.concat(lines, "\n")
  end
  local function call(fn)
    return xpcall(fn, function(e)
      if e == RESTART_SIGNAL then return e end
      return user_traceback(e)
    end, receiver)
  end
  local function stopping() return ctl.stop ~= 0 end
  local function run_on_stop()
    if not on_stop then return end
    local ok, err = call(on_stop)
    pcall(flush)
    if not ok then C.ds_recv_lua_error(r, REPORTED, "on_stop: " .. tostring(err), -1) end
  end

  local delay = BACKOFF_FIRST_MS
  while true do
    C.ds_recv_lua_state(r, RUNNING, 0)
    restart_asked = nil
    local stored_before = stored
    local ok, err = call(on_start)
    local flushed, ferr = pcall(flush) -- what on_start stored is kept, whatever happened
    if not flushed and ok then ok, err = false, ferr end
    if ok and not restart_asked and not stopping() then
      -- on_start returned: nothing more to receive. on_stop runs at the stop.
      C.ds_recv_lua_state(r, FINISHED, 0)
      C.ds_recv_lua_wait(r, -1)
      return run_on_stop()
    end
    run_on_stop()
    local kind, msg, wait
    if restart_asked then
      kind, msg, wait = RESTART, restart_asked[1], restart_asked[2]
    elseif not ok then
      kind, msg = RAISED, tostring(err)
    end
    if stopping() then
      if kind then C.ds_recv_lua_error(r, kind, msg, -1) end
      return
    end
    if stored > stored_before then delay = BACKOFF_FIRST_MS end -- it received: a fresh start
    if not wait then
      wait = delay
      delay = math.min(delay * 2, BACKOFF_MAX_MS)
    end
    C.ds_recv_lua_error(r, kind, msg, wait)
    C.ds_recv_lua_state(r, WAITING, wait)
    if C.ds_recv_lua_wait(r, wait) ~= 0 then return end
  end
end

return M

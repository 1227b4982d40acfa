-- dstream/db/connections.lua: one open connection per database per Lua state (each worker VM
-- has its own; the driver has one for read_sql), reused across tasks and batches, and the
-- retry loop around work that needs one.
--
-- A failure of class "connection" (the server went away, refuses connections, a lock held too
-- long) closes the connection and tries again after a backoff (100 ms doubling to 2 s, as the
-- socket receiver's reconnects: a server back after a restart is found within 2 s), for up to
-- `retry_ms` in all; then the work fails with an error naming the database, what was being done
-- (the table) and the cause. Other failures end the loop at once.
local ffi = require("ffi")
local url_mod = require("dstream.db.url")

pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")

local M = {}

local open = {} -- url -> connection, in this Lua state

local drivers = { postgres = "dstream.db.postgres", sqlite = "dstream.db.sqlite" }
function M.driver(u) return require(drivers[u.kind]) end

local function now_ms()
  local core = package.loaded["dstream.core"] or require("dstream.core")
  return core.hrtime_ms() -- (now_ms is the driver loop's cached time: still on a worker)
end

-- The connection of this state to u (a parsed URL), opened if needed: conn or nil, err, class.
function M.get(u)
  local c = open[u.url]
  if c then return c end
  local err, class
  c, err, class = M.driver(u).open(u)
  if not c then return nil, err, class end
  open[u.url] = c
  return c
end

-- Drops (and closes) the connection to u: the next get() opens a new one.
function M.drop(u)
  local c = open[u.url]
  open[u.url] = nil
  if c then pcall(c.close, c) end
end

function M.sleep(ms) ffi.C.poll(nil, 0, ms) end

-- Runs fn(conn) -> true/value | nil, err, class[, extra] until it succeeds, fails for a reason
-- other than the connection, or retry_ms have passed since the first failure.
-- on_wait(ms, err) is told each wait (for the task's figures and a log line).
-- Returns what fn returned on success, or nil, message, class, extra.
function M.with_retry(u, what, retry_ms, fn, on_wait)
  local started, delay = nil, 100
  while true do
    local conn, err, class = M.get(u)
    local r1, r2, r3, r4
    if conn then
      r1, r2, r3, r4 = fn(conn)
      if r1 ~= nil then return r1, r2, r3, r4 end
      err, class = r2, r3
      if class == "connection" and not conn:usable() then M.drop(u) end
    end
    if class ~= "connection" then
      return nil, u.name .. ", " .. what .. ": " .. tostring(err), class, r4
    end
    local t = now_ms()
    started = started or t
    local waited = t - started
    if waited >= retry_ms then
      return nil, string.format("%s, %s: the database could not be reached for %.1f s (retry_for = %.0f s): %s",
        u.name, what, waited / 1000, retry_ms / 1000, tostring(err)), "connection"
    end
    local ms = math.min(delay, retry_ms - waited)
    if on_wait then on_wait(ms, err) end
    M.sleep(ms)
    delay = math.min(delay * 2, 2000)
  end
end

M.parse = url_mod.parse

return M

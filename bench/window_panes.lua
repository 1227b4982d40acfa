-- bench/window_panes.lua: cost per batch of a long window sliding every batch, built from
-- panes (with and without an inverse function) against the same window without panes
-- (window() re-reducing its raw records). Prints a table; never fails on figures.
--   dstream bench/window_panes.lua [WINDOW_BATCHES] [RECORDS_PER_BATCH] [KEYS]
local dstream = require("dstream")
local core = require("dstream.core")

local nwin = tonumber(arg[1]) or 3600 -- a 1-hour window of 1 s batches
local per_batch = tonumber(arg[2]) or 1000
local nkeys = tonumber(arg[3]) or 100
local measured = 20
local with_raw = arg[4] ~= "panes-only" -- raw windows of an hour take hours to fill: skip them

local function add(a, b) return a + b end
local function sub(a, b) return a - b end

local function run(kind)
  local ctx = dstream.context { batch = "1s", workers = 2, partitions = 2, clock = "manual" }
  local pairs_stream = ctx:rate_stream { rows_per_second = per_batch }
    :map(function(i) return i % nkeys, 1 end)
  local w
  if kind == "panes + inverse" then
    w = pairs_stream:reduce_by_key_and_window(add, nwin, 1, { inverse = sub })
  elseif kind == "panes" then
    w = pairs_stream:reduce_by_key_and_window(add, nwin, 1)
  else
    w = pairs_stream:window(nwin, 1):reduce_by_key(add)
  end
  local total
  w:foreach_rdd(function(rdd) total = rdd:count() end)
  ctx:start()
  ctx:advance(nwin) -- fill the window
  local t0 = core.hrtime_ms()
  ctx:advance(measured)
  local ms = (core.hrtime_ms() - t0) / measured
  local mem = ctx.sched.pool:worker_memory(0) + ctx.sched.pool:worker_memory(1)
  ctx:stop()
  assert(total == nkeys)
  return ms, mem
end

print(string.format("window of %d batches sliding every batch, %d records/batch, %d keys",
  nwin, per_batch, nkeys))
print(string.format("%-26s %14s %18s", "variant", "ms per batch", "worker Lua MiB"))
local kinds = { "panes + inverse", "panes" }
if with_raw then kinds[3] = "raw window (no panes)" end
for _, kind in ipairs(kinds) do
  local ms, mem = run(kind)
  print(string.format("%-26s %14.2f %18.1f", kind, ms, mem / 1048576))
end

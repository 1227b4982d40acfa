-- spec/e2e/jobs/backpressure_job.lua: a source faster than the job, with backpressure on or off.
--   dstream backpressure_job.lua on|off BATCHES
-- 500 ms batches of a rate_stream at 4000 rows/s on one worker; every row costs the worker
-- 0.5 ms (a sleep per partition, so CPU speed does not matter): the job keeps up with about
-- 2000 rows/s. Prints one line per batch: "batch TIME RECORDS SCHEDULING_DELAY_MS
-- PROCESSING_MS", then "limit RATE" (the rate the source was held to at the end) and the
-- job's metrics about rates ("metric NAME VALUE").
local dstream = require("dstream")
local ffi = require("ffi")

local mode, batches = arg[1] or "on", tonumber(arg[2] or 16)
local ctx = dstream.context { batch = "500ms", workers = 1, partitions = 1,
  name = "e2e-backpressure", backpressure = (mode == "on"), progress = false }

local function nap(ms) -- runs on the worker: sleeps without holding a CPU
  if not pcall(function() return ffi.C.poll end) then
    ffi.cdef("int poll(void *fds, unsigned long nfds, int timeout);")
  end
  ffi.C.poll(nil, 0, ms)
end

local source = ctx:rate_stream { rows_per_second = 4000 }
source:glom()
  :map(function(rows)
    nap(math.floor(#rows * 0.5))
    return #rows
  end)
  :foreach_rdd(function(rdd) rdd:collect() end)

local done = 0
ctx:on_batch_completed(function(info)
  done = done + 1
  io.stdout:write(string.format("batch %d %d %.1f %.1f\n", info.time, info.records,
    info.scheduling_delay_ms, info.processing_ms))
  io.stdout:flush()
  if done >= batches then ctx:stop() end
end)

ctx:start()
ctx:await_termination(120)
io.stdout:write(string.format("limit %d\n", source:rate_stats().rate_limit))
for line in ctx:metrics():render():gmatch("[^\n]+") do
  if line:match("^dstream_backpressure") or line:match("^dstream_source_rate_limit") then
    io.stdout:write("metric ", line, "\n")
  end
end

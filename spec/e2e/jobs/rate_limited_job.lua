-- spec/e2e/jobs/rate_limited_job.lua: a socket or directory source held to max_rate records/s.
--   dstream rate_limited_job.lua socket HOST PORT MAX_RATE EXPECTED
--   dstream rate_limited_job.lua files DIR MAX_RATE EXPECTED
-- 500 ms batches. Prints "ready" once started, "batch RECORDS" for every batch with records,
-- and stops once EXPECTED records have come (or after 60 s), then prints "total N" and the
-- source's metrics lines ("metric NAME VALUE").
local dstream = require("dstream")

local kind = arg[1]
local ctx = dstream.context { batch = "500ms", workers = 1, partitions = 1, name = "e2e-rate-limited",
  progress = false }
local src, expected
if kind == "socket" then
  src = ctx:socket_text_stream(arg[2], tonumber(arg[3]), { max_rate = tonumber(arg[4]) })
  expected = tonumber(arg[5])
else
  src = ctx:text_file_stream(arg[2], { max_rate = tonumber(arg[3]) })
  expected = tonumber(arg[4])
end

local total = 0
src:count():foreach_rdd(function(rdd)
  local n = rdd:collect()[1] or 0
  if n > 0 then
    total = total + n
    io.stdout:write(string.format("batch %d\n", n))
    io.stdout:flush()
  end
end)
ctx:on_batch_completed(function()
  if total >= expected then ctx:stop() end
end)

ctx:start()
io.stdout:write("ready\n")
io.stdout:flush()
ctx:await_termination(60)
ctx:stop()
io.stdout:write(string.format("total %d\n", total))
for line in ctx:metrics():render():gmatch("[^\n]+") do
  if line:match("^dstream_source") then io.stdout:write("metric ", line, "\n") end
end

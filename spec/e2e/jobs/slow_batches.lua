-- spec/e2e/jobs/slow_batches.lua: a job whose batches take a while, for stopping it by signal.
--   dstream slow_batches.lua [LIMIT_SECONDS]
-- System clock, 1 s batches of rate_stream rows; every row sleeps 350 ms on a worker, so a
-- batch is in flight most of the time. foreach_rdd prints "start TIME" when a batch begins
-- and "done TIME COUNT" when it ends; after the context stops the script prints "exited".
local dstream = require("dstream")
local ffi = require("ffi")

local ctx = dstream.context { batch = "1s", workers = 2, partitions = 2, name = "e2e-slow" }

-- Runs on the workers: sleeps without holding a CPU (poll with no descriptors).
local function nap(ms)
  if not pcall(function() return ffi.C.poll end) then
    ffi.cdef("int poll(void *fds, unsigned long nfds, int timeout);")
  end
  ffi.C.poll(nil, 0, ms)
end

ctx:rate_stream { rows_per_second = 4 }
  :map(function(i)
    nap(350)
    return i
  end)
  :foreach_rdd(function(rdd, time)
    io.stdout:write(string.format("start %d\n", time))
    io.stdout:flush()
    local n = rdd:count()
    io.stdout:write(string.format("done %d %d\n", time, n))
    io.stdout:flush()
  end)

ctx:start()
ctx:await_termination(tonumber(arg[1] or 30))
ctx:stop { graceful = true }
io.stdout:write("exited\n")

-- examples/monitored_job.lua: a job to watch while it runs: live page, metrics, listeners, backpressure.
--
--   dstream examples/monitored_job.lua [ADDRESS [SECONDS]]
--
-- Serves the UI at ADDRESS (default 127.0.0.1:4040; open http://127.0.0.1:4040/ in a browser,
-- or curl /metrics, /api/batches, /api/streams) for SECONDS (default 20). The source makes
-- 6000 rows a second but the job keeps up with about 3000 (every row costs its worker 2/3 ms,
-- and there are two workers), so backpressure holds the source to what the job processes and
-- the scheduling delay stays bounded. A listener prints one line per batch with its figures; at
-- the end the job prints a few of its metrics.
local dstream = require("dstream")
local ffi = require("ffi")

local address, seconds = arg[1] or "127.0.0.1:4040", tonumber(arg[2] or 20)
local ctx = dstream.context { batch = "500ms", workers = 2, name = "monitored", ui = address,
  backpressure = true }

-- Runs on the workers: sleeps without holding a CPU (poll with no descriptors).
local function nap(ms)
  if not pcall(function() return ffi.C.poll end) then
    ffi.cdef("int poll(void *fds, unsigned long nfds, int timeout);")
  end
  ffi.C.poll(nil, 0, ms)
end

-- A metric of the job's own, served at /metrics with dstream's.
local buckets = ctx:metrics():counter("monitored_rows_total", "Rows seen, by last digit", { "digit" })

ctx:rate_stream { rows_per_second = 6000 }
  :glom() -- one array per partition: the cost is paid once per partition
  :flat_map(function(rows)
    nap(math.floor(#rows * 2 / 3))
    local by_digit = {}
    for _, i in ipairs(rows) do by_digit[i % 10] = (by_digit[i % 10] or 0) + 1 end
    local out = {}
    for d, n in pairs(by_digit) do out[#out + 1] = { d, n } end
    return out
  end)
  :map(function(p) return p[1], p[2] end)
  :reduce_by_key(function(a, b) return a + b end)
  :foreach_rdd(function(rdd)
    for _, kv in ipairs(rdd:collect()) do buckets:inc(kv[2], { digit = kv[1] }) end
  end)

ctx:on_batch_completed(function(b)
  print(string.format("batch %d ms: %d records, scheduling delay %.0f ms, processing %.0f ms",
    b.time, b.records, b.scheduling_delay_ms, b.processing_ms))
end)

ctx:start()
ctx:await_termination(seconds)
ctx:stop { graceful = true }

local rows = 0
for d = 0, 9 do rows = rows + (buckets:value({ digit = d }) or 0) end
print(string.format("batches completed: %d, rows seen: %d",
  ctx:metrics():get("dstream_batches_completed_total"):value(), rows))

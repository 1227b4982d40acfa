-- bench/state_memory.lua: memory per key of update_state_by_key with integer counts, and the
-- records per second of reduce_by_key on one worker. Prints a table; never fails on figures.
--   dstream bench/state_memory.lua [KEYS]
local dstream = require("dstream")
local core = require("dstream.core")

local nkeys = tonumber(arg[1]) or 1000000

-- 1. State: nkeys distinct integer keys, counts as states, one worker.
local ctx = dstream.context { batch = "1s", workers = 1, partitions = 4, clock = "manual" }
local per_batch = 250000
local batches = math.ceil(nkeys / per_batch)
local keys_seen
ctx:rate_stream { rows_per_second = per_batch }
  :filter(function(i) return i < nkeys end)
  :map(function(i) return i, 1 end)
  :update_state_by_key(function(values, state)
    local n = state or 0
    for i = 1, #values do n = n + values[i] end
    return n
  end)
  :foreach_rdd(function(rdd) keys_seen = rdd:count() end)
ctx:start()
ctx:advance(1) -- warm-up batch: the worker's code and first keys
collectgarbage()
local pool = ctx.sched.pool
local function worker_bytes()
  -- Two full collections on the worker are not reachable from here; the figure includes
  -- garbage not yet collected, so it is an upper bound.
  return pool:worker_memory(0)
end
local before_keys, before = keys_seen, worker_bytes()
ctx:advance(batches - 1)
local after_keys, after = keys_seen, worker_bytes()
local per_key = (after - before) / (after_keys - before_keys)
ctx:stop()

-- 2. reduce_by_key on one worker, integer keys, 4 partitions.
local rctx = dstream.context { workers = 1, partitions = 4, clock = "manual" }
local n = 4000000
local data = rctx:parallelize({ 0 }, 1)
local t0 = core.hrtime_ms()
local range = require("dstream.rdd").range(rctx, 0, n, 4)
local out = range:map(function(i) return i % 100000, 1 end):reduce_by_key(function(a, b) return a + b end):count()
local secs = (core.hrtime_ms() - t0) / 1000
rctx:stop()
assert(out == 100000)

print(string.format("%-44s %s", "figure", "value"))
print(string.format("%-44s %d", "update_state_by_key keys", after_keys))
print(string.format("%-44s %.1f", "worker Lua bytes per key (integer counts)", per_key))
print(string.format("%-44s %.0f", "reduce_by_key records/s, 1 worker", n / secs))

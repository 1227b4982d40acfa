-- examples/distinct_users.lua: distinct users per sliding window with a HyperLogLog.
-- A rate_stream stands for a click log: odd rows are clicks by 2500 regulars, even rows by
-- visitors who click three times and leave (row v: visitor v / 6), so each window holds other
-- users. Every second, the number of distinct users of the last 3 seconds, estimated from HyperLogLog
-- sketches (one per partition and batch, merged per window: the window keeps 16 KiB sketches,
-- not the users) beside the exact count (window() + distinct() + count(), which keeps every
-- record of the window). The estimate stays within a few standard errors (1.04 / sqrt(2^14) =
-- 0.8% for rel_sd 0.01) of the exact figure; the last line says how far it was at worst.
--   dstream examples/distinct_users.lua [SECONDS]
local dstream = require("dstream")

local seconds = tonumber(arg and arg[1]) or 8
local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, name = "distinct_users" }

local users = ctx:rate_stream { rows_per_second = 20000 }
  :map(function(v)
    if v % 2 == 1 then return "regular" .. (v * 7919) % 5000 end -- odd v: 2500 users
    return "visitor" .. math.floor(v / 6)
  end)

local estimates, exact = {}, {}
users:approx_count_distinct(0.01, { window = 3 }):foreach_rdd(function(rdd, time)
  estimates[time] = rdd:collect()[1]
end)
users:window(3):distinct():count():foreach_rdd(function(rdd, time)
  exact[time] = rdd:collect()[1]
  local est = estimates[time]
  print(string.format("window ending %5d ms: about %d distinct users (exact %d, %+.2f%%)", time, est,
    exact[time], 100 * (est - exact[time]) / exact[time]))
end)

ctx:start()
ctx:advance(seconds)
local worst = 0
for time, n in pairs(exact) do worst = math.max(worst, math.abs(estimates[time] - n) / n) end
print(string.format("largest error: %.2f%% (HyperLogLog's standard error at rel_sd 0.01: %.2f%%)", 100 * worst,
  100 * 1.04 / 128))

-- examples/refreshed_broadcast.lua: a lookup table that changes while the job runs, as a new
-- broadcast per batch with the previous one destroyed (Spark's Broadcast.destroy), so the
-- job holds one table, not one per batch.
--
--   dstream examples/refreshed_broadcast.lua
--
-- Prices change every batch (here: computed; in a job, re-read from a file or a database).
-- transform makes the batch's broadcast; once the batch has completed, on_batch_completed
-- destroys it (not earlier: a job that falls behind has batches made and waiting to run).
-- Each batch prints what its orders cost at its prices; at the end, the bytes the context
-- holds for the workers (dstream_shipped_bytes on /metrics).
local dstream = require("dstream")

local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2 }
local function prices_at(batch) -- 1000 items; item i costs i + batch
  local t = {}
  for i = 1, 1000 do t["item" .. i] = i + batch end
  return t
end

local of_batch = {} -- batch time -> the broadcast its tasks read
local batch = 0
local orders = ctx:queue_stream({}, { default = { "item1", "item2", "item10" } })
orders:transform(function(rdd, time)
  batch = batch + 1
  local prices = ctx:broadcast(prices_at(batch))
  of_batch[time] = prices
  return rdd:map(function(item) return prices.value[item] end)
end):foreach_rdd(function(rdd, time)
  print(string.format("batch %d ms: orders cost %d", time, rdd:reduce(function(a, b) return a + b end)))
end)

ctx:on_batch_completed(function(info)
  local prices = of_batch[info.time]
  of_batch[info.time] = nil
  if prices then prices:destroy() end
end)

ctx:start()
ctx:advance(20)
local held = ctx:metrics():render():match("\ndstream_shipped_bytes (%d+)")
ctx:stop()
local one = #require("dstream.ship").encode(prices_at(1))
-- No table of a completed batch, where twenty would be held without destroy(); what is left
-- is closures (each batch's goes once the collector has taken its batch), so the figure varies
-- a little from run to run.
print(string.format("after 20 batches the context holds %s bytes for the workers", held))
print(string.format("that is less than one price table (%d bytes): %s", one,
  tonumber(held) < one and "no table of a completed batch" or "TABLES STILL HELD"))

-- examples/queue_stream_test.lua: a deterministic job on a manual clock, fed by queue_stream.
--
--   dstream examples/queue_stream_test.lua
--
-- Three batches of purchase log lines ("user action amount") go through filter, map,
-- reduce_by_key and count. ctx:advance() runs the batches one by one, so the output is the
-- same on every run; the script checks it against the expected figures and ends with "OK".
local dstream = require("dstream")

local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 2 }

local log = ctx:queue_stream {
  { "alice buy 30", "bob view 0", "alice buy 12", "carol buy 5", "bob buy 7" }, -- 1000 ms
  {},                                                                           -- 2000 ms
  { "carol buy 20", "bob view 0", "dave buy 1" },                               -- 3000 ms
}

local purchases = log:filter(function(line) return line:find(" buy ", 1, true) ~= nil end)
local spend = purchases
  :map(function(line)
    local user, amount = line:match("^(%S+) buy (%d+)$")
    return user, tonumber(amount) -- two values: a key/value pair
  end)
  :reduce_by_key(function(a, b) return a + b end)

-- Output operations run in the order they are registered, once per batch: the counts are
-- kept, then printed with the spend of the same batch.
local lines_in, bought = {}, {}
log:count():foreach_rdd(function(rdd, time) lines_in[time] = rdd:first() end)
purchases:count():foreach_rdd(function(rdd, time) bought[time] = rdd:first() end)

local got = {}
spend:foreach_rdd(function(rdd, time)
  local totals = rdd:collect() -- pairs come back as { k, v }
  table.sort(totals, function(a, b) return a[1] < b[1] end) -- key order is not fixed: sort
  local shown = {}
  for i, kv in ipairs(totals) do shown[i] = kv[1] .. "=" .. kv[2] end
  got[time] = table.concat(shown, " ")
  print(string.format("batch %4d ms: %d lines, %d purchases, spend: %s", time,
    lines_in[time], bought[time], #shown > 0 and got[time] or "(none)"))
end)

ctx:start()
ctx:advance(3)
ctx:stop()

-- The figures above, checked.
assert(got[1000] == "alice=42 bob=7 carol=5", got[1000])
assert(got[2000] == "" and lines_in[2000] == 0 and bought[2000] == 0)
assert(got[3000] == "carol=20 dave=1", got[3000])
print("OK")

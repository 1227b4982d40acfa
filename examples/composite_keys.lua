-- examples/composite_keys.lua: keys made of several fields (Spark's tuple keys), in per-batch
-- sums, running totals and a window.
--
--   dstream examples/composite_keys.lua
--
-- Sales lines "region product amount" are keyed by the array { region, product }: two
-- records with equal arrays share one key in every operator, and keys come out as arrays.
-- Three batches on a manual clock; the script prints each batch's sums, the running totals
-- and a two-batch window, then checks the totals against a plain Lua count and ends with "OK".
local dstream = require("dstream")

local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 3 }
local batches = {
  { "north tea 3", "north coffee 5", "south tea 2", "north tea 4" },
  { "south tea 1", "south coffee 6" },
  { "north tea 1", "north coffee 2", "south coffee 1" },
}
local sales = ctx:queue_stream(batches):map(function(line)
  local region, product, amount = line:match("^(%S+) (%S+) (%d+)$")
  return { region, product }, tonumber(amount) -- a new table per record
end)

local function add(a, b) return a + b end
local function show(name, stream)
  stream:foreach_rdd(function(rdd, time)
    local lines = {}
    for i, kv in ipairs(rdd:collect()) do lines[i] = kv[1][1] .. "/" .. kv[1][2] .. "=" .. kv[2] end
    table.sort(lines)
    print(time, name, table.concat(lines, " "))
  end)
end

show("batch", sales:reduce_by_key(add))
local totals = sales:update_state_by_key(function(values, total)
  total = total or 0
  for _, v in ipairs(values) do total = total + v end
  return total
end)
show("total", totals)
show("window", sales:reduce_by_key_and_window(add, "2s", "1s"))

local last = {}
totals:foreach_rdd(function(rdd)
  -- collect_as_map() is keyed by the arrays themselves: read it with pairs.
  last = {}
  for key, total in pairs(rdd:collect_as_map()) do last[key[1] .. "/" .. key[2]] = total end
end)

ctx:start()
ctx:advance(#batches)
ctx:stop()

local want = {}
for _, batch in ipairs(batches) do
  for _, line in ipairs(batch) do
    local region, product, amount = line:match("^(%S+) (%S+) (%d+)$")
    local k = region .. "/" .. product
    want[k] = (want[k] or 0) + tonumber(amount)
  end
end
for k, v in pairs(want) do assert(last[k] == v, k .. ": " .. tostring(last[k]) .. " ~= " .. v) end
print("OK")

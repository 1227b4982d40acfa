-- dstream/state/shared.lua: shared variables: broadcast values and accumulators.
--
-- Both travel inside closures as small references (their metatable's __ship): a broadcast's
-- value is shipped once per context and decoded once per worker, however many closures use
-- it; an accumulator's adds are summed per task on the worker, sent back with the task's
-- result, and merged on the driver only when the task succeeded, so a retried task counts once.
local util = require("dstream.util")
local M = {}

local Broadcast = {}
Broadcast.__index = Broadcast
Broadcast.__name = "broadcast"
function Broadcast.__ship(b) return "dstream.state.shared", { "broadcast", b.id } end
function Broadcast:__tostring() return "broadcast #" .. self.id end

local Accumulator = {}
Accumulator.__index = Accumulator
Accumulator.__name = "accumulator"
function Accumulator.__ship(a) return "dstream.state.shared", { "accumulator", a.id, a.merge_id } end
function Accumulator:__tostring() return "accumulator #" .. self.id .. " = " .. tostring(self.value) end

local function add(a, b) return a + b end

-- Driver side -------------------------------------------------------------------------------

function M.broadcast(ctx, value)
  return setmetatable({ id = ctx:_ship(value, "broadcast"), value = value }, Broadcast)
end

function M.accumulator(ctx, initial, merge)
  if merge ~= nil and type(merge) ~= "function" then
    util.raise("accumulator: merge must be a function(a, b), got " .. type(merge))
  end
  merge = merge or add
  ctx._accumulators = ctx._accumulators or {}
  local id = #ctx._accumulators + 1
  local acc = setmetatable({ id = id, value = initial, merge = merge,
    merge_id = ctx:_ship(merge, "accumulator") }, Accumulator)
  ctx._accumulators[id] = acc
  return acc
end

-- On the driver, add works directly on the value.
function Accumulator:add(v)
  self.value = self.merge(self.value, v)
end

-- Merges the per-task totals of a successful task: ids[i] got values[i].
function M.apply(ctx, ids, values)
  for i = 1, #ids do
    local acc = ctx._accumulators and ctx._accumulators[ids[i]]
    if acc then acc.value = acc.merge(acc.value, values[i]) end
  end
end

-- Worker side -------------------------------------------------------------------------------

local WorkerBroadcast = {
  __index = function(t, k)
    if k ~= "value" then return nil end
    local v = require("dstream.worker").shipped(t.id)
    rawset(t, "value", v) -- later reads are plain field reads
    return v
  end,
}

local WorkerAccumulator = { __name = "accumulator" }
WorkerAccumulator.__index = WorkerAccumulator

function WorkerAccumulator:add(v)
  local worker = require("dstream.worker")
  local accums = worker.current.accums
  if not accums then
    accums = {}
    worker.current.accums = accums
  end
  local cur = accums[self.id]
  if cur == nil then
    accums[self.id] = v
  else
    self.merge = self.merge or worker.shipped(self.merge_id)
    accums[self.id] = self.merge(cur, v)
  end
end

-- Rebuilds a shared variable inside a worker (called by dstream.ship's decoder).
function M.__unship(data)
  if data[1] == "broadcast" then return setmetatable({ id = data[2] }, WorkerBroadcast) end
  if data[1] == "accumulator" then
    return setmetatable({ id = data[2], merge_id = data[3] }, WorkerAccumulator)
  end
  error("unknown shared variable " .. tostring(data[1]), 0)
end

return M

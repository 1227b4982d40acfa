-- dstream/state/shared.lua: shared variables: broadcast values and accumulators.
--
-- Both travel inside closures as small references (their metatable's __ship): a broadcast's
-- value is shipped once per context and decoded once per worker, however many closures use
-- it; an accumulator's adds are summed per task on the worker, sent back with the task's
-- result, and merged on the driver only when the task succeeded, so a retried task counts once.
local util = require("dstream.util")
local M = {}

-- A broadcast: { id, value } on the driver; destroyed = where destroy() was called, after it.
local Broadcast = { __name = "broadcast" }
local broadcast_methods = {}
local function destroyed_error(b)
  return ("broadcast #%d was destroyed (%s): it cannot be used again"):format(b.id, rawget(b, "destroyed"))
end
Broadcast.__index = function(b, k)
  if k == "value" and rawget(b, "destroyed") then util.raise(destroyed_error(b)) end
  return broadcast_methods[k]
end
function Broadcast.__ship(b)
  if rawget(b, "destroyed") then util.raise(destroyed_error(b)) end -- (at the line shipping it)
  return "dstream.state.shared", { "broadcast", b.id }
end
function Broadcast:__tostring() return "broadcast #" .. self.id end

local Accumulator = {}
Accumulator.__index = Accumulator
Accumulator.__name = "accumulator"
function Accumulator.__ship(a) return "dstream.state.shared", { "accumulator", a.id, a.merge_id } end
function Accumulator:__tostring() return "accumulator #" .. self.id .. " = " .. tostring(self.value) end

local function add(a, b) return a + b end

-- Driver side -------------------------------------------------------------------------------

function M.broadcast(ctx, value)
  return setmetatable({ id = ctx:_ship_once(value, "broadcast"), value = value, ctx = ctx }, Broadcast)
end

-- b:unpersist(): the workers drop their decoded copies of the value (memory they get back);
-- a task that uses it later decodes it again. Spark's Broadcast.unpersist.
function broadcast_methods:unpersist()
  if rawget(self, "destroyed") then util.raise(destroyed_error(self)) end
  self.ctx:_drop_blob(self.id, false)
end

-- b:destroy(): the value goes from the driver and the workers for good (the refreshed
-- broadcast of a long job: make the new one, destroy the old one once no batch uses it). A
-- later use is an error, on the driver (b.value, a closure capturing b) and in a task.
-- Spark's Broadcast.destroy.
function broadcast_methods:destroy()
  if rawget(self, "destroyed") then return end
  local info = debug.getinfo(2, "Sl")
  rawset(self, "destroyed", info and (info.short_src .. ":" .. (info.currentline or 0)) or "?")
  rawset(self, "value", nil)
  self.ctx:_drop_blob(self.id, true)
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

-- A broadcast inside a worker: its value is decoded at the first read, then a plain field
-- until the driver lets it go (forget_copy, at the start of a task).
local proxies = {} -- id -> the worker's broadcasts of that id (weak)
local WorkerBroadcast = {
  __index = function(t, k)
    if k ~= "value" then return nil end
    local v = require("dstream.worker").shipped(t.id)
    rawset(t, "value", v) -- later reads are plain field reads
    return v
  end,
}

-- The worker forgets its copies of broadcast `id` (of every broadcast: id nil).
function M.forget_copy(id)
  for pid, set in pairs(proxies) do
    if id == nil or pid == id then
      for b in pairs(set) do rawset(b, "value", nil) end
    end
  end
end

-- What a task says when it meets blob `id` gone: the message for a broadcast, else nil.
function M.destroyed_text(id)
  if proxies[id] then
    return ("broadcast #%d was destroyed (b:destroy()) while a task still used it"):format(id)
  end
end

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
  if data[1] == "broadcast" then
    local b = setmetatable({ id = data[2] }, WorkerBroadcast)
    local set = proxies[b.id]
    if not set then
      set = setmetatable({}, { __mode = "k" })
      proxies[b.id] = set
    end
    set[b] = true
    return b
  end
  if data[1] == "accumulator" then
    return setmetatable({ id = data[2], merge_id = data[3] }, WorkerAccumulator)
  end
  error("unknown shared variable " .. tostring(data[1]), 0)
end

return M

-- dstream/cluster/holding.lua: what a cluster process holds of a stateful operator's state
-- partitions (issue 19), driver side. The group moves state partitions between processes;
-- this keeps the process's memory, its key count and its state snapshots to the partitions it
-- owns:
--
-- * At the end of each batch in which the process owns at least one of the operator's state
--   partitions, the stores of the others leave its workers' memory (a task per partition on
--   the worker that keeps it: operator cluster_drop_state, dstream.worker.ops.cluster).
--   Stores of partitions that moved away go, and so do those a checkpoint brought back that
--   the group gave to others. A batch in which it owns none (a process still joining, or one
--   whose assignment the group took back for a moment: the embedded broker's "illegal
--   generation") drops nothing, so a partition that comes back reads only the changelog's
--   tail. A partition that comes back after its store went is restored from the changelog's
--   beginning, as for any process new to it.
-- * dstream_state_keys (entry.keys) counts the keys of the owned partitions only.
-- * state_snapshots() of a map_with_state stream reads the owned partitions only.
local rdd_mod = require("dstream.rdd")
local stream_mod = require("dstream.stream")

local M = {}

local DISCARD = { kind = "discard" }

local Holding = {}
Holding.__index = Holding

-- The holding of state `state_id` (context entry `entry`, n partitions) whose workers report
-- their key counts per partition to accumulator `keys_acc`; `who` names its tasks.
function M.new(ctx, entry, state_id, n, keys_acc, who)
  local self = setmetatable({ ctx = ctx, state_id = state_id, n = n, who = who, owned = {},
    maybe_held = {} }, Holding)
  -- Nothing is known of the workers at the start (a checkpoint may have brought every
  -- partition back): the first batch that owns something drops all the others.
  for p = 0, n - 1 do self.maybe_held[p] = true end
  local counts = ctx._accumulators[keys_acc]
  entry.keys = function() -- dstream_state_keys: the owned partitions' keys only
    local total = 0
    for _, p in ipairs(self.owned) do total = total + (counts.value[p] or 0) end
    return total
  end
  self.counts = counts
  return self
end

-- After a batch's keyed stage ran over the state partitions `owned` (a list).
function Holding:settle(owned)
  self.owned = owned
  if #owned == 0 then return end
  local mine, drop = {}, {}
  for _, p in ipairs(owned) do mine[p] = true end
  for p in pairs(self.maybe_held) do
    if not mine[p] then drop[#drop + 1] = p end
  end
  self.maybe_held = mine
  if #drop == 0 then return end
  table.sort(drop)
  local ctx = self.ctx
  local empty = rdd_mod.empty(ctx, #drop)
  local plans = empty:_plans()
  for i, plan in ipairs(plans) do
    plan.ops = { { kind = "cluster_drop_state", state = self.state_id } }
    plan.state_part = drop[i]
    self.counts.value[drop[i]] = nil
  end
  ctx:_scheduler():run_tasks(empty:_tasks(plans, function() return DISCARD end,
    self.who .. " (drop moved state partitions)"))
end

-- stream:state_snapshots() for the cluster's map_with_state stream `s`: after each batch, the
-- (key, state) pairs of the state partitions this process owns.
function Holding:snapshots(s)
  return stream_mod.new(self.ctx, { s }, function(node, time)
    if node.parents[1]:get_rdd(time) then -- the batch's keyed stage has run
      if #self.owned == 0 then return rdd_mod.empty(self.ctx, 1) end
      return rdd_mod.state_source(self.ctx, self.state_id, self.n, nil, self.owned)
    end
  end, "state_snapshots (owned state partitions)")
end

return M

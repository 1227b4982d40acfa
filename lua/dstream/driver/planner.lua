-- dstream/driver/planner.lua: how a batch (rdd) runs, as methods of rdds (dstream.rdd adds
-- them): its lineage becomes one plan per partition (narrow operators fused into a stage, a
-- shuffle's reduce side reading the buckets its map side wrote), plans become task specs for
-- the scheduler, and each shuffle's map side runs once before the stage that reads it.
-- Driver's Lua state.
local buffer = require("string.buffer")
local util = require("dstream.util")

local Planner = {}

-- Returns one plan per partition: { ops = {...}, input = ... } where input is
-- { slices = {...} }, { range = {first, count} } or { shuffles = nodes, index = r } (or
-- indices = { i, j }, one per node: cartesian). A cached rdd reads its kept partitions
-- (self._cache, a shuffle node whose map side keeps each partition as it is); `raw` plans
-- the rdd itself, for that node's map side.
function Planner:_plans(raw)
  local kind = self.kind
  if self._cache and not raw then
    local plans = {}
    for r = 1, self.nparts do plans[r] = { ops = {}, shuffles = { self._cache }, index = r - 1 } end
    return plans
  end
  if kind == "source" then
    local plans = {}
    for i, part in ipairs(self.parts) do
      if part.range then
        plans[i] = { ops = {}, range = part.range }
      elseif part.file then -- text_file: blocks the task reads itself
        plans[i] = { ops = {}, file = part.file }
      else
        plans[i] = { ops = {}, slices = part }
      end
    end
    return plans
  elseif kind == "narrow" then
    local plans = self.parent:_plans()
    local by_part = self.ops_by_part -- an operator whose spec differs per partition
    for i, plan in ipairs(plans) do plan.ops[#plan.ops + 1] = by_part and by_part[i] or self.op end
    return plans
  elseif kind == "union" then
    local plans = self.parents[1]:_plans()
    for _, plan in ipairs(self.parents[2]:_plans()) do plans[#plans + 1] = plan end
    return plans
  elseif kind == "cogroup" then -- both sides' buckets r, left first
    local plans = {}
    for r = 1, self.nparts do
      plans[r] = { ops = { self.op }, shuffles = { self.sides[1], self.sides[2] }, index = r - 1 }
    end
    return plans
  elseif kind == "cartesian" then -- left partition i with right partition j
    local plans, n2 = {}, self.sides[2].nparts
    for i = 1, self.sides[1].nparts do
      for j = 1, n2 do
        plans[(i - 1) * n2 + j] = { ops = { self.op }, shuffles = { self.sides[1], self.sides[2] },
          indices = { i - 1, j - 1 } }
      end
    end
    return plans
  elseif kind == "state" then -- keyed state read where it lives
    local plans = {}
    local parts = self.state_parts -- (a cluster process's own partitions)
    for r = 1, self.nparts do
      plans[r] = { ops = {}, state = self.state_id, state_part = parts and parts[r] or r - 1,
        state_time = self.state_time }
    end
    return plans
  else -- shuffle: the reduce side reads the buckets the map side wrote
    local plans = {}
    for r = 1, self.nparts do
      plans[r] = { ops = { self.reduce_op }, shuffles = { self }, index = r - 1 }
    end
    return plans
  end
end

local function add_shuffle_deps(plans, deps, seen)
  for _, plan in ipairs(plans) do
    for _, node in ipairs(plan.shuffles or {}) do
      if not seen[node] then
        seen[node] = true
        deps[#deps + 1] = node
      end
    end
  end
end

-- Builds the tasks for plans ending in `term` (a function of the plan index giving the
-- terminal spec), after computing every shuffle they read.
function Planner:_tasks(plans, term, stage, time)
  local deps = {}
  add_shuffle_deps(plans, deps, {})
  for _, node in ipairs(deps) do node:_materialize(time) end
  local specs = {}
  local workers = self.ctx.workers
  time = time or self.ctx._current_time
  for i, plan in ipairs(plans) do
    local ops = {}
    for j, op in ipairs(plan.ops) do ops[j] = op end
    -- A task touching keyed state keeps its state partition's number (also inside a union).
    local part = plan.state_part or i - 1
    local desc = { ops = ops, term = term(i - 1), range = plan.range, file = plan.file, state = plan.state,
      state_time = plan.state_time, part = part, time = time }
    local inputs = plan.slices
    if plan.shuffles then
      inputs = {}
      for side, node in ipairs(plan.shuffles) do
        local index = plan.indices and plan.indices[side] or plan.index
        for _, slice in ipairs(node.buckets[index + 1]) do inputs[#inputs + 1] = slice end
        if side == 1 and #plan.shuffles == 2 then desc.nleft = #inputs end
      end
    end
    specs[i] = {
      desc = buffer.encode(desc), inputs = inputs or {}, part = part, stage = stage, time = time,
      -- Keyed state lives on worker p % workers: its tasks must run there.
      affinity = plan.state_part and plan.state_part % workers or nil,
      -- A shuffle's reduce partition r had its buckets kept by the map tasks of worker
      -- r % workers (dstream.worker.handoff): best run there, anywhere if that one is busy.
      prefer = not plan.state_part and plan.shuffles and plan.index and workers > 1
        and plan.index % workers or nil,
    }
  end
  return specs
end

-- Runs the map side of a shuffle once and keeps its buckets: buckets[r] = slices.
-- self.prepare(self, time), when set, runs first (a sort's sampling job, which sets the
-- map side's bounds).
function Planner:_materialize(time)
  if self.buckets then return end
  if self.prepare then self:prepare(time) end
  local plans = self.parent:_plans(self.reads_raw)
  local map_term, nparts, workers = self.map_term, self.nparts, self.ctx.workers
  local specs = self.parent:_tasks(plans, function(index)
    local t = {}
    for k, v in pairs(map_term) do t[k] = v end
    t.partitions, t.start = nparts, index % nparts
    -- Bucket r is kept in this VM for its reduce task when that task prefers this worker.
    if workers > 1 and nparts > 1 then t.workers = workers end
    return t
  end, map_term.stage or ((map_term.who or map_term.kind) .. " (map side)"), time)
  local results = self.ctx:_scheduler():run_tasks(specs)
  local buckets, side = {}, {}
  for r = 1, nparts do buckets[r] = {} end
  for _, outputs in ipairs(results) do
    for _, out in ipairs(outputs) do
      local b = out[1] >= 0 and buckets[out[1] + 1] or side
      if b == side then
        side[out[1]] = side[out[1]] or {}
        b = side[out[1]]
      end
      b[#b + 1] = out[2]
    end
  end
  -- Side outputs (negative targets: event-time reports, late records) by target.
  self.buckets, self.side = buckets, side
end

-- Runs an action: every partition ends in term(index). Returns per-partition outputs.
-- An action's own closures (holds, see Context:_ship) stay shipped until its tasks have run:
-- the call after run_tasks keeps the table reachable that long.
local function keep(_) end

-- A failed task raises: in a batch's job as it is (the clock adds the batch, and ctx:advance
-- or await_termination raises it at the user's line); outside one (an action on a static
-- dataset) at the line of the action, as any error of the public API.
local function run(self, term, stage)
  return self.ctx:_scheduler():run_tasks(self:_tasks(self:_plans(), term, stage))
end

function Planner:_run(term, stage, holds)
  local ok, results = pcall(run, self, term, stage)
  keep(holds)
  if ok then return results end
  if self.ctx:_scheduler():in_job() or results == "interrupted" then error(results, 0) end
  util.raise(results)
end

return Planner

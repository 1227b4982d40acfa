-- dstream/rdd.lua: a batch (an "rdd"): partitioned records and the lineage that makes them.
--
-- An rdd is a source (slices of C memory, or a range of integers), a narrow operator over a
-- parent, a union of parents, or a shuffle of a parent. Nothing runs until an action: then
-- the lineage is cut into stages at shuffles. Each partition of a stage is one task: its
-- input and the list of narrow operators from the source up, fused and run by a worker in one
-- loop, ending in the action's terminal (or the next shuffle's map side). Shuffle outputs are
-- kept on the shuffle node, so several actions on one rdd compute them once.
local buffer = require("string.buffer")
local core = require("dstream.core")
local format = require("dstream.format")
local util = require("dstream.util")
local files = require("dstream.sinks.files")

local RDD = {}
RDD.__index = RDD
RDD.__name = "rdd"

local M = { RDD = RDD }

local function new(ctx, fields)
  fields.ctx = ctx
  return setmetatable(fields, RDD)
end

function M.is_rdd(v) return getmetatable(v) == RDD end

---------------------------------------------------------------------------------------------
-- Sources

-- Partitions made of slices (arrays of ds.slice userdata), e.g. a sealed receiver batch.
function M.from_slices(ctx, parts)
  return new(ctx, { kind = "source", parts = parts, nparts = #parts })
end

-- Consecutive integers first .. first + count - 1 in `nparts` consecutive ranges.
function M.range(ctx, first, count, nparts)
  local parts = {}
  for p = 0, nparts - 1 do
    local lo = first + math.floor(count * p / nparts)
    local hi = first + math.floor(count * (p + 1) / nparts)
    parts[p + 1] = { range = { lo, hi - lo } }
  end
  return new(ctx, { kind = "source", parts = parts, nparts = nparts })
end

-- A Lua array split into `nparts` consecutive slices, encoded into C memory now.
-- With pairs, each element {k, v} becomes the pair k, v.
function M.from_list(ctx, list, nparts, pairs)
  local n = #list
  local parts = {}
  for p = 0, nparts - 1 do
    local lo, hi = math.floor(n * p / nparts) + 1, math.floor(n * (p + 1) / nparts)
    local keys, values = {}, {}
    for i = lo, hi do
      local v = list[i]
      if pairs then
        if type(v) ~= "table" then error("element " .. i .. " is not a {key, value} table", 0) end
        keys[i - lo + 1], values[i - lo + 1] = v[1], v[2]
      else
        keys[i - lo + 1] = v
      end
    end
    local count = hi - lo + 1
    -- The slice layout of worker.lua: one value, { values } or { keys, values }.
    local bytes = buffer.encode(pairs and { keys, values } or { keys })
    parts[p + 1] = count > 0 and { core.slice_from_string(bytes, count, pairs) } or {}
  end
  return M.from_slices(ctx, parts)
end

---------------------------------------------------------------------------------------------
-- Transformations

function RDD:_narrow(op)
  return new(self.ctx, { kind = "narrow", parent = self, op = op, nparts = self.nparts })
end

function RDD:_shuffle(map_term, reduce_op, nparts)
  return new(self.ctx, { kind = "shuffle", parent = self, map_term = map_term,
    reduce_op = reduce_op, nparts = nparts })
end

-- Operators that take a function share one implementation: ship it, wrap it.
local function fn_op(kind)
  return function(self, f)
    util.check_function(f, kind)
    return self:_narrow({ kind = kind, fn = self.ctx:_ship(f, kind) })
  end
end

RDD.map = fn_op("map")
RDD.flat_map = fn_op("flat_map")
RDD.filter = fn_op("filter")
RDD.map_partitions = fn_op("map_partitions")
RDD.map_values = fn_op("map_values")

function RDD:glom()
  return self:_narrow({ kind = "glom" })
end

function RDD:union(other)
  if not M.is_rdd(other) then util.raise("union: expected a batch (rdd), got " .. type(other)) end
  return new(self.ctx, { kind = "union", parents = { self, other }, nparts = self.nparts + other.nparts })
end

function RDD:repartition(n)
  util.check_count(n, "repartition", "the number of partitions")
  return self:_shuffle({ kind = "partition", who = "repartition" }, nil, n)
end

function RDD:reduce_by_key(f, nparts)
  util.check_function(f, "reduce_by_key")
  nparts = util.options(nparts, "reduce_by_key").partitions
  return self:_reduce_by_key_id(self.ctx:_ship(f, "reduce_by_key"), nparts)
end

-- The shuffles below take functions already shipped (ids), so that a stream ships its
-- closures once, when the operator is called, and not again for every batch.
function RDD:_reduce_by_key_id(id, nparts)
  return self:_shuffle({ kind = "combine", fn = id, who = "reduce_by_key" },
    { kind = "merge", fn = id }, nparts or self.ctx.partitions)
end

-- Records hashed by key into nparts buckets, no combining (the map side of grouping).
function RDD:_by_key(reduce_op, nparts, who)
  return self:_shuffle({ kind = "partition", by_key = true, who = who }, reduce_op,
    nparts or self.ctx.partitions)
end

function RDD:group_by_key(nparts)
  nparts = util.options(nparts, "group_by_key").partitions
  return self:_by_key({ kind = "group" }, nparts, "group_by_key")
end

-- create(v) makes a key's combiner from its first value, merge_value(c, v) adds a value,
-- merge_combiners(c1, c2) merges two; combining starts on the map side.
function RDD:combine_by_key(create, merge_value, merge_combiners, nparts)
  util.check_function(create, "combine_by_key")
  util.check_function(merge_value, "combine_by_key")
  util.check_function(merge_combiners, "combine_by_key")
  nparts = util.options(nparts, "combine_by_key").partitions
  local ctx = self.ctx
  return self:_combine_by_key_ids(ctx:_ship(create, "combine_by_key"),
    ctx:_ship(merge_value, "combine_by_key"), ctx:_ship(merge_combiners, "combine_by_key"), nparts)
end

function RDD:_combine_by_key_ids(create, merge_value, merge_combiners, nparts)
  return self:_shuffle({ kind = "combine", create = create, fn = merge_value, who = "combine_by_key" },
    { kind = "merge", fn = merge_combiners }, nparts or self.ctx.partitions)
end

RDD.flat_map_values = fn_op("flat_map_values")

-- cogroup and the joins: both sides hashed by key into the same buckets.
local function two_sided(mode)
  return function(self, other, nparts)
    if not M.is_rdd(other) then util.raise(mode .. ": expected a batch (rdd), got " .. type(other)) end
    nparts = util.options(nparts, mode).partitions
    nparts = nparts or self.ctx.partitions
    local left = self:_shuffle({ kind = "partition", by_key = true, who = mode }, nil, nparts)
    local right = other:_shuffle({ kind = "partition", by_key = true, who = mode }, nil, nparts)
    return new(self.ctx, { kind = "cogroup", sides = { left, right }, nparts = nparts,
      op = { kind = "cogroup", mode = mode } })
  end
end

RDD.cogroup = two_sided("cogroup")
RDD.join = two_sided("join")
RDD.left_outer_join = two_sided("left_outer_join")
RDD.right_outer_join = two_sided("right_outer_join")
RDD.full_outer_join = two_sided("full_outer_join")

-- Keyed state (dstream.worker.ops.state): runs the update of state `state_id` with this batch's
-- records now, on the workers that keep the state. Returns the outputs of each task.
-- With combine_fn (a shipped id), values are combined per key on the map side first.
function RDD:_run_stateful(state_id, op, nparts, term, stage, combine_fn)
  local shuffled
  if combine_fn then
    shuffled = self:_shuffle({ kind = "combine", fn = combine_fn, who = stage }, nil, nparts)
  else
    shuffled = self:_by_key(nil, nparts, stage)
  end
  local plans = shuffled:_plans()
  for r, plan in ipairs(plans) do
    plan.ops = { op }
    plan.state_part = r - 1
  end
  return self.ctx:_scheduler():run_tasks(shuffled:_tasks(plans, function() return term end, stage))
end

-- A batch with no records.
function M.empty(ctx, nparts)
  local parts = {}
  for i = 1, nparts or ctx.partitions do parts[i] = {} end
  return M.from_slices(ctx, parts)
end

-- The keys and states of state `state_id`, read where they live; with `state_time`, the
-- result that state's operator kept for that batch (a window's value, see ops_window).
function M.state_source(ctx, state_id, nparts, state_time)
  return new(ctx, { kind = "state", state_id = state_id, nparts = nparts, state_time = state_time })
end

-- Partitions made of the outputs of tasks (one task's outputs per partition).
function M.from_outputs(ctx, results)
  local parts = {}
  for i, outputs in ipairs(results) do
    local slices = {}
    for _, out in ipairs(outputs) do
      if out[1] >= 0 then slices[#slices + 1] = out[2] end
    end
    parts[i] = slices
  end
  return M.from_slices(ctx, parts)
end

-- Functions dstream itself ships (counting), once per context.
local builtin_fns = {
  value_one = function(v) return v, 1 end,
  key_one = function(k) return k, 1 end,
  add = function(a, b) return a + b end,
}
local function builtin(ctx, name)
  ctx._builtin_ids = ctx._builtin_ids or {}
  local id = ctx._builtin_ids[name]
  if not id then
    id = ctx:_ship(builtin_fns[name], name)
    ctx._builtin_ids[name] = id
  end
  return id
end

local function count_by(self, first, nparts, who)
  local add = builtin(self.ctx, "add")
  return self:_narrow({ kind = "map", fn = builtin(self.ctx, first) })
    :_shuffle({ kind = "combine", fn = add, who = who }, { kind = "merge", fn = add },
      nparts or self.ctx.partitions)
end

function RDD:count_by_value(nparts)
  nparts = util.options(nparts, "count_by_value").partitions
  return count_by(self, "value_one", nparts, "count_by_value")
end

-- The count as a one-record batch (for streams): 0 for an empty batch.
function RDD:_count_rdd()
  return self:_shuffle({ kind = "count" }, { kind = "sum_counts" }, 1)
end

-- The reduction by shipped function `id` as a one-record batch (for streams): no record for
-- an empty batch.
function RDD:_reduce_id(id)
  return self:_shuffle({ kind = "reduce", fn = id }, { kind = "reduce_partials", fn = id }, 1)
end

---------------------------------------------------------------------------------------------
-- Planning: lineage -> stages -> tasks (RDD methods kept in dstream.driver.planner)

for name, method in pairs(require("dstream.driver.planner")) do RDD[name] = method end

local function decode_outputs(results, limit)
  local out, n = {}, 0
  for _, outputs in ipairs(results) do
    for _, o in ipairs(outputs) do
      local slice = o[1] >= 0 and o[2]
      local arrays = slice and buffer.decode(slice:bytes()) or {}
      local keys, values = arrays[1], arrays[2]
      for i = 1, slice and slice:count() or 0 do
        if limit and n >= limit then return out end
        n = n + 1
        if values then out[n] = { keys[i], values[i] } else out[n] = keys[i] end
      end
    end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- Actions

local function const(spec) return function() return spec end end

function RDD:collect()
  return decode_outputs(self:_run(const({ kind = "collect" }), "collect"))
end

function RDD:take(n)
  if type(n) ~= "number" or n < 0 or n ~= math.floor(n) then
    util.raise("take: n must be a whole number of at least 0, got " .. tostring(n))
  end
  if n == 0 then return {} end
  return decode_outputs(self:_run(const({ kind = "collect", limit = n }), "take"), n)
end

function RDD:first()
  return self:take(1)[1]
end

function RDD:count()
  local total = 0
  for _, v in ipairs(decode_outputs(self:_run(const({ kind = "count" }), "count"))) do
    total = total + v
  end
  return total
end

function RDD:reduce(f)
  util.check_function(f, "reduce")
  local id = self.ctx:_ship(f, "reduce")
  local partials = decode_outputs(self:_run(const({ kind = "reduce", fn = id }), "reduce"))
  local acc = partials[1]
  for i = 2, #partials do acc = f(acc, partials[i]) end
  return acc
end

function RDD:count_by_key()
  return self:_count_by_key_rdd():collect_as_map()
end

-- (key, count) pairs, as a batch: the stream operator count_by_key.
function RDD:_count_by_key_rdd(nparts)
  return count_by(self, "key_one", nparts, "count_by_key")
end

function RDD:collect_as_map()
  local map = {}
  for _, kv in ipairs(self:collect()) do
    if type(kv) ~= "table" then util.raise("collect_as_map: the records are not key/value pairs") end
    map[kv[1]] = kv[2]
  end
  return map
end

function RDD:foreach(f)
  util.check_function(f, "foreach")
  self:_run(const({ kind = "foreach", fn = self.ctx:_ship(f, "foreach") }), "foreach")
end

function RDD:foreach_partition(f)
  util.check_function(f, "foreach_partition")
  self:_run(const({ kind = "foreach_partition", fn = self.ctx:_ship(f, "foreach_partition") }),
    "foreach_partition")
end

-- Part files, one per partition (dstream.sinks.files).
function RDD:save_as_text_file(path, replace)
  files.save(self, path, "save_text", "save_as_text_file", replace)
end

function RDD:save_as_object_file(path, replace)
  files.save(self, path, "save_object", "save_as_object_file", replace)
end

function RDD:num_partitions() return self.nparts end

function RDD:__tostring()
  return string.format("rdd(%s, %d partitions)", self.kind, self.nparts)
end

M.format = format
return M

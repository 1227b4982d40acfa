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
local ordering = require("dstream.ordering")

local RDD = {}
RDD.__index = require("dstream.names").hint(RDD, "batch (rdd)") -- camelCase names: a hint
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

-- A dataset keeps the closures its operator shipped (`holds`, see Context:_ship): they leave
-- the workers once no dataset made from it is left.
local function held(r, holds)
  r._holds = holds
  return r
end

-- Operators that take a function share one implementation: ship it, wrap it.
local function fn_op(kind)
  return function(self, f)
    util.check_function(f, kind)
    local holds = {}
    return held(self:_narrow({ kind = kind, fn = self.ctx:_ship(f, kind, holds) }), holds)
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
  local holds = {}
  return held(self:_reduce_by_key_id(self.ctx:_ship(f, "reduce_by_key", holds), nparts), holds)
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
  local ctx, holds = self.ctx, {}
  return held(self:_combine_by_key_ids(ctx:_ship(create, "combine_by_key", holds),
    ctx:_ship(merge_value, "combine_by_key", holds), ctx:_ship(merge_combiners, "combine_by_key", holds),
    nparts), holds)
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
  -- Its tasks run where their state partition lives (p % workers): the map side keeps those
  -- buckets for them in its VM (dstream.worker.handoff).
  shuffled.map_term.workers = self.ctx.workers
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
-- `parts`: only these state partitions (a cluster process's own), else 0 .. nparts - 1.
function M.state_source(ctx, state_id, nparts, state_time, parts)
  return new(ctx, { kind = "state", state_id = state_id, nparts = parts and #parts or nparts,
    state_time = state_time, state_parts = parts })
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

-- (value, count) pairs, as a batch: the stream operator count_by_value.
function RDD:_count_by_value_rdd(nparts)
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
-- The rest of Spark's batch API: sorting, sets, sampling, cartesian, keys and values, cache

-- Sorting is a range-partitioned shuffle (dstream.worker.ops.sort): before the map side runs,
-- a sampling job takes a reservoir of keys from every partition (Spark's RangePartitioner:
-- 20 keys per output partition, three times over, spread over the input partitions); the
-- driver orders them, weighs each by its partition's count, and picks the bounds at equal
-- steps of weight. Keys that repeat make fewer bounds, and partitions past them stay empty.
local function sample_bounds(node, time)
  local map_term, nparts = node.map_term, node.nparts
  map_term.bounds = {}
  if nparts == 1 then return end
  local parent, who = node.parent, map_term.who
  local per_part = math.ceil(3 * math.min(20 * nparts, 1e6) / math.max(parent.nparts, 1))
  local specs = parent:_tasks(parent:_plans(), function(index)
    return { kind = "sort_sample", size = per_part, seed = index, who = who, fn = map_term.fn,
      by_key = map_term.by_key, keyfunc = map_term.keyfunc }
  end, who .. " (sampling)", time)
  local cands, total, kind = {}, 0, nil
  for _, outputs in ipairs(node.ctx:_scheduler():run_tasks(specs)) do
    for _, o in ipairs(outputs) do
      if o[1] == 0 then
        local rec = buffer.decode(o[2]:bytes())[1][1]
        local weight = rec.n / #rec.keys
        for _, k in ipairs(rec.keys) do
          local ok, err = pcall(ordering.check, k, kind, who)
          if not ok then util.raise(err) end
          kind = err
          cands[#cands + 1] = { k, weight }
          total = total + weight
        end
      end
    end
  end
  local less = ordering.less
  table.sort(cands, function(x, y) return less(x[1], y[1], who) end)
  local step, cum, target, bounds = total / nparts, 0, total / nparts, map_term.bounds
  for _, c in ipairs(cands) do
    if #bounds >= nparts - 1 then break end
    cum = cum + c[2]
    if cum >= target then
      local prev = bounds[#bounds]
      if prev == nil or less(prev, c[1], who) then
        bounds[#bounds + 1] = c[1]
        target = target + step
      end
    end
  end
end

-- key_spec: { fn = id } (sort_by: the key of a record is fn(x) / fn(k, v)) or
-- { by_key = true, keyfunc = id or nil } (sort_by_key).
function RDD:_sort(key_spec, ascending, nparts, who)
  local map_term = { kind = "range", ascending = ascending, who = who }
  local reduce_op = { kind = "sort", ascending = ascending, who = who }
  for k, v in pairs(key_spec) do map_term[k], reduce_op[k] = v, v end
  local node = self:_shuffle(map_term, reduce_op, nparts or self.nparts)
  node.prepare = sample_bounds
  return node
end

-- The arguments of sort_by(f, [ascending [, n]]) / sort_by(f, opts) and of sort_by_key
-- ([ascending [, n [, keyfunc]]]) / sort_by_key(opts): ascending, partitions, keyfunc.
local SORT_OPTIONS = { ascending = true }
local SORT_BY_KEY_OPTIONS = { ascending = true, keyfunc = true }
function M.sort_args(who, a1, a2, a3)
  local opts
  if type(a1) == "table" then
    if a2 ~= nil then util.raise(who .. ": the table of options is the last argument") end
    opts = util.options(a1, who, who == "sort_by" and SORT_OPTIONS or SORT_BY_KEY_OPTIONS)
  else
    if who == "sort_by" and a3 ~= nil then util.raise(who .. ": too many arguments") end
    opts = { ascending = a1, partitions = util.options(a2, who).partitions, keyfunc = a3 }
  end
  if opts.ascending ~= nil and type(opts.ascending) ~= "boolean" then
    util.raise(who .. ": ascending must be true or false, got " .. type(opts.ascending))
  end
  if opts.keyfunc ~= nil then util.check_function(opts.keyfunc, who .. ": keyfunc") end
  return opts.ascending ~= false, opts.partitions, opts.keyfunc
end

-- Pyspark's sortBy: the records ordered by f(x) (or f(k, v)); n partitions (default: this
-- batch's), each a range of keys, in order.
function RDD:sort_by(f, ascending, nparts)
  util.check_function(f, "sort_by")
  local asc, n = M.sort_args("sort_by", ascending, nparts)
  local holds = {}
  return held(self:_sort({ fn = self.ctx:_ship(f, "sort_by", holds) }, asc, n, "sort_by"), holds)
end

-- Pyspark's sortByKey: pairs ordered by key (or keyfunc(key)).
function RDD:sort_by_key(ascending, nparts, keyfunc)
  local asc, n, kf = M.sort_args("sort_by_key", ascending, nparts, keyfunc)
  local holds = {}
  return held(self:_sort({ by_key = true, keyfunc = kf and self.ctx:_ship(kf, "sort_by_key", holds) }, asc, n,
    "sort_by_key"), holds)
end

function RDD:keys() return self:_narrow({ kind = "keys" }) end
function RDD:values() return self:_narrow({ kind = "values" }) end

-- Records hashed by themselves into n buckets (the set operators' map side).
local function by_record(rdd, dedupe, nparts, who)
  return rdd:_shuffle({ kind = "hash_records", dedupe = dedupe, who = who }, nil, nparts)
end

-- Each record once (equal as Lua table keys: strings, numbers and booleans by value, a
-- pair by key and value), in n partitions (default: this batch's).
function RDD:distinct(nparts)
  nparts = util.options(nparts, "distinct").partitions or self.nparts
  local node = by_record(self, true, nparts, "distinct")
  node.reduce_op = { kind = "distinct" }
  return node
end

local function set_op(mode, default_parts)
  return function(self, other, nparts)
    if not M.is_rdd(other) then util.raise(mode .. ": expected a batch (rdd), got " .. type(other)) end
    nparts = util.options(nparts, mode).partitions or default_parts(self, other)
    return new(self.ctx, { kind = "cogroup", nparts = nparts, op = { kind = mode },
      sides = { by_record(self, mode == "intersection", nparts, mode),
        by_record(other, true, nparts, mode) } })
  end
end

-- Spark's defaults: subtract keeps this batch's partition count, intersection the larger.
RDD.subtract = set_op("subtract", function(self) return self.nparts end)
RDD.intersection = set_op("intersection", function(self, other) return math.max(self.nparts, other.nparts) end)

-- (x, y) for every record x of this batch and y of other, as pairs x, y (a pair record is
-- { k, v }); partition (i, j) pairs partition i with partition j of other. Both sides are
-- computed once and kept for the pairing tasks.
function RDD:cartesian(other)
  if not M.is_rdd(other) then util.raise("cartesian: expected a batch (rdd), got " .. type(other)) end
  local function kept(r)
    return r:_shuffle({ kind = "keep", who = "cartesian", stage = "cartesian (each side)" }, nil, r.nparts)
  end
  return new(self.ctx, { kind = "cartesian", sides = { kept(self), kept(other) },
    nparts = self.nparts * other.nparts, op = { kind = "cartesian" } })
end

-- Spark's sample(withReplacement, fraction, seed): each record with probability fraction, or
-- (with replacement) fraction times on average. A seed gives the same sample every time.
function RDD:sample(with_replacement, fraction, seed)
  if type(with_replacement) ~= "boolean" then
    util.raise("sample: with_replacement must be true or false, got " .. type(with_replacement))
  end
  if type(fraction) ~= "number" or not (fraction >= 0) or fraction == math.huge
    or (not with_replacement and fraction > 1) then
    util.raise("sample: fraction must be a number " .. (with_replacement and "of at least 0"
      or "from 0 to 1 (without replacement)") .. ", got " .. tostring(fraction))
  end
  if seed ~= nil and (type(seed) ~= "number" or seed ~= seed or math.abs(seed) == math.huge) then
    util.raise("sample: seed must be a number, got " .. tostring(seed))
  end
  seed = math.floor(seed or math.random(0, 2147483645)) % 2147483646
  local by_part = {}
  for i = 1, self.nparts do
    by_part[i] = { kind = "sample", fraction = fraction, with_replacement = with_replacement,
      seed = (seed * 1000003 + i) % 2147483646 }
  end
  local r = self:_narrow(by_part[1])
  r.ops_by_part = by_part
  return r
end

-- Spark's zipWithIndex: pairs (x, index), indices counted across partitions in order (a pair
-- record is { k, v }). Runs a job now that counts the records of each partition (not with
-- one partition), and the batch is computed again when used: cache() it first when that is
-- costly.
function RDD:zip_with_index()
  local offsets, by_part = { 0 }, {}
  if self.nparts > 1 then
    local results = self:_run(function() return { kind = "count" } end, "zip_with_index (count)")
    for i, outputs in ipairs(results) do
      local n = 0
      for _, o in ipairs(outputs) do n = n + buffer.decode(o[2]:bytes())[1][1] end
      offsets[i + 1] = offsets[i] + n
    end
  end
  for i = 1, self.nparts do by_part[i] = { kind = "zip_with_index", offset = offsets[i] } end
  local r = self:_narrow(by_part[1])
  r.ops_by_part = by_part
  return r
end

-- Keeps the batch's partitions in C memory (as a shuffle keeps its buckets) the first time an
-- action computes it; later actions read them. Lives as long as the batch (a stream forgets
-- its batches after they ran) or until unpersist().
function RDD:cache()
  if not self._cache then
    self._cache = new(self.ctx, { kind = "shuffle", parent = self, reads_raw = true,
      map_term = { kind = "keep", who = "cache", stage = "cache" }, nparts = self.nparts })
  end
  return self
end

-- Spark's persist(level): memory is the only level here.
function M.check_storage_level(level)
  if level ~= nil and (type(level) ~= "string" or level:upper() ~= "MEMORY_ONLY") then
    util.raise("persist: the only storage level is \"MEMORY_ONLY\" (records in C memory), got "
      .. tostring(level))
  end
end

function RDD:persist(level)
  M.check_storage_level(level)
  return self:cache()
end

-- Drops the kept partitions; their C memory goes when the collector frees the slices (run
-- now, since Lua does not see the size of C memory).
function RDD:unpersist()
  if self._cache then
    self._cache = nil
    collectgarbage()
  end
  return self
end

function RDD:is_cached() return self._cache ~= nil end

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
  if self.known_count then return self.known_count end -- (a window's batch: dstream.window)
  local total = 0
  for _, v in ipairs(decode_outputs(self:_run(const({ kind = "count" }), "count"))) do
    total = total + v
  end
  return total
end

function RDD:reduce(f)
  util.check_function(f, "reduce")
  local holds = {}
  local id = self.ctx:_ship(f, "reduce", holds)
  local partials = decode_outputs(self:_run(const({ kind = "reduce", fn = id }), "reduce", holds))
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
  local holds = {}
  self:_run(const({ kind = "foreach", fn = self.ctx:_ship(f, "foreach", holds) }), "foreach", holds)
end

function RDD:foreach_partition(f)
  util.check_function(f, "foreach_partition")
  local holds = {}
  self:_run(const({ kind = "foreach_partition", fn = self.ctx:_ship(f, "foreach_partition", holds) }),
    "foreach_partition", holds)
end

-- Part files, one per partition (dstream.sinks.files).
function RDD:save_as_text_file(path, replace)
  files.save(self, path, "save_text", "save_as_text_file", replace)
end

function RDD:save_as_object_file(path, replace)
  files.save(self, path, "save_object", "save_as_object_file", replace)
end

-- Writes the rows into a PostgreSQL or SQLite table (dstream.sinks.database); returns their count.
function RDD:to_sql(opts)
  return require("dstream.sinks.database").write_rdd(self, opts)
end

-- Spark's countByValue: a table t[x] = number of records equal to x.
function RDD:count_by_value(nparts)
  nparts = util.options(nparts, "count_by_value").partitions
  return self:_count_by_value_rdd(nparts):collect_as_map()
end

function RDD:is_empty()
  return #self:take(1) == 0
end

-- The values of the pairs whose key is `key`, in order.
function RDD:lookup(key)
  if key == nil or key ~= key then util.raise("lookup: expected a key, got " .. tostring(key)) end
  return self:_narrow({ kind = "lookup", key = key }):collect()
end

-- The one record each task emitted (aggregate, stats, top), by task.
local function partials(results)
  local out = {}
  for i, outputs in ipairs(results) do
    for _, o in ipairs(outputs) do
      if o[1] == 0 then out[i] = buffer.decode(o[2]:bytes())[1][1] end
    end
  end
  return out
end

-- A value the workers start from (aggregate's and fold's zero): it travels with each task
-- (each partition gets its own copy, as Spark clones it) and the driver starts from a copy.
local function copy_zero(zero, who)
  local ok, bytes = pcall(buffer.encode, zero)
  if not ok then util.raise(who .. ": the zero value cannot travel to the workers: " .. tostring(bytes)) end
  return buffer.decode(bytes)
end

local function aggregate(self, zero, seq_fn, comb, who, single)
  local acc = copy_zero(zero, who)
  local holds = {}
  local results = self:_run(const({ kind = "aggregate", zero = zero, who = who, single = single,
    fn = self.ctx:_ship(seq_fn, who, holds) }), who, holds)
  local values = partials(results)
  for i = 1, #results do
    if values[i] then acc = comb(acc, values[i].value) end
  end
  return acc
end

-- Spark's fold: every partition folded from its own copy of zero with op, then the
-- partitions' results folded from zero on the driver, in partition order.
function RDD:fold(zero, op)
  util.check_function(op, "fold")
  return aggregate(self, zero, op, op, "fold", true)
end

-- Spark's aggregate: seq_op(acc, x) (seq_op(acc, k, v) for pairs) over each partition from a
-- copy of zero, then comb_op(acc, partition_result) on the driver from zero.
function RDD:aggregate(zero, seq_op, comb_op)
  util.check_function(seq_op, "aggregate")
  util.check_function(comb_op, "aggregate")
  return aggregate(self, zero, seq_op, comb_op, "aggregate")
end

-- Spark's StatCounter, as a table of fields (tostring shows pyspark's form).
local Stats = { __name = "stats" }
Stats.__index = Stats
function Stats:__tostring()
  return string.format("(count: %d, mean: %s, stdev: %s, max: %s, min: %s)", self.count,
    tostring(self.mean), tostring(self.stdev), tostring(self.max), tostring(self.min))
end

-- Count, mean, sum, max, min, variance and stdev (population; sample_variance and
-- sample_stdev divide by count - 1) of a batch of numbers. The partitions' counters merge
-- as Spark's StatCounter.merge (Chan et al.), on the driver.
local function stats(self, who)
  local n, mu, m2, max, min, sum = 0, 0, 0, -math.huge, math.huge, 0
  local results = self:_run(const({ kind = "stats", who = who }), who)
  local values = partials(results)
  for i = 1, #results do
    local p = values[i]
    local pn, pmu, pm2 = p[1], p[2], p[3]
    if pn > 0 then
      if n == 0 then
        mu, m2 = pmu, pm2
      else
        local delta, total = pmu - mu, n + pn
        if pn * 10 < n then
          mu = mu + delta * pn / total
        elseif n * 10 < pn then
          mu = pmu - delta * n / total
        else
          mu = (mu * n + pmu * pn) / total
        end
        m2 = m2 + pm2 + delta * delta * n * pn / total
      end
      n = n + pn
      if p[4] > max then max = p[4] end
      if p[5] < min then min = p[5] end
      sum = sum + p[6]
    end
  end
  local nan = 0 / 0
  local variance = n > 0 and m2 / n or nan
  local sample_variance = n > 1 and m2 / (n - 1) or nan
  return setmetatable({ count = n, mean = n > 0 and mu or nan, sum = sum, max = max, min = min,
    variance = variance, stdev = math.sqrt(variance), sample_variance = sample_variance,
    sample_stdev = math.sqrt(sample_variance) }, Stats)
end

function RDD:stats() return stats(self, "stats") end
function RDD:sum() return stats(self, "sum").sum end
function RDD:mean() return stats(self, "mean").mean end
function RDD:variance() return stats(self, "variance").variance end
function RDD:stdev() return stats(self, "stdev").stdev end
function RDD:sample_variance() return stats(self, "sample_variance").sample_variance end
function RDD:sample_stdev() return stats(self, "sample_stdev").sample_stdev end

-- top(n [, key]) / take_ordered(n [, key]): each partition keeps its best n in a heap on the
-- workers (dstream.worker.ops.sort); the driver orders those candidates and keeps n. The key
-- of a record is key(x) / key(k, v), else the record (a pair's key for pairs); `key` may also
-- be given as { key = f }. Ties go to the earlier record.
local KEY_OPTION = { key = true }
local function bounded(self, n, key, largest, who)
  if type(n) ~= "number" or n < 0 or n ~= math.floor(n) or n == math.huge then
    util.raise(who .. ": n must be a whole number of at least 0, got " .. tostring(n))
  end
  if type(key) == "table" then
    for k in pairs(key) do
      if not KEY_OPTION[k] then util.raise(who .. ": unknown option " .. tostring(k) .. " (it takes key)") end
    end
    key = key.key
  end
  if key ~= nil then util.check_function(key, who .. ": key") end
  if n == 0 then return {} end
  local holds = {}
  local spec = { kind = "top", n = n, largest = largest, who = who,
    fn = key and self.ctx:_ship(key, who, holds) }
  local cands, kind, less = {}, nil, ordering.less
  for part, p in pairs(partials(self:_run(const(spec), who, holds))) do
    for i = 1, p[5] do
      local ok, err = pcall(ordering.check, p[1][i], kind, who)
      if not ok then util.raise(err) end
      kind = err
      cands[#cands + 1] = { p[1][i], p[2][i], p[3][i], part, p[4][i] }
    end
  end
  table.sort(cands, function(x, y)
    local a, b = x[1], y[1]
    if largest then a, b = b, a end
    if less(a, b, who) then return true end
    if less(b, a, who) then return false end
    if x[4] ~= y[4] then return x[4] < y[4] end
    return x[5] < y[5]
  end)
  local out = {}
  for i = 1, math.min(n, #cands) do
    local c = cands[i]
    if c[3] ~= nil then out[i] = { c[2], c[3] } else out[i] = c[2] end
  end
  return out
end

function RDD:top(n, key) return bounded(self, n, key, true, "top") end
function RDD:take_ordered(n, key) return bounded(self, n, key, false, "take_ordered") end

-- The largest / smallest record (by key(x) when given), or nil for an empty batch.
function RDD:max(key) return bounded(self, 1, key, true, "max")[1] end
function RDD:min(key) return bounded(self, 1, key, false, "min")[1] end

function RDD:num_partitions() return self.nparts end

-- Approximate aggregates from mergeable sketches (stdlib/dstream/sketch.lua): Spark's
-- approxCountDistinct(relativeSD) over a HyperLogLog, approxQuantile(probabilities,
-- relativeError) over a KLL sketch.
function RDD:approx_count_distinct(rel_sd) return require("dstream.sketch").rdd_count_distinct(self, rel_sd) end
function RDD:approx_quantile(qs, rel_err) return require("dstream.sketch").rdd_quantiles(self, qs, rel_err) end

function RDD:__tostring()
  return string.format("rdd(%s, %d partitions)", self.kind, self.nparts)
end

M.format = format
-- SQL (dstream/sql): the batch as a table of SQL queries; show prints rows as Spark's show().
function RDD:to_table(name, columns)
  require("dstream.sql").to_table(self, name, columns)
  return self
end
function RDD:show(n, truncate) require("dstream.sql.show").show(self, n, truncate) end

return M

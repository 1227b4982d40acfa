-- dstream/stream.lua: a discretized stream: a batch (rdd) for every batch time.
--
-- A stream is a node of the job's graph. Input streams get their batch from a source when the
-- clock seals it; derived streams build theirs from their parents' batches with the rdd
-- operators, so a stream operator is the rdd operator applied at every batch time. The
-- closures given to operators are shipped once, when the operator is called: a closure that
-- cannot travel is an error on the user's line, before anything runs. Batches are generated
-- once per time and forgotten when no window needs them any more.
local rdd_mod = require("dstream.rdd")
local format = require("dstream.format")
local util = require("dstream.util")
local files = require("dstream.sinks.files")

local Stream = {}
Stream.__index = require("dstream.names").hint(Stream, "stream") -- camelCase names: a hint
Stream.__name = "stream"

local M = { Stream = Stream }

-- compute(self, time) returns the stream's rdd for that time (or nil: no batch).
function M.new(ctx, parents, compute, name)
  local s = setmetatable({
    ctx = ctx, parents = parents, compute = compute, generated = {}, label = name,
    id = ctx:_register_stream(),
  }, Stream)
  ctx._streams = ctx._streams or {}
  ctx._streams[#ctx._streams + 1] = s
  return s
end

function M.is_stream(v) return getmetatable(v) == Stream end

-- The context the stream belongs to (Spark's DStream.context).
function Stream:context() return self.ctx end

function Stream:get_rdd(time)
  local r = self.generated[time]
  if r == nil then
    -- Only the running batch is generated; a past time that was never generated has no batch
    -- (sources must not be asked twice).
    if time ~= self.ctx._current_time then return nil end
    r = self:compute(time) or false
    self.generated[time] = r
    if r and time >= (self._newest_time or time) then self._newest, self._newest_time = r, time end -- for peek
  end
  return r or nil
end

-- Drops batches older than `before` (the context calls it after each batch).
function Stream:_forget(before)
  for t in pairs(self.generated) do
    if t < before then self.generated[t] = nil end
  end
end

-- A stream whose batch is f(parent's batch), for operators that map one batch to one batch.
function Stream:_derive(name, f)
  return M.new(self.ctx, { self }, function(s, time)
    local r = s.parents[1]:get_rdd(time)
    if r then return f(r, time) end
  end, name)
end

---------------------------------------------------------------------------------------------
-- Transformations

local function fn_transform(kind)
  return function(self, f)
    util.check_function(f, kind)
    local op = { kind = kind, fn = self.ctx:_ship(f, kind) }
    local out = self:_derive(kind, function(r) return r:_narrow(op) end)
    out.event = self.event -- record-by-record operators keep the event time (window.lua)
    return out
  end
end

Stream.map = fn_transform("map")
Stream.flat_map = fn_transform("flat_map")
Stream.filter = fn_transform("filter")
Stream.map_partitions = fn_transform("map_partitions")
Stream.map_values = fn_transform("map_values")

function Stream:glom()
  return self:_derive("glom", function(r) return r:glom() end)
end

function Stream:repartition(n)
  util.check_count(n, "repartition", "the number of partitions")
  return self:_derive("repartition", function(r) return r:repartition(n) end)
end

function Stream:union(other)
  if not M.is_stream(other) then util.raise("union: expected a stream, got " .. type(other)) end
  return M.new(self.ctx, { self, other }, function(s, time)
    local a, b = s.parents[1]:get_rdd(time), s.parents[2]:get_rdd(time)
    if a and b then return a:union(b) end
    return a or b
  end, "union")
end

function Stream:count()
  return self:_derive("count", function(r) return r:_count_rdd() end)
end

function Stream:reduce(f)
  util.check_function(f, "reduce")
  local id = self.ctx:_ship(f, "reduce")
  return self:_derive("reduce", function(r) return r:_reduce_id(id) end)
end

function Stream:count_by_value(nparts)
  nparts = util.options(nparts, "count_by_value").partitions
  return self:_derive("count_by_value", function(r) return r:_count_by_value_rdd(nparts) end)
end

function Stream:reduce_by_key(f, nparts)
  util.check_function(f, "reduce_by_key")
  nparts = util.options(nparts, "reduce_by_key").partitions
  local id = self.ctx:_ship(f, "reduce_by_key")
  return self:_derive("reduce_by_key", function(r) return r:_reduce_by_key_id(id, nparts) end)
end

---------------------------------------------------------------------------------------------
-- Key/value streams

Stream.flat_map_values = fn_transform("flat_map_values")

function Stream:group_by_key(nparts)
  nparts = util.options(nparts, "group_by_key").partitions
  return self:_derive("group_by_key", function(r) return r:group_by_key(nparts) end)
end

function Stream:combine_by_key(create, merge_value, merge_combiners, nparts)
  util.check_function(create, "combine_by_key")
  util.check_function(merge_value, "combine_by_key")
  util.check_function(merge_combiners, "combine_by_key")
  nparts = util.options(nparts, "combine_by_key").partitions
  local ctx = self.ctx -- shipped once here, not for every batch
  local c, mv, mc = ctx:_ship(create, "combine_by_key"), ctx:_ship(merge_value, "combine_by_key"),
    ctx:_ship(merge_combiners, "combine_by_key")
  return self:_derive("combine_by_key", function(r) return r:_combine_by_key_ids(c, mv, mc, nparts) end)
end

function Stream:count_by_key(nparts)
  nparts = util.options(nparts, "count_by_key").partitions
  return self:_derive("count_by_key", function(r) return r:_count_by_key_rdd(nparts) end)
end

-- A stream built from this stream's and another's batch at each time.
function Stream:_derive2(other, name, f)
  if not M.is_stream(other) then util.raise(name .. ": expected a stream, got " .. type(other)) end
  return M.new(self.ctx, { self, other }, function(s, time)
    local a, b = s.parents[1]:get_rdd(time), s.parents[2]:get_rdd(time)
    if a and b then return f(a, b, time) end
  end, name)
end

-- With within (or before and after): an event-time interval join (dstream.interval_join), the
-- same in one process and across processes; without, batch by batch (refused in cluster mode).
local function two_sided(mode)
  return function(self, other, nparts)
    local interval = require("dstream.interval_join")
    local opts = interval.options(nparts, mode)
    if not M.is_stream(other) then interval.not_a_stream(mode, other) end
    if interval.wanted(opts) then return interval.join(self, other, mode, opts) end
    if self.ctx.cluster then interval.refuse(mode) end
    nparts = opts.partitions
    return self:_derive2(other, mode, function(a, b) return a[mode](a, b, nparts) end)
  end
end

Stream.cogroup = two_sided("cogroup")
Stream.join = two_sided("join")
Stream.left_outer_join = two_sided("left_outer_join")
Stream.right_outer_join = two_sided("right_outer_join")
Stream.full_outer_join = two_sided("full_outer_join")

-- fn(rdd, other_rdd, time) runs on the driver for every batch and returns the batch to use.
function Stream:transform_with(other, fn)
  util.check_function(fn, "transform_with")
  return self:_derive2(other, "transform_with", function(a, b, time)
    local out = fn(a, b, time)
    if not rdd_mod.is_rdd(out) then
      error("transform_with: the function must return a batch (rdd), got " .. type(out), 0)
    end
    return out
  end)
end

---------------------------------------------------------------------------------------------
-- Keyed state: kept on the workers between batches (dstream.worker.ops.state)

-- fn(values, state) -> new state (nil removes the key), called for every key in every batch:
-- `values` is the array of the batch's values for the key (empty when none came), `state` the
-- previous state (nil for a new key). The stream's batches are the (key, state) pairs.
-- opts: partitions = n (or n itself), initial = a batch (rdd) of (key, state) pairs the state
-- starts from, with_key = true to call fn(key, values, state).
local UPDATE_STATE_OPTIONS = { initial = true, with_key = true }
function Stream:update_state_by_key(fn, opts)
  util.check_function(fn, "update_state_by_key")
  opts = util.options(opts, "update_state_by_key", UPDATE_STATE_OPTIONS)
  local initial = opts.initial
  if initial ~= nil and not rdd_mod.is_rdd(initial) then
    util.raise("update_state_by_key: initial must be a batch (rdd) of key/state pairs, got " .. type(initial))
  end
  local ctx = self.ctx
  if ctx.cluster then return require("dstream.cluster.keyed").update_state_by_key(self, fn, opts) end
  local n = opts.partitions or ctx.partitions
  local op = { kind = "update_state", fn = ctx:_ship(fn, "update_state_by_key"),
    state = ctx:_new_state("update_state_by_key", n), with_key = opts.with_key and true or nil }
  op.keys_acc = ctx:_state_keys_counter(op.state)
  local out = self:_derive("update_state_by_key", function(r)
    if initial then
      initial:_run_stateful(op.state, { kind = "load_state", state = op.state }, n,
        { kind = "discard" }, "update_state_by_key (initial state)")
      initial = nil
    end
    r:_run_stateful(op.state, op, n, { kind = "discard" }, "update_state_by_key")
    return rdd_mod.state_source(ctx, op.state, n)
  end)
  out.state_id = op.state
  ctx:_eager(out) -- every key is updated in every batch
  return out
end

-- spec = { fn = function(key, value, state) ... end, timeout = duration, initial = rdd of
-- (key, state) pairs, partitions = n }. fn runs for every record (and once for a key whose
-- state times out: value nil, state:is_timing_out() true); the stream carries what fn returns.
function Stream:map_with_state(spec)
  util.check_table(spec, "map_with_state", "the spec")
  util.options(spec, "map_with_state", { fn = true, timeout = true, initial = true }) -- a typo is an error
  util.check_function(spec.fn, "map_with_state")
  local ctx = self.ctx
  local timeout
  if spec.timeout ~= nil then
    local err
    timeout, err = util.parse_duration(spec.timeout)
    if not timeout then util.raise("map_with_state: timeout: " .. err) end
  end
  local initial = spec.initial
  if initial ~= nil and not rdd_mod.is_rdd(initial) then
    util.raise("map_with_state: initial must be a batch (rdd) of key/state pairs, got " .. type(initial))
  end
  if ctx.cluster then return require("dstream.cluster.keyed").map_with_state(self, spec, timeout) end
  local n = spec.partitions or ctx.partitions
  local op = { kind = "map_state", fn = ctx:_ship(spec.fn, "map_with_state"),
    state = ctx:_new_state("map_with_state", n), timeout_ms = timeout }
  op.keys_acc = ctx:_state_keys_counter(op.state)
  local out = self:_derive("map_with_state", function(r)
    if initial then
      initial:_run_stateful(op.state, { kind = "load_state", state = op.state }, n,
        { kind = "discard" }, "map_with_state (initial state)")
      initial = nil
    end
    return rdd_mod.from_outputs(ctx, r:_run_stateful(op.state, op, n, { kind = "collect" }, "map_with_state"))
  end)
  out.state_id, out.state_partitions = op.state, n
  ctx:_eager(out)
  return out
end

-- Names a stateful stream's state, so that a checkpoint's state finds it even after the
-- script changed around it (otherwise state is matched by position).
function Stream:name(name)
  if type(name) ~= "string" or name == "" then util.raise("name: expected a non-empty string") end
  if not self.state_id then
    util.raise("name: only stateful streams (update_state_by_key, map_with_state, windows) are named")
  end
  for _, entry in ipairs(self.ctx._states) do
    if entry.name == name then util.raise("name: the name '" .. name .. "' is taken") end
  end
  self.ctx._states[self.state_id].name = name
  return self
end

-- The (key, state) pairs of a map_with_state stream after each batch.
function Stream:state_snapshots()
  if not self.state_id then
    util.raise("state_snapshots: only the stream returned by map_with_state has state snapshots")
  end
  local n = self.state_partitions
  return M.new(self.ctx, { self }, function(s, time)
    if s.parents[1]:get_rdd(time) then -- the batch's update has run
      return rdd_mod.state_source(s.ctx, self.state_id, n)
    end
  end, "state_snapshots")
end

-- fn(rdd, time) runs on the driver for every batch and returns the batch to use.
function Stream:transform(fn)
  util.check_function(fn, "transform")
  return self:_derive("transform", function(r, time)
    local out = fn(r, time)
    if not rdd_mod.is_rdd(out) then
      error("transform: the function must return a batch (rdd), got " .. type(out), 0)
    end
    return out
  end)
end

---------------------------------------------------------------------------------------------
-- Output operations: registered with the context, run for every batch in order.

function Stream:foreach_rdd(fn)
  util.check_function(fn, "foreach_rdd")
  self.ctx:_add_output(self, fn)
  return self
end

local function print_batch(r, time, n)
  local rows = r and r:take(n + 1) or {}
  local lines = {
    "-------------------------------------------",
    "Time: " .. string.format("%d", time) .. " ms",
    "-------------------------------------------",
  }
  for i = 1, math.min(n, #rows) do lines[#lines + 1] = rows[i] end
  if #rows > n then lines[#lines + 1] = "..." end
  lines[#lines + 1] = ""
  io.stdout:write(table.concat(lines, "\n"), "\n")
  io.stdout:flush()
end

function Stream:print(n)
  util.check_count(n, "print", "the number of records", true)
  n = n or 10
  local show = self:map(function(a, b) return format.show(a, b) end)
  self.ctx:_add_output(show, function(r, time) print_batch(r, time, n) end)
  return self
end

function Stream:save_as_text_files(prefix, suffix)
  files.check_prefix(prefix, suffix, "save_as_text_files")
  self.ctx:_add_output(self, function(r, time) r:save_as_text_file(files.batch_path(prefix, suffix, time), true) end)
  return self
end

function Stream:save_as_object_files(prefix, suffix)
  files.check_prefix(prefix, suffix, "save_as_object_files")
  self.ctx:_add_output(self, function(r, time) r:save_as_object_file(files.batch_path(prefix, suffix, time), true) end)
  return self
end

-- Produces every record to a Kafka topic (see dstream/sinks/kafka.lua).
function Stream:to_kafka(opts)
  return require("dstream.sinks.kafka").sink(self, opts)
end

-- Writes every batch into a PostgreSQL or SQLite table, exactly once (dstream/sinks/database.lua).
function Stream:to_sql(opts)
  return require("dstream.sinks.database").to_sql(self, opts)
end

-- The first n (default 10) records of the newest batch this stream produced (dstream.inspect).
function Stream:peek(n)
  return require("dstream.inspect").peek(self, n)
end

---------------------------------------------------------------------------------------------
-- Batch operators every batch of a stream can go through (Spark users reach them through
-- transform; these ship their functions once). Any other batch method works in
-- transform(function(rdd) return rdd:...(...) end).

function Stream:sort_by(f, ascending, nparts)
  util.check_function(f, "sort_by")
  local asc, n = rdd_mod.sort_args("sort_by", ascending, nparts)
  local key = { fn = self.ctx:_ship(f, "sort_by") }
  return self:_derive("sort_by", function(r) return r:_sort(key, asc, n, "sort_by") end)
end

function Stream:sort_by_key(ascending, nparts, keyfunc)
  local asc, n, kf = rdd_mod.sort_args("sort_by_key", ascending, nparts, keyfunc)
  local key = { by_key = true, keyfunc = kf and self.ctx:_ship(kf, "sort_by_key") }
  return self:_derive("sort_by_key", function(r) return r:_sort(key, asc, n, "sort_by_key") end)
end

function Stream:distinct(nparts)
  nparts = util.options(nparts, "distinct").partitions
  return self:_derive("distinct", function(r) return r:distinct(nparts) end)
end

-- One record per batch, or per window with opts { window = len [, slide = s] }: the
-- estimates of rdd:approx_count_distinct and rdd:approx_quantile (stdlib/dstream/sketch.lua).
function Stream:approx_count_distinct(rel_sd, opts)
  return require("dstream.sketch").stream_count_distinct(self, rel_sd, opts)
end
function Stream:approx_quantile(qs, rel_err, opts)
  return require("dstream.sketch").stream_quantiles(self, qs, rel_err, opts)
end

function Stream:keys() return self:_derive("keys", function(r) return r:keys() end) end
function Stream:values() return self:_derive("values", function(r) return r:values() end) end

-- Spark's DStream.cache(): every batch of this stream is kept once computed, so several
-- outputs (or actions in one foreach_rdd) compute it once; it is dropped with the batch.
function Stream:cache()
  if not self._cached then
    self._cached = true
    local compute = self.compute
    self.compute = function(s, time)
      local r = compute(s, time)
      if r then r:cache() end
      return r
    end
  end
  return self
end

function Stream:persist(level)
  rdd_mod.check_storage_level(level)
  return self:cache()
end

function Stream:__tostring()
  return string.format("stream(%s #%d)", self.label or "?", self.id)
end

-- SQL (dstream/sql): the stream as a table of SQL queries, every batch.
function Stream:to_table(name, columns, opts)
  require("dstream.sql").to_table(self, name, columns, opts)
  return self
end

return M

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

local Stream = {}
Stream.__index = Stream
Stream.__name = "stream"

local M = { Stream = Stream }

-- compute(self, time) returns the stream's rdd for that time (or nil: no batch).
function M.new(ctx, parents, compute, name)
  local s = setmetatable({
    ctx = ctx, parents = parents, compute = compute, generated = {}, name = name,
    id = ctx:_register_stream(),
  }, Stream)
  return s
end

function M.is_stream(v) return getmetatable(v) == Stream end

function Stream:get_rdd(time)
  local r = self.generated[time]
  if r == nil then
    r = self:compute(time) or false
    self.generated[time] = r
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
    local op = { kind = kind, fn = self.ctx:_ship(f, kind, 3) }
    return self:_derive(kind, function(r) return r:_narrow(op) end)
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
  if not M.is_stream(other) then error("union: expected a stream, got " .. type(other), 2) end
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
  local id = self.ctx:_ship(f, "reduce", 3)
  return self:_derive("reduce", function(r)
    return r:_shuffle({ kind = "reduce", fn = id }, { kind = "reduce_partials", fn = id }, 1)
  end)
end

function Stream:count_by_value(nparts)
  util.check_count(nparts, "count_by_value", "the number of partitions", true)
  return self:_derive("count_by_value", function(r) return r:count_by_value(nparts) end)
end

function Stream:reduce_by_key(f, nparts)
  util.check_function(f, "reduce_by_key")
  util.check_count(nparts, "reduce_by_key", "the number of partitions", true)
  local id = self.ctx:_ship(f, "reduce_by_key", 3)
  return self:_derive("reduce_by_key", function(r)
    return r:_shuffle({ kind = "combine", fn = id, who = "reduce_by_key" },
      { kind = "merge", fn = id }, nparts or self.ctx.partitions)
  end)
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
  self.ctx:_add_output(show, function(r, time) print_batch(r, time, n) end, true)
  return self
end

local function batch_path(prefix, suffix, time)
  local p = prefix .. "-" .. string.format("%d", time)
  if suffix and suffix ~= "" then p = p .. "." .. suffix end
  return p
end

function Stream:save_as_text_files(prefix, suffix)
  if type(prefix) ~= "string" then error("save_as_text_files: expected a path prefix, got " .. type(prefix), 2) end
  self.ctx:_add_output(self, function(r, time) r:save_as_text_file(batch_path(prefix, suffix, time)) end)
  return self
end

function Stream:save_as_object_files(prefix, suffix)
  if type(prefix) ~= "string" then error("save_as_object_files: expected a path prefix, got " .. type(prefix), 2) end
  self.ctx:_add_output(self, function(r, time) r:save_as_object_file(batch_path(prefix, suffix, time)) end)
  return self
end

function Stream:__tostring()
  return string.format("stream(%s #%d)", self.name or "?", self.id)
end

return M

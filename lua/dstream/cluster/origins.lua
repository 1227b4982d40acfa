-- dstream/cluster/origins.lua: which Kafka input ranges each map task of a batch reads (issue
-- 19), driver side: what a repartition bundle says it came from, so that a keyed stage takes
-- each input range once (dstream.worker.once).
--
-- of(rdd) follows the batch's lineage as the planner does (dstream.driver.planner): partition i
-- of a Kafka source is range i of the batch (its offset_ranges), a narrow operator keeps its
-- parent's partition, a union puts its parents' partitions one after the other; a shuffle (a
-- per-batch reduce_by_key before the state, a join, a cogroup) mixes every range of its side
-- into each of its partitions, which the reduce partition's index then tells apart (the same
-- script on every process: the same number of reduce partitions, the same keys in each).
-- Returns, per partition (1-based), { ranges = { "topic\0partition\0from\0until", ... }
-- (sorted), index = r or -1, branch = the sides of unions it came through or nil }, or false
-- for a partition that read no Kafka record (its bundles are never skipped).
local M = {}

local function range_key(r)
  return r.topic .. "\0" .. r.partition .. "\0" .. r.from .. "\0" .. r["until"]
end

-- The Kafka ranges with records read by each partition of `rdd`: { rg = range keys, br =
-- which sides of unions it comes through ("" none, then "1" or "2" per union, outermost last):
-- a union of a stream with itself (a self-join's two sides) reads each range twice, in
-- partitions whose bundles differ).
local function per_partition(rdd)
  local kind = rdd.kind
  if kind == "source" then
    local ranges, out = rdd.parts.offset_ranges, {}
    for i = 1, rdd.nparts do
      local r = ranges and ranges[i]
      out[i] = { rg = (r and r.count > 0) and { range_key(r) } or {}, br = "" }
    end
    return out
  elseif kind == "narrow" then
    return per_partition(rdd.parent)
  elseif kind == "union" then
    local out, second = per_partition(rdd.parents[1]), per_partition(rdd.parents[2])
    if not (out and second) then return nil end
    for _, p in ipairs(out) do p.br = p.br .. "1" end
    for _, p in ipairs(second) do
      p.br = p.br .. "2"
      out[#out + 1] = p
    end
    return out
  end
  return nil -- a shuffle, a cogroup, a cartesian product: every partition reads all
end

-- Every Kafka range with records in the lineage of `rdd`, once each.
local function all_ranges(rdd, out, seen)
  if rdd.parts and rdd.parts.offset_ranges then
    for _, r in ipairs(rdd.parts.offset_ranges) do
      local k = range_key(r)
      if r.count > 0 and not seen[k] then
        seen[k] = true
        out[#out + 1] = k
      end
    end
  end
  if rdd.parent then all_ranges(rdd.parent, out, seen) end
  for _, p in ipairs(rdd.parents or {}) do all_ranges(p, out, seen) end
  for _, p in ipairs(rdd.sides or {}) do all_ranges(p, out, seen) end
  return out
end

local function origin(ranges, index, branch)
  if #ranges == 0 then return false end
  table.sort(ranges)
  return { ranges = ranges, index = index or -1, branch = branch ~= "" and branch or nil }
end

function M.of(rdd)
  local out, parts = {}, per_partition(rdd)
  if parts then
    for i = 1, rdd.nparts do
      local p = parts[i]
      out[i] = p and origin(p.rg, nil, p.br) or false
    end
    return out
  end
  local all = all_ranges(rdd, {}, {})
  for i = 1, rdd.nparts do
    local copy = {}
    for j, k in ipairs(all) do copy[j] = k end
    out[i] = origin(copy, i - 1)
  end
  return out
end

return M

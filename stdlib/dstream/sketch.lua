-- dstream/sketch.lua: approximate aggregates over batches and windows, from mergeable
-- sketches: dstream.sketch.hll (distinct counts), dstream.sketch.cms (frequencies),
-- dstream.sketch.kll (quantiles).
--
--   local sketch = require("dstream.sketch")
--   sketch.hll.new(0.01), sketch.cms.new{ eps = 0.001 }, sketch.kll.new(0.01)
--
-- and what rdd:approx_count_distinct / rdd:approx_quantile and their stream forms run (those
-- methods call these): each partition builds one sketch in its task (map_partitions) and
-- sends it as a string (serialize()), the strings are merged, and the merged sketch answers.
-- On a stream that is map_partitions, then reduce for each batch, or reduce_by_window for
-- each window: a window merges the sketches of its batches (kept as strings in the window's
-- panes, so checkpointed with them), it does not keep the records.
local args = require("dstream.args")
local hll = require("dstream.sketch.hll")
local cms = require("dstream.sketch.cms")
local kll = require("dstream.sketch.kll")

local M = { hll = hll, cms = cms, kll = kll }

local function describe(v)
  if type(v) == "string" then return string.format("%q", #v > 40 and v:sub(1, 40) .. "..." or v) end
  return type(v) == "table" and "a table" or tostring(v)
end

local function refuse(who, v, extra, why)
  if extra ~= nil then
    error(who .. ": the records are key/value pairs (" .. describe(v) .. ", " .. describe(extra)
      .. "); take keys() or values(), or map each pair to one value", 0)
  end
  error(who .. ": record " .. describe(v) .. " is " .. why .. "; map the records to such values first", 0)
end

-- Per partition: one sketch as a string (functions returned here capture only numbers, so
-- each distinct precision is shipped once).
local function hll_partition(p)
  return function(next_record)
    local s = hll.new { p = p }
    for v, extra in next_record do
      if extra ~= nil then refuse("approx_count_distinct", v, extra) end
      local ok, why = s:add(v)
      if not ok then refuse("approx_count_distinct", v, nil, why) end
    end
    return { s:serialize() }
  end
end

local function kll_partition(k)
  return function(next_record)
    local s = kll.new { k = k }
    for x, extra in next_record do
      if extra ~= nil then refuse("approx_quantile", x, extra) end
      local ok, why = s:add(x)
      if not ok then refuse("approx_quantile", x, nil, why) end
    end
    return { s:serialize() }
  end
end

-- Merging two serialized sketches (reduce's and reduce_by_window's function).
function M.merge_hll(a, b) return assert(hll.deserialize(a)):merge(assert(hll.deserialize(b))):serialize() end
function M.merge_kll(a, b) return assert(kll.deserialize(a)):merge(assert(kll.deserialize(b))):serialize() end
function M.hll_count(s) return assert(hll.deserialize(s)):count() end

local function check_probabilities(who, qs)
  if type(qs) == "number" then qs = { qs } end
  if type(qs) ~= "table" or #qs == 0 then args.raise(who .. ": expected an array of probabilities, got " .. type(qs)) end
  local copy = {}
  for i, q in ipairs(qs) do copy[i] = args.number(q, who, "probability " .. i, 0, 1) end
  return copy
end

local function check_window(who, opts)
  opts = args.options(opts, who, { window = true, slide = true })
  if opts.slide ~= nil and opts.window == nil then args.raise(who .. ": slide needs window") end
  return opts.window, opts.slide
end

---------------------------------------------------------------------------------------------
-- Batches (rdd methods)

-- The number of distinct records of a batch, within rel_sd (default 0.05) relative standard error.
function M.rdd_count_distinct(rdd, rel_sd)
  local p = hll.precision(rel_sd or 0.05)
  local merged = hll.new { p = p }
  for _, s in ipairs(rdd:map_partitions(hll_partition(p)):collect()) do merged:merge(assert(hll.deserialize(s))) end
  return merged:count()
end

-- The numbers at probabilities qs (an array, or one number) of a batch of numbers, each
-- within rel_err (default 0.01) of its rank; nil for an empty batch.
function M.rdd_quantiles(rdd, qs, rel_err)
  qs = check_probabilities("approx_quantile", qs)
  local k = kll.k_for(rel_err or 0.01)
  local merged = kll.new { k = k }
  for _, s in ipairs(rdd:map_partitions(kll_partition(k)):collect()) do merged:merge(assert(kll.deserialize(s))) end
  return merged:quantiles(qs)
end

---------------------------------------------------------------------------------------------
-- Streams: one record per batch, or per window with opts = { window = len, slide = s }.

local function per_batch_or_window(sketches, merge, window, slide)
  if window then return sketches:reduce_by_window(merge, window, slide) end
  return sketches:reduce(merge)
end

function M.stream_count_distinct(stream, rel_sd, opts)
  local window, slide = check_window("approx_count_distinct", opts)
  local p = hll.precision(rel_sd or 0.05)
  return per_batch_or_window(stream:map_partitions(hll_partition(p)), M.merge_hll, window, slide)
    :map(M.hll_count)
end

function M.stream_quantiles(stream, qs, rel_err, opts)
  qs = check_probabilities("approx_quantile", qs)
  local window, slide = check_window("approx_quantile", opts)
  local k = kll.k_for(rel_err or 0.01)
  return per_batch_or_window(stream:map_partitions(kll_partition(k)), M.merge_kll, window, slide)
    :map(function(s) return assert(kll.deserialize(s)):quantiles(qs) or {} end)
end

return M

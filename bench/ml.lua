-- bench/ml.lua: streaming k-means training and HyperLogLog distinct counts (issue 21).
--   dstream bench/ml.lua kmeans dstream POINTS WORKERS   dstream.ml.kmeans through train_on
--   luajit  bench/ml.lua kmeans bare POINTS              the same update in plain Lua (tables)
--   dstream bench/ml.lua distinct dstream CORPUS WORKERS rdd:approx_count_distinct of the words
--   luajit  bench/ml.lua distinct bare CORPUS hll|exact  the sketch in one VM, or a Lua table
-- k-means: 10 dimensions, k = 10, POINTS points in 10 batches around 10 seeded centres; a
-- record is one point. distinct: the corpus's words (Zipf), a record is one word.
local root = (arg[0]:match("^(.*)/bench/[^/]*$") or ".")
package.path = root .. "/bench/?.lua;" .. root .. "/stdlib/?.lua;" .. package.path
local lib = require("lib")
local workload, mode = arg[1], arg[2]

local DIMS, K, BATCHES = 10, 10, 10

-- Seeded points: batch b holds POINTS / BATCHES points, point i near centre i % K.
local function kmeans_input(points)
  local seed = 1
  local function uniform()
    seed = (seed * 48271) % 2147483647
    return seed / 2147483647
  end
  local centres = {}
  for c = 1, K do
    centres[c] = {}
    for j = 1, DIMS do centres[c][j] = uniform() * 20 - 10 end
  end
  local batches, per = {}, math.floor(points / BATCHES)
  for b = 1, BATCHES do
    local batch = {}
    for i = 1, per do
      local c, x = centres[i % K + 1], {}
      for j = 1, DIMS do x[j] = c[j] + uniform() - 0.5 end
      batch[i] = x
    end
    batches[b] = batch
  end
  local initial = {}
  for c = 1, K do initial[c] = batches[1][c] end
  return batches, initial, per * BATCHES
end

-- The plain-Lua baseline: closest centre by a loop over Lua arrays, sums in Lua tables, then
-- MLlib's update (decay 1); what a hand port of StreamingKMeans looks like.
local function plain_kmeans(batches, initial)
  local centres, weights = {}, {}
  for c = 1, K do
    centres[c] = { unpack(initial[c]) }
    weights[c] = 0
  end
  for _, batch in ipairs(batches) do
    local sums, counts = {}, {}
    for c = 1, K do
      sums[c], counts[c] = {}, 0
      for j = 1, DIMS do sums[c][j] = 0 end
    end
    for _, x in ipairs(batch) do
      local best, best_c = math.huge, 1
      for c = 1, K do
        local centre, d = centres[c], 0
        for j = 1, DIMS do
          local diff = centre[j] - x[j]
          d = d + diff * diff
        end
        if d < best then best, best_c = d, c end
      end
      local s = sums[best_c]
      for j = 1, DIMS do s[j] = s[j] + x[j] end
      counts[best_c] = counts[best_c] + 1
    end
    for c = 1, K do
      local n = counts[c]
      if n > 0 then
        local updated = weights[c] + n
        local lambda = n / updated
        for j = 1, DIMS do centres[c][j] = centres[c][j] * (1 - lambda) + sums[c][j] * lambda / n end
        weights[c] = updated
      end
    end
  end
  return weights
end

if workload == "kmeans" then
  local points = tonumber(arg[3])
  local workers = tonumber(arg[4] or 1)
  local batches, initial, n = kmeans_input(points)
  local t0, c0, total
  if mode == "bare" then
    t0, c0 = lib.now(), lib.cpu()
    local w = plain_kmeans(batches, initial)
    total = 0
    for c = 1, K do total = total + w[c] end
  else
    local dstream = require("dstream")
    local kmeans = require("dstream.ml.kmeans")
    local ctx = dstream.context { workers = workers, partitions = workers, clock = "manual" }
    ctx:parallelize({ 1 }):count() -- the workers are up
    local km = kmeans.streaming { k = K, decay_factor = 1 }
    km:set_initial_centers(initial, (function() local w = {} for c = 1, K do w[c] = 0 end return w end)())
    km:train_on(ctx:queue_stream(batches))
    ctx:start()
    t0, c0 = lib.now(), lib.cpu()
    ctx:advance(BATCHES)
    total = 0
    for _, w in ipairs(km:latest_model().weights) do total = total + w end
    ctx:stop()
  end
  lib.result {
    { "workload", "kmeans" }, { "impl", lib.impl(mode, workers) }, { "records", n },
    { "secs", lib.now() - t0 }, { "cpu", lib.cpu() - c0 }, { "weight", total },
  }
elseif workload == "distinct" then
  local path = arg[3]
  local text = require("dstream.text")
  local hll = require("dstream.sketch.hll")
  local words, estimate, secs, cpu, impl
  if mode == "bare" then
    local how = arg[4] or "hll"
    local p, n = lib.corpus_records(path)
    local t0, c0 = lib.now(), lib.cpu()
    local count = 0
    if how == "exact" then
      local seen, distinct = {}, 0
      lib.for_lines(p, n, function(line)
        for w in text.words(line) do
          count = count + 1
          if not seen[w] then seen[w], distinct = true, distinct + 1 end
        end
      end)
      estimate = distinct
    else
      local s = hll.new(0.01)
      lib.for_lines(p, n, function(line)
        for w in text.words(line) do
          count = count + 1
          s:add(w)
        end
      end)
      estimate = s:count()
    end
    secs, cpu, words, impl = lib.now() - t0, lib.cpu() - c0, count, how == "exact" and "luajit-exact" or "luajit"
  else
    local workers = tonumber(arg[4] or 1)
    local ctx, data = lib.static_dataset(path, workers)
    local word_records = data:flat_map(function(line) return text.words(line) end)
    local t0, c0 = lib.now(), lib.cpu()
    estimate = word_records:approx_count_distinct(0.01)
    secs, cpu = lib.now() - t0, lib.cpu() - c0
    words = word_records:count()
    impl = lib.impl(mode, workers)
    ctx:stop()
  end
  lib.result {
    { "workload", "hll" }, { "impl", impl }, { "records", words }, { "secs", secs }, { "cpu", cpu },
    { "distinct", estimate },
  }
else
  error("bench/ml.lua: kmeans or distinct, got " .. tostring(workload))
end

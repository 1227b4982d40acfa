-- examples/streaming_kmeans.lua: MLlib's StreamingKMeans on a stream whose clusters move.
-- Points come from three clusters (radius 0.3); after batch 5 the cluster at (5, 5) moves to
-- (8, 2). The model forgets old points with a half-life of 1 batch, so its centre follows the
-- move within a couple of batches. Each batch prints the learned centres next to the true ones
-- and the share of points predict_on put in the cluster of their own true centre (cluster
-- numbers are the model's: a learned centre is matched to its closest true one).
--   dstream examples/streaming_kmeans.lua [BATCHES]
local dstream = require("dstream")
local kmeans = require("dstream.ml.kmeans")

local batches = tonumber(arg and arg[1]) or 10
local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, name = "streaming_kmeans" }

-- Seeded points: batch b, 300 points, a Gaussian of radius 0.3 around each true centre.
local seed = 7
local function uniform()
  seed = (seed * 48271) % 2147483647
  return seed / 2147483647
end
local function gaussian() return math.sqrt(-2 * math.log(uniform())) * math.cos(2 * math.pi * uniform()) end
local function true_centres(b)
  return { { 0, 0 }, b <= 5 and { 5, 5 } or { 8, 2 }, { -5, 5 } }
end
local input = {}
for b = 1, batches do
  local points, centres = {}, true_centres(b)
  for i = 1, 300 do
    local c = centres[i % 3 + 1]
    points[i] = { c[1] + 0.3 * gaussian(), c[2] + 0.3 * gaussian(), truth = i % 3 + 1 }
  end
  input[b] = points
end

local km = kmeans.streaming { k = 3, half_life = { 1, "batches" } }
km:set_random_centers(2, 0.0, 42)

local points = ctx:queue_stream(input)
km:train_on(points:map(function(p) return { p[1], p[2] } end))

local function closest(centres, x)
  local best, best_i = math.huge, nil
  for i, c in ipairs(centres) do
    local d = (c[1] - x[1]) ^ 2 + (c[2] - x[2]) ^ 2
    if d < best then best, best_i = d, i end
  end
  return best_i, math.sqrt(best)
end

local b = 0
km:predict_on_values(points:map(function(p) return p.truth, { p[1], p[2] } end)):foreach_rdd(function(rdd, time)
  b = b + 1
  local model, truth = km:latest_model(), true_centres(b)
  local shown, worst = {}, 0
  for i, c in ipairs(model.centers) do
    local _, dist = closest(truth, c)
    worst = math.max(worst, dist)
    shown[i] = string.format("(%.2f, %.2f)", c[1], c[2])
  end
  -- A point is right when the model's cluster for it is the learned centre closest to its true centre.
  local right, pairs_ = 0, rdd:collect()
  for _, kv in ipairs(pairs_) do
    if closest(model.centers, truth[kv[1]]) == kv[2] then right = right + 1 end
  end
  print(string.format("batch %2d: centres %s; farthest from a true centre %.2f; %d%% of points in their own cluster",
    b, table.concat(shown, " "), worst, math.floor(100 * right / #pairs_ + 0.5)))
end)

ctx:start()
ctx:advance(batches)

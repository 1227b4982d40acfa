-- dstream.ml.kmeans against Apache Spark's StreamingKMeansSuite: the suite's cases with its
-- generator's parameters (spec/helpers/spark_data.lua), the update rule checked to the last
-- digit on a batch worked by hand, decay and half-life, dying clusters, and the model kept
-- in the job's checkpoint across a restart (graceful and abrupt, at the default interval).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local D = require("spark_data")
local dstream = require("dstream")
local kmeans = require("dstream.ml.kmeans")

local ckpt_dir = H.scratch_dirs(after_each)

-- Trains km on the batches (queue_stream, manual clock); after_batch(km, rdd) runs after
-- each batch's update. Returns km.
local function train(km, batches, cfg, after_batch)
  H.with_context(cfg or { workers = 2, partitions = 3 }, function(ctx)
    local points = ctx:queue_stream(H.deep_copy(batches))
    km:train_on(points)
    if after_batch then points:foreach_rdd(function(rdd) after_batch(km, rdd) end) end
    ctx:start()
    ctx:advance(#batches)
  end)
  return km
end

local function assert_close(expected, actual, tol, what)
  assert.are.equal(#expected, #actual, what .. ": dimension")
  for j = 1, #expected do
    assert.is_true(math.abs(expected[j] - actual[j]) <= tol, string.format("%s[%d]: expected %.10g, got %.10g (tolerance %g)",
      what, j, expected[j], actual[j], tol))
  end
end

describe("StreamingKMeansSuite", function()
  it("accuracy for single center and equivalence to grand average", function()
    local num_batches, num_points, k, d, r = 10, 50, 1, 5, 0.1
    local km = kmeans.streaming { k = 1, decay_factor = 1.0 }
      :set_initial_centers({ { 0, 0, 0, 0, 0 } }, { 0.0 })
    local input, centers = D.kmeans_input(num_points, num_batches, k, d, r, 0)
    train(km, input)
    local model = km:latest_model()
    assert_close(centers[1], model.centers[1], 1e-1, "centre vs the generating centre")
    local grand = { 0, 0, 0, 0, 0 }
    for _, batch in ipairs(input) do
      for _, x in ipairs(batch) do for j = 1, d do grand[j] = grand[j] + x[j] end end
    end
    for j = 1, d do grand[j] = grand[j] / (num_batches * num_points) end
    assert_close(grand, model.centers[1], 1e-5, "centre vs the grand average")
    assert.are.equal(num_batches * num_points, model.weights[1])
  end)

  it("accuracy for two centers", function()
    local km = kmeans.streaming { k = 2, decay_factor = 1.0 }
      :set_initial_centers({ { -0.1, 0.1, -0.2, -0.3, -0.1 }, { 0.1, -0.2, 0.0, 0.2, 0.1 } }, { 5.0, 5.0 })
    local input, centers = D.kmeans_input(50, 10, 2, 5, 0.1, 0)
    train(km, input)
    local model = km:latest_model()
    -- Cluster order is arbitrary: match each estimate with its closest true centre.
    local function sqdist(a, b)
      local s = 0
      for j = 1, #a do s = s + (a[j] - b[j]) ^ 2 end
      return s
    end
    local c1, c2 = centers[1], centers[2]
    if sqdist(model.centers[1], centers[2]) < sqdist(model.centers[1], centers[1]) then c1, c2 = c2, c1 end
    assert_close(c1, model.centers[1], 1e-1, "first centre")
    assert_close(c2, model.centers[2], 1e-1, "second centre")
  end)

  it("detecting dying clusters", function()
    -- Two clusters 1000 apart, every point near the first: the second one's weight decays
    -- (half-life 0.5 points) until it dies, and the first is split into two that then
    -- share its points, one on each side of 0.
    local km = kmeans.streaming { k = 2, half_life = { 0.5, "points" } }
      :set_initial_centers({ { 0.0 }, { 1000.0 } }, { 1.0, 1.0 })
    local input = D.kmeans_input(5, 10, 1, 1, 1.0, 42, { { 0.0 } })
    train(km, input)
    local centers = km:latest_model().centers
    assert.is_true(centers[1][1] * centers[2][1] < 0, "centres on both sides of 0: " .. centers[1][1] .. ", " .. centers[2][1])
    assert.is_true(math.abs(centers[1][1]) < 5 and math.abs(centers[2][1]) < 5, "no centre left near 1000")
  end)

  it("SPARK-7946 setDecayFactor", function()
    local km = kmeans.streaming { k = 1 }
    assert.are.equal(1.0, km.decay_factor)
    km:set_decay_factor(2.0)
    assert.are.equal(2.0, km.decay_factor)
  end)
end)

describe("the update rule (MLlib's StreamingKMeansModel.update)", function()
  it("moves a centre to the weighted mean of its discounted weight and the batch, to the last digit", function()
    -- Centre (0, 0) of weight 1 and centre (10, 10) of weight 1, decay 0.5; batch (1, 1),
    -- (3, 3), (10, 10). Weights 0.5 + 2 = 2.5 and 0.5 + 1 = 1.5; lambda = 2 / 2.5, so
    -- centre 1 = 0.2 * (0, 0) + 0.8 * (2, 2) = (1.6, 1.6); centre 2 stays (10, 10).
    local km = kmeans.streaming { k = 2, decay_factor = 0.5 }:set_initial_centers({ { 0, 0 }, { 10, 10 } }, { 1, 1 })
    train(km, { { { 1, 1 }, { 3, 3 }, { 10, 10 } } })
    local m = km:latest_model()
    assert.are.same({ { 0.8 / 2 * 4, 0.8 / 2 * 4 }, { 10, 10 } }, m.centers)
    assert.are.same({ 2.5, 1.5 }, m.weights)
    -- The next batch: (11, 11) and (0, 0). Weights 1.25 + 1 and 0.75 + 1.
    train(km, { { { 11, 11 }, { 0, 0 } } })
    m = km:latest_model()
    local l1, l2 = 1 / 2.25, 1 / 1.75
    assert.are.same({ (1 - l1) * 1.6 + l1 * 0, (1 - l1) * 1.6 + l1 * 0 }, m.centers[1])
    assert.are.same({ (1 - l2) * 10 + l2 * 11, (1 - l2) * 10 + l2 * 11 }, m.centers[2])
    assert.are.same({ 2.25, 1.75 }, m.weights)
  end)

  it("half_life = { n, \"batches\" }: weights halve after n batches without points", function()
    local km = kmeans.streaming { k = 2, half_life = { 4, "batches" } }:set_initial_centers({ { 0 }, { 1 } }, { 8, 6 })
    assert.is_true(math.abs(km.decay_factor - 0.5 ^ 0.25) < 1e-15)
    train(km, { {}, {}, {}, {} })
    local w = km:latest_model().weights
    assert.is_true(math.abs(w[1] - 4) < 1e-12 and math.abs(w[2] - 3) < 1e-12, "weights " .. w[1] .. ", " .. w[2])
  end)

  it("half_life = { n, \"points\" }: the discount is decay ^ (points in the batch)", function()
    local km = kmeans.streaming { k = 2, half_life = { 2, "points" } }:set_initial_centers({ { 0 }, { 100 } }, { 8, 8 })
    train(km, { { { 0 }, { 0 }, { 0 }, { 0 } } }) -- 4 points: two half-lives
    local w = km:latest_model().weights
    assert.is_true(math.abs(w[1] - (2 + 4)) < 1e-12, "weight 1: " .. w[1])
    assert.is_true(math.abs(w[2] - 2) < 1e-12, "weight 2: " .. w[2])
  end)

  it("decay_factor 0 forgets the past: the centre is the batch's mean", function()
    local km = kmeans.streaming { k = 1, decay_factor = 0 }:set_initial_centers({ { 5, 5 } }, { 100 })
    train(km, { { { 1, 2 }, { 3, 4 } } })
    assert.are.same({ { 2, 3 } }, km:latest_model().centers)
  end)

  it("sparse points { indices, values, size } count as their dense form", function()
    local dense = kmeans.streaming { k = 2, decay_factor = 1 }:set_initial_centers({ { 0, 0, 0 }, { 5, 5, 5 } }, { 1, 1 })
    local sparse = kmeans.streaming { k = 2, decay_factor = 1 }:set_initial_centers({ { 0, 0, 0 }, { 5, 5, 5 } }, { 1, 1 })
    train(dense, { { { 1, 0, 2 }, { 6, 0, 4 }, { 0, 0, 0 } } })
    train(sparse, { { { indices = { 1, 3 }, values = { 1, 2 }, size = 3 }, { indices = { 1, 3 }, values = { 6, 4 }, size = 3 },
      { indices = {}, values = {}, size = 3 } } })
    assert.are.same(dense:latest_model().centers, sparse:latest_model().centers)
  end)
end)

describe("predict_on, predict_on_values, latest_model", function()
  it("predicts with the model of each batch (trained first, so a moved centre changes the answer)", function()
    local km = kmeans.streaming { k = 2, decay_factor = 0 }:set_initial_centers({ { 0 }, { 10 } }, { 1, 1 })
    local got, values = {}, {}
    H.with_context({ workers = 2, partitions = 2 }, function(ctx)
      local points = ctx:queue_stream({ { { 1 }, { 9 } }, { { 20 }, { 21 }, { 4 } }, { { 6 } } })
      km:train_on(points)
      km:predict_on(points):foreach_rdd(function(rdd) got[#got + 1] = rdd:collect() end)
      km:predict_on_values(points:map(function(x) return x[1], x end)):foreach_rdd(function(rdd)
        values[#values + 1] = H.sorted(rdd:collect())
      end)
      ctx:start()
      ctx:advance(3)
    end)
    -- Batch 2 moves centre 2 to 20.5 and centre 1 to 4; then 6 is closer to 4 than to 20.5,
    -- where the initial model would put 6 in cluster 2.
    assert.are.same({ { 1, 2 }, { 2, 2, 1 }, { 1 } }, got)
    assert.are.same({ { 20, 2 }, { 21, 2 }, { 4, 1 } }, values[2])
  end)

  it("a long job holds one or two models for predict_on, not one per batch", function()
    local dims, k = 50, 10
    local centers = {}
    for c = 1, k do
      centers[c] = {}
      for j = 1, dims do centers[c][j] = c * 10 + j end
    end
    local weights = {}
    for c = 1, k do weights[c] = 1 end
    local km = kmeans.streaming { k = k, decay_factor = 0.5 }:set_initial_centers(centers, weights)
    local batch = {}
    for i = 1, 40 do
      batch[i] = {}
      for j = 1, dims do batch[i][j] = (i % k) * 10 + j + (i % 3) end
    end
    local predicted, bytes = 0, nil
    H.with_context({ workers = 2, partitions = 2 }, function(ctx)
      local points = ctx:queue_stream({}, { default = batch })
      km:train_on(points) -- a new model every batch
      km:predict_on(points):foreach_rdd(function(rdd) predicted = predicted + rdd:count() end)
      ctx:start()
      ctx:advance(60)
      bytes = tonumber(ctx:metrics():render():match("\ndstream_shipped_bytes (%d+)"))
    end)
    assert.are.equal(60 * 40, predicted)
    local model_bytes = #require("dstream.ship").encode(km:latest_model())
    -- Sixty models would be 60 * model_bytes; two at most, and the batches' small closures.
    assert.is_true(bytes < 6 * model_bytes, ("%d bytes shipped, a model is %d"):format(bytes, model_bytes))
  end)

  it("latest_model() predicts and computes the cost of a batch on the driver", function()
    local km = kmeans.streaming { k = 2 }:set_initial_centers({ { 0, 0 }, { 10, 0 } }, { 1, 1 })
    H.with_context({ workers = 2, partitions = 3 }, function(ctx)
      local m = km:latest_model()
      assert.are.equal(1, m:predict({ 1, 1 }))
      assert.are.equal(2, m:predict({ indices = { 1 }, values = { 8 }, size = 2 }))
      -- computeCost: squared distances to the closest centre: 2 + 4 + 1 = 7.
      assert.are.equal(7, m:compute_cost(ctx:parallelize({ { 1, 1 }, { 8, 0 }, { 10, 1 } }, 2)))
      assert.has_error(function() m:predict({ 1, 2, 3 }) end, "predict: a point of dimension 3; the model has 2")
    end)
  end)

  it("skips and counts points of the wrong dimension, and trains on the rest", function()
    local km = kmeans.streaming { k = 1, decay_factor = 1 }:set_initial_centers({ { 0, 0 } }, { 0 })
    train(km, { { { 2, 2 }, { 1, 2, 3 }, "x", { 4, 4 } } })
    assert.are.same({ { 3, 3 } }, km:latest_model().centers)
    assert.are.equal(2, km.skipped)
  end)

  it("refuses bad arguments at the caller's line", function()
    local line = debug.getinfo(1, "l").currentline
    local ok, err = pcall(kmeans.streaming, { k = 0 })
    assert.is_false(ok)
    assert.truthy(err:find("ml_kmeans_spec.lua:" .. (line + 1) .. ": kmeans.streaming: k must be a whole number", 1, true), err)
    assert.has_error(function() kmeans.streaming { k = 2, decay_factor = 1, half_life = { 1, "batches" } } end)
    assert.has_error(function() kmeans.streaming { k = 2, half_life = { 1, "days" } } end)
    assert.has_error(function() kmeans.streaming { k = 2, colour = 1 } end)
    assert.has_error(function() kmeans.streaming { k = 2 }:set_initial_centers({ { 1 } }, { 1 }) end)
    H.with_context({}, function(ctx)
      local ok2, err2 = pcall(function() kmeans.streaming { k = 2 }:train_on(ctx:queue_stream({})) end)
      assert.is_false(ok2)
      assert.truthy(err2:find("set the initial centres first", 1, true), err2)
    end)
  end)
end)

describe("the model lives in the job's checkpoint", function()
  local input = D.kmeans_input(20, 10, 3, 2, 0.5, 7)

  -- A job training a k-means model over `input` from dir; runs n batches and stops.
  local function run(dir, n, graceful)
    local km = kmeans.streaming { k = 3, half_life = { 3, "batches" }, name = "clusters" }
      :set_initial_centers({ { 0, 0 }, { 1, 0 }, { 0, 1 } }, { 1, 1, 1 })
    local ctx = dstream.get_or_create(dir, function()
      return dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 3 }
    end)
    local ok, err = pcall(function()
      km:train_on(ctx:queue_stream(H.deep_copy(input)))
      ctx:start()
      ctx:advance(n)
      ctx:stop(graceful and { graceful = true } or nil)
    end)
    if not ok then pcall(ctx.stop, ctx) error(err, 0) end
    return km:latest_model()
  end

  it("a graceful stop and a restart resume the model, as if never stopped", function()
    local whole = run(ckpt_dir(), 10, true)
    local dir = ckpt_dir()
    run(dir, 4, true)
    local resumed = run(dir, 6, true)
    assert.are.same(whole.centers, resumed.centers)
    assert.are.same(whole.weights, resumed.weights)
    -- A fresh model on the last 6 batches alone ends elsewhere: the test can tell.
    local fresh = run(ckpt_dir(), 0, true)
    assert.are_not.same(whole.weights, fresh.weights)
  end)

  it("an abrupt stop at the default checkpoint interval: the batch log re-runs the batches since", function()
    local whole = run(ckpt_dir(), 10, true)
    local dir = ckpt_dir()
    run(dir, 4, false)
    local resumed = run(dir, 6, true)
    assert.are.same(whole.centers, resumed.centers)
    assert.are.same(whole.weights, resumed.weights)
  end)
end)

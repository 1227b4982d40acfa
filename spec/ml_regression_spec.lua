-- dstream.ml.regression against Apache Spark's StreamingLinearRegressionSuite and
-- StreamingLogisticRegressionSuite: their cases, on the very points Spark's generators give
-- (LinearDataGenerator.generateLinearInput, LogisticRegressionSuite.generateLogisticInput over
-- java.util.Random: spec/helpers/spark_data.lua), with their tolerances; then MLlib's SGD step
-- checked to the last digit against a plain-Lua GradientDescent, sparse features, the
-- intercept, regularisation, mini-batch sampling, bad records, and the model across a restart.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local D = require("spark_data")
local dstream = require("dstream")
local regression = require("dstream.ml.regression")

local ckpt_dir = H.scratch_dirs(after_each)

-- Runs the batches (arrays of { label, features }) as a pair stream through build(points),
-- which wires the estimator; returns what each batch's collect of `collect_stream` gave.
local function run(batches, build, cfg)
  local out = {}
  H.with_context(cfg or { workers = 2, partitions = 3 }, function(ctx)
    local points = ctx:queue_stream(H.deep_copy(batches), { pairs = true })
    local shown = build(points)
    if shown then shown:foreach_rdd(function(rdd) out[#out + 1] = rdd:collect() end) end
    ctx:start()
    ctx:advance(#batches)
  end)
  return out
end

local function batches_of(n, gen)
  local out = {}
  for i = 0, n - 1 do out[i + 1] = gen(42 * (i + 1)) end
  return out
end

local function mean_abs_error(batch)
  local s = 0
  for _, p in ipairs(batch) do s = s + math.abs(p[1] - p[2]) end
  return s / #batch
end

describe("StreamingLinearRegressionSuite", function()
  local function linear(n, weights) return D.linear_input(0.0, weights, n, nil) end

  it("parameter accuracy: learns Y = 10 X1 + 10 X2", function()
    local lr = regression.linear_sgd { initial_weights = { 0.0, 0.0 }, step_size = 0.2, num_iterations = 25,
      convergence_tol = 0.0001 }
    run(batches_of(10, function(seed) return D.linear_input(0.0, { 10.0, 10.0 }, 100, seed) end), function(points)
      lr:train_on(points)
    end)
    local m = lr:latest_model()
    assert.is_true(math.abs(m.intercept - 0.0) <= 0.1, "intercept " .. m.intercept)
    assert.is_true(math.abs(m.weights[1] - 10.0) <= 0.1, "weight 1: " .. m.weights[1])
    assert.is_true(math.abs(m.weights[2] - 10.0) <= 0.1, "weight 2: " .. m.weights[2])
    -- At least 80% of the predictions on fresh data within 0.5 of the label.
    local validation = D.linear_input(0.0, { 10.0, 10.0 }, 100, 17)
    local off = 0
    for _, p in ipairs(validation) do
      if math.abs(m:predict(p[2]) - p[1]) > 0.5 then off = off + 1 end
    end
    assert.is_true(off < #validation / 5, off .. " predictions off by more than 0.5")
  end)

  it("parameter convergence: the error shrinks, or grows by at most 0.1, from batch to batch", function()
    local lr = regression.linear_sgd { initial_weights = { 0.0 }, step_size = 0.2, num_iterations = 25 }
    local history = {}
    H.with_context({ workers = 2, partitions = 3 }, function(ctx)
      local points = ctx:queue_stream(batches_of(10, function(seed) return D.linear_input(0.0, { 10.0 }, 100, seed) end),
        { pairs = true })
      lr:train_on(points)
      points:foreach_rdd(function() history[#history + 1] = math.abs(lr:latest_model().weights[1] - 10.0) end)
      ctx:start()
      ctx:advance(10)
    end)
    local shrunk = 0
    for i = 2, #history do
      assert.is_true(history[i] - history[i - 1] <= 0.1, "error grew at batch " .. i)
      if history[i] < history[i - 1] then shrunk = shrunk + 1 end
    end
    assert.is_true(shrunk > 1, "the error shrank on " .. shrunk .. " batches")
  end)

  it("predictions: a model with the true weights is within 0.1 on average on every batch", function()
    local lr = regression.linear_sgd { initial_weights = { 10.0, 10.0 }, step_size = 0.2, num_iterations = 25 }
    local out = run(batches_of(10, function(seed) return D.linear_input(0.0, { 10.0, 10.0 }, 100, seed) end), function(points)
      return lr:predict_on_values(points)
    end)
    assert.are.equal(10, #out)
    for i, batch in ipairs(out) do
      assert.are.equal(100, #batch)
      assert.is_true(mean_abs_error(batch) <= 0.1, "batch " .. i .. ": mean error " .. mean_abs_error(batch))
    end
  end)

  it("training and prediction: the error falls by more than 2 (the updated model is used)", function()
    local lr = regression.linear_sgd { initial_weights = { 0.0, 0.0 }, step_size = 0.2, num_iterations = 25 }
    local out = run(batches_of(10, function(seed) return D.linear_input(0.0, { 10.0, 10.0 }, 100, seed) end), function(points)
      lr:train_on(points)
      return lr:predict_on_values(points)
    end)
    local first, last = mean_abs_error(out[1]), mean_abs_error(out[#out])
    assert.is_true(first - last > 2, "error " .. first .. " -> " .. last)
  end)

  it("handling empty batches in a stream", function()
    local lr = regression.linear_sgd { initial_weights = { 0.0, 0.0 }, step_size = 0.2, num_iterations = 25 }
    local out = run({ {}, {}, {} }, function(points)
      lr:train_on(points)
      return lr:predict_on_values(points)
    end)
    assert.are.same({ {}, {}, {} }, out)
    assert.are.same({ 0.0, 0.0 }, lr:latest_model().weights)
  end)
end)

describe("StreamingLogisticRegressionSuite", function()
  local B = 1.5
  local function logistic(scale, n) return function(seed) return D.logistic_input(0.0, scale, n, seed) end end

  it("parameter accuracy: learns B = 1.5 within 10%", function()
    local lr = regression.logistic_sgd { initial_weights = { 0.0 }, step_size = 0.2, num_iterations = 25 }
    run(batches_of(20, logistic(B, 100)), function(points) lr:train_on(points) end)
    local w = lr:latest_model().weights[1]
    assert.is_true(math.abs(w - B) <= 0.1 * B, "weight " .. w)
  end)

  it("parameter convergence", function()
    local lr = regression.logistic_sgd { initial_weights = { 0.0 }, step_size = 0.2, num_iterations = 25 }
    local history = {}
    H.with_context({ workers = 2, partitions = 3 }, function(ctx)
      local points = ctx:queue_stream(batches_of(20, logistic(B, 100)), { pairs = true })
      lr:train_on(points)
      points:foreach_rdd(function() history[#history + 1] = math.abs(lr:latest_model().weights[1] - B) end)
      ctx:start()
      ctx:advance(20)
    end)
    local shrunk = 0
    for i = 2, #history do
      assert.is_true(history[i] - history[i - 1] <= 0.1, "error grew at batch " .. i)
      if history[i] < history[i - 1] then shrunk = shrunk + 1 end
    end
    assert.is_true(shrunk > 1)
  end)

  it("predictions: a model with the true weight is right at least 60% of the time on every batch", function()
    local lr = regression.logistic_sgd { initial_weights = { B }, step_size = 0.2, num_iterations = 25 }
    local out = run(batches_of(10, logistic(B, 100)), function(points) return lr:predict_on_values(points) end)
    for i, batch in ipairs(out) do
      local wrong = 0
      for _, p in ipairs(batch) do
        assert.is_true(p[2] == 0 or p[2] == 1)
        if p[1] ~= p[2] then wrong = wrong + 1 end
      end
      assert.is_true(wrong <= 40, "batch " .. i .. ": " .. wrong .. " wrong of 100")
    end
  end)

  it("training and prediction: the error goes from above 0.8 to below 0.2", function()
    local lr = regression.logistic_sgd { initial_weights = { -0.1 }, step_size = 0.01, num_iterations = 10 }
    local out = run(batches_of(10, logistic(5.0, 100)), function(points)
      lr:train_on(points)
      return lr:predict_on_values(points)
    end)
    local first, last = mean_abs_error(out[1]), mean_abs_error(out[#out])
    assert.is_true(first > 0.8 and last < 0.2, "error " .. first .. " -> " .. last)
  end)
end)

-- MLlib's GradientDescent.runMiniBatchSGD in plain Lua, for one batch of { label, x } (dense),
-- on the driver: the reference the distributed version must agree with.
local function reference_sgd(data, w, opts)
  local d, n = #w, #data
  w = { unpack(w) }
  if opts.intercept then w[d + 1] = opts.b or 0 end
  for i = 1, opts.iterations do
    local g = {}
    for j = 1, #w do g[j] = 0 end
    for _, p in ipairs(data) do
      local y, x = p[1], p[2]
      local margin = opts.intercept and w[d + 1] or 0
      for j = 1, d do margin = margin + w[j] * x[j] end
      local mult = opts.logistic and (1 / (1 + math.exp(-margin)) - y) or (margin - y)
      for j = 1, d do g[j] = g[j] + mult * x[j] end
      if opts.intercept then g[d + 1] = g[d + 1] + mult end
    end
    local step = opts.step / math.sqrt(i)
    local prev = w
    w = {}
    for j = 1, #prev do w[j] = prev[j] * (1 - step * (opts.reg or 0)) - step * g[j] / n end
    local diff, norm = 0, 0
    for j = 1, #w do diff, norm = diff + (w[j] - prev[j]) ^ 2, norm + w[j] ^ 2 end
    if math.sqrt(diff) < (opts.tol or 0.001) * math.max(math.sqrt(norm), 1) then break end
  end
  return w
end

describe("MLlib's SGD step", function()
  local data = D.linear_input(0.5, { 2.0, -3.0, 1.0 }, 60, 7)

  local function close(a, b, what)
    assert.are.equal(#a, #b)
    for j = 1, #a do
      assert.is_true(math.abs(a[j] - b[j]) <= 1e-12 * math.max(1, math.abs(a[j])),
        string.format("%s[%d]: %.17g vs %.17g", what, j, a[j], b[j]))
    end
  end

  for _, case in ipairs {
    { name = "least squares", logistic = false },
    { name = "least squares with intercept and L2", logistic = false, intercept = true, reg = 0.1 },
    { name = "logistic with intercept", logistic = true, intercept = true },
  } do
    it(case.name .. ": one batch equals a plain-Lua GradientDescent", function()
      local batch = data
      if case.logistic then batch = D.logistic_input(0.3, 2.0, 80, 11) end
      local d = #batch[1][2]
      local init = {}
      for j = 1, d do init[j] = 0.1 * j end
      local est = (case.logistic and regression.logistic_sgd or regression.linear_sgd) {
        initial_weights = init, step_size = 0.5, num_iterations = 30, intercept = case.intercept, reg_param = case.reg }
      run({ batch }, function(points) est:train_on(points) end, { workers = 2, partitions = 4 })
      local want = reference_sgd(batch, init, { iterations = 30, step = 0.5, intercept = case.intercept,
        reg = case.reg, logistic = case.logistic })
      local m = est:latest_model()
      local got = { unpack(m.weights) }
      if case.intercept then got[#got + 1] = m.intercept end
      close(want, got, "weights")
    end)
  end

  it("sparse features { indices, values, size } train as their dense form", function()
    local sparse = {}
    for i, p in ipairs(data) do
      local x = p[2]
      sparse[i] = { p[1], { indices = { 1, 3 }, values = { x[1], x[3] }, size = 3 } }
    end
    local dense = {}
    for i, p in ipairs(data) do dense[i] = { p[1], { p[2][1], 0, p[2][3] } } end
    local a = regression.linear_sgd { initial_weights = { 0, 0, 0 }, step_size = 0.3, num_iterations = 10 }
    local b = regression.linear_sgd { initial_weights = { 0, 0, 0 }, step_size = 0.3, num_iterations = 10 }
    run({ dense }, function(points) a:train_on(points) end)
    run({ sparse }, function(points) b:train_on(points) end)
    close(a:latest_model().weights, b:latest_model().weights, "weights")
    assert.are.equal(0, b:latest_model().weights[2])
  end)

  it("mini_batch_fraction samples each round (rdd:sample(false, f, 42 + i)) and still converges", function()
    local lr = regression.linear_sgd { initial_weights = { 0.0, 0.0 }, step_size = 0.5, num_iterations = 50,
      mini_batch_fraction = 0.5, intercept = true }
    run(batches_of(6, function(seed) return D.linear_input(1.0, { 3.0, -2.0 }, 100, seed) end), function(points)
      lr:train_on(points)
    end)
    local m = lr:latest_model()
    assert.is_true(math.abs(m.weights[1] - 3) < 0.3 and math.abs(m.weights[2] + 2) < 0.3
      and math.abs(m.intercept - 1) < 0.3, tostring(m))
  end)

  it("skips and counts records of another dimension or (logistic) a label other than 0 and 1", function()
    local lr = regression.logistic_sgd { initial_weights = { 0.0 }, step_size = 1, num_iterations = 5 }
    run({ { { 1, { 2 } }, { 2, { 1 } }, { 0, { 1, 2 } }, { 0, { -2 } } } }, function(points) lr:train_on(points) end)
    assert.are.equal(2, lr.skipped)
    assert.is_true(lr:latest_model().weights[1] > 0)
  end)

  it("logistic predict: 1 or 0 against the threshold, the probability once cleared", function()
    local lr = regression.logistic_sgd { initial_weights = { 2.0 }, threshold = 0.9 }
    local m = lr:latest_model()
    assert.are.equal(0, m:predict({ 1 }))     -- 1 / (1 + e^-2) = 0.88
    assert.are.equal(1, m:predict({ 1.2 }))   -- 0.917
    assert.is_true(math.abs(m:clear_threshold():predict({ 1 }) - 1 / (1 + math.exp(-2))) < 1e-15)
  end)

  it("refuses bad arguments at the caller's line", function()
    local line = debug.getinfo(1, "l").currentline
    local ok, err = pcall(regression.linear_sgd, { step_size = -1 })
    assert.is_false(ok)
    assert.truthy(err:find("ml_regression_spec.lua:" .. (line + 1) .. ": linear_sgd: step_size must be a number above 0", 1, true), err)
    assert.has_error(function() regression.linear_sgd { mini_batch_fraction = 1.5 } end)
    assert.has_error(function() regression.linear_sgd { initial_weights = {} } end)
    assert.has_error(function() regression.linear_sgd { threshold = 0.5 } end) -- logistic only
  end)
end)

describe("the model lives in the job's checkpoint", function()
  local input = batches_of(8, function(seed) return D.linear_input(0.0, { 4.0, -1.0 }, 50, seed) end)

  local function job(dir, n, graceful)
    local lr = regression.linear_sgd { initial_weights = { 0.0, 0.0 }, step_size = 0.1, num_iterations = 5,
      intercept = true, name = "prices" }
    local ctx = dstream.get_or_create(dir, function()
      return dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 3 }
    end)
    local ok, err = pcall(function()
      lr:train_on(ctx:queue_stream(H.deep_copy(input), { pairs = true }))
      ctx:start()
      ctx:advance(n)
      ctx:stop(graceful and { graceful = true } or nil)
    end)
    if not ok then pcall(ctx.stop, ctx) error(err, 0) end
    return lr:latest_model()
  end

  it("restarts (graceful, then abrupt at the default interval) resume the model", function()
    local whole = job(ckpt_dir(), 8, true)
    local dir = ckpt_dir()
    job(dir, 3, true)
    job(dir, 2, false)
    local resumed = job(dir, 3, true)
    assert.are.same(whole.weights, resumed.weights)
    assert.are.equal(whole.intercept, resumed.intercept)
    assert.are_not.same(whole.weights, job(ckpt_dir(), 3, true).weights)
  end)
end)

describe("Spark's text forms (dstream.ml.vector.parse, parse_labeled)", function()
  local vec = require("dstream.ml.vector")
  it("reads Vectors.parse's dense and sparse forms and LabeledPoint.parse's", function()
    assert.are.same({ 1.5, -2, 300 }, vec.parse("[1.5, -2,3e2]"))
    assert.are.same({ indices = { 1, 4 }, values = { 1.0, 2.5 }, size = 4 }, vec.parse("(4,[0,3],[1.0,2.5])"))
    assert.are.same({ 1, { 2, 3 } }, { vec.parse_labeled("(1.0,[2.0,3.0])") })
    assert.are.same({ 0, { indices = { 2 }, values = { 7 }, size = 3 } }, { vec.parse_labeled("(0,(3,[1],[7]))") })
  end)

  it("says what is wrong with a bad line", function()
    assert.are.same({ nil, "'x' is not a number" }, { vec.parse("[1,x]") })
    assert.are.same({ nil, "index 5 is not a whole number increasing from 0 and below the size 3" }, { vec.parse("(3,[5],[1])") })
    assert.are.same({ nil, "'1,2' is not (label,features)" }, { vec.parse_labeled("1,2") })
    assert.is_nil(vec.parse("1 2"))
  end)
end)

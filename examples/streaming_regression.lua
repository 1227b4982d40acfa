-- examples/streaming_regression.lua: MLlib's streaming linear and logistic regression.
-- House prices: price = 3 * rooms - 2 * age + 1 (plus noise) arrive in batches of 200; a
-- linear_sgd model with an intercept learns the three numbers, and predict_on_values gives
-- each house's (price, predicted price) under the model of that batch, whose mean error falls
-- batch after batch. Beside it, logistic_sgd learns whether a buyer bids (the probability
-- 1 / (1 + exp(-(2 * x - 1)))) and the share of right guesses rises to what the coin allows
-- (about 80% here). Every line can be checked against the generating numbers.
--   dstream examples/streaming_regression.lua [BATCHES]
local dstream = require("dstream")
local regression = require("dstream.ml.regression")

local batches = tonumber(arg and arg[1]) or 8
local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, name = "streaming_regression" }

local seed = 11
local function uniform()
  seed = (seed * 48271) % 2147483647
  return seed / 2147483647
end
local function gaussian() return math.sqrt(-2 * math.log(uniform())) * math.cos(2 * math.pi * uniform()) end

local houses, bids = {}, {}
for b = 1, batches do
  houses[b], bids[b] = {}, {}
  for i = 1, 200 do
    local rooms, age = uniform() * 2 - 1, uniform() * 2 - 1
    houses[b][i] = { 3 * rooms - 2 * age + 1 + 0.1 * gaussian(), { rooms, age } }
    local x = gaussian()
    bids[b][i] = { uniform() < 1 / (1 + math.exp(-(2 * x - 1))) and 1 or 0, { x } }
  end
end

local prices = regression.linear_sgd { initial_weights = { 0, 0 }, intercept = true, step_size = 0.5,
  num_iterations = 50 }
local bidders = regression.logistic_sgd { initial_weights = { 0 }, intercept = true, step_size = 1,
  num_iterations = 50 }

local house_stream = ctx:queue_stream(houses, { pairs = true })
local bid_stream = ctx:queue_stream(bids, { pairs = true })
prices:train_on(house_stream)
bidders:train_on(bid_stream)

local errors = {}
prices:predict_on_values(house_stream):foreach_rdd(function(rdd, time)
  local sum, n = 0, 0
  for _, p in ipairs(rdd:collect()) do sum, n = sum + math.abs(p[1] - p[2]), n + 1 end
  errors[time] = sum / n
end)
bidders:predict_on_values(bid_stream):foreach_rdd(function(rdd, time)
  local right, n = 0, 0
  for _, p in ipairs(rdd:collect()) do
    if p[1] == p[2] then right = right + 1 end
    n = n + 1
  end
  local m, l = prices:latest_model(), bidders:latest_model()
  print(string.format("batch %d: price = %.2f rooms %+.2f age %+.2f (mean error %.2f); bid: weight %.2f, intercept %+.2f (%d%% right)",
    time / 1000, m.weights[1], m.weights[2], m.intercept, errors[time], l.weights[1], l.intercept,
    math.floor(100 * right / n + 0.5)))
end)

ctx:start()
ctx:advance(batches)
print("generating: price = 3.00 rooms -2.00 age +1.00; bid: weight 2.00, intercept -1.00")

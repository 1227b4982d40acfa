-- dstream/ml/regression.lua: streaming linear and logistic regression trained by mini-batch
-- SGD, MLlib's StreamingLinearRegressionWithSGD and StreamingLogisticRegressionWithSGD.
--
--   local regression = require("dstream.ml.regression")
--   local lr = regression.linear_sgd{ initial_weights = { 0, 0 }, step_size = 0.2, num_iterations = 25 }
--   lr:train_on(points)                        -- a stream of (label, features) pairs
--   lr:predict_on_values(points):print()       -- (label, prediction) pairs
--   lr:latest_model().weights                  -- on the driver
--
-- Each batch runs MLlib's GradientDescent.runMiniBatchSGD: num_iterations rounds, each one
-- job over the batch (cached: map_partitions gathers a partition's records once) whose
-- aggregate sums the gradient in FFI arrays per partition, from a sample of the batch when
-- mini_batch_fraction < 1 (rdd:sample(false, fraction, 42 + i), as MLlib); the driver takes
-- the step w <- w * (1 - s * reg_param) - s * gradient / n with s = step_size / sqrt(i)
-- (MLlib's SquaredL2Updater; SimpleUpdater when reg_param is 0) and stops early once the
-- weights move less than convergence_tol (relative). Gradients: least squares for linear_sgd,
-- the logistic loss's for logistic_sgd. The weights travel to the tasks inside aggregate's
-- zero value, so the rounds ship no new code. With intercept = true the features get a
-- constant 1 appended whose weight is the intercept, regularised like the others (MLlib's
-- appendBias); unlike MLlib's streaming classes, which start it at 1.0 at every batch, the
-- intercept carries over from batch to batch. The model is checkpointed with the job
-- (ctx:driver_state).
local vec = require("dstream.ml.vector")
local args = require("dstream.args")
local streaming = require("dstream.ml.streaming")

local M = {}

local exp, log, sqrt = math.exp, math.log, math.sqrt

---------------------------------------------------------------------------------------------
-- Worker side (exported: closures refer to them by name).

-- map_partitions: a partition's (label, features) pairs gathered into one record.
function M._gather(next_record)
  local labels, feats, n = {}, {}, 0
  for label, x in next_record do
    n = n + 1
    labels[n], feats[n] = label, x
  end
  if n == 0 then return {} end
  return { { n = n, labels = labels, feats = feats } }
end

local dim = vec.dim

-- log(1 + exp(x)) without overflow (MLlib's MLUtils.log1pExp).
local function log1p_exp(x)
  if x > 0 then return x + log(1 + exp(-x)) end
  return log(1 + exp(x))
end

-- aggregate's seq_op: the gradient's sum, the loss's sum and the count of a partition under
-- the weights in acc ({ w, d, intercept, logistic }). Records whose features have another
-- dimension (or, for logistic_sgd, whose label is not 0 or 1) are skipped and counted.
function M._gradient(acc, part)
  local d, logistic = acc.d, acc.logistic
  local dw = d + (acc.intercept and 1 or 0)
  local w = vec.from_table(acc.w, dw)
  local g = vec.zeros(dw)
  local b = acc.intercept and w[d] or 0
  local gb, loss, count, bad, first_bad = 0, 0, 0, 0, nil
  local labels, feats = part.labels, part.feats
  for i = 1, part.n do
    local y, x = labels[i], feats[i]
    if dim(x) ~= d or type(y) ~= "number" or (logistic and y ~= 0 and y ~= 1) then
      bad = bad + 1
      if not first_bad then
        first_bad = dim(x) ~= d and ("features of dimension " .. tostring(dim(x)) .. ", the model has " .. d)
          or ("label " .. tostring(y) .. (logistic and " (logistic_sgd takes labels 0 and 1)" or " is not a number"))
      end
    else
      local margin = vec.dot(w, 0, x) + b
      local mult
      if logistic then
        mult = 1 / (1 + exp(-margin)) - y
        loss = loss + (y > 0 and log1p_exp(-margin) or log1p_exp(-margin) + margin)
      else
        mult = margin - y
        loss = loss + mult * mult / 2
      end
      vec.axpy(mult, x, g, 0)
      gb = gb + mult
      count = count + 1
    end
  end
  if acc.intercept then g[d] = gb end
  return { g = vec.to_table(g, dw), loss = loss, n = count, bad = bad, first_bad = first_bad }
end

function M._merge(total, part)
  if not part.g then return total end
  if not total.g then
    total.g, total.loss, total.n, total.bad, total.first_bad = part.g, part.loss, part.n, part.bad, part.first_bad
    return total
  end
  for j = 1, #part.g do total.g[j] = total.g[j] + part.g[j] end
  total.loss, total.n, total.bad = total.loss + part.loss, total.n + part.n, total.bad + part.bad
  total.first_bad = total.first_bad or part.first_bad
  return total
end

---------------------------------------------------------------------------------------------
-- Models

local Model = { __name = "regression model" }
Model.__index = Model

local function new_model(kind, weights, intercept, threshold)
  return setmetatable({ kind = kind, weights = weights, intercept = intercept, threshold = threshold }, Model)
end

-- A model captured by a closure travels as its numbers (see dstream/ml/kmeans.lua).
function Model.__ship(m) return "dstream.ml.regression", { m.kind, m.weights, m.intercept, m.threshold } end
function M.__unship(data) return new_model(data[1], data[2], data[3], data[4]) end

-- linear: w.x + intercept; logistic: 1 or 0 (the probability w.x + intercept gives, against
-- the threshold), or the probability itself once clear_threshold() was called.
function Model:predict(x)
  local d = #self.weights
  if dim(x) ~= d then
    args.raise("predict: features of dimension " .. tostring(dim(x)) .. "; the model has " .. d)
  end
  local w = self._w
  if not w then
    w = vec.from_table(self.weights, d)
    self._w = w
  end
  local margin = vec.dot(w, 0, x) + self.intercept
  if self.kind == "linear" then return margin end
  local p = 1 / (1 + exp(-margin))
  if self.threshold == nil then return p end
  return p > self.threshold and 1 or 0
end

function Model:clear_threshold()
  return new_model(self.kind, self.weights, self.intercept, nil)
end

function Model:__tostring()
  return string.format("%s model: weights {%s}, intercept %.17g", self.kind,
    table.concat(self.weights, ", "), self.intercept)
end

---------------------------------------------------------------------------------------------
-- The streaming estimators

local Streaming = { __name = "streaming regression" }
Streaming.__index = Streaming

local OPTIONS = { step_size = true, num_iterations = true, mini_batch_fraction = true,
  initial_weights = true, reg_param = true, intercept = true, convergence_tol = true, name = true }

local function new(kind, who, opts, extra)
  local known = OPTIONS
  if extra then
    known = {}
    for k in pairs(OPTIONS) do known[k] = true end
    for k in pairs(extra) do known[k] = true end
  end
  opts = args.options(opts, who, known)
  local self = setmetatable({
    kind = kind, who = who,
    step_size = args.number(opts.step_size or 0.1, who, "step_size", 0, nil, true),
    num_iterations = args.count(opts.num_iterations or 50, who, "num_iterations"),
    mini_batch_fraction = args.number(opts.mini_batch_fraction or 1.0, who, "mini_batch_fraction", 0, 1, true),
    reg_param = args.number(opts.reg_param or 0.0, who, "reg_param", 0),
    convergence_tol = args.number(opts.convergence_tol or 0.001, who, "convergence_tol", 0, 1),
    intercept = opts.intercept and true or false,
    name = opts.name,
  }, Streaming)
  if opts.name ~= nil and (type(opts.name) ~= "string" or opts.name == "") then
    args.raise(who .. ": name must be a non-empty string")
  end
  if kind == "logistic" then
    self.threshold = opts.threshold == nil and 0.5 or args.number(opts.threshold, who, "threshold", 0, 1)
  end
  if opts.initial_weights ~= nil then self:set_initial_weights(opts.initial_weights) end
  return self
end

-- linear_sgd{ step_size = 0.1, num_iterations = 50, mini_batch_fraction = 1.0,
--   initial_weights = {...}, reg_param = 0.0, intercept = false, convergence_tol = 0.001, name = }
function M.linear_sgd(opts) return new("linear", "linear_sgd", opts) end

-- The same, plus threshold = 0.5 (predictions are 1 above it, else 0).
function M.logistic_sgd(opts) return new("logistic", "logistic_sgd", opts, { threshold = true }) end

-- The weights to start from (their count is the features' dimension); the intercept starts at 0.
function Streaming:set_initial_weights(w, intercept)
  local d, why = vec.size(w)
  if not d or d < 1 then args.raise(self.who .. ": initial_weights must be a non-empty vector: " .. (why or "it is empty")) end
  self.model = new_model(self.kind, vec.to_dense(w, d), intercept or 0, self.threshold)
  return self
end

function Streaming:latest_model() return self.model end

local function need_model(self, who)
  if not self.model then args.raise(who .. ": set the initial weights first (initial_weights = {...})") end
end

-- MLlib's runMiniBatchSGD over one batch: returns the new model (or the old one, no data).
function Streaming:_train(rdd)
  local m = self.model
  local d = #m.weights
  local w = {}
  for j = 1, d do w[j] = m.weights[j] end
  if self.intercept then w[d + 1] = m.intercept end
  local dw = #w
  local fraction = self.mini_batch_fraction
  local packed, base
  if fraction >= 1 then
    packed = rdd:map_partitions(M._gather):cache()
  else
    base = rdd:cache()
    if base:count() == 0 then
      base:unpersist()
      return
    end
  end
  local zero = { d = d, intercept = self.intercept, logistic = self.kind == "logistic" }
  local reg, skipped, first_bad, trained = self.reg_param, 0, nil, false
  local previous = nil
  for i = 1, self.num_iterations do
    zero.w = w
    local src = packed or base:sample(false, fraction, 42 + i):map_partitions(M._gather)
    local total = src:aggregate(zero, M._gradient, M._merge)
    if i == 1 then skipped, first_bad = total.bad or 0, total.first_bad end
    local n = total.n or 0
    if n == 0 and packed then break end -- no data in this batch (MLlib returns the weights as they were)
    if n > 0 then
      trained = true
      local step = self.step_size / sqrt(i)
      local shrink = 1 - step * reg
      local g = total.g
      local next_w = {}
      for j = 1, dw do next_w[j] = w[j] * shrink - step * g[j] / n end
      previous, w = w, next_w
      -- MLlib's isConverged: |w - w_prev| < tol * max(|w|, 1).
      local diff, norm = 0, 0
      for j = 1, dw do
        diff = diff + (w[j] - previous[j]) ^ 2
        norm = norm + w[j] * w[j]
      end
      if sqrt(diff) < self.convergence_tol * math.max(sqrt(norm), 1) then break end
    end
  end
  if packed then packed:unpersist() else base:unpersist() end
  if skipped > 0 then
    self.skipped = (self.skipped or 0) + skipped
    io.stderr:write("dstream.ml.regression: " .. skipped .. " records of this batch skipped (" .. first_bad
      .. "); records are (label, features) pairs\n")
  end
  if not trained then return end
  local weights = {}
  for j = 1, d do weights[j] = w[j] end
  self.model = new_model(self.kind, weights, self.intercept and w[d + 1] or m.intercept, self.threshold)
  self.batches = (self.batches or 0) + 1
end

function Streaming:train_on(stream)
  need_model(self, "train_on")
  return streaming.train_on(self, stream, "dstream.ml.regression", function()
    local m = self.model
    return { kind = m.kind, weights = m.weights, intercept = m.intercept, batches = self.batches }
  end, function(saved, name)
    if saved.kind ~= self.kind or #saved.weights ~= #self.model.weights then
      error(string.format("regression model '%s': the checkpoint holds a %s model of %d weights;"
        .. " this job has a %s model of %d. Keep them, or give the model another name to start it"
        .. " afresh", name, saved.kind, #saved.weights, self.kind, #self.model.weights), 0)
    end
    self.model = new_model(saved.kind, saved.weights, saved.intercept, self.threshold)
    self.batches = saved.batches
  end)
end

-- predict_on(stream) and predict_on_values(pair_stream), under the model of each batch.
streaming.add_predictors(Streaming, need_model)

return M

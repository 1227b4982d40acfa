-- dstream/ml/streaming.lua: what the streaming estimators of dstream.ml share: training on
-- every batch of a stream with the model kept in the job's checkpoints, and predicting with
-- the model of each batch. An estimator has `model` (with :predict(x) and __ship), `name`
-- (or nil) and `_train(rdd)`.
local M = {}

-- Estimators made per context and kind: their default names ("dstream.ml.kmeans#1", ...).
local made = setmetatable({}, { __mode = "k" })

-- est:_train(rdd) on every batch of stream; save() / restore(saved, name) keep the model in
-- the context's checkpoints (ctx:driver_state) under est.name or kind#n.
function M.train_on(est, stream, kind, save, restore)
  local ctx = stream:context()
  local counts = made[ctx] or {}
  made[ctx] = counts
  counts[kind] = (counts[kind] or 0) + 1
  local name = est.name or (kind .. "#" .. counts[kind])
  ctx:driver_state(name, save, function(saved) restore(saved, name) end)
  stream:foreach_rdd(function(rdd) est:_train(rdd) end)
  return est
end

-- The prediction for each record (values: for each pair's value) under the model of the
-- batch: the model travels with the map closure (as its numbers: its __ship).
function M.predict_on(est, stream, values)
  return stream:transform(function(rdd)
    local m = est.model
    if values then return rdd:map_values(function(x) return (m:predict(x)) end) end
    return rdd:map(function(x) return (m:predict(x)) end)
  end)
end

-- Gives an estimator class predict_on(stream) and predict_on_values(pair_stream);
-- need_model(est, who) raises when the estimator has no model yet.
function M.add_predictors(class, need_model)
  function class:predict_on(stream)
    need_model(self, "predict_on")
    return M.predict_on(self, stream)
  end
  -- (key, features) pairs -> (key, prediction).
  function class:predict_on_values(stream)
    need_model(self, "predict_on_values")
    return M.predict_on(self, stream, true)
  end
end

return M

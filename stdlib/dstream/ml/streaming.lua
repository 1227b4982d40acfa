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
-- batch. The model travels as a broadcast (its numbers: its __ship), one per model, destroyed
-- once no batch reads it and a newer model took its place: a long job holds one or two
-- models, not one per batch (what is left per batch is the small closure).
function M.predict_on(est, stream, values)
  local ctx = stream:context()
  local current, current_model -- the broadcast of the newest model shipped
  local read_by = {}           -- batch time -> the broadcast that batch reads
  -- Destroys b unless it is the newest or a batch made and not yet completed reads it.
  local function retire(b)
    if b == nil or b == current then return end
    for _, other in pairs(read_by) do
      if other == b then return end
    end
    b:destroy()
  end
  ctx:on_batch_completed(function(info)
    local b = read_by[info.time]
    read_by[info.time] = nil
    retire(b)
  end)
  return stream:transform(function(rdd, time)
    if est.model ~= current_model then
      local old = current
      current_model = est.model
      current = ctx:broadcast(current_model)
      retire(old)
    end
    local b = current
    read_by[time] = b
    if values then return rdd:map_values(function(x) return (b.value:predict(x)) end) end
    return rdd:map(function(x) return (b.value:predict(x)) end)
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

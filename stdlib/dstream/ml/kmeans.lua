-- dstream/ml/kmeans.lua: streaming k-means, MLlib's StreamingKMeans.
--
--   local kmeans = require("dstream.ml.kmeans")
--   local km = kmeans.streaming{ k = 3, dims = 2, decay_factor = 1.0 }   -- or half_life = { 5, "batches" }
--   km:set_random_centers(2, 0.0, 42)          -- or km:set_initial_centers(centers, weights)
--   km:train_on(points)                        -- a stream of feature vectors
--   km:predict_on(points):print()              -- the cluster (1..k) of each point
--   km:latest_model().centers                  -- on the driver: foreach_rdd, the prompt
--
-- Training runs on the workers with ordinary operators: each batch is one job,
-- map_partitions (gathers a partition's points) + aggregate (per partition, each point's
-- closest centre and the per-cluster sums and counts, in FFI arrays), whose few numbers per
-- cluster come back to the driver; the driver then applies MLlib's update rule (`update`
-- below): the weights are discounted (decay_factor per batch, or per point with
-- half_life = { n, "points" }), each cluster's centre moves to the weighted mean of its old
-- centre and the new points, and a dying cluster (weight below 1e-8 of the largest) takes half
-- of the largest one, which is split in two. The model travels to the tasks inside
-- aggregate's zero value (data carried by each task), not inside a closure, so training
-- ships no new code per batch; predict_on ships each model as a broadcast (ml/streaming.lua).
-- The model is checkpointed with the job (ctx:driver_state): a restart resumes it.
local vec = require("dstream.ml.vector")
local args = require("dstream.args")
local streaming = require("dstream.ml.streaming")

local M = {}

local exp, log, huge = math.exp, math.log, math.huge

---------------------------------------------------------------------------------------------
-- Worker side: exported, so closures refer to them by name (dstream.ship re-requires them).

-- map_partitions: a partition's points gathered into one record (references, no copy).
function M._gather(next_record)
  local points, n = {}, 0
  for x in next_record do
    n = n + 1
    points[n] = x
  end
  if n == 0 then return {} end
  return { { n = n, points = points } }
end

-- aggregate's seq_op: the partition's per-cluster sums and counts under the model in acc.
-- Points whose features are not a vector of the model's dimension are skipped and counted.
function M._assign(acc, part)
  local k, d = acc.k, acc.d
  local centers = vec.from_table(acc.centers, k * d)
  local sums, counts = vec.zeros(k * d), vec.zeros(k)
  local cost, bad, first_bad = 0, 0, nil
  local points = part.points
  for i = 1, part.n do
    local x = points[i]
    local n = vec.dim(x)
    if n ~= d then
      bad = bad + 1
      first_bad = first_bad or ("a point of dimension " .. tostring(n) .. " (the model has " .. d .. ")")
    elseif x.indices == nil then -- dense: the distances inline (the common case)
      local best, best_c = huge, 0
      for c = 0, k - 1 do
        local off, dist = c * d - 1, 0
        for j = 1, d do
          local diff = centers[off + j] - x[j]
          dist = dist + diff * diff
        end
        if dist < best then best, best_c = dist, c end
      end
      local off = best_c * d - 1
      for j = 1, d do sums[off + j] = sums[off + j] + x[j] end
      counts[best_c] = counts[best_c] + 1
      cost = cost + best
    else
      local best, best_c = huge, 0
      for c = 0, k - 1 do
        local dist = vec.sqdist(centers, c * d, x, d)
        if dist < best then best, best_c = dist, c end
      end
      vec.axpy(1, x, sums, best_c * d)
      counts[best_c] = counts[best_c] + 1
      cost = cost + best
    end
  end
  return { sums = vec.to_table(sums, k * d), counts = vec.to_table(counts, k), cost = cost,
    bad = bad, first_bad = first_bad }
end

-- aggregate's comb_op (on the driver): adds a partition's result into the total.
function M._merge(total, part)
  if not part.counts then return total end -- an empty partition's zero
  if not total.counts then
    total.sums, total.counts, total.cost, total.bad, total.first_bad =
      part.sums, part.counts, part.cost, part.bad, part.first_bad
    return total
  end
  for j = 1, #part.sums do total.sums[j] = total.sums[j] + part.sums[j] end
  for c = 1, #part.counts do total.counts[c] = total.counts[c] + part.counts[c] end
  total.cost, total.bad = total.cost + part.cost, total.bad + part.bad
  total.first_bad = total.first_bad or part.first_bad
  return total
end

---------------------------------------------------------------------------------------------
-- The model: k centres of dimension d and their weights.

local Model = { __name = "kmeans model" }

local function new_model(k, d, flat, weights)
  return setmetatable({ k = k, dims = d, flat = flat, weights = weights }, Model)
end

-- A model captured by a closure travels as its numbers (dstream.ship's __ship/__unship),
-- not as this metatable and its functions; each worker rebuilds it once per closure.
function Model.__ship(m) return "dstream.ml.kmeans", { m.k, m.dims, m.flat, m.weights } end
function M.__unship(data) return new_model(data[1], data[2], data[3], data[4]) end

-- centers[c] is a fresh Lua array (the model keeps one flat array).
function Model:center(c)
  local d, t = self.dims, {}
  for j = 1, d do t[j] = self.flat[(c - 1) * d + j] end
  return t
end

function Model:__index(key)
  if key == "centers" then
    local out = {}
    for c = 1, self.k do out[c] = self:center(c) end
    return out
  end
  return Model[key]
end

-- The closest centre (1..k) to the vector x, and the squared distance to it.
function Model:predict(x)
  local d = self.dims
  local n = vec.dim(x)
  if n ~= d then args.raise("predict: a point of dimension " .. tostring(n) .. "; the model has " .. d) end
  self._c = self._c or vec.from_table(self.flat, self.k * d)
  local best, best_c = huge, 0
  for c = 0, self.k - 1 do
    local dist = vec.sqdist(self._c, c * d, x, d)
    if dist < best then best, best_c = dist, c end
  end
  return best_c + 1, best
end

-- MLlib's computeCost: the sum of squared distances of a batch's points to their closest centre.
function Model:compute_cost(rdd)
  local total = rdd:map_partitions(M._gather):aggregate(self:_zero(), M._assign, M._merge)
  return total.cost or 0
end

function Model:_zero() return { k = self.k, d = self.dims, centers = self.flat } end

function Model:__tostring()
  local parts = {}
  for c = 1, self.k do
    parts[c] = "{" .. table.concat(self:center(c), ", ") .. "} weight " .. self.weights[c]
  end
  return "kmeans model: " .. table.concat(parts, "; ")
end

-- MLlib's StreamingKMeansModel.update, on a batch's per-cluster sums and counts.
-- total = { sums = flat k*d, counts = k }; returns the new model (self is left as it was).
function M.update(model, total, decay_factor, time_unit)
  local k, d = model.k, model.dims
  local flat, weights = {}, {}
  for j = 1, k * d do flat[j] = model.flat[j] end
  for c = 1, k do weights[c] = model.weights[c] end
  local counts, sums = total.counts, total.sums
  local discount = decay_factor
  if time_unit == "points" then
    local n = 0
    if counts then for c = 1, k do n = n + counts[c] end end
    discount = decay_factor ^ n
  end
  for c = 1, k do weights[c] = weights[c] * discount end
  if counts then
    for c = 1, k do
      local count = counts[c]
      if count > 0 then
        local updated = weights[c] + count
        local lambda = count / math.max(updated, 1e-16)
        weights[c] = updated
        for j = 1, d do
          local p = (c - 1) * d + j
          flat[p] = flat[p] * (1 - lambda) + sums[p] * (lambda / count)
        end
      end
    end
  end
  -- A dying cluster takes the place of half of the largest one (MLlib splits it in two).
  local largest, smallest = 1, 1
  for c = 2, k do
    if weights[c] > weights[largest] then largest = c end
    if weights[c] < weights[smallest] then smallest = c end
  end
  if weights[smallest] < 1e-8 * weights[largest] then
    local w = (weights[largest] + weights[smallest]) / 2
    weights[largest], weights[smallest] = w, w
    for j = 1, d do
      local x = flat[(largest - 1) * d + j]
      local p = 1e-14 * math.max(math.abs(x), 1)
      flat[(largest - 1) * d + j] = x + p
      flat[(smallest - 1) * d + j] = x - p
    end
  end
  return new_model(k, d, flat, weights)
end

---------------------------------------------------------------------------------------------
-- The streaming estimator.

local Streaming = { __name = "streaming kmeans" }
Streaming.__index = Streaming

local OPTIONS = { k = true, dims = true, decay_factor = true, half_life = true, name = true }

function M.streaming(opts)
  opts = args.options(opts, "kmeans.streaming", OPTIONS)
  local self = setmetatable({ k = args.count(opts.k, "kmeans.streaming", "k"), time_unit = "batches",
    decay_factor = 1.0, name = opts.name }, Streaming)
  if opts.dims ~= nil then self.dims = args.count(opts.dims, "kmeans.streaming", "dims") end
  if opts.decay_factor ~= nil and opts.half_life ~= nil then
    args.raise("kmeans.streaming: give decay_factor or half_life, not both")
  end
  if opts.decay_factor ~= nil then self:set_decay_factor(opts.decay_factor) end
  if opts.half_life ~= nil then
    if type(opts.half_life) ~= "table" then
      args.raise("kmeans.streaming: half_life is { n, \"batches\" } or { n, \"points\" }, got " .. type(opts.half_life))
    end
    self:set_half_life(opts.half_life[1], opts.half_life[2])
  end
  if opts.name ~= nil and (type(opts.name) ~= "string" or opts.name == "") then
    args.raise("kmeans.streaming: name must be a non-empty string")
  end
  return self
end

-- Each batch's weight is multiplied by decay_factor (1: every point counts forever, 0: only
-- the newest batch counts).
function Streaming:set_decay_factor(a)
  self.decay_factor = args.number(a, "set_decay_factor", "the decay factor", 0)
  self.time_unit = "batches"
  return self
end

-- After n batches (or n points), a point's weight is half what it was.
function Streaming:set_half_life(n, unit)
  args.number(n, "set_half_life", "the half-life", 0, nil, true)
  if unit ~= "batches" and unit ~= "points" then
    args.raise("set_half_life: the unit is \"batches\" or \"points\", got " .. tostring(unit))
  end
  self.decay_factor = exp(log(0.5) / n)
  self.time_unit = unit
  return self
end

function Streaming:set_initial_centers(centers, weights)
  if type(centers) ~= "table" or #centers ~= self.k then
    args.raise("set_initial_centers: expected " .. self.k .. " centres (k), got "
      .. (type(centers) == "table" and #centers or type(centers)))
  end
  if type(weights) ~= "table" or #weights ~= self.k then
    args.raise("set_initial_centers: expected " .. self.k .. " weights, got "
      .. (type(weights) == "table" and #weights or type(weights)))
  end
  local d = self.dims or (type(centers[1]) == "table" and vec.size(centers[1]))
  if not d then args.raise("set_initial_centers: centre 1 is not a vector") end
  local flat, w = {}, {}
  for c = 1, self.k do
    local n, why = vec.size(centers[c])
    if n ~= d then args.raise("set_initial_centers: centre " .. c .. ": " .. (why or ("dimension " .. n .. ", expected " .. d))) end
    local dense = vec.to_dense(centers[c], d)
    for j = 1, d do flat[(c - 1) * d + j] = dense[j] end
    w[c] = args.number(weights[c], "set_initial_centers", "weight " .. c, 0)
  end
  self.dims = d
  self.model = new_model(self.k, d, flat, w)
  return self
end

-- k centres of standard normal coordinates (Box-Muller over a seeded xorshift generator).
function Streaming:set_random_centers(dims, weight, seed)
  args.count(dims, "set_random_centers", "dims")
  args.number(weight, "set_random_centers", "the weight", 0)
  local state = math.floor(args.number(seed or 42, "set_random_centers", "the seed")) % 2147483647
  if state <= 0 then state = state + 2147483646 end
  local function uniform() -- MINSTD: plain Lua, the same on every platform
    state = (state * 48271) % 2147483647
    return state / 2147483647
  end
  local centers, weights = {}, {}
  for c = 1, self.k do
    local v = {}
    for j = 1, dims do
      v[j] = math.sqrt(-2 * log(uniform())) * math.cos(2 * math.pi * uniform())
    end
    centers[c], weights[c] = v, weight
  end
  self.dims = dims
  return self:set_initial_centers(centers, weights)
end

function Streaming:latest_model() return self.model end

local function need_model(self, who)
  if not self.model then
    args.raise(who .. ": set the initial centres first (set_initial_centers or set_random_centers)")
  end
end

-- One batch: the per-cluster sums on the workers, MLlib's update here.
function Streaming:_train(rdd)
  local total = rdd:map_partitions(M._gather):aggregate(self.model:_zero(), M._assign, M._merge)
  if total.bad and total.bad > 0 then
    self.skipped = (self.skipped or 0) + total.bad
    io.stderr:write("dstream.ml.kmeans: " .. total.bad .. " records of this batch skipped (" ..
      total.first_bad .. "); records must be vectors of dimension " .. self.dims .. "\n")
  end
  self.model = M.update(self.model, total, self.decay_factor, self.time_unit)
  self.batches = (self.batches or 0) + 1
end

function Streaming:train_on(stream)
  need_model(self, "train_on")
  return streaming.train_on(self, stream, "dstream.ml.kmeans", function()
    local m = self.model
    return { k = m.k, dims = m.dims, flat = m.flat, weights = m.weights, batches = self.batches }
  end, function(saved, name)
    if saved.k ~= self.k or saved.dims ~= self.dims then
      error(string.format("kmeans model '%s': the checkpoint holds k = %d, dims = %d; this job has"
        .. " k = %d, dims = %d. Keep them, or give the model another name to start it afresh",
        name, saved.k, saved.dims, self.k, self.dims), 0)
    end
    self.model = new_model(saved.k, saved.dims, saved.flat, saved.weights)
    self.batches = saved.batches
  end)
end

-- predict_on(stream) and predict_on_values(pair_stream), under the model of each batch.
streaming.add_predictors(Streaming, need_model)

return M

-- spec/e2e/jobs/ml_crash.lua: streaming k-means and linear regression trained on a
-- rate_stream, for spec/e2e/ml_crash.sh. Default settings but the batch interval (200 ms):
-- the default checkpoint_interval (10 s), workers and partitions.
--   dstream ml_crash.lua CHECKPOINT_DIR OUT_FILE
-- Row v of the rate stream is a point near centre v % 3 of (0, 0), (5, 5), (-5, 5) for
-- k-means and a labelled point y = 3 x1 - 2 x2 + 1 + noise for linear_sgd, every number a
-- function of v (spec/e2e/ml_oracle.py computes the same). After each batch a line is
-- appended to OUT_FILE: "batch TIME COUNT MIN MAX" (its rows v: MIN..MAX) and the models
-- after training on it ("km" centres and weights, "lr" weights and intercept, %.17g).
-- Prints "ready recovered=<ms>|none" once started; a graceful stop on SIGTERM.
local dstream = require("dstream")
local kmeans = require("dstream.ml.kmeans")
local regression = require("dstream.ml.regression")

local checkpoint_dir, out = arg[1], arg[2]
if not (checkpoint_dir and out) then error("usage: ml_crash.lua CHECKPOINT_DIR OUT_FILE", 0) end

local km = kmeans.streaming { k = 3, decay_factor = 0.9, name = "clusters" }
  :set_initial_centers({ { 1, 1 }, { 4, 4 }, { -4, 4 } }, { 0, 0, 0 })
local lr = regression.linear_sgd { initial_weights = { 0, 0 }, intercept = true, step_size = 0.5,
  num_iterations = 5, name = "prices" }

local ctx = dstream.get_or_create(checkpoint_dir, function()
  local ctx = dstream.context { batch = "200ms", name = "e2e-ml-crash" }
  local rows = ctx:rate_stream { rows_per_second = 500 }
  local function noise(v, m) return ((v * m) % 1000) / 1000 - 0.5 end
  km:train_on(rows:map(function(v)
    local c = v % 3
    local cx, cy = c == 0 and 0 or (c == 1 and 5 or -5), c == 0 and 0 or 5
    return { cx + noise(v, 2654435761), cy + noise(v, 40503) }
  end))
  lr:train_on(rows:map(function(v)
    local x1, x2 = ((v * 7919) % 200) / 100 - 1, ((v * 104729) % 200) / 100 - 1
    return 3 * x1 - 2 * x2 + 1 + 0.1 * noise(v, 2246822519), { x1, x2 }
  end))
  rows:foreach_rdd(function(rdd, time)
    local st = rdd:stats()
    local m, l = km:latest_model(), lr:latest_model()
    local parts = { string.format("batch %d %d %d %d", time, st.count, st.count > 0 and st.min or -1,
      st.count > 0 and st.max or -1) }
    for c = 1, 3 do
      local centre = m.centers[c]
      parts[#parts + 1] = string.format("km %.17g %.17g %.17g", centre[1], centre[2], m.weights[c])
    end
    parts[#parts + 1] = string.format("lr %.17g %.17g %.17g", l.weights[1], l.weights[2], l.intercept)
    local f = assert(io.open(out, "a"))
    assert(f:write(table.concat(parts, " "), "\n"))
    assert(f:close())
  end)
  return ctx
end)

ctx:start()
print("ready recovered=" .. (ctx.recovered_from and string.format("%d", ctx.recovered_from) or "none"))
io.stdout:flush()
ctx:await_termination()

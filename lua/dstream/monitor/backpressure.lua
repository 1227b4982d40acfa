-- dstream/monitor/backpressure.lua: a PID rate estimator that sizes input rates to what the job keeps up with.
--
-- The same controller as Spark Streaming's PIDRateEstimator: after every batch it compares the
-- rate the job processed records at (records / processing time) with the rate it let in, and
-- counts the scheduling delay as accumulated error (records waiting = delay * processing rate,
-- spread over one batch interval). The new rate is
--   rate - proportional * error - integral * historical_error - derivative * d(error)/dt
-- bounded below by min_rate. The first batch only measures; estimates start with the second.
local M = {}

local Pid = {}
Pid.__index = Pid

M.defaults = { proportional = 1.0, integral = 0.2, derivative = 0.0, min_rate = 100 }

local function check(v, name, min)
  if type(v) ~= "number" or v ~= v or v < min or v == math.huge then
    error("backpressure: " .. name .. " must be a number of at least " .. min .. ", got " .. tostring(v), 0)
  end
end

-- batch_ms: the batch interval; opts: proportional, integral, derivative, min_rate. Unknown
-- settings are errors.
function M.pid(batch_ms, opts)
  opts = opts or {}
  local self = setmetatable({ batch_ms = batch_ms, first = true, latest_time = -1,
    latest_rate = -1, latest_error = -1 }, Pid)
  for k, v in pairs(M.defaults) do
    local x = opts[k]
    if x == nil then x = v end
    check(x, k, 0)
    self[k] = x
  end
  for k in pairs(opts) do
    if M.defaults[k] == nil then
      error("backpressure: unknown setting '" .. tostring(k) .. "' (settings: proportional, integral, derivative, min_rate)", 0)
    end
  end
  return self
end

-- time: when the batch finished (ms); records: how many it had from this input;
-- processing_ms, scheduling_delay_ms: its figures. Returns the new rate (records/s), or nil
-- while there is nothing to estimate from (the first batch, an empty or instant batch).
function Pid:compute(time, records, processing_ms, scheduling_delay_ms)
  if not (time > self.latest_time and records > 0 and processing_ms > 0) then return nil end
  local since_update = (time - self.latest_time) / 1000
  local processing_rate = records / processing_ms * 1000
  local err = self.latest_rate - processing_rate
  local historical_error = scheduling_delay_ms * processing_rate / self.batch_ms
  local d_error = (err - self.latest_error) / since_update
  local new_rate = math.max(self.latest_rate - self.proportional * err
    - self.integral * historical_error - self.derivative * d_error, self.min_rate)
  self.latest_time = time
  if self.first then
    self.latest_rate, self.latest_error, self.first = processing_rate, 0, false
    return nil
  end
  self.latest_rate, self.latest_error = new_rate, err
  self.rate = new_rate
  return new_rate
end

return M

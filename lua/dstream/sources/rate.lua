-- dstream/sources/rate.lua: rate_stream, consecutive integers at a rate (Spark's rate source).
local rdd_mod = require("dstream.rdd")
local sources = require("dstream.sources")
local util = require("dstream.util")

local M = {}

-- Consecutive integers from 0, rows_per_second of them per second of batch interval. Under a
-- limit (max_rate, or backpressure through s:set_rate) a batch takes fewer rows and the rest
-- wait, in order, for later batches: none is skipped.
function M.rate_stream(self, opts, ...)
  sources.check_not_started(self, "rate_stream")
  sources.check_options("rate_stream(opts)", 1, opts, ...)
  util.check_table(opts, "rate_stream", "the options")
  util.check_names(opts, { "max_rate", "rows_per_second" }, "rate_stream")
  local rate, max_rate = opts.rows_per_second, opts.max_rate
  if type(rate) ~= "number" or rate < 0 then
    util.raise("rate_stream: rows_per_second must be a number of at least 0, got " .. tostring(rate))
  end
  if max_rate ~= nil and (type(max_rate) ~= "number" or not (max_rate > 0)) then
    util.raise("rate_stream: max_rate must be a positive number of rows per second, got " .. tostring(max_rate))
  end
  local next_value, carry, backlog, limit_carry, set_rate = 0, 0, 0, 0, nil
  local function limit()
    if max_rate and set_rate then return math.min(max_rate, set_rate) end
    return max_rate or set_rate
  end
  local s
  s = sources.input(self, "rate_stream", function(_, time)
    local b = s.sealed[time] or { first = next_value, count = 0 }
    s.sealed[time] = nil
    return rdd_mod.range(self, b.first, b.count, self.partitions)
  end, function(_, time)
    local rows = rate * self.batch_ms / 1000 + carry
    local due = math.floor(rows)
    carry = rows - due
    backlog = backlog + due
    local count, lim = backlog, limit()
    if lim then
      local allowed = lim * self.batch_ms / 1000 + limit_carry
      local n = math.floor(allowed)
      limit_carry = n < count and allowed - n or 0
      count = math.min(count, n)
    end
    backlog = backlog - count
    s.sealed[time] = { first = next_value, count = count }
    next_value = next_value + count
    s.pos_at[time] = { next_value, carry, backlog, limit_carry }
  end)
  s.sealed, s.pos_at = {}, {}
  -- Checkpoints keep the position as of the last completed batch.
  s.on_batch_done = function(_, time)
    s.done_pos = s.pos_at[time] or s.done_pos
    for t in pairs(s.pos_at) do if t <= time then s.pos_at[t] = nil end end
  end
  s.position = function() return s.done_pos end
  s.restore = function(_, pos) next_value, carry, backlog, limit_carry = pos[1], pos[2], pos[3], pos[4] end
  -- The batch log (dstream.state.batch_log): the batch's rows and where the stream stood after it.
  s.log_entry = function(_, time)
    local b = s.sealed[time]
    return { b.first, b.count, s.pos_at[time] }
  end
  s.replay = function(_, time, e)
    s.sealed[time] = { first = e[1], count = e[2] }
    s.pos_at[time] = e[3]
    s:restore(e[3])
  end
  s.set_rate = function(_, r) set_rate = (r and r > 0) and r or nil return limit() or 0 end
  s.rate_stats = function() return { max_rate = max_rate or 0, rate_limit = limit() or 0, backlog = backlog } end
  return s
end

return M

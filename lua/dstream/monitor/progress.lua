-- dstream/monitor/progress.lua: progress of a running job, as methods of the monitor
-- (dstream.monitor adds them): a live status line on a terminal, or one log line per batch at
-- --log-level info; and, at every level, a warning when the job falls behind.
local core = require("dstream.core")

local Progress = {}

local function fmt_time(ms, batch_ms, manual)
  if manual then return string.format("%d ms", ms) end
  local s = os.date("%H:%M:%S", math.floor(ms / 1000))
  if batch_ms % 1000 ~= 0 then s = s .. string.format(".%03d", ms % 1000) end
  return s
end

local function fmt_ms(x)
  x = x or 0
  if x < 1 then return string.format("%.2f ms", x) end
  if x < 10 then return string.format("%.1f ms", x) end
  if x < 10000 then return string.format("%d ms", math.floor(x + 0.5)) end
  return string.format("%.1f s", x / 1000)
end

local function fmt_count(n)
  local s = string.format("%d", n)
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

-- One line of figures for a completed batch.
function Progress:status_text(b)
  local ctx = self.ctx
  local rate = (b.records or 0) / (ctx.batch_ms / 1000)
  local text = string.format("%s | batch %s | %s records | processing %s | delay %s | %s rec/s",
    ctx.name, fmt_time(b.time, ctx.batch_ms, ctx.clock == "manual"), fmt_count(b.records or 0),
    fmt_ms(b.processing_ms), fmt_ms(b.scheduling_delay_ms), fmt_count(math.floor(rate + 0.5)))
  if #ctx.queue > 0 then text = text .. string.format(" | %d queued", #ctx.queue) end
  return text
end

-- Falling behind: a warning, at the default log level, once the scheduling delay has been
-- over the batch interval for BEHIND_BATCHES completed batches in a row (batches then queue
-- and the delay grows), and a line when it has been under it as long again. Spark's streaming
-- tab shows the same figure; a job that cannot keep up loses nothing but falls further behind.
local BEHIND_BATCHES = 3

function Progress:_watch_delay(b)
  local ctx = self.ctx
  local over = (b.scheduling_delay_ms or 0) > ctx.batch_ms
  if over == (self.behind or false) then
    self.delay_streak = 0
    return
  end
  self.delay_streak = (self.delay_streak or 0) + 1
  if self.delay_streak < BEHIND_BATCHES then return end
  self.delay_streak, self.behind = 0, over
  if over then
    core.log("warn", string.format("%s is falling behind: the last %d batches waited %s to start"
      .. " (more than the %s batch interval), processing takes %s, %d batch(es) queued; give it"
      .. " more workers or partitions, a longer batch interval, or a rate limit (max_rate,"
      .. " backpressure = true)", ctx.name, BEHIND_BATCHES, fmt_ms(b.scheduling_delay_ms),
      fmt_ms(ctx.batch_ms), fmt_ms(b.processing_ms), #ctx.queue))
  else
    core.log("warn", string.format("%s has caught up: the scheduling delay is back under the"
      .. " batch interval (%s)", ctx.name, fmt_ms(b.scheduling_delay_ms)))
  end
end

function Progress:_progress(b)
  if self.status_line and #self.ctx.queue > 0 then
    -- Batches run back to back: the next one starts (clearing the status line) at once, so
    -- the line that says they queue is written to stay.
    io.stderr:write("\r\27[K", self:status_text(b), "\n")
    io.stderr:flush()
    self.status_shown = false
  elseif self.status_line then
    io.stderr:write("\r\27[K", self:status_text(b))
    io.stderr:flush()
    self.status_shown = true
  elseif self.log_batches then
    core.log("info", string.format("batch %d ms: %d records, processing %s, scheduling delay %s, total delay %s",
      b.time, b.records or 0, fmt_ms(b.processing_ms), fmt_ms(b.scheduling_delay_ms), fmt_ms(b.total_delay_ms)))
  end
end

return Progress

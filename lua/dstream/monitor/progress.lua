-- dstream/monitor/progress.lua: progress of a running job, as methods of the monitor
-- (dstream.monitor adds them): a live status line on a terminal, or one log line per batch at
-- --log-level info.
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

function Progress:_progress(b)
  if self.status_line then
    io.stderr:write("\r\27[K", self:status_text(b))
    io.stderr:flush()
    self.status_shown = true
  elseif self.log_batches then
    core.log("info", string.format("batch %d ms: %d records, processing %s, scheduling delay %s, total delay %s",
      b.time, b.records or 0, fmt_ms(b.processing_ms), fmt_ms(b.scheduling_delay_ms), fmt_ms(b.total_delay_ms)))
  end
end

return Progress

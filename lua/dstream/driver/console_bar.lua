-- dstream/driver/console_bar.lua: Spark's console progress bar, for actions that run outside
-- a streaming batch (static datasets at the top level, at the prompt): one line per stage on
-- stderr, rewritten as its tasks finish, shown only on a terminal and only once the stage has
-- run half a second (short actions stay quiet), cleared when the stage ends.
--   [Stage reduce_by_key (map side): ==========>           (3 + 2) / 8 | 1,204,511 records | 2.4 s]
local core = require("dstream.core")

local M = {}
M.__index = M

local SHOW_AFTER_MS, WIDTH = 500, 30

-- A bar for a stage of `total` tasks run on `workers`, or nil when stderr is no terminal.
function M.new(stage, total, workers)
  if not core.isatty(2) then return nil end
  return setmetatable({ stage = stage or "stage", total = total, workers = workers,
    started = core.now_ms(), shown = false, last = 0 }, M)
end

local function count_text(n)
  local s = string.format("%d", n)
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

-- Redraws the bar (at most every 100 ms): `done` tasks finished, `records` read by them.
function M:update(done, records)
  local now = core.now_ms()
  if now - self.started < SHOW_AFTER_MS or now - self.last < 100 then return end
  self.last = now
  local filled = math.floor(WIDTH * done / self.total)
  local running = math.min(self.workers, self.total - done)
  io.stderr:write(string.format("\r\27[K[Stage %s: %s%s (%d + %d) / %d | %s records | %.1f s]",
    self.stage, string.rep("=", filled) .. (filled < WIDTH and ">" or ""),
    string.rep(" ", WIDTH - filled - (filled < WIDTH and 1 or 0)), done, running, self.total,
    count_text(records), (now - self.started) / 1000))
  io.stderr:flush()
  self.shown = true
end

function M:clear()
  if self.shown then
    io.stderr:write("\r\27[K")
    io.stderr:flush()
    self.shown = false
  end
end

return M

-- dstream/inspect.lua: looking into a running job: ctx:status() and stream:peek([n]).
--
-- Both return plain data (tables a script can read) whose tostring is a short report for
-- people, which is what the interactive prompt shows.
local format = require("dstream.format")
local util = require("dstream.util")

local M = {}

local function ms_text(v)
  if v == nil then return "-" end
  if v >= 1000 then return string.format("%.3g s", v / 1000) end
  return string.format("%d ms", math.floor(v + 0.5))
end

-- A batch time: wall-clock times as HH:MM:SS.mmm, manual-clock times (small) in ms.
function M.time_text(t)
  if t == nil then return "-" end
  if t < 1e11 then return string.format("%d ms", t) end
  return os.date("%H:%M:%S", math.floor(t / 1000)) .. string.format(".%03d", t % 1000)
end

local function rate_text(v)
  if v == nil then return "-" end
  if v >= 1e6 then return string.format("%.2fM records/s", v / 1e6) end
  if v >= 1e4 then return string.format("%.1fk records/s", v / 1e3) end
  return string.format("%.1f records/s", v)
end

-- Records a batch read: what its receivers sealed, else what its first stage read (sources
-- such as rate_stream and queue_stream seal nothing).
local function batch_records(b)
  if (b.records or 0) > 0 then return b.records end
  local first = b.stages and b.stages[1]
  return first and first.records_in or 0
end
M.batch_records = batch_records

local Status = {}
Status.__index = Status

function Status:__tostring()
  local lines = {
    string.format("context %s: %s, %s batches, %d workers, %d partitions", self.name, self.state,
      ms_text(self.batch_ms), self.workers, self.partitions),
  }
  if self.error then lines[#lines + 1] = "failed: " .. self.error:match("^[^\n]*") end
  local done = self.completed >= 100 and "100+" or tostring(self.completed)
  lines[#lines + 1] = string.format("batches: %s completed, %d queued, %s", done, self.queued,
    self.running and ("running " .. M.time_text(self.running)) or "none running")
  local r = self.recent
  if r then
    lines[#lines + 1] = string.format("last %d batches: input %s, processed %s", r.batches,
      rate_text(r.input_rate), rate_text(r.processing_rate))
    lines[#lines + 1] = string.format(
      "  delays (avg / max): scheduling %s / %s, processing %s / %s, total %s / %s",
      ms_text(r.scheduling_delay_ms), ms_text(r.max_scheduling_delay_ms),
      ms_text(r.processing_ms), ms_text(r.max_processing_ms),
      ms_text(r.total_delay_ms), ms_text(r.max_total_delay_ms))
  end
  local b = self.last_batch
  if b then
    lines[#lines + 1] = string.format("last batch %s: %d records, scheduling %s, processing %s, total %s",
      M.time_text(b.time), batch_records(b), ms_text(b.scheduling_delay_ms), ms_text(b.processing_ms),
      ms_text(b.total_delay_ms))
  end
  return table.concat(lines, "\n")
end

-- Figures of a context: the fields of ctx:status().
function M.status(ctx, window)
  window = window or 10
  local batches = ctx.batches or {}
  local st = setmetatable({
    name = ctx.name, state = ctx.state, batch_ms = ctx.batch_ms, workers = ctx.workers,
    partitions = ctx.partitions, queued = #ctx.queue,
    running = ctx.running and ctx.running.time or nil,
    last_batch = batches[#batches], completed = #batches, error = ctx.error,
  }, Status)
  local n = math.min(window, #batches)
  if n > 0 then
    local r = { batches = n, records = 0 }
    local sums = { scheduling_delay_ms = 0, processing_ms = 0, total_delay_ms = 0 }
    local maxes = {}
    for i = #batches - n + 1, #batches do
      local b = batches[i]
      r.records = r.records + batch_records(b)
      for k in pairs(sums) do
        local v = b[k] or 0
        sums[k] = sums[k] + v
        maxes[k] = math.max(maxes[k] or v, v)
      end
    end
    for k, v in pairs(sums) do
      r[k] = v / n
      r["max_" .. k] = maxes[k]
    end
    r.input_rate = r.records / (n * ctx.batch_ms / 1000)
    if sums.processing_ms > 0 then r.processing_rate = r.records / (sums.processing_ms / 1000) end
    st.recent = r
  end
  return st
end

local Peek = {}

function Peek.__tostring(p)
  local m = getmetatable(p)
  local lines = {
    "-------------------------------------------",
    "Time: " .. string.format("%d", m.time) .. " ms (" .. M.time_text(m.time) .. "), "
      .. tostring(m.stream),
    "-------------------------------------------",
  }
  for i = 1, #p do
    local v = p[i]
    if m.pairs and type(v) == "table" then
      lines[#lines + 1] = format.show(v[1], v[2])
    else
      lines[#lines + 1] = format.show(v)
    end
  end
  if #p == 0 then lines[#lines + 1] = "(no records)" end
  return table.concat(lines, "\n")
end

-- The first n records of the newest batch the stream produced, as a list (pairs as {k, v}).
-- Every stream remembers its newest batch (see Stream:get_rdd), so this works for any stream
-- an output operation depends on, while the context runs and after it stopped.
function M.peek(s, n)
  if n ~= nil and (type(n) ~= "number" or n < 0 or n ~= math.floor(n)) then
    util.raise("peek: n must be a whole number of at least 0, got " .. tostring(n))
  end
  n = n or 10
  local r, time = s._newest, s._newest_time
  if not r then
    util.raise("peek: " .. tostring(s) .. " has produced no batch yet (a stream is computed only "
      .. "for output operations: give it or a stream built on it :print() or :foreach_rdd(...) "
      .. "before ctx:start())")
  end
  local rows = r:take(n)
  local is_pairs = false
  for _, v in ipairs(rows) do
    if type(v) == "table" and #v == 2 then is_pairs = true else is_pairs = false break end
  end
  return setmetatable(rows, {
    __tostring = Peek.__tostring, time = time, stream = s, pairs = is_pairs,
    __index = { time = time, stream = s },
  })
end

return M

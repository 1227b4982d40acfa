-- dstream/monitor/figures.lua: what the API and the listeners report: a batch's figures, an
-- input's, and the graph of streams the outputs depend on. Plain tables, numbers rounded.
local array = require("dstream.monitor.json").array

local M = {}

function M.round(x, digits)
  if type(x) ~= "number" then return nil end
  local m = 10 ^ (digits or 0)
  return math.floor(x * m + 0.5) / m
end

-- A plain copy of a context batch record, with numbers rounded (times to the ms, durations to
-- the microsecond). status: "queued", "running", "completed" or "failed".
function M.batch_info(b, status)
  local stages = array()
  for i, st in ipairs(b.stages or {}) do
    stages[i] = { name = st.name, tasks = st.tasks, failed = st.failed,
      task_ms = M.round(st.task_ms, 3), records_in = st.records_in }
  end
  local sources = array()
  for i, src in ipairs(b.sources or {}) do
    sources[i] = { id = src.id, name = src.name, records = src.records }
  end
  return {
    time = b.time, status = status, records = b.records or 0, sources = sources,
    generated_at = M.round(b.generated_at), started_at = M.round(b.started_at),
    finished_at = M.round(b.finished_at),
    scheduling_delay_ms = M.round(b.scheduling_delay_ms, 3), processing_ms = M.round(b.processing_ms, 3),
    total_delay_ms = M.round(b.total_delay_ms, 3), stages = stages, error = b.error,
  }
end

-- Figures of one input: records received, rate settings, receiver state.
function M.input_info(input)
  local info = { id = input.id, name = input.label, records = input.records_total or 0 }
  local src = input.source
  if src and src.stats then
    local ok, st = pcall(src.stats, src)
    if ok and type(st) == "table" then -- sources written elsewhere may report less
      info.records = tonumber(st.records) or info.records
      info.max_rate = st.max_rate
      info.rate_limit = st.rate_limit
      info.throttled = st.throttled
      info.connected = st.connected
      info.errors = st.errors
      info.pending = st.pending
      info.last_error = st.last_error
    end
  elseif input.rate_stats then
    local st = input:rate_stats()
    info.max_rate, info.rate_limit, info.backlog = st.max_rate, st.rate_limit, st.backlog
  end
  return info
end

-- Every stream the outputs depend on, by id.
function M.graph(ctx)
  local list, seen, todo = {}, {}, {}
  for _, out in ipairs(ctx.outputs) do todo[#todo + 1] = out.stream end
  for _, s in ipairs(ctx._eager_streams or {}) do todo[#todo + 1] = s end
  while #todo > 0 do
    local s = table.remove(todo)
    if not seen[s] then
      seen[s] = true
      list[#list + 1] = s
      for _, p in ipairs(s.parents or {}) do todo[#todo + 1] = p end
    end
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

return M

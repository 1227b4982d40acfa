-- dstream/monitor/figures.lua: what the API and the listeners report: a batch's figures, an
-- input's, and the graph of streams the outputs depend on. Plain tables, numbers rounded.
local array = require("dstream.monitor.json").array

local M = {}

function M.round(x, digits)
  if type(x) ~= "number" then return nil end
  local m = 10 ^ (digits or 0)
  return math.floor(x * m + 0.5) / m
end

-- min, 25th percentile, median, 75th percentile, max of a list of numbers (Spark's summary
-- of a stage's tasks), or nil for an empty list.
function M.quantiles(xs)
  if #xs == 0 then return nil end
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local function q(p) -- linear between the two nearest ranks
    local x = 1 + p * (#s - 1)
    local i = math.floor(x)
    return M.round(s[i] + (x - i) * ((s[i + 1] or s[i]) - s[i]), 3)
  end
  return array { q(0), q(0.25), q(0.5), q(0.75), q(1) }
end

-- A stage's tasks, one row each (partition, worker, status, run_ms, records in and out, error),
-- and their summary: quantiles of run time and records in, and skew = the slowest task's time
-- over the median's (1 when even; Spark's "max vs median").
local function stage_tasks(st)
  local tasks, ms, recs, out = array(), {}, {}, 0
  for i, t in ipairs(st.task_list) do
    tasks[i] = { partition = t.partition, worker = t.worker, run_ms = M.round(t.run_ms, 3),
      records_in = t.records_in, records_out = t.records_out,
      status = t.status == 0 and "succeeded" or (t.status == 2 and "out of memory" or "failed"),
      error = t.error }
    if t.status == 0 then
      ms[#ms + 1], recs[#recs + 1] = t.run_ms or 0, t.records_in or 0
      out = out + (t.records_out or 0)
    end
  end
  local qm = M.quantiles(ms)
  local skew = qm and (qm[3] > 0 and M.round(qm[5] / qm[3], 2) or (qm[5] > 0 and qm[5] or 1)) or nil
  return tasks, { run_ms = qm, records_in = M.quantiles(recs), skew = skew, records_out = out }
end

-- A plain copy of a context batch record, with numbers rounded (times to the ms, durations to
-- the microsecond). status: "queued", "running", "completed" or "failed". detail: with each
-- stage's tasks (while the monitor keeps them: dstream.monitor.KEEP_TASK_BATCHES).
function M.batch_info(b, status, detail)
  local stages = array()
  for i, st in ipairs(b.stages or {}) do
    stages[i] = { name = st.name, tasks = st.tasks, failed = st.failed,
      task_ms = M.round(st.task_ms, 3), records_in = st.records_in }
    if detail and st.task_list then
      stages[i].task_list, stages[i].summary = stage_tasks(st)
      stages[i].records_out = stages[i].summary.records_out
      stages[i].tasks_not_kept = st.tasks_dropped
    end
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
    db_wait_ms = b.sql_wait_ms and M.round(b.sql_wait_ms, 3), -- to_sql's waits (sinks/database.lua)
    failed_at = M.round(b.failed_at),
  }
end

-- What a stream is called on the page and in metric labels: the name given to its state
-- (stream:name(...)), else its label ("map", "rate_stream", ...).
function M.stream_name(s)
  local ctx = s.ctx
  local entry = s.state_id and ctx and ctx._states and ctx._states[s.state_id]
  return (entry and entry.name) or s.label or ("stream #" .. tostring(s.id))
end

-- Figures of one input: records received, rate settings, receiver state.
function M.input_info(input)
  local info = { id = input.id, name = input.label, records = input.records_total or 0 }
  local src = input.source
  if src and src.stats then
    local ok, st = pcall(src.stats, src)
    if ok and type(st) == "table" then -- sources written elsewhere may report less
      -- (records_from_batches: the source's own count is of something else, such as the
      -- bundles of cluster mode's repartition input, dstream.cluster.entry_counts.)
      if not input.records_from_batches then info.records = tonumber(st.records) or info.records end
      info.max_rate = st.max_rate
      info.rate_limit = st.rate_limit
      info.throttled = st.throttled
      info.connected = st.connected
      info.errors = st.errors
      info.pending = st.pending
      info.last_error = st.last_error
      -- A Kafka stream in a consumer group (cluster mode): this process's member id and the
      -- partitions the group gave it ("topic[p]").
      if st.member_id or st.assigned then
        info.group, info.member_id, info.rebalances = st.group, st.member_id, st.rebalances
        info.assigned = array()
        for i, o in ipairs(st.assigned or {}) do info.assigned[i] = o.topic .. "[" .. o.partition .. "]" end
      end
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

-- The context's stateful operators: { operator (the metric label: the state's name or kind#id),
-- id, kind, name (its stream's label), stream (id), partitions, keys (nil where not counted) }.
function M.state_operators(ctx)
  local by_state = {}
  for _, s in ipairs(M.graph(ctx)) do
    if s.state_id then by_state[s.state_id] = s end
  end
  local list = array()
  for _, entry in ipairs(ctx._states or {}) do
    local s = by_state[entry.id]
    local ok, keys = true, nil
    if entry.keys then ok, keys = pcall(entry.keys) end
    list[#list + 1] = { operator = entry.name or (entry.kind .. "#" .. entry.id), id = entry.id,
      kind = entry.kind, name = s and s.label or entry.kind,
      stream = s and s.id, partitions = entry.partitions, keys = ok and keys or nil }
  end
  return list
end

return M

-- dstream/monitor/init.lua: watching a running job: metrics, listeners, backpressure; the HTTP
-- endpoint (monitor/http.lua) and progress output (monitor/progress.lua) are its methods too.
--
-- Every context has a monitor. It keeps a metrics registry (Prometheus text at /metrics; other
-- modules add their own families to ctx:metrics()), turns the context's batch records into the
-- figures of /api/batches and of ctx:on_batch_started/on_batch_completed listeners, shows
-- progress (a live status line on a terminal, one log line per batch at --log-level info), and
-- with backpressure on runs one PID rate estimator per limitable input (dstream.monitor.backpressure).
-- The HTTP endpoint (`ui = "127.0.0.1:4040"` or --ui) is off unless asked for, and listens on
-- a loopback address unless ui_public = true. It runs on the driver's loop, so it answers
-- while the loop runs: during ctx:await_termination(), ctx:advance() and batch jobs. The page
-- of a context that failed stays up (M.linger) so the failure can be looked at.
local address = require("dstream.monitor.address")
local backpressure = require("dstream.monitor.backpressure")
local core = require("dstream.core")
local cli_options = require("dstream.options") -- the command line's, defaults for settings
local figures = require("dstream.monitor.figures")
local json = require("dstream.monitor.json")
local metrics = require("dstream.monitor.metrics")

-- The pieces, also for tests and tools.
local M = {
  array = json.array, json = json.json, registry = metrics.registry,
  default_buckets = metrics.default_buckets, parse_address = address.parse_address,
  is_loopback = address.is_loopback, batch_info = figures.batch_info,
  input_info = figures.input_info, graph = figures.graph, quantiles = figures.quantiles,
}

-- Per-task figures (the batch page) are kept for the last KEEP_TASK_BATCHES batches, at most
-- MAX_STAGE_TASKS per stage (retries included); older batches keep their stage totals only.
-- The last MAX_FAILED failed batches are kept with their error.
M.KEEP_TASK_BATCHES, M.MAX_STAGE_TASKS, M.MAX_FAILED = 20, 1000, 20

-- Monitors of failed contexts whose UI stays up (M.linger).
local lingering = {}

---------------------------------------------------------------------------------------------
-- The monitor of one context

local Monitor = {}
Monitor.__index = Monitor
-- Progress output and the HTTP routes are methods of the monitor kept in modules of their own.
for _, methods in ipairs { require("dstream.monitor.progress"), require("dstream.monitor.http") } do
  for name, method in pairs(methods) do Monitor[name] = method end
end

-- Reads the settings ui, ui_public, backpressure, progress; `level` blames the user's line.
function M.new(ctx, opts, level)
  local self = setmetatable({ ctx = ctx, registry = metrics.registry(), completed = 0, failed = 0,
    estimators = {}, worker_stats = {}, failed_batches = {} }, Monitor)
  local ui = opts.ui
  if ui == nil then ui = cli_options.ui end
  if ui ~= nil and ui ~= false then
    local host, port = address.parse_address(ui)
    if not host then error("dstream.context: ui: " .. port, level) end
    if opts.ui_public ~= nil and type(opts.ui_public) ~= "boolean" then
      error("dstream.context: ui_public must be true or false", level)
    end
    self.public = opts.ui_public == true or (opts.ui_public == nil and cli_options["ui-public"] ~= nil)
    if not self.public and not address.is_loopback(host) then
      error("dstream.context: ui: refusing to serve the UI on " .. host .. ", which other machines"
        .. " can reach; use a loopback address such as 127.0.0.1, or set ui_public = true", level)
    end
    self.ui_host, self.ui_port = address.canonical_host(host), port
  end
  local bp = opts.backpressure
  if bp ~= nil and type(bp) ~= "boolean" and type(bp) ~= "table" then
    error("dstream.context: backpressure must be true, false or a table of PID settings", level)
  end
  if bp then
    self.backpressure = type(bp) == "table" and bp or {}
    local ok, err = pcall(backpressure.pid, ctx.batch_ms, self.backpressure) -- checks the settings now
    if not ok then error("dstream.context: " .. tostring(err), level) end
  end
  if opts.progress ~= nil and type(opts.progress) ~= "boolean" then
    error("dstream.context: progress must be true or false", level)
  end
  self.progress_opt = opts.progress
  self:_define_metrics()
  ctx:_listen("batch_started", function(b) self:_on_started(b) end)
  ctx:_listen("batch_completed", function(b) self:_on_completed(b) end)
  ctx:_listen("batch_failed", function(b) self:_on_failed(b) end)
  return self
end

function Monitor:_define_metrics()
  local r = self.registry
  r:gauge("dstream_batch_interval_seconds", "The batch interval")
  -- Per input: the stream's id, its name (what /api/streams and the page call it) and the source.
  local per_input = { "stream", "name", "source" }
  r:counter("dstream_source_records_total", "Records received per source", per_input)
  r:counter("dstream_source_errors_total", "Errors per source: failed connects and reads, unreadable files, a Lua receiver's raises, restarts and reported errors", per_input)
  r:gauge("dstream_source_max_rate", "The max_rate setting of a source, records per second", per_input)
  r:gauge("dstream_source_rate_limit", "The rate a source is held to now (max_rate and backpressure), records per second", per_input)
  r:gauge("dstream_source_throttled", "1 while a source has paused reading to keep to its rate limit", per_input)
  r:gauge("dstream_backpressure_enabled", "1 when backpressure sizes the input rates")
  r:gauge("dstream_backpressure_rate", "The rate the backpressure estimator set for a source, records per second", per_input)
  r:counter("dstream_batches_completed_total", "Batches completed")
  r:counter("dstream_batches_failed_total", "Batches failed")
  r:gauge("dstream_batches_queued", "Batches generated and waiting to run")
  r:gauge("dstream_last_batch_records", "Records of the last completed batch")
  r:histogram("dstream_scheduling_delay_seconds", "Time a batch waited between its generation and its start")
  r:histogram("dstream_processing_time_seconds", "Time a batch took to run")
  r:histogram("dstream_total_delay_seconds", "Time from a batch's generation to its end")
  r:gauge("dstream_state_keys", "Keys held in keyed state, per stateful operator", { "operator" })
  r:counter("dstream_late_records_dropped_total", "Records dropped for arriving after the watermark, per operator", { "operator" })
  r:gauge("dstream_workers", "Worker threads")
  r:gauge("dstream_workers_busy", "Workers running a task (tasks in flight, at most the number of workers)")
  r:gauge("dstream_worker_lua_memory_bytes", "Lua memory in use by a worker", { "worker" })
  r:counter("dstream_worker_tasks_total", "Tasks a worker ran (failed ones too)", { "worker" })
  r:counter("dstream_worker_busy_seconds_total", "Time a worker spent running tasks", { "worker" })
  r:gauge("dstream_shipped_blobs", "Shipped closures and broadcast values held for the workers")
  r:gauge("dstream_shipped_bytes", "Bytes of the shipped closures and broadcast values held for the workers")
  r:gauge("dstream_last_checkpoint_duration_seconds", "Time the last checkpoint took to write")
  r:gauge("dstream_last_checkpoint_bytes", "Size of the last checkpoint file")
  r:get("dstream_batch_interval_seconds"):set(self.ctx.batch_ms / 1000)
  r:get("dstream_backpressure_enabled"):set(self.backpressure and 1 or 0)
  r:collector(function() self:_collect() end)
end


function Monitor:_collect()
  local r, ctx = self.registry, self.ctx
  for _, input in ipairs(ctx.inputs) do
    local info = figures.input_info(input)
    local labels = { stream = input.id, name = figures.stream_name(input), source = input.label }
    local rec = r:get("dstream_source_records_total")
    rec:inc(math.max(0, info.records - (rec:value(labels) or 0)), labels)
    if info.errors then
      local errs = r:get("dstream_source_errors_total")
      errs:inc(math.max(0, info.errors - (errs:value(labels) or 0)), labels)
    end
    if info.max_rate and info.max_rate > 0 then r:get("dstream_source_max_rate"):set(info.max_rate, labels) end
    if info.rate_limit and info.rate_limit > 0 then
      r:get("dstream_source_rate_limit"):set(info.rate_limit, labels)
    else
      r:get("dstream_source_rate_limit"):remove(labels)
    end
    if info.throttled ~= nil then r:get("dstream_source_throttled"):set(info.throttled and 1 or 0, labels) end
    local est = self.estimators[input]
    if est and est.rate then r:get("dstream_backpressure_rate"):set(est.rate, labels) end
  end
  -- Records dropped behind an event-time watermark (dstream.window's event_time streams).
  local late, seen_ev = r:get("dstream_late_records_dropped_total"), {}
  for _, s in ipairs(figures.graph(ctx)) do
    local ev = s.event
    if type(ev) == "table" and type(ev.late_total) == "number" and not ev.keep_late and not seen_ev[ev] then
      seen_ev[ev] = true
      local labels = { operator = "event_time#" .. s.id }
      late:inc(math.max(0, ev.late_total - (late:value(labels) or 0)), labels)
    end
  end
  for _, op in ipairs(figures.state_operators(ctx)) do -- keys per keyed-state operator
    if op.keys then
      r:get("dstream_state_keys"):set(op.keys, { operator = op.operator })
    end
  end
  local ck = ctx.last_checkpoint
  if ck then
    r:get("dstream_last_checkpoint_duration_seconds"):set(ck.duration_ms / 1000)
    r:get("dstream_last_checkpoint_bytes"):set(ck.bytes or 0)
  end
  for i, w in pairs(self.worker_stats) do
    local labels = { worker = i - 1 }
    local tasks, busy = r:get("dstream_worker_tasks_total"), r:get("dstream_worker_busy_seconds_total")
    tasks:inc(w.tasks - (tasks:value(labels) or 0), labels)
    busy:inc(math.max(0, w.busy_ms / 1000 - (busy:value(labels) or 0)), labels)
  end
  r:get("dstream_batches_queued"):set(#ctx.queue)
  r:get("dstream_workers"):set(ctx.workers)
  local pool = ctx.sched and ctx.sched.pool
  local busy = 0
  if pool then
    busy = math.min(pool:inflight(), pool:size())
    local blobs, bytes = pool:blob_stats()
    r:get("dstream_shipped_blobs"):set(blobs)
    r:get("dstream_shipped_bytes"):set(bytes)
    for i = 0, pool:size() - 1 do
      local mem = pool:worker_memory(i)
      r:get("dstream_worker_lua_memory_bytes"):set(mem, { worker = i })
      self:_worker(i).lua_memory = mem
    end
  end
  r:get("dstream_workers_busy"):set(busy)
end

---------------------------------------------------------------------------------------------
-- Events

-- A user's listener: fn(info) with a copy of the figures; an error in it is logged (the job
-- goes on, as with Spark's listeners).
function Monitor:on(event, fn, level)
  if type(fn) ~= "function" then
    error((event == "batch_started" and "on_batch_started" or "on_batch_completed")
      .. ": expected a function, got " .. type(fn), level + 1)
  end
  self.ctx:_listen(event, function(b)
    local ok, err = xpcall(fn, debug.traceback, figures.batch_info(b, event == "batch_started" and "running" or "completed"))
    if not ok then core.log("warn", event .. " listener failed: " .. tostring(err)) end
  end)
end

function Monitor:_on_started(b)
  -- Output written during the batch starts on a clean line, not after the status line.
  if self.status_shown and self.stdout_tty then
    io.stderr:write("\r\27[K")
    self.status_shown = false
  end
end

function Monitor:_on_failed(b)
  self.failed = self.failed + 1
  self.registry:get("dstream_batches_failed_total"):inc()
  b.failed_at = core.now_ms()
  local list = self.failed_batches
  list[#list + 1] = b
  if #list > M.MAX_FAILED then table.remove(list, 1) end
end

---------------------------------------------------------------------------------------------
-- Tasks (from dstream.driver.clock's _on_task, once per task: nothing here runs per record)

function Monitor:_worker(i)
  local w = self.worker_stats[i + 1]
  if not w then
    for j = #self.worker_stats + 1, i + 1 do -- (an array: workers are 0..N-1)
      self.worker_stats[j] = { tasks = 0, failed = 0, busy_ms = 0 }
    end
    w = self.worker_stats[i + 1]
  end
  return w
end

function Monitor:_worker_task(status, info)
  if type(info) ~= "table" or type(info.worker) ~= "number" or info.worker < 0 then return end
  local w = self:_worker(info.worker)
  w.tasks = w.tasks + 1
  if status ~= 0 then w.failed = w.failed + 1 end
  w.busy_ms = w.busy_ms + (info.run_ms or 0)
  local pool = self.ctx.sched and self.ctx.sched.pool
  if pool then w.lua_memory = pool:worker_memory(info.worker) end -- kept for after the stop
end

-- One row of the batch page: a task of stage `st` of the running batch. records_out counts
-- what its outputs hold (per task: one count per output slice).
function Monitor:_keep_task(st, spec, status, info, err, outputs)
  local list = st.task_list
  if not list then
    list = {}
    st.task_list = list
  end
  if #list >= M.MAX_STAGE_TASKS then
    st.tasks_dropped = (st.tasks_dropped or 0) + 1
    return
  end
  local out = 0
  for _, o in ipairs(outputs or {}) do
    if o[1] >= 0 and o[2] and o[2].count then out = out + o[2]:count() end
  end
  list[#list + 1] = { partition = spec.part, worker = info.worker, status = status, run_ms = info.run_ms,
    records_in = info.records_in, records_out = status == 0 and out or nil,
    error = status ~= 0 and tostring(err) or nil }
end

-- Drops the task rows of batches older than the last KEEP_TASK_BATCHES.
function Monitor:_trim_tasks()
  local batches = self.ctx.batches
  for i = #batches - M.KEEP_TASK_BATCHES, 1, -1 do
    local b = batches[i]
    if b.tasks_trimmed then break end -- older ones were trimmed before
    b.tasks_trimmed = true
    for _, st in ipairs(b.stages or {}) do st.task_list = nil end
  end
end

local function input_records(b, input)
  for _, src in ipairs(b.sources or {}) do
    if src.id == input.id then return src.records end
  end
  return 0
end

function Monitor:_on_completed(b)
  local r = self.registry
  self.completed = self.completed + 1
  r:get("dstream_batches_completed_total"):inc()
  r:get("dstream_last_batch_records"):set(b.records or 0)
  r:get("dstream_scheduling_delay_seconds"):observe((b.scheduling_delay_ms or 0) / 1000)
  r:get("dstream_processing_time_seconds"):observe((b.processing_ms or 0) / 1000)
  r:get("dstream_total_delay_seconds"):observe((b.total_delay_ms or 0) / 1000)
  self:_trim_tasks()
  if self.backpressure then self:_estimate(b) end
end

-- Backpressure: one estimator per input that can be limited (not a cluster stage's internal
-- input); the lower of the estimate and the input's max_rate holds.
function Monitor:_estimate(b)
  for _, input in ipairs(self.ctx.inputs) do
    local limiter = not input.internal
      and ((input.source and input.source.set_rate and input.source) or (input.set_rate and input))
    if limiter then
      local est = self.estimators[input]
      if not est then
        est = backpressure.pid(self.ctx.batch_ms, self.backpressure)
        self.estimators[input] = est
      end
      local rate = est:compute(b.finished_at, input_records(b, input), b.processing_ms, b.scheduling_delay_ms)
      if rate then limiter:set_rate(rate) end
    end
  end
end

---------------------------------------------------------------------------------------------
-- Lifecycle (called by the context)

function Monitor:start(level)
  local ctx = self.ctx
  local manual = ctx.clock == "manual"
  local on_tty = core.isatty(2)
  local want = self.progress_opt
  if want == nil then want = on_tty and not manual and package.loaded["dstream.repl"] == nil end
  self.status_line = want and on_tty
  self.stdout_tty = core.isatty(1)
  self.log_batches = not self.status_line and core.log_level() ~= "error" and core.log_level() ~= "warn"
  if not self.delay_watched then -- (at every log level: dstream.monitor.progress)
    self.delay_watched = true
    ctx:_listen("batch_completed", function(b) self:_watch_delay(b) end)
  end
  if (self.status_line or self.log_batches) and not self.progress_listening then
    -- After the listeners registered so far: their output comes before the status line.
    self.progress_listening = true
    ctx:_listen("batch_completed", function(b) self:_progress(b) end)
  end
  if self.ui_host and not self.http then
    M.close_lingering() -- a failed context's page gives its port to the new one
    local ok, srv = pcall(core.http_server, self.ui_host, self.ui_port, self.public,
      function(...) return self:handle(...) end)
    if not ok then error("start: cannot serve the UI: " .. tostring(srv), level + 1) end
    self.http = srv
    local host, port = srv:address()
    self.url = "http://" .. (host:find(":") and "[" .. host .. "]" or host) .. ":" .. port .. "/"
    io.stderr:write("dstream: ui: " .. self.url .. "\n")
  end
end

function Monitor:stop()
  local ctx = self.ctx
  if self.http and ctx.error and not ctx._signalled_at and package.loaded["dstream.repl"] == nil then
    -- A failed context (not one a signal stopped): its page stays up, read-only, until the
    -- process would exit; then M.linger serves it until a signal.
    self.failed_at = core.now_ms()
    lingering[#lingering + 1] = self
  elseif self.http then
    self.http:close()
    self.http = nil
  end
  if self.status_shown then
    io.stderr:write("\n")
    self.status_shown = false
  end
end

-- Closes the pages of failed contexts.
function M.close_lingering()
  for i = #lingering, 1, -1 do
    local m = table.remove(lingering, i)
    if m.http then
      m.http:close()
      m.http = nil
    end
  end
end

-- At the process's end (dstream.context's shutdown): serves the pages of failed contexts until
-- SIGINT or SIGTERM, so the failure can be looked at. Returns at once when there are none.
function M.linger()
  if #lingering == 0 then return end
  for _, m in ipairs(lingering) do
    io.stderr:write("dstream: the job failed; its page stays up at " .. m.url
      .. " (read-only) until Ctrl-C or SIGTERM stops the process\n")
  end
  local stop = false
  local function on_signal() stop = true end
  local signals = { core.signal(core.SIGINT, on_signal), core.signal(core.SIGTERM, on_signal) }
  -- The listening socket and signal watchers do not keep the loop alive; a timer does.
  local tick = core.timer(function() end)
  while not stop do
    tick:start(1000)
    core.run("once")
  end
  tick:close()
  for _, sig in ipairs(signals) do sig:close() end
  M.close_lingering()
end

return M

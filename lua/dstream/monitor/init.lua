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
-- while the loop runs: during ctx:await_termination(), ctx:advance() and batch jobs.
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
  input_info = figures.input_info, graph = figures.graph,
}

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
    estimators = {} }, Monitor)
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
  r:counter("dstream_source_records_total", "Records received per source", { "stream", "source" })
  r:counter("dstream_source_errors_total", "Errors per source: failed connects and reads, unreadable files, a Lua receiver's raises, restarts and reported errors", { "stream", "source" })
  r:gauge("dstream_source_max_rate", "The max_rate setting of a source, records per second", { "stream", "source" })
  r:gauge("dstream_source_rate_limit", "The rate a source is held to now (max_rate and backpressure), records per second", { "stream", "source" })
  r:gauge("dstream_source_throttled", "1 while a source has paused reading to keep to its rate limit", { "stream", "source" })
  r:gauge("dstream_backpressure_enabled", "1 when backpressure sizes the input rates")
  r:gauge("dstream_backpressure_rate", "The rate the backpressure estimator set for a source, records per second", { "stream", "source" })
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
  r:get("dstream_batch_interval_seconds"):set(self.ctx.batch_ms / 1000)
  r:get("dstream_backpressure_enabled"):set(self.backpressure and 1 or 0)
  r:collector(function() self:_collect() end)
end


function Monitor:_collect()
  local r, ctx = self.registry, self.ctx
  for _, input in ipairs(ctx.inputs) do
    local info = figures.input_info(input)
    local labels = { stream = input.id, source = input.label }
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
  for _, entry in ipairs(ctx._states or {}) do -- keys per keyed-state operator
    if entry.keys then
      r:get("dstream_state_keys"):set(entry.keys(),
        { operator = entry.name or (entry.kind .. "#" .. entry.id) })
    end
  end
  r:get("dstream_batches_queued"):set(#ctx.queue)
  r:get("dstream_workers"):set(ctx.workers)
  local pool = ctx.sched and ctx.sched.pool
  local busy = 0
  if pool then
    busy = math.min(pool:inflight(), pool:size())
    for i = 0, pool:size() - 1 do
      r:get("dstream_worker_lua_memory_bytes"):set(pool:worker_memory(i), { worker = i })
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
  if self.backpressure then self:_estimate(b) end
end

-- Backpressure: one estimator per input that can be limited; the lower of the estimate and
-- the input's max_rate holds.
function Monitor:_estimate(b)
  for _, input in ipairs(self.ctx.inputs) do
    local limiter = (input.source and input.source.set_rate and input.source) or (input.set_rate and input)
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
  if self.http then
    self.http:close()
    self.http = nil
  end
  if self.status_shown then
    io.stderr:write("\n")
    self.status_shown = false
  end
end

return M

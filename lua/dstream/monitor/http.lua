-- dstream/monitor/http.lua: the HTTP endpoint's routes, as methods of the monitor
-- (dstream.monitor adds them): /metrics, /api/batches, /api/batches/<time>, /api/streams,
-- /api/workers, /api/state and the live page.
local core = require("dstream.core")
local figures = require("dstream.monitor.figures")
local json_mod = require("dstream.monitor.json")
local array, json = json_mod.array, json_mod.json
local is_loopback = require("dstream.monitor.address").is_loopback

local Http = {}

local function query_param(query, key)
  for k, v in query:gmatch("([^&=]+)=([^&]*)") do
    if k == key then return v end
  end
end

-- Only names of this machine in Host: a page on another site cannot read the API through a
-- DNS name rebound to 127.0.0.1.
local function local_host_header(host)
  if host == "" then return true end
  local name = host:match("^%[([%x:]+)%]") or host:match("^([^:]+)")
  return name ~= nil and is_loopback(name:lower())
end

function Http:batches_json(n)
  local list, ctx = array(), self.ctx
  local batches = ctx.batches
  for i = #batches, math.max(1, #batches - n + 1), -1 do
    list[#list + 1] = figures.batch_info(batches[i], "completed")
  end
  return list
end


function Http:streams_json()
  local ctx = self.ctx
  local inputs = array()
  for _, input in ipairs(ctx.inputs) do
    local info = figures.input_info(input)
    local est = self.estimators[input]
    info.backpressure_rate = est and est.rate or nil
    inputs[#inputs + 1] = info
  end
  -- The graph, from the outputs up.
  local streams, outputs, is_input = array(), {}, {}
  for _, out in ipairs(ctx.outputs) do outputs[out.stream] = true end
  for _, input in ipairs(ctx.inputs) do is_input[input] = true end
  for _, s in ipairs(figures.graph(ctx)) do
    local parents = array()
    for i, p in ipairs(s.parents or {}) do parents[i] = p.id end
    streams[#streams + 1] = { id = s.id, name = s.label, parents = parents, output = outputs[s] or false,
      input = is_input[s] or false, state = s.state_id ~= nil, state_name = s.state_id and figures.stream_name(s) or nil,
      window_ms = s.window_ms, slide_ms = s.slide_ms }
  end
  local failed = array()
  for i = #self.failed_batches, 1, -1 do
    local b = self.failed_batches[i]
    failed[#failed + 1] = { time = b.time, failed_at = figures.round(b.failed_at), error = b.error }
  end
  local last = ctx.batches[#ctx.batches]
  return {
    name = ctx.name, state = ctx.state, batch_ms = ctx.batch_ms, workers = ctx.workers,
    partitions = ctx.partitions, clock = ctx.clock, started_at = ctx.started_at and figures.round(ctx.started_at),
    now = figures.round(core.now_ms()), backpressure = self.backpressure ~= nil,
    batches_completed = self.completed, batches_failed = self.failed, queued = #ctx.queue,
    running = ctx.running and ctx.running.time or nil,
    last_batch = last and figures.batch_info(last, "completed") or nil,
    inputs = inputs, streams = streams, failed_batches = failed,
    -- A cluster process: its member id, partitions, state partitions and restores.
    cluster = ctx.cluster and require("dstream.cluster.status").describe(ctx) or nil,
    -- A failed context's page stays up (dstream.monitor's linger): the error is on top.
    error = ctx.error, failed_at = figures.round(self.failed_at),
  }
end

-- One batch with its stages and, while kept, their tasks: a completed, failed, running or
-- queued batch; nil when none has that time (or it is too old to be kept).
function Http:batch_json(time)
  local ctx = self.ctx
  if ctx.running and ctx.running.time == time and not ctx.running.final then
    return figures.batch_info(ctx.running, "running", true)
  end
  for _, b in ipairs(self.failed_batches) do
    if b.time == time then return figures.batch_info(b, "failed", true) end
  end
  for i = #ctx.batches, 1, -1 do
    if ctx.batches[i].time == time then return figures.batch_info(ctx.batches[i], "completed", true) end
  end
  for _, b in ipairs(ctx.queue) do
    if b.time == time then return figures.batch_info(b, "queued", true) end
  end
end

-- Per worker: tasks run (and failed), time busy running them, Lua memory in use (its last
-- reading once the pool is closed), and what it runs now.
function Http:workers_json()
  local ctx = self.ctx
  local pool = ctx.sched and ctx.sched.pool
  local now, list = core.now_ms(), array()
  local running = {}
  if ctx.sched then
    for _, r in ipairs(pool and pool:running() or {}) do running[r.worker] = r end
  end
  local n = pool and pool:size() or #self.worker_stats
  for i = 0, math.max(n, #self.worker_stats) - 1 do
    local w = self:_worker(i)
    if pool and i < pool:size() then w.lua_memory = pool:worker_memory(i) end
    local up = ctx.started_at and (now - ctx.started_at) or 0
    list[#list + 1] = { worker = i, tasks = w.tasks, failed = w.failed, busy_ms = figures.round(w.busy_ms, 3),
      busy_fraction = up > 0 and figures.round(w.busy_ms / up, 4) or 0, lua_memory = w.lua_memory,
      running_ms = running[i] and figures.round(running[i].ms, 1) or nil }
  end
  return { workers = list, worker_memory_limit = ctx.worker_memory, busy = pool and math.min(pool:inflight(), pool:size()) or 0 }
end

-- Keyed state per stateful operator and the last checkpoint.
function Http:state_json()
  local ctx = self.ctx
  local ck = ctx.last_checkpoint
  return {
    operators = figures.state_operators(ctx),
    checkpoint_dir = ctx.checkpoint_dir, checkpoint_ms = ctx.checkpoint_dir and ctx.checkpoint_ms or nil,
    last_checkpoint = ck and { time = ck.time, written_at = figures.round(ck.written_at),
      duration_ms = figures.round(ck.duration_ms, 3), bytes = ck.bytes, generation = ck.generation } or nil,
    recovered_from = ctx.recovered_from,
  }
end

local JSON = "application/json; charset=utf-8"

-- method, path, query, host -> status, content type, body
function Http:handle(method, path, query, host)
  if not self.public and not local_host_header(host) then
    return 403, nil, "this page answers only to localhost and loopback addresses\n"
  end
  if path == "/metrics" then
    return 200, "text/plain; version=0.0.4; charset=utf-8", self.registry:render()
  elseif path == "/api/batches" then
    local raw = query_param(query, "n")
    local kept = require("dstream.driver.clock").BATCHES_KEPT
    local n = raw == nil and kept or tonumber(raw:match("^%d+$"))
    if not n then -- (a typo must not pass for the default)
      return 400, nil, "/api/batches: n is how many of the last batches to list, a whole number"
        .. " from 0 (the last " .. kept .. " are kept), as /api/batches?n=10; got n=" .. raw .. "\n"
    end
    return 200, JSON, json(self:batches_json(n))
  elseif path == "/api/streams" then
    return 200, JSON, json(self:streams_json())
  elseif path:match("^/api/batches/") then
    local t = tonumber(path:match("^/api/batches/(%d+)$") or "")
    local b = t and self:batch_json(t)
    if not b then return 404, nil, "no such batch: /api/batches lists the batches kept\n" end
    return 200, JSON, json(b)
  elseif path == "/api/workers" then
    return 200, JSON, json(self:workers_json())
  elseif path == "/api/state" then
    return 200, JSON, json(self:state_json())
  elseif path == "/" or path == "/index.html" then
    return 200, "text/html; charset=utf-8", require("dstream.monitor.page").html
  end
  return 404, nil, "not found: try /, /metrics, /api/batches, /api/streams, /api/workers or /api/state\n"
end

return Http

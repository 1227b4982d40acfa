-- dstream/monitor/http.lua: the HTTP endpoint's routes, as methods of the monitor
-- (dstream.monitor adds them): /metrics, /api/batches, /api/streams and the live page.
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
  local streams, outputs = array(), {}
  for _, out in ipairs(ctx.outputs) do outputs[out.stream] = true end
  for _, s in ipairs(figures.graph(ctx)) do
    local parents = array()
    for i, p in ipairs(s.parents or {}) do parents[i] = p.id end
    streams[#streams + 1] = { id = s.id, name = s.label, parents = parents, output = outputs[s] or false }
  end
  local last = ctx.batches[#ctx.batches]
  return {
    name = ctx.name, state = ctx.state, batch_ms = ctx.batch_ms, workers = ctx.workers,
    partitions = ctx.partitions, clock = ctx.clock, started_at = ctx.started_at and figures.round(ctx.started_at),
    now = figures.round(core.now_ms()), backpressure = self.backpressure ~= nil,
    batches_completed = self.completed, batches_failed = self.failed, queued = #ctx.queue,
    running = ctx.running and ctx.running.time or nil,
    last_batch = last and figures.batch_info(last, "completed") or nil,
    inputs = inputs, streams = streams,
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
    local n = tonumber(query_param(query, "n") or "") or 100
    return 200, JSON, json(self:batches_json(math.max(0, math.floor(n))))
  elseif path == "/api/streams" then
    return 200, JSON, json(self:streams_json())
  elseif path == "/" or path == "/index.html" then
    return 200, "text/html; charset=utf-8", require("dstream.monitor.page").html
  end
  return 404, nil, "not found: try /, /metrics, /api/batches or /api/streams\n"
end

return Http

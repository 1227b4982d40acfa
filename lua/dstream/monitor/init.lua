-- dstream/monitor/init.lua: watching a running job: metrics, the HTTP endpoint, progress, listeners, backpressure.
--
-- Every context has a monitor. It keeps a metrics registry (Prometheus text at /metrics; other
-- modules add their own families to ctx:metrics()), turns the context's batch records into the
-- figures of /api/batches and of ctx:on_batch_started/on_batch_completed listeners, shows
-- progress (a live status line on a terminal, one log line per batch at --log-level info), and
-- with backpressure on runs one PID rate estimator per limitable input (dstream.monitor.backpressure).
-- The HTTP endpoint (`ui = "127.0.0.1:4040"` or --ui) is off unless asked for, and listens on
-- a loopback address unless ui_public = true. It runs on the driver's loop, so it answers
-- while the loop runs: during ctx:await_termination(), ctx:advance() and batch jobs.
local backpressure = require("dstream.monitor.backpressure")
local core = require("dstream.core")

local cjson = require("cjson").new() -- a private instance: its settings are ours only

local M = {}

---------------------------------------------------------------------------------------------
-- JSON: lua-cjson for strings and numbers; arrays are marked, so an empty one stays [].

local ARRAY = { __name = "json array" }
local function array(t) return setmetatable(t or {}, ARRAY) end
M.array = array

local function json(v)
  local tv = type(v)
  if tv == "table" then
    local parts = {}
    if getmetatable(v) == ARRAY then
      for i = 1, #v do parts[i] = json(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for i, k in ipairs(keys) do
      local x = v[k]
      if x == nil then x = v[tonumber(k)] end
      parts[i] = cjson.encode(k) .. ":" .. json(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return cjson.encode(v)
  elseif tv == "string" or tv == "boolean" then
    return cjson.encode(v)
  end
  return "null"
end
M.json = json

---------------------------------------------------------------------------------------------
-- Metrics registry (Prometheus text exposition format 0.0.4)

local Registry = {}
Registry.__index = Registry
Registry.__name = "metrics registry"

local Family = {}
Family.__index = Family
Family.__name = "metric"

M.default_buckets = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120 }

function M.registry()
  return setmetatable({ families = {}, order = {}, collectors = {} }, Registry)
end

local function check_name(name, pattern, what, level)
  if type(name) ~= "string" or not name:match(pattern) or name:sub(1, 2) == "__" then
    error("metrics: " .. what .. " " .. string.format("%q", tostring(name))
      .. " is not a valid Prometheus name (letters, digits and _, not starting with a digit)", level + 1)
  end
end

-- Returns the family `name`, making it if new; the same name with another type or labels is
-- an error (two modules disagree about a metric).
function Registry:_family(kind, name, help, labels, buckets)
  check_name(name, "^[%a_:][%w_:]*$", "metric name", 4)
  if help ~= nil and type(help) ~= "string" then error("metrics: help must be a string", 4) end
  labels = labels or {}
  if type(labels) ~= "table" then error("metrics: labels must be a list of label names", 4) end
  for _, l in ipairs(labels) do
    check_name(l, "^[%a_][%w_]*$", "label name", 4)
    if kind == "histogram" and l == "le" then error("metrics: a histogram cannot have a label 'le'", 4) end
  end
  local f = self.families[name]
  if f then
    if f.kind ~= kind or table.concat(f.labels, ",") ~= table.concat(labels, ",") then
      error("metrics: " .. name .. " is already a " .. f.kind .. " with labels {"
        .. table.concat(f.labels, ",") .. "}", 4)
    end
    return f
  end
  f = setmetatable({ name = name, help = help or name, kind = kind, labels = labels,
    samples = {}, keys = {}, buckets = buckets }, Family)
  self.families[name] = f
  self.order[#self.order + 1] = name
  if #labels == 0 then f:_sample(nil, 1) end -- a metric without labels starts at 0
  return f
end

-- A counter: only goes up (f:inc(n, labels)). Prometheus wants its name to end in _total.
function Registry:counter(name, help, labels)
  return self:_family("counter", name, help, labels)
end

-- A gauge: f:set(v, labels), f:inc(n, labels), f:dec(n, labels), f:remove(labels).
function Registry:gauge(name, help, labels)
  return self:_family("gauge", name, help, labels)
end

-- A histogram: f:observe(v, labels); buckets are upper bounds (default: seconds, 5 ms to 2 min).
function Registry:histogram(name, help, buckets, labels)
  buckets = buckets or M.default_buckets
  if type(buckets) ~= "table" or #buckets == 0 then error("metrics: buckets must be a list of numbers", 3) end
  local b = {}
  for i, x in ipairs(buckets) do
    if type(x) ~= "number" or (i > 1 and x <= b[i - 1]) then
      error("metrics: buckets must be increasing numbers", 3)
    end
    b[i] = x
  end
  return self:_family("histogram", name, help, labels, b)
end

function Registry:get(name) return self.families[name] end

-- fn(registry) runs before every render, to refresh gauges from live figures.
function Registry:collector(fn)
  if type(fn) ~= "function" then error("metrics: collector expects a function", 2) end
  self.collectors[#self.collectors + 1] = fn
end

-- The sample of a label set, made on first use.
function Family:_sample(labels, level)
  local values = {}
  if #self.labels > 0 or labels ~= nil then
    if type(labels) ~= "table" then
      error("metrics: " .. self.name .. " needs labels {" .. table.concat(self.labels, ", ") .. "}", level + 1)
    end
    local n = 0
    for _ in pairs(labels) do n = n + 1 end
    for i, l in ipairs(self.labels) do
      local v = labels[l]
      if v == nil then error("metrics: " .. self.name .. ": label '" .. l .. "' is missing", level + 1) end
      values[i] = tostring(v)
    end
    if n ~= #self.labels then
      error("metrics: " .. self.name .. " takes the labels {" .. table.concat(self.labels, ", ") .. "} only", level + 1)
    end
  end
  local key = table.concat(values, "\0")
  local s = self.samples[key]
  if not s then
    s = { values = values, value = 0 }
    if self.kind == "histogram" then
      s.counts, s.sum = {}, 0
      for i = 1, #self.buckets do s.counts[i] = 0 end
    end
    self.samples[key] = s
    self.keys[#self.keys + 1] = key
  end
  return s
end

local function check_number(v, who, level)
  if type(v) ~= "number" or v ~= v then error("metrics: " .. who .. " expects a number, got " .. tostring(v), level + 1) end
end

function Family:inc(n, labels)
  if n == nil then n = 1 end
  check_number(n, self.name .. ":inc", 2)
  if self.kind == "counter" and n < 0 then error("metrics: " .. self.name .. " is a counter: it cannot go down", 2) end
  if self.kind == "histogram" then error("metrics: " .. self.name .. " is a histogram: use observe", 2) end
  local s = self:_sample(labels, 2)
  s.value = s.value + n
end

function Family:set(v, labels)
  check_number(v, self.name .. ":set", 2)
  if self.kind ~= "gauge" then error("metrics: " .. self.name .. " is a " .. self.kind .. ": only gauges are set", 2) end
  self:_sample(labels, 2).value = v
end

function Family:dec(n, labels)
  if self.kind ~= "gauge" then error("metrics: " .. self.name .. " is a " .. self.kind .. ": only gauges go down", 2) end
  if n == nil then n = 1 end
  check_number(n, self.name .. ":dec", 2)
  local s = self:_sample(labels, 2)
  s.value = s.value - n
end

function Family:observe(v, labels)
  if self.kind ~= "histogram" then error("metrics: " .. self.name .. " is not a histogram", 2) end
  check_number(v, self.name .. ":observe", 2)
  local s = self:_sample(labels, 2)
  for i, b in ipairs(self.buckets) do
    if v <= b then s.counts[i] = s.counts[i] + 1 end
  end
  s.value = s.value + 1 -- the count
  s.sum = s.sum + v
end

-- The current value of a label set (nil if never set); for a histogram { count, sum, buckets }.
function Family:value(labels)
  local values = {}
  for i, l in ipairs(self.labels) do values[i] = tostring((labels or {})[l]) end
  local s = self.samples[table.concat(values, "\0")]
  if not s then return nil end
  if self.kind == "histogram" then
    local b = {}
    for i, x in ipairs(self.buckets) do b[x] = s.counts[i] end
    return { count = s.value, sum = s.sum, buckets = b }
  end
  return s.value
end

function Family:remove(labels)
  local values = {}
  for i, l in ipairs(self.labels) do values[i] = tostring((labels or {})[l]) end
  local key = table.concat(values, "\0")
  if not self.samples[key] then return end
  self.samples[key] = nil
  for i, k in ipairs(self.keys) do
    if k == key then table.remove(self.keys, i) break end
  end
end

function Family:clear()
  self.samples, self.keys = {}, {}
end

local function fmt_value(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
  for _, f in ipairs({ "%.15g", "%.16g" }) do -- the shortest text that reads back the same
    local t = string.format(f, v)
    if tonumber(t) == v then return t end
  end
  return string.format("%.17g", v)
end

local function escape_label(v)
  return (v:gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

local function label_text(names, values, extra_name, extra_value)
  local parts = {}
  for i, n in ipairs(names) do parts[i] = n .. '="' .. escape_label(values[i]) .. '"' end
  if extra_name then parts[#parts + 1] = extra_name .. '="' .. extra_value .. '"' end
  if #parts == 0 then return "" end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- The registry in Prometheus text format (collectors run first).
function Registry:render()
  for _, fn in ipairs(self.collectors) do fn(self) end
  local out = {}
  for _, name in ipairs(self.order) do
    local f = self.families[name]
    out[#out + 1] = "# HELP " .. name .. " " .. f.help:gsub("\\", "\\\\"):gsub("\n", "\\n")
    out[#out + 1] = "# TYPE " .. name .. " " .. f.kind
    for _, key in ipairs(f.keys) do
      local s = f.samples[key]
      if f.kind == "histogram" then
        for i, b in ipairs(f.buckets) do
          out[#out + 1] = name .. "_bucket" .. label_text(f.labels, s.values, "le", fmt_value(b)) .. " " .. fmt_value(s.counts[i])
        end
        out[#out + 1] = name .. "_bucket" .. label_text(f.labels, s.values, "le", "+Inf") .. " " .. fmt_value(s.value)
        out[#out + 1] = name .. "_sum" .. label_text(f.labels, s.values) .. " " .. fmt_value(s.sum)
        out[#out + 1] = name .. "_count" .. label_text(f.labels, s.values) .. " " .. fmt_value(s.value)
      else
        out[#out + 1] = name .. label_text(f.labels, s.values) .. " " .. fmt_value(s.value)
      end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

---------------------------------------------------------------------------------------------
-- Batch figures: what /api/batches returns and what listeners get

local function round(x, digits)
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
      task_ms = round(st.task_ms, 3), records_in = st.records_in }
  end
  local sources = array()
  for i, src in ipairs(b.sources or {}) do
    sources[i] = { id = src.id, name = src.name, records = src.records }
  end
  return {
    time = b.time, status = status, records = b.records or 0, sources = sources,
    generated_at = round(b.generated_at), started_at = round(b.started_at),
    finished_at = round(b.finished_at),
    scheduling_delay_ms = round(b.scheduling_delay_ms, 3), processing_ms = round(b.processing_ms, 3),
    total_delay_ms = round(b.total_delay_ms, 3), stages = stages, error = b.error,
  }
end

---------------------------------------------------------------------------------------------
-- Settings

-- "127.0.0.1:4040", "localhost:4040", "[::1]:4040", ":4040", "4040", 4040, true -> host, port
local function parse_address(v)
  if v == true then return "127.0.0.1", 4040 end
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then return nil, "expected an address like \"127.0.0.1:4040\", got " .. type(v) end
  local host, port = v:match("^%[([%x:]+)%]:(%d+)$")
  if not host then host, port = v:match("^([^:]*):(%d+)$") end
  if not host and v:match("^%d+$") then host, port = "", v end
  port = tonumber(port)
  if not host or not port or port > 65535 then
    return nil, "expected an address like \"127.0.0.1:4040\" (host:port), got " .. string.format("%q", v)
  end
  if host == "" then host = "127.0.0.1" end
  return host, port
end

-- An IPv4 address in any form inet_aton(3) reads ("127.1", "0x7f.1", "2130706433") as
-- four numbers, or nil.
local function ipv4_bytes(s)
  local parts = {}
  for p in (s .. "."):gmatch("([^.]*)%.") do parts[#parts + 1] = p end
  if #parts < 1 or #parts > 4 then return nil end
  local nums = {}
  for i, p in ipairs(parts) do
    local n
    if p:match("^0[xX]%x*$") then n = tonumber(p:sub(3) ~= "" and p:sub(3) or "0", 16)
    elseif p:match("^0[0-7]*$") then n = tonumber(p, 8)
    elseif p:match("^[1-9]%d*$") then n = tonumber(p, 10) end
    if not n then return nil end
    nums[i] = n
  end
  local last, bytes = nums[#nums], {}
  for i = 1, #nums - 1 do
    if nums[i] > 255 then return nil end
    bytes[i] = nums[i]
  end
  local room = 4 - (#nums - 1) -- bytes the last number fills
  if last >= 256 ^ room then return nil end
  for i = 4, #nums, -1 do
    bytes[i] = last % 256
    last = math.floor(last / 256)
  end
  return bytes
end

-- An IPv6 address as eight 16-bit groups (a trailing dotted IPv4 part allowed), or nil.
local function ipv6_groups(s)
  if not s:find(":", 1, true) or s:find(":::", 1, true) then return nil end
  local head, tail = s, nil
  local a, b = s:find("::", 1, true)
  if a then
    head, tail = s:sub(1, a - 1), s:sub(b + 1)
    if tail:find("::", 1, true) then return nil end
  end
  local function groups(text)
    local out = {}
    if text == "" then return out end
    for g in (text .. ":"):gmatch("([^:]*):") do out[#out + 1] = g end
    local last = out[#out]
    if last and last:find(".", 1, true) then
      local v4 = ipv4_bytes(last)
      if not v4 or not last:match("^%d+%.%d+%.%d+%.%d+$") then return nil end
      out[#out] = string.format("%x", v4[1] * 256 + v4[2])
      out[#out + 1] = string.format("%x", v4[3] * 256 + v4[4])
    end
    for i, g in ipairs(out) do
      if not g:match("^%x%x?%x?%x?$") then return nil end
      out[i] = tonumber(g, 16)
    end
    return out
  end
  local h, t = groups(head), tail and groups(tail) or {}
  if not h or not t then return nil end
  local fill = 8 - #h - #t
  if (tail and fill < 1) or (not tail and fill ~= 0) then return nil end
  local all = {}
  for _, g in ipairs(h) do all[#all + 1] = g end
  for _ = 1, fill do all[#all + 1] = 0 end
  for _, g in ipairs(t) do all[#all + 1] = g end
  return all
end

-- Any loopback address: "localhost", 127.0.0.0/8 in every form inet_aton reads ("127.1"),
-- ::1 however written, and IPv4-mapped ::ffff:127.x.y.z.
local function is_loopback(host)
  if host == "localhost" then return true end
  local v4 = ipv4_bytes(host)
  if v4 then return v4[1] == 127 end
  local g = ipv6_groups(host)
  if not g then return false end
  for i = 1, 5 do
    if g[i] ~= 0 then return false end
  end
  if g[6] == 0 and g[7] == 0 and g[8] == 1 then return true end
  return g[6] == 0xffff and math.floor(g[7] / 256) == 127
end

-- The address as the server binds it: IPv4 forms as a dotted quad ("127.1" -> "127.0.0.1").
local function canonical_host(host)
  local v4 = ipv4_bytes(host)
  return v4 and table.concat(v4, ".") or host
end
M.parse_address, M.is_loopback = parse_address, is_loopback

local function cli_options()
  return package.loaded["dstream.cli.options"] or {}
end

---------------------------------------------------------------------------------------------
-- The monitor of one context

local Monitor = {}
Monitor.__index = Monitor

-- Reads the settings ui, ui_public, backpressure, progress; `level` blames the user's line.
function M.new(ctx, opts, level)
  local self = setmetatable({ ctx = ctx, registry = M.registry(), completed = 0, failed = 0,
    estimators = {} }, Monitor)
  local ui = opts.ui
  if ui == nil then ui = cli_options().ui end
  if ui ~= nil and ui ~= false then
    local host, port = parse_address(ui)
    if not host then error("dstream.context: ui: " .. port, level) end
    if opts.ui_public ~= nil and type(opts.ui_public) ~= "boolean" then
      error("dstream.context: ui_public must be true or false", level)
    end
    self.public = opts.ui_public == true
    if not self.public and not is_loopback(host) then
      error("dstream.context: ui: refusing to serve the UI on " .. host .. ", which other machines"
        .. " can reach; use a loopback address such as 127.0.0.1, or set ui_public = true", level)
    end
    self.ui_host, self.ui_port = canonical_host(host), port
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

function Monitor:_collect()
  local r, ctx = self.registry, self.ctx
  for _, input in ipairs(ctx.inputs) do
    local info = M.input_info(input)
    local labels = { stream = input.id, source = input.label }
    local rec = r:get("dstream_source_records_total")
    rec:inc(math.max(0, info.records - (rec:value(labels) or 0)), labels)
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
  for _, s in ipairs(M.graph(ctx)) do
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
    local ok, err = xpcall(fn, debug.traceback, M.batch_info(b, event == "batch_started" and "running" or "completed"))
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
-- Progress

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
function Monitor:status_text(b)
  local ctx = self.ctx
  local rate = (b.records or 0) / (ctx.batch_ms / 1000)
  local text = string.format("%s | batch %s | %s records | processing %s | delay %s | %s rec/s",
    ctx.name, fmt_time(b.time, ctx.batch_ms, ctx.clock == "manual"), fmt_count(b.records or 0),
    fmt_ms(b.processing_ms), fmt_ms(b.scheduling_delay_ms), fmt_count(math.floor(rate + 0.5)))
  if #ctx.queue > 0 then text = text .. string.format(" | %d queued", #ctx.queue) end
  return text
end

function Monitor:_progress(b)
  if self.status_line then
    io.stderr:write("\r\27[K", self:status_text(b))
    io.stderr:flush()
    self.status_shown = true
  elseif self.log_batches then
    core.log("info", string.format("batch %d ms: %d records, processing %s, scheduling delay %s, total delay %s",
      b.time, b.records or 0, fmt_ms(b.processing_ms), fmt_ms(b.scheduling_delay_ms), fmt_ms(b.total_delay_ms)))
  end
end

---------------------------------------------------------------------------------------------
-- The HTTP endpoint

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

function Monitor:batches_json(n)
  local list, ctx = array(), self.ctx
  local batches = ctx.batches
  for i = #batches, math.max(1, #batches - n + 1), -1 do
    list[#list + 1] = M.batch_info(batches[i], "completed")
  end
  return list
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

function Monitor:streams_json()
  local ctx = self.ctx
  local inputs = array()
  for _, input in ipairs(ctx.inputs) do
    local info = M.input_info(input)
    local est = self.estimators[input]
    info.backpressure_rate = est and est.rate or nil
    inputs[#inputs + 1] = info
  end
  -- The graph, from the outputs up.
  local streams, outputs = array(), {}
  for _, out in ipairs(ctx.outputs) do outputs[out.stream] = true end
  for _, s in ipairs(M.graph(ctx)) do
    local parents = array()
    for i, p in ipairs(s.parents or {}) do parents[i] = p.id end
    streams[#streams + 1] = { id = s.id, name = s.label, parents = parents, output = outputs[s] or false }
  end
  local last = ctx.batches[#ctx.batches]
  return {
    name = ctx.name, state = ctx.state, batch_ms = ctx.batch_ms, workers = ctx.workers,
    partitions = ctx.partitions, clock = ctx.clock, started_at = ctx.started_at and round(ctx.started_at),
    now = round(core.now_ms()), backpressure = self.backpressure ~= nil,
    batches_completed = self.completed, batches_failed = self.failed, queued = #ctx.queue,
    running = ctx.running and ctx.running.time or nil,
    last_batch = last and M.batch_info(last, "completed") or nil,
    inputs = inputs, streams = streams,
  }
end

local JSON = "application/json; charset=utf-8"

-- method, path, query, host -> status, content type, body
function Monitor:handle(method, path, query, host)
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

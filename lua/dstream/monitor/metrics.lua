-- dstream/monitor/metrics.lua: a metrics registry in the Prometheus text exposition format
-- (0.0.4): counters, gauges and histograms with labels, and collectors that refresh gauges
-- before each render. Driver's Lua state.
local M = {}

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

return M

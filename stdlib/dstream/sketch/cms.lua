-- dstream/sketch/cms.lua: Count-Min sketch: how often each value occurred, never too low,
-- in depth x width counters whatever the number of values.
--
--   local cms = require("dstream.sketch.cms")
--   local s = cms.new{ eps = 0.001, confidence = 0.99 }   -- Spark's CountMinSketch.create
--   s:add("alice"); s:add("bob", 3)
--   s:estimate("bob")          -- >= 3; <= 3 + eps * total with probability confidence
--   s:merge(other); s:serialize(); cms.deserialize(bytes)
--
-- Sized as Spark's: width = ceil(2 / eps), depth = ceil(-log(1 - confidence) / log 2). Row i
-- counts a value in column (h1 + i * h2) mod width (Kirsch and Mitzenmacher's two hashes,
-- dstream.sketch.hash), and the estimate is the smallest of the value's depth counters:
-- never below the true count, and above it by more than eps * total (total: the sum of all
-- counts added) with probability at most 1 - confidence. Counters are an FFI double array
-- (whole counts exact up to 2^53; negative counts are refused, as the bound needs them).
local ffi = require("ffi")
local hash = require("dstream.sketch.hash")
local args = require("dstream.args")

local hash_value = hash.hash

local M = {}

local doubles = ffi.typeof("double[?]")

local Sketch = { __name = "cms" }
Sketch.__index = Sketch

local function sized(width, depth)
  return setmetatable({ width = width, depth = depth, total = 0, counts = doubles(width * depth) }, Sketch)
end

local OPTIONS = { eps = true, confidence = true, width = true, depth = true }

-- cms.new{ eps = 0.001, confidence = 0.99 } or cms.new{ width =, depth = }.
function M.new(opts)
  opts = args.options(opts, "cms.new", OPTIONS)
  if opts.width or opts.depth then
    if opts.eps or opts.confidence then args.raise("cms.new: give eps and confidence, or width and depth") end
    return sized(args.count(opts.width, "cms.new", "width"), args.count(opts.depth, "cms.new", "depth"))
  end
  local eps = args.number(opts.eps or 0.001, "cms.new", "eps", 0, 1, true)
  local confidence = args.number(opts.confidence or 0.99, "cms.new", "confidence", 0, 1, true)
  if confidence >= 1 then args.raise("cms.new: confidence must be below 1") end
  local width = math.ceil(2 / eps)
  local depth = math.ceil(-math.log(1 - confidence) / math.log(2))
  if width * depth > 2 ^ 27 then
    args.raise(string.format("cms.new: eps %g and confidence %g need %d counters (1 GiB or more); raise eps", eps, confidence, width * depth))
  end
  return sized(width, depth)
end

-- The bound on estimate(v) - (true count of v), with probability confidence: eps * total.
function Sketch:eps() return 2 / self.width end
function Sketch:confidence() return 1 - 0.5 ^ self.depth end

-- Adds n (default 1, at least 0) occurrences of a value; nil and why for a value it does not take.
function Sketch:add(v, n)
  n = n or 1
  local h1, h2 = hash_value(v)
  if not h1 then return nil, h2 end
  if not (n >= 0) then return nil, "a count must be at least 0, got " .. tostring(n) end
  local width, counts = self.width, self.counts
  local a, b = h1 % width, h2 % width
  for i = 0, self.depth - 1 do
    local at = i * width + (a + i * b) % width
    counts[at] = counts[at] + n
  end
  self.total = self.total + n
  return self
end

function Sketch:estimate(v)
  local h1, h2 = hash_value(v)
  if not h1 then args.raise("cms estimate: " .. h2) end
  local width, counts = self.width, self.counts
  local a, b = h1 % width, h2 % width
  local best = math.huge
  for i = 0, self.depth - 1 do
    local c = counts[i * width + (a + i * b) % width]
    if c < best then best = c end
  end
  return best
end

function Sketch:merge(other)
  if getmetatable(other) ~= Sketch then args.raise("cms merge: expected a cms sketch, got " .. type(other)) end
  if other.width ~= self.width or other.depth ~= self.depth then
    args.raise(string.format("cms merge: sizes differ (%dx%d and %dx%d): merge sketches made with the same eps and confidence",
      self.depth, self.width, other.depth, other.width))
  end
  local a, b = self.counts, other.counts
  for i = 0, self.width * self.depth - 1 do a[i] = a[i] + b[i] end
  self.total = self.total + other.total
  return self
end

local MAGIC = "CMS1"
local header_t = ffi.typeof("struct { uint32_t width, depth; double total; }")
local header_size = ffi.sizeof(header_t)

function Sketch:serialize()
  local head = header_t(self.width, self.depth, self.total)
  return MAGIC .. ffi.string(head, header_size) .. ffi.string(self.counts, 8 * self.width * self.depth)
end

function M.deserialize(s)
  if type(s) ~= "string" or s:sub(1, 4) ~= MAGIC or #s < 4 + header_size then
    return nil, "not a serialized cms sketch"
  end
  local head = header_t()
  ffi.copy(head, ffi.cast("const char *", s) + 4, header_size)
  local width, depth = tonumber(head.width), tonumber(head.depth)
  if width < 1 or depth < 1 or #s ~= 4 + header_size + 8 * width * depth then
    return nil, "a truncated or damaged cms sketch"
  end
  local sketch = sized(width, depth)
  sketch.total = head.total
  ffi.copy(sketch.counts, ffi.cast("const char *", s) + 4 + header_size, 8 * width * depth)
  return sketch
end

function M.is_sketch(v) return getmetatable(v) == Sketch end

function Sketch:__tostring()
  return string.format("cms(%d x %d, total %d)", self.depth, self.width, self.total)
end

return M

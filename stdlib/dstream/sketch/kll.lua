-- dstream/sketch/kll.lua: KLL quantile sketch (Karnin, Lang and Liberty, 2016): quantiles of
-- a stream of numbers in O(k) numbers of memory, mergeable.
--
--   local kll = require("dstream.sketch.kll")
--   local s = kll.new(0.01)             -- rank error about 1% of n (k = 268)
--   for _, x in ipairs(latencies) do s:add(x) end
--   s:quantile(0.5), s:quantiles({ 0.5, 0.99 }), s:rank(120)
--   s:merge(other); s:serialize(); kll.deserialize(bytes)
--
-- A stack of compactors: level h holds numbers that each stand for 2^h of the input. When
-- the sketch holds more than its capacity, the lowest level over its own capacity
-- (k * (2/3)^(depth from the top), at least 2) is sorted and every other number, starting at
-- a coin flip, moves up a level; the rest are dropped. quantile(q) returns the number of the
-- sketch at weighted rank q * n. The error: for rel_err, k = ceil((2.296 / rel_err)^(1/0.9723))
-- (Apache DataSketches' fit for KLL at 99% confidence), and a quantile's rank is then within
-- rel_err * n of q * n with probability 0.99 (the coin is a seeded generator: a run is
-- repeatable). The exact min and max are kept (quantile(0) and quantile(1)). Levels are Lua
-- arrays of numbers: add is an append, compaction sorts about k numbers every k/2 adds.
local buffer = require("string.buffer")
local args = require("dstream.args")

local M = {}

local floor, sort = math.floor, table.sort

local Sketch = { __name = "kll" }
Sketch.__index = Sketch

-- k for a rank error (see the header).
function M.k_for(rel_err)
  args.number(rel_err, "kll", "rel_err", 0, 0.5, true)
  local k = math.ceil((2.296 / rel_err) ^ (1 / 0.9723))
  if k < 8 then k = 8 end
  if k > 65535 then args.raise("kll: rel_err " .. rel_err .. " is too small (the least is about 5e-5)") end
  return k
end

local function with_k(k)
  return setmetatable({ k = k, n = 0, levels = { {} }, size = 0, capacity = k, min = nil, max = nil,
    coin = 12345 }, Sketch)
end

-- kll.new(rel_err) (default 0.01) or kll.new{ k = 8..65535 }.
function M.new(spec)
  if type(spec) == "table" then
    local k = spec.k
    if type(k) ~= "number" or k < 8 or k > 65535 or k ~= floor(k) then
      args.raise("kll.new: k must be a whole number in 8..65535, got " .. tostring(k))
    end
    return with_k(k)
  end
  return with_k(M.k_for(spec or 0.01))
end

-- The capacity of level h of a stack of `depth` levels.
local function level_capacity(k, depth, h)
  local c = floor(k * (2 / 3) ^ (depth - 1 - h) + 0.5)
  return c < 2 and 2 or c
end

local function total_capacity(self)
  local depth, total = #self.levels, 0
  for h = 0, depth - 1 do total = total + level_capacity(self.k, depth, h) end
  return total
end

-- A coin from a seeded MINSTD generator (repeatable runs).
local function flip(self)
  self.coin = (self.coin * 48271) % 2147483647
  return self.coin % 2
end

-- Compacts the lowest level over its capacity, until the sketch fits.
local function compress(self)
  while self.size > self.capacity do
    local levels, depth = self.levels, #self.levels
    for h = 0, depth - 1 do
      local level = levels[h + 1]
      if #level >= level_capacity(self.k, depth, h) then
        if h + 1 == depth then
          levels[depth + 1] = {}
        end
        local up = levels[h + 2]
        sort(level)
        local n = #level
        local keep_last = nil
        if n % 2 == 1 then -- an odd number: the last stays at this level
          keep_last = level[n]
          n = n - 1
        end
        local u = #up
        for i = 1 + flip(self), n, 2 do
          u = u + 1
          up[u] = level[i]
        end
        for i = #level, 1, -1 do level[i] = nil end
        if keep_last ~= nil then level[1] = keep_last end
        self.size = self.size - n / 2
        break
      end
    end
    self.capacity = total_capacity(self)
  end
end

-- Adds a number; nil and why for anything else (NaN included).
function Sketch:add(x)
  if type(x) ~= "number" or x ~= x then return nil, "kll takes numbers, got " .. (x ~= x and "NaN" or type(x)) end
  local level = self.levels[1]
  level[#level + 1] = x
  self.n = self.n + 1
  self.size = self.size + 1
  if self.min == nil or x < self.min then self.min = x end
  if self.max == nil or x > self.max then self.max = x end
  if self.size > self.capacity then compress(self) end
  return self
end

-- The sketch's numbers sorted, with their cumulative weights.
local function sorted_view(self)
  local items = {}
  for h, level in ipairs(self.levels) do
    local w = 2 ^ (h - 1)
    for _, x in ipairs(level) do items[#items + 1] = { x, w } end
  end
  sort(items, function(a, b) return a[1] < b[1] end)
  local values, cumulative, total = {}, {}, 0
  for i, it in ipairs(items) do
    total = total + it[2]
    values[i], cumulative[i] = it[1], total
  end
  return values, cumulative, total
end

-- The numbers at ranks q * n for each q of qs (0 <= q <= 1), as an array; nil for an empty sketch.
function Sketch:quantiles(qs)
  if type(qs) ~= "table" then args.raise("kll quantiles: expected an array of probabilities, got " .. type(qs)) end
  for i, q in ipairs(qs) do args.number(q, "kll quantiles", "probability " .. i, 0, 1) end
  if self.n == 0 then return nil end
  local values, cumulative, total = sorted_view(self)
  local out = {}
  for i, q in ipairs(qs) do
    if q == 0 then
      out[i] = self.min
    elseif q == 1 then
      out[i] = self.max
    else
      local target = q * total
      local lo, hi = 1, #values -- the first position whose cumulative weight reaches target
      while lo < hi do
        local mid = floor((lo + hi) / 2)
        if cumulative[mid] >= target then hi = mid else lo = mid + 1 end
      end
      out[i] = values[lo]
    end
  end
  return out
end

function Sketch:quantile(q)
  local r = self:quantiles({ q })
  return r and r[1]
end

-- The estimated fraction of the numbers added that are at most x.
function Sketch:rank(x)
  if self.n == 0 then return nil end
  local below, total = 0, 0
  for h, level in ipairs(self.levels) do
    local w = 2 ^ (h - 1)
    for _, v in ipairs(level) do
      total = total + w
      if v <= x then below = below + w end
    end
  end
  return below / total
end

function Sketch:merge(other)
  if getmetatable(other) ~= Sketch then args.raise("kll merge: expected a kll sketch, got " .. type(other)) end
  if other.k ~= self.k then
    args.raise(string.format("kll merge: k differs (%d and %d): merge sketches made with the same rel_err", self.k, other.k))
  end
  if other.n == 0 then return self end
  for h, level in ipairs(other.levels) do
    local mine = self.levels[h]
    if not mine then
      mine = {}
      self.levels[h] = mine
    end
    for _, x in ipairs(level) do mine[#mine + 1] = x end
    self.size = self.size + #level
  end
  self.n = self.n + other.n
  if self.min == nil or other.min < self.min then self.min = other.min end
  if self.max == nil or other.max > self.max then self.max = other.max end
  self.capacity = total_capacity(self)
  compress(self)
  return self
end

local MAGIC = "KLL1"

function Sketch:serialize()
  return MAGIC .. buffer.encode({ self.k, self.n, self.levels, self.min, self.max, self.coin })
end

function M.deserialize(s)
  if type(s) ~= "string" or s:sub(1, 4) ~= MAGIC then return nil, "not a serialized kll sketch" end
  local ok, t = pcall(buffer.decode, s:sub(5))
  if not ok or type(t) ~= "table" or type(t[1]) ~= "number" or type(t[3]) ~= "table" then
    return nil, "a truncated or damaged kll sketch"
  end
  local sketch = with_k(t[1])
  sketch.n, sketch.levels, sketch.min, sketch.max, sketch.coin = t[2], t[3], t[4], t[5], t[6]
  if #sketch.levels == 0 then sketch.levels[1] = {} end
  local size = 0
  for _, level in ipairs(sketch.levels) do size = size + #level end
  sketch.size = size
  sketch.capacity = total_capacity(sketch)
  return sketch
end

function M.is_sketch(v) return getmetatable(v) == Sketch end

function Sketch:__tostring()
  return string.format("kll(k = %d, n = %d, %d kept)", self.k, self.n, self.size)
end

return M

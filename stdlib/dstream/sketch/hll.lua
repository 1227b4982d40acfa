-- dstream/sketch/hll.lua: HyperLogLog: the number of distinct values in a stream, in at most
-- 2^p bytes whatever their number.
--
--   local hll = require("dstream.sketch.hll")
--   local s = hll.new(0.01)            -- relative standard error 1% (p = 14: 16 KiB at most)
--   s:add("alice"); s:add(42)
--   s:count()                          -- about 2
--   s:merge(other)                     -- the union's sketch (same precision)
--   local bytes = s:serialize()        -- a string: keyed state, checkpoints, the wire
--   hll.deserialize(bytes)
--
-- The registers and precision are HyperLogLog++'s as Spark sizes them: p = ceil(2 log2(1.106
-- / rel_sd)) (4 <= p <= 18), 2^p registers, each the largest rank seen, and the relative
-- standard error is 1.04 / sqrt(2^p) <= rel_sd. A value's hash gives 64 bits (dstream.sketch.
-- hash: the register index from the first p, the rank from the rest, up to 65 - p). The
-- estimate is Ertl's improved estimator ("New cardinality estimation algorithms for
-- HyperLogLog sketches", 2017, as Redis uses) in place of HLL++'s empirical bias tables and
-- linear-counting threshold: unbiased over the whole range without tables. Like HLL++, a
-- sketch holding few registers is sparse (a Lua table of the registers set, serialized as 5
-- bytes each), so a sketch per key of keyed state costs what its values do; past 2^p / 40
-- registers (where the table would outweigh the array) it turns dense: an FFI uint8 array,
-- where add is a hash, a shift and a byte store, no allocation. Both give the same counts
-- (the estimator reads the registers' histogram). Not HLL++'s: its 25-bit sparse precision.
local bit = require("bit")
local ffi = require("ffi")
local hash = require("dstream.sketch.hash")
local args = require("dstream.args")

local rshift, lshift = bit.rshift, bit.lshift
local hash_value = hash.hash

local M = {}

local bytes_t = ffi.typeof("uint8_t[?]")
local as_bits = ffi.new("union { double d; int32_t i[2]; }")

local Sketch = { __name = "hll" }
Sketch.__index = Sketch

-- Spark's precision for a relative standard deviation.
function M.precision(rel_sd)
  args.number(rel_sd, "hll", "rel_sd", 0, 0.39, true)
  local p = math.ceil(2.0 * math.log(1.106 / rel_sd) / math.log(2.0))
  if p < 4 then p = 4 end
  if p > 18 then
    args.raise(string.format("hll: rel_sd %g needs %d bits of register index; the most is 18"
      .. " (rel_sd of at least 0.0043, 256 KiB registers)", rel_sd, p))
  end
  return p
end

-- A sparse sketch: `sparse` maps register index -> rank, `nsparse` counts them.
local function with_p(p)
  local m = lshift(1, p)
  return setmetatable({ p = p, m = m, sparse = {}, nsparse = 0, limit = math.floor(m / 40) }, Sketch)
end

-- A sketch of relative standard error rel_sd (default 0.05, Spark's), or { p = 4..18 }.
function M.new(rel_sd)
  if type(rel_sd) == "table" then
    local p = rel_sd.p
    if type(p) ~= "number" or p < 4 or p > 18 or p ~= math.floor(p) then
      args.raise("hll.new: p must be a whole number in 4..18, got " .. tostring(p))
    end
    return with_p(p)
  end
  return with_p(M.precision(rel_sd or 0.05))
end

-- From sparse to an FFI array of 2^p registers.
local function densify(self)
  local regs = bytes_t(self.m)
  for idx, rank in pairs(self.sparse) do regs[idx] = rank end
  self.registers, self.sparse, self.nsparse = regs, nil, nil
end

-- The number of leading zero bits of a non-zero 32-bit word (read off the exponent of its
-- value as a double: exact, and compiled, where a loop would not be).
local function clz(w)
  local u = w % 4294967296
  as_bits.d = u
  return 31 - (rshift(as_bits.i[1], 20) - 1023)
end

-- Adds a value (a string, number or boolean); returns the sketch, or nil and what is wrong.
function Sketch:add(v)
  local h1, h2 = hash_value(v)
  if not h1 then return nil, h2 end
  local p = self.p
  local idx = rshift(h1, 32 - p)
  local w = lshift(h1, p)
  local rank
  if w ~= 0 then
    rank = clz(w) + 1
  elseif h2 ~= 0 then
    rank = 32 - p + clz(h2) + 1
  else
    rank = 65 - p
  end
  local regs = self.registers
  if regs then
    if rank > regs[idx] then regs[idx] = rank end
    return self
  end
  local sparse = self.sparse
  local old = sparse[idx]
  if old == nil then
    sparse[idx] = rank
    self.nsparse = self.nsparse + 1
    if self.nsparse > self.limit then densify(self) end
  elseif rank > old then
    sparse[idx] = rank
  end
  return self
end

-- Ertl's sigma and tau (see the header).
local function sigma(x)
  if x == 1 then return math.huge end
  local y, z = 1, x
  while true do
    x = x * x
    local z_old = z
    z = z + x * y
    y = y + y
    if z == z_old then return z end
  end
end

local function tau(x)
  if x == 0 or x == 1 then return 0 end
  local y, z = 1, 1 - x
  while true do
    x = math.sqrt(x)
    local z_old = z
    y = y * 0.5
    z = z - (1 - x) ^ 2 * y
    if z == z_old then return z / 3 end
  end
end

-- The estimated number of distinct values added (a whole number).
function Sketch:count()
  local m, q = self.m, 64 - self.p
  local histogram = {}
  for k = 0, q + 1 do histogram[k] = 0 end
  local regs = self.registers
  if regs then
    for i = 0, m - 1 do
      local r = regs[i]
      histogram[r] = histogram[r] + 1
    end
  else
    histogram[0] = m - self.nsparse
    for _, r in pairs(self.sparse) do histogram[r] = histogram[r] + 1 end
  end
  local z = m * tau((m - histogram[q + 1]) / m)
  for k = q, 1, -1 do z = (z + histogram[k]) * 0.5 end
  z = z + m * sigma(histogram[0] / m)
  return math.floor(m * m / (2 * math.log(2)) / z + 0.5)
end

-- The relative standard error of count().
function Sketch:rel_sd() return 1.04 / math.sqrt(self.m) end

function Sketch:is_sparse() return self.registers == nil end

-- Makes self the sketch of both streams (the other sketch is unchanged).
function Sketch:merge(other)
  if getmetatable(other) ~= Sketch then args.raise("hll merge: expected an hll sketch, got " .. type(other)) end
  if other.p ~= self.p then
    args.raise(string.format("hll merge: precisions differ (p = %d and %d): merge sketches made with the same rel_sd", self.p, other.p))
  end
  if other.registers and not self.registers then densify(self) end
  local a = self.registers
  if a then
    local b = other.registers
    if b then
      for i = 0, self.m - 1 do
        if b[i] > a[i] then a[i] = b[i] end
      end
    else
      for idx, rank in pairs(other.sparse) do
        if rank > a[idx] then a[idx] = rank end
      end
    end
    return self
  end
  local sparse = self.sparse
  for idx, rank in pairs(other.sparse) do
    local old = sparse[idx]
    if old == nil then
      sparse[idx] = rank
      self.nsparse = self.nsparse + 1
    elseif rank > old then
      sparse[idx] = rank
    end
  end
  if self.nsparse > self.limit then densify(self) end
  return self
end

-- "HLL1" p registers (dense), or "HLS1" p then 5 bytes per register set (sparse: index as a
-- little-endian uint32, rank), in index order so equal sketches give equal strings.
local DENSE, SPARSE = "HLL1", "HLS1"
local entry_t = ffi.typeof("struct __attribute__((packed)) { uint32_t idx; uint8_t rank; }")

function Sketch:serialize()
  if self.registers then
    return DENSE .. string.char(self.p) .. ffi.string(self.registers, self.m)
  end
  local order = {}
  for idx in pairs(self.sparse) do order[#order + 1] = idx end
  table.sort(order)
  local entries = ffi.new(ffi.typeof("$[?]", entry_t), #order)
  for i, idx in ipairs(order) do
    entries[i - 1].idx, entries[i - 1].rank = idx, self.sparse[idx]
  end
  return SPARSE .. string.char(self.p) .. ffi.string(entries, 5 * #order)
end

-- A sketch from serialize()'s string; nil and why for anything else.
function M.deserialize(s)
  if type(s) ~= "string" or #s < 5 or (s:sub(1, 4) ~= DENSE and s:sub(1, 4) ~= SPARSE) then
    return nil, "not a serialized hll sketch"
  end
  local p = s:byte(5)
  if p < 4 or p > 18 then return nil, "a damaged hll sketch (p = " .. p .. ")" end
  local sketch = with_p(p)
  if s:sub(1, 4) == DENSE then
    if #s ~= 5 + sketch.m then return nil, "a truncated or damaged hll sketch" end
    sketch.registers, sketch.sparse, sketch.nsparse = bytes_t(sketch.m), nil, nil
    ffi.copy(sketch.registers, ffi.cast("const uint8_t *", s) + 5, sketch.m)
    return sketch
  end
  local n = (#s - 5) / 5
  if n ~= math.floor(n) then return nil, "a truncated or damaged hll sketch" end
  local entries = ffi.cast(ffi.typeof("const $ *", entry_t), ffi.cast("const uint8_t *", s) + 5)
  for i = 0, n - 1 do
    local idx, rank = tonumber(entries[i].idx), entries[i].rank
    if idx >= sketch.m or rank < 1 or rank > 65 - p then return nil, "a damaged hll sketch (register " .. idx .. ")" end
    sketch.sparse[idx] = rank
  end
  sketch.nsparse = n
  if n > sketch.limit then densify(sketch) end
  return sketch
end

function M.is_sketch(v) return getmetatable(v) == Sketch end

function Sketch:__tostring()
  return string.format("hll(p = %d, %s, about %d distinct)", self.p, self.registers and "dense" or "sparse", self:count())
end

return M

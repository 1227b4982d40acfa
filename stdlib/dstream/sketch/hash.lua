-- dstream/sketch/hash.lua: 32-bit MurmurHash3 of strings and numbers, for the sketches.
--
-- hash(v) returns two 32-bit hashes (signed ints, as LuaJIT's bit library gives them) of a
-- string, a number or a boolean: h1 = MurmurHash3_x86_32 of its bytes (a number's 8 bytes
-- as a double, -0 as 0; each type with its own seed, so "1" and 1 differ), h2 a second mix
-- of h1 (the sketches' rows and HyperLogLog's rank bits past the first 32). The same value
-- hashes the same on every worker and in every run. Strings are read 4 bytes at a time
-- through the FFI, multiplications mod 2^32 are split in 16-bit halves (exact in doubles):
-- compiled by LuaJIT, no allocation, no C call.
local bit = require("bit")
local ffi = require("ffi")

local band, bxor, rshift, lshift, rol, tobit = bit.band, bit.bxor, bit.rshift, bit.lshift, bit.rol, bit.tobit
local type = type

local M = {}

local C1, C2 = tobit(0xcc9e2d51), tobit(0x1b873593)
local SEED_STRING, SEED_NUMBER, SEED_BOOLEAN = 0, 0x2545F491, 0x6C8E9CF5

-- a * b mod 2^32 for 32-bit a, b.
local function mul32(a, b)
  return tobit(band(a, 0xffff) * b + lshift(tobit(rshift(a, 16) * b), 16))
end
M.mul32 = mul32

local function fmix(h)
  h = bxor(h, rshift(h, 16))
  h = mul32(h, tobit(0x85ebca6b))
  h = bxor(h, rshift(h, 13))
  h = mul32(h, tobit(0xc2b2ae35))
  return bxor(h, rshift(h, 16))
end
M.fmix = fmix

local function mix_block(h, k)
  k = mul32(k, C1)
  k = rol(k, 15)
  k = mul32(k, C2)
  h = bxor(h, k)
  h = rol(h, 13)
  return tobit(mul32(h, 5) + 0xe6546b64)
end

local int32_p, uint8_p = ffi.typeof("const int32_t *"), ffi.typeof("const uint8_t *")
local as_bits = ffi.new("union { double d; int32_t i[2]; }")

-- MurmurHash3_x86_32 of string s.
function M.string(s, seed)
  local n = #s
  local blocks = rshift(n, 2)
  local h = seed or SEED_STRING
  local words = ffi.cast(int32_p, s)
  for i = 0, blocks - 1 do h = mix_block(h, words[i]) end
  local rest = band(n, 3)
  if rest > 0 then
    local tail = ffi.cast(uint8_p, s) + blocks * 4
    local k = tail[0]
    if rest > 1 then k = k + tail[1] * 256 end
    if rest > 2 then k = k + tail[2] * 65536 end
    k = mul32(k, C1)
    k = rol(k, 15)
    k = mul32(k, C2)
    h = bxor(h, k)
  end
  return fmix(bxor(h, n))
end

function M.number(x)
  if x == 0 then x = 0 end -- -0 and 0 are one value
  as_bits.d = x
  local h = mix_block(SEED_NUMBER, as_bits.i[0])
  h = mix_block(h, as_bits.i[1])
  return fmix(bxor(h, 8))
end

-- h1, h2 of a value; nil and a message for a value the sketches do not take.
function M.hash(v)
  local h
  local t = type(v)
  if t == "string" then
    h = M.string(v)
  elseif t == "number" then
    h = M.number(v)
  elseif t == "boolean" then
    h = fmix(v and SEED_BOOLEAN or bxor(SEED_BOOLEAN, 1))
  else
    return nil, "a " .. t .. " (sketches take strings, numbers and booleans)"
  end
  return h, fmix(bxor(h, 0x5bd1e995))
end

return M

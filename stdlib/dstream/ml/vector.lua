-- dstream/ml/vector.lua: the vector arithmetic of dstream.ml, over FFI double arrays.
--
-- Records carry features as Lua tables, since records travel between workers encoded by
-- string.buffer, which does not take cdata: a dense vector is an array of numbers
-- { x1, ..., xn }, a sparse one { indices = { i1, ... } (1-based, increasing), values = { ... },
-- size = n }. Models and sums are FFI double arrays (0-based), made once per task, so the
-- loops over a batch's records read a record's numbers and write C doubles: no table per
-- feature value, no allocation per record. `off` lets one flat array hold k vectors of n
-- numbers (k-means' centres: vector c at offset c * n).
local ffi = require("ffi")

local M = {}

local doubles = ffi.typeof("double[?]")

function M.zeros(n) return doubles(n) end -- zero-filled

-- An FFI copy of a Lua array t[1..n] (into `out` when given).
function M.from_table(t, n, out)
  out = out or doubles(n)
  for j = 1, n do out[j - 1] = t[j] end
  return out
end

-- The Lua array of a[off .. off + n - 1].
function M.to_table(a, n, off)
  off = off or 0
  local t = {}
  for j = 1, n do t[j] = a[off + j - 1] end
  return t
end

-- The dimension of a record's features, or nil and what is wrong with them.
function M.size(x)
  if type(x) ~= "table" then return nil, "features must be a table (an array of numbers or"
    .. " { indices, values, size }), got " .. type(x) end
  local idx = x.indices
  if idx == nil then
    for j = 1, #x do
      if type(x[j]) ~= "number" then return nil, "feature " .. j .. " is a " .. type(x[j]) .. ", not a number" end
    end
    return #x
  end
  local vals, size = x.values, x.size
  if type(idx) ~= "table" or type(vals) ~= "table" or type(size) ~= "number" or #idx ~= #vals then
    return nil, "a sparse vector is { indices = {...}, values = {...}, size = n } with as many values as indices"
  end
  local last = 0
  for j = 1, #idx do
    local i = idx[j]
    if type(i) ~= "number" or i <= last or i > size or i ~= math.floor(i) then
      return nil, "sparse indices must be increasing whole numbers in 1.." .. size .. ", got " .. tostring(i)
    end
    if type(vals[j]) ~= "number" then return nil, "sparse value " .. j .. " is a " .. type(vals[j]) end
    last = i
  end
  return size
end

-- The dimension of features x, cheaply, for the loops over records (nil when x is not a
-- table): a value that is not a number then fails on the arithmetic, naming its record.
function M.dim(x)
  if type(x) ~= "table" then return nil end
  local idx = x.indices
  if idx == nil then return #x end
  return x.size
end

-- sum_j a[off + j - 1] * x[j]
function M.dot(a, off, x)
  local idx = x.indices
  local s = 0
  if idx == nil then
    for j = 1, #x do s = s + a[off + j - 1] * x[j] end
  else
    local vals = x.values
    for j = 1, #idx do s = s + a[off + idx[j] - 1] * vals[j] end
  end
  return s
end

-- a[off + j - 1] += alpha * x[j]
function M.axpy(alpha, x, a, off)
  local idx = x.indices
  if idx == nil then
    for j = 1, #x do a[off + j - 1] = a[off + j - 1] + alpha * x[j] end
  else
    local vals = x.values
    for j = 1, #idx do
      local p = off + idx[j] - 1
      a[p] = a[p] + alpha * vals[j]
    end
  end
end

-- The squared distance between a[off .. off + n - 1] and x (of dimension n).
function M.sqdist(a, off, x, n)
  local idx = x.indices
  local s = 0
  if idx == nil then
    for j = 1, n do
      local d = a[off + j - 1] - x[j]
      s = s + d * d
    end
  else
    -- |a|^2 over every coordinate, corrected at x's non-zeros: (a - v)^2 - a^2.
    for j = 0, n - 1 do
      local c = a[off + j]
      s = s + c * c
    end
    local vals = x.values
    for j = 1, #idx do
      local c, v = a[off + idx[j] - 1], vals[j]
      s = s + v * (v - 2 * c)
    end
  end
  return s
end

-- A dense Lua array of x's values.
function M.to_dense(x, n)
  local idx = x.indices
  if idx == nil then
    local t = {}
    for j = 1, n do t[j] = x[j] end
    return t
  end
  local t = {}
  for j = 1, n do t[j] = 0 end
  for j = 1, #idx do t[idx[j]] = x.values[j] end
  return t
end

-- Spark's text forms (Vectors.parse, LabeledPoint.parse), for jobs reading MLlib's files:
-- "[1.0,2.0]" is a dense vector, "(3,[0,2],[1.0,3.0])" a sparse one (Spark's indices are
-- 0-based; the vector's are 1-based). Returns the vector, or nil and what is wrong.
local function numbers(s)
  local out, n = {}, 0
  for item in s:gmatch("[^,%s]+") do
    local v = tonumber(item)
    if not v then return nil, "'" .. item .. "' is not a number" end
    n = n + 1
    out[n] = v
  end
  return out
end

function M.parse(s)
  if type(s) ~= "string" then return nil, "expected a string, got " .. type(s) end
  local dense = s:match("^%s*%[(.-)%]%s*$")
  if dense then return numbers(dense) end
  local size, idx, vals = s:match("^%s*%(%s*([^,]+),%s*%[(.-)%]%s*,%s*%[(.-)%]%s*%)%s*$")
  if not size then return nil, "'" .. s .. "' is neither [x1,x2,...] nor (size,[indices],[values])" end
  local n = tonumber(size)
  local indices, err = numbers(idx)
  if not indices then return nil, err end
  local values, err2 = numbers(vals)
  if not values then return nil, err2 end
  if not n or n < 0 or n ~= math.floor(n) then return nil, "the size '" .. size .. "' is not a whole number" end
  for j = 1, #indices do
    local i = indices[j]
    if i < 0 or i >= n or i ~= math.floor(i) or (j > 1 and i + 1 <= indices[j - 1]) then
      return nil, "index " .. i .. " is not a whole number increasing from 0 and below the size " .. n
    end
    indices[j] = i + 1
  end
  local x = { indices = indices, values = values, size = n }
  local ok, why = M.size(x)
  if not ok then return nil, why end
  return x
end

-- "(label,[x1,...])" or "(label,(size,[indices],[values]))": label, features; or nil, why.
function M.parse_labeled(s)
  if type(s) ~= "string" then return nil, "expected a string, got " .. type(s) end
  local label, rest = s:match("^%s*%(%s*([^,]+),(.*)%)%s*$")
  local y = tonumber(label)
  if not y then return nil, "'" .. s .. "' is not (label,features)" end
  local x, why = M.parse(rest)
  if not x then return nil, why end
  return y, x
end

return M

-- dstream/sql/runtime.lua: the helpers that generated SQL code calls on the workers: SQL's
-- three-valued comparisons (NULL is nil), arithmetic that names the expression when a value
-- is not a number, the scalar functions, CAST, LIKE patterns, sort keys and the aggregate
-- merges. Generated closures reach this module by name (ship.lua sends a loaded module as its
-- name), so it must load without lpeg or anything the driver alone has.
local type, tostring, tonumber, floor, ceil = type, tostring, tonumber, math.floor, math.ceil
local fmod, error, format = math.fmod, error, string.format

local M = {}

-- A NULL group key: keyed operators refuse nil keys, so NULL travels as this string.
M.NULL_KEY = "\0NULL"

-- Truth of a value in a WHERE, AND, OR, NOT: nil stays unknown; numbers are true unless 0
-- (as SQLite); a string is read as a number.
function M.truth(v)
  if v == nil or v == true or v == false then return v end
  if type(v) == "number" then return v ~= 0 end
  local n = tonumber(v)
  return n ~= nil and n ~= 0
end

-- SQL order between two non-NULL values: numbers before strings, booleans as 0/1.
local function rank(v)
  local t = type(v)
  if t == "number" then return 1, v end
  if t == "boolean" then return 1, v and 1 or 0 end
  return 2, v
end
local function less(a, b)
  local ta, tb = type(a), type(b)
  if ta == tb and ta ~= "boolean" then return a < b end
  local ra, va = rank(a)
  local rb, vb = rank(b)
  if ra ~= rb then return ra < rb end
  return va < vb
end
local function same(a, b)
  if a == b then return true end
  if type(a) == "boolean" or type(b) == "boolean" then
    local _, va = rank(a)
    local _, vb = rank(b)
    return va == vb
  end
  return false
end
M.less = less
function M.eq(a, b) if a == nil or b == nil then return nil end return same(a, b) end
function M.ne(a, b) if a == nil or b == nil then return nil end return not same(a, b) end
function M.lt(a, b) if a == nil or b == nil then return nil end return less(a, b) end
function M.le(a, b) if a == nil or b == nil then return nil end return not less(b, a) end
function M.gt(a, b) if a == nil or b == nil then return nil end return less(b, a) end
function M.ge(a, b) if a == nil or b == nil then return nil end return not less(a, b) end

-- A value the query cannot use is an error in the records: the task fails once (a retry
-- would meet the same record), naming the expression; the failure names the record.
local function records_error(msg)
  local ok, task = pcall(require, "dstream.worker.task")
  if ok and type(task) == "table" and task.records_error then task.records_error(msg) end
  error(msg, 0)
end

local function number(v, what)
  local n = tonumber(v)
  if n == nil then
    records_error(format("SQL type error in %s: %s is not a number", what, format("%q", tostring(v))))
  end
  return n
end
M.number = number

-- Arithmetic on values that are not both numbers (a numeric string is read as a number).
function M.arith(op, a, b, what)
  a, b = number(a, what), number(b, what)
  if op == "+" then return a + b elseif op == "-" then return a - b else return a * b end
end

local function whole(x) return x == floor(x) and x > -2^53 and x < 2^53 end
-- Division as SQLite: by zero is NULL, two whole numbers divide to a whole number (truncated).
function M.div(a, b, what)
  a, b = number(a, what), number(b, what)
  if b == 0 then return nil end
  local q = a / b
  if whole(a) and whole(b) then return q < 0 and ceil(q) or floor(q) end
  return q
end
function M.mod(a, b, what)
  a, b = number(a, what), number(b, what)
  if b == 0 then return nil end
  if whole(a) and whole(b) then return fmod(a, b) end
  return fmod(a, b)
end

-- Text of a value as SQL shows it: whole numbers without a decimal point.
local function text(v)
  if type(v) == "number" then
    if whole(v) then return format("%d", v) end
    return format("%.15g", v)
  end
  return tostring(v)
end
M.text = text
function M.concat(a, b)
  if a == nil or b == nil then return nil end
  return text(a) .. text(b)
end

function M.lower(s) if s == nil then return nil end return text(s):lower() end
function M.upper(s) if s == nil then return nil end return text(s):upper() end
-- Characters of UTF-8 text: bytes that do not continue a character (a loop the JIT compiles,
-- where gsub would end the trace).
local byte = string.byte
function M.length(s)
  if s == nil then return nil end
  s = text(s)
  local n = #s
  for i = 1, #s do
    local c = byte(s, i)
    if c >= 128 and c < 192 then n = n - 1 end
  end
  return n
end
function M.trim(s) if s == nil then return nil end return (text(s):match("^%s*(.-)%s*$")) end
function M.substr(s, start, len)
  if s == nil or start == nil then return nil end
  s = text(s)
  start = number(start, "substr")
  if start < 0 then start = #s + start + 1 elseif start == 0 then start = 1; if len then len = len - 1 end end
  if len == nil then return s:sub(start) end
  len = number(len, "substr")
  if len <= 0 then return "" end
  return s:sub(start, start + len - 1)
end
function M.abs(x) if x == nil then return nil end return math.abs(number(x, "abs")) end
function M.floor(x) if x == nil then return nil end return floor(number(x, "floor")) end
function M.ceil(x) if x == nil then return nil end return ceil(number(x, "ceil")) end
-- round(x [, digits]): halves away from zero, as SQLite.
function M.round(x, d)
  if x == nil then return nil end
  x = number(x, "round")
  local m = 10 ^ (d and number(d, "round") or 0)
  local y = x * m
  y = y < 0 and -floor(-y + 0.5) or floor(y + 0.5)
  return y / m
end

function M.cast(v, to)
  if v == nil then return nil end
  if to == "text" then return text(v) end
  if to == "boolean" then return M.truth(v) end
  local n = type(v) == "boolean" and (v and 1 or 0) or tonumber(v)
  if n == nil then
    if to == "integer" then n = tonumber(tostring(v):match("^%s*[-+]?%d+")) or 0 else n = tonumber(tostring(v):match("^%s*[-+]?%d*%.?%d+")) or 0 end
  end
  if to == "integer" then return n < 0 and ceil(n) or floor(n) end
  return n
end

-- LIKE 'a%_b' as an anchored Lua pattern: % is any text, _ one character (a byte).
function M.like_pattern(p)
  local out = { "^" }
  for i = 1, #p do
    local ch = p:sub(i, i)
    if ch == "%" then out[#out + 1] = ".-"
    elseif ch == "_" then out[#out + 1] = "."
    elseif ch:match("%W") then out[#out + 1] = "%" .. ch
    else out[#out + 1] = ch end
  end
  out[#out + 1] = "$"
  return table.concat(out)
end
local find = string.find
local patterns = setmetatable({}, { __mode = "k" })
function M.like(s, p)
  if s == nil or p == nil then return nil end
  p = text(p)
  local lp = patterns[p]
  if not lp then lp = M.like_pattern(p); patterns[p] = lp end
  return find(text(s), lp) ~= nil
end

-- Sort keys: an ORDER BY item adds a NULL flag (NULLs first ascending, last descending, as
-- SQLite) and, when not NULL, its value; a descending value is negated (numbers) or has its
-- bytes complemented with a terminator that sorts after every byte (strings).
local complement = {}
for i = 0, 255 do complement[string.char(i)] = string.char(255 - i) end
function M.desc(v)
  if type(v) == "number" then return -v end
  if type(v) == "boolean" then return v and -1 or 0 end
  return (tostring(v):gsub(".", complement)) .. "\255"
end
function M.asc(v)
  if type(v) == "boolean" then return v and 1 or 0 end
  return v
end
-- The element before a value in an ORDER BY key: a column holding both numbers and strings
-- sorts as SQLite sorts it, numbers (booleans as 0/1) before strings (after, descending),
-- instead of failing the sort ("a string and a number, which have no order").
function M.rank_asc(v) return type(v) == "string" and 1 or 0 end
function M.rank_desc(v) return type(v) == "string" and 0 or 1 end

-- Aggregate states: a NULL state is NULL_KEY, not nil (a pair whose value is nil would be a
-- single value). Merges skip NULLs; a group of NULLs sums to NULL.
local NULL = M.NULL_KEY
function M.state(v)
  if v == nil then return NULL end
  return v
end
function M.value(s)
  if s == NULL then return nil end
  return s
end
function M.sum(a, b)
  if a == NULL or a == nil then return b end
  if b == NULL or b == nil then return a end
  return a + b
end
function M.min(a, b)
  if a == NULL or a == nil then return b end
  if b == NULL or b == nil then return a end
  return less(b, a) and b or a
end
function M.max(a, b)
  if a == NULL or a == nil then return b end
  if b == NULL or b == nil then return a end
  return less(a, b) and b or a
end
-- COUNT(DISTINCT x): the set of values seen, merged by union.
function M.set_of(v)
  if v == nil or v ~= v then return {} end -- NULL and NaN are not counted
  return { [v] = true }
end
function M.union(a, b)
  for k in pairs(b) do a[k] = true end
  return a
end
function M.set_size(s)
  local n = 0
  for _ in pairs(s) do n = n + 1 end
  return n
end
function M.number_sum(v, what)
  if v == nil then return NULL end
  if type(v) == "number" then return v end
  return number(v, what)
end

return M

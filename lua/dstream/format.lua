-- dstream/format.lua: how records look as text: in output files, in print(), in messages.
local cjson_ok, cjson = pcall(require, "cjson.safe")
if cjson_ok then
  cjson = cjson.new()
  cjson.encode_sparse_array(true)
  cjson.encode_invalid_numbers(true)
end

local type, tostring, floor, format = type, tostring, math.floor, string.format

local M = {}

local function number_text(v)
  if v == floor(v) and v > -2^53 and v < 2^53 then return format("%d", v) end
  return tostring(v)
end

local function value_text(v)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then return number_text(v) end
  if tv == "table" and cjson_ok then
    local s = cjson.encode(v)
    if s then return s end
  end
  return tostring(v)
end

M.value = value_text

-- The line a record becomes in save_as_text_files: a pair as k<TAB>v, a table as JSON.
function M.text(a, b)
  if b ~= nil then return value_text(a) .. "\t" .. value_text(b) end
  return value_text(a)
end

-- How print() shows a record: a pair as (k,v), as Spark's Scala tuples print (so a job's output
-- diffs against Spark's), a table as JSON.
function M.show(a, b)
  if b ~= nil then return "(" .. value_text(a) .. "," .. value_text(b) .. ")" end
  return value_text(a)
end

-- A short, quoted form of a record for error messages.
function M.brief(a, b, max)
  max = max or 120
  local function one(v)
    local s = value_text(v)
    if #s > max then s = s:sub(1, max) .. "...(" .. #s .. " bytes)" end
    if type(v) == "string" then s = format("%q", s):gsub("\\\n", "\\n") end
    return s
  end
  if b ~= nil then return "(" .. one(a) .. ", " .. one(b) .. ")" end
  return one(a)
end

return M

-- dstream/monitor/json.lua: the JSON of the HTTP API: lua-cjson for strings and numbers, keys
-- sorted, arrays marked (so an empty one stays []), whole numbers without an exponent.
local cjson = require("cjson").new() -- a private instance: its settings are ours only

local M = {}

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

return M

-- dstream/util.lua: argument checks and parsing shared by the driver-side modules.
local M = {}

-- Where dstream's own modules are: "@/path/to/lua/dstream/" (this file's directory), and the
-- stdlib's (stdlib/dstream/ in a build tree; the same directory once installed).
local OWN = debug.getinfo(1, "S").source:match("^(@.*/)util%.lua$") or "@dstream/"
local STDLIB = (package.searchpath("dstream.args", package.path) or ""):match("^(.*/)args%.lua$")
STDLIB = STDLIB and "@" .. STDLIB or OWN

-- Whether a chunk's source (debug.getinfo's `source`) is one of dstream's or the stdlib's files.
function M.is_own(src)
  return src:sub(1, #OWN) == OWN or src:sub(1, #STDLIB) == STDLIB
end

-- Raises msg at the user's line: the innermost caller outside dstream's modules (C functions
-- such as pcall and tail-call frames skipped). The convention of the public API: whichever
-- internal function finds a bad argument, the error names the line of the job that passed it.
-- Internal helpers that meet a runtime failure return nil, err instead.
function M.raise(msg)
  local level = 2 -- error()'s level k is debug.getinfo(k): 1 is this function
  while true do
    local info = debug.getinfo(level, "S")
    if not info then break end
    local src = info.source
    if src ~= "=[C]" and src ~= "=(tail call)" and not M.is_own(src) then break end
    level = level + 1
  end
  error(msg, level)
end

local units_ms = { ms = 1, s = 1000, sec = 1000, m = 60000, min = 60000, h = 3600000 }

-- A duration in milliseconds from a number of seconds or a string such as "250ms", "2m".
-- Returns nil, message for a bad value. zero_ok: 0 (or "0s") is a duration too.
function M.parse_duration(v, zero_ok)
  if type(v) == "number" then
    if (v > 0 or zero_ok and v == 0) and v < math.huge then return v * 1000 end
    return nil, "a duration must be a positive number of seconds" .. (zero_ok and " (or 0)" or "")
      .. ", got " .. tostring(v)
  end
  if type(v) == "string" then
    local num, unit = v:match("^%s*([%d%.]+)%s*(%a+)%s*$")
    local n = tonumber(num)
    local mult = unit and units_ms[unit:lower()]
    if n and mult and (n > 0 or zero_ok and n == 0) then return n * mult end
  end
  return nil, "a duration is a number of seconds or a string like \"250ms\", \"1s\", \"2m\", \"1h\"; got " .. string.format("%q", tostring(v))
end

local units_bytes = { b = 1, k = 1024, kb = 1024, m = 1024 ^ 2, mb = 1024 ^ 2, g = 1024 ^ 3, gb = 1024 ^ 3 }

-- A size in bytes from a number or a string such as "64m", "2g", "512MB".
function M.parse_size(v)
  if type(v) == "number" and v > 0 then return math.floor(v) end
  if type(v) == "string" then
    local num, unit = v:match("^%s*([%d%.]+)%s*(%a*)%s*$")
    local n = tonumber(num)
    local mult = units_bytes[(unit or ""):lower() == "" and "b" or unit:lower()]
    if n and mult and n > 0 then return math.floor(n * mult) end
  end
  return nil, "a size is a number of bytes or a string like \"512m\" or \"2g\"; got " .. string.format("%q", tostring(v))
end

function M.check_function(v, who)
  if type(v) ~= "function" then
    M.raise(who .. ": expected a function, got " .. (v == nil and "nothing" or type(v)))
  end
end

function M.check_count(v, who, what, optional)
  if v == nil and optional then return end
  if type(v) ~= "number" or v < 1 or v ~= math.floor(v) then
    M.raise(who .. ": " .. what .. " must be a whole number of at least 1, got " .. tostring(v))
  end
end

-- A table of options whose names must all be in `names` (a list): one that is not (a typo,
-- which would otherwise leave its default in place unnoticed) raises at the user's line.
function M.check_names(opts, names, who)
  local known = {}
  for _, n in ipairs(names) do known[n] = true end
  for k in pairs(opts) do
    if not known[k] then
      M.raise(string.format("%s: unknown option %s (it takes %s)", who,
        type(k) == "string" and "'" .. k .. "'" or tostring(k), table.concat(names, ", ")))
    end
  end
end

-- An operator's trailing argument: nothing, a number of partitions (the positional form), or a
-- table of options: `partitions` and the names in `known`. Returns the options ({} for none).
-- A name not known or a bad number of partitions raises at the user's line.
function M.options(v, who, known)
  if v == nil then return {} end
  if type(v) == "number" then
    v = { partitions = v }
  elseif type(v) ~= "table" then
    M.raise(who .. ": expected a number of partitions or a table of options, got " .. type(v))
  end
  for k in pairs(v) do
    if k ~= "partitions" and not (known and known[k]) then
      local names = { "partitions" }
      for name in pairs(known or {}) do names[#names + 1] = name end
      table.sort(names)
      M.raise(string.format("%s: unknown option %s (it takes %s)", who,
        type(k) == "string" and "'" .. k .. "'" or tostring(k), table.concat(names, ", ")))
    end
  end
  M.check_count(v.partitions, who, "the number of partitions", true)
  return v
end

function M.check_table(v, who, what)
  if type(v) ~= "table" then
    M.raise(who .. ": " .. what .. " must be a table, got " .. type(v))
  end
end

local ffi = require("ffi")
pcall(ffi.cdef, [[
int mkdir(const char *path, unsigned int mode);
char *strerror(int errnum);
]])

-- Creates a directory and its parents (like mkdir -p). Returns true or nil, message.
function M.mkdir_p(path)
  local prefix = path:sub(1, 1) == "/" and "/" or ""
  for part in path:gmatch("[^/]+") do
    prefix = prefix .. part
    if ffi.C.mkdir(prefix, 511) ~= 0 then
      local errno = ffi.errno()
      if errno ~= 17 then -- EEXIST
        return nil, "cannot create directory " .. prefix .. ": " .. ffi.string(ffi.C.strerror(errno))
      end
    end
    prefix = prefix .. "/"
  end
  return true
end

return M

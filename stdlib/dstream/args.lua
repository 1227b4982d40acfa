-- dstream/args.lua: argument checks for the stdlib's public functions.
--
-- A bad argument is an error at the user's line, as dstream's own API does (dstream.util is
-- an engine module, which the stdlib does not load): `raise` names the innermost caller
-- outside stdlib/dstream/ and lua/dstream/, so a check deep inside a module still points at
-- the line of the job that passed the value.
local M = {}

-- "@/path/to/stdlib/dstream/" (this file's directory) and dstream's own "@.../lua/dstream/".
local STDLIB = debug.getinfo(1, "S").source:match("^(@.*/)args%.lua$") or "@stdlib/dstream/"

local function own(src)
  return src:sub(1, #STDLIB) == STDLIB or src:find("/lua/dstream/", 1, true) ~= nil
end

function M.raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then break end
    local src = info.source
    if src ~= "=[C]" and src ~= "=(tail call)" and not own(src) then break end
    level = level + 1
  end
  error(msg, level)
end

-- opts must be a table (or nil) whose keys are all in `known` (a set); returns opts or {}.
function M.options(opts, who, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then M.raise(who .. ": expected a table of options, got " .. type(opts)) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      M.raise(string.format("%s: unknown option %s (it takes %s)", who, tostring(k), table.concat(names, ", ")))
    end
  end
  return opts
end

-- A finite number (within [lo, hi] when given, lo_open excluding lo itself).
function M.number(v, who, what, lo, hi, lo_open)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge
    or (lo and (v < lo or (lo_open and v == lo))) or (hi and v > hi) then
    local range = ""
    if lo and hi then range = string.format(" in %s%g, %g]", lo_open and "(" or "[", lo, hi)
    elseif lo then range = lo_open and string.format(" above %g", lo) or string.format(" of at least %g", lo) end
    M.raise(string.format("%s: %s must be a number%s, got %s", who, what, range, tostring(v)))
  end
  return v
end

function M.count(v, who, what)
  if type(v) ~= "number" or v < 1 or v ~= math.floor(v) or v == math.huge then
    M.raise(string.format("%s: %s must be a whole number of at least 1, got %s", who, what, tostring(v)))
  end
  return v
end

return M

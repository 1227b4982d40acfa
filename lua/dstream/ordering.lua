-- dstream/ordering.lua: how sort keys compare, the same on the driver (sampled bounds, merging
-- top/take_ordered) and on the workers (range partitioning, sorting, bounded heaps).
-- Keys are numbers, strings or arrays of those (compared element by element, a shorter array
-- first when it is a prefix: a composite key such as { -count, word }); all keys of one sort
-- are of one kind. Lua's `<` raises "attempt to compare" for a mix; these checks name the
-- operator instead. Both Lua states.
local type, error, tostring = type, error, tostring

local M = {}

-- Raises the error of two keys that have no order. The workers set it to fail the task without
-- a retry (dstream.worker.task.records_error): the same records would meet the same keys.
function M.unordered(msg) error(msg, 0) end

local function bad_kind(who, k, kind)
  if k ~= k then error(who .. ": a sort key is NaN, which has no order", 0) end
  local tk = type(k)
  if tk ~= "number" and tk ~= "string" and tk ~= "table" then
    error(who .. ": sort keys must be numbers, strings or arrays of those, got a " .. tk .. " key", 0)
  end
  error(who .. ": sort keys mix " .. tostring(kind) .. "s and " .. tk .. "s, which have no order;"
    .. " make the key function return one type", 0)
end

-- Checks key k against `kind` (the type of the keys seen so far, nil for none) and returns
-- the kind. A NaN number has no order (every comparison is false) and is refused.
function M.check(k, kind, who)
  local tk = type(k)
  if tk == kind and k == k then return kind end
  if kind == nil and k == k and (tk == "number" or tk == "string" or tk == "table") then return tk end
  bad_kind(who, k, kind)
end

-- less(x, y) for two keys of the kind checked by M.check; arrays element by element.
function M.less(x, y, who)
  if type(x) ~= "table" then return x < y end
  local n = #x
  if #y > n then n = #y end
  for i = 1, n do
    local a, b = x[i], y[i]
    if a == nil then return true end  -- x is a prefix of y
    if b == nil then return false end
    if a ~= b then
      local ta = type(a)
      if ta ~= type(b) or (ta ~= "number" and ta ~= "string") or a ~= a or b ~= b then
        M.unordered((who or "sort") .. ": elements " .. i .. " of two array sort keys are a " .. ta
          .. " and a " .. type(b) .. ", which have no order")
      end
      return a < b
    end
  end
  return false
end

return M

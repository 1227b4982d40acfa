-- dstream/sql/records.lua: how generated code reads a table's columns from a record. A record
-- may be a table with the column names as fields, an array in column order, a pair (two
-- columns) or a scalar (one column): the prologue extract() writes accepts them all, and sets
-- one local per column the query uses (t<table>_<column>).
local M = {}

local LUA_KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat return then true until while")
    :gmatch("%a+") do
  LUA_KEYWORDS[w] = true
end
-- A Lua field access of a column: .name, or ["name"] when name is not a Lua identifier.
local function ident_ok(name)
  if name:match("^[%a_][%w_]*$") and not LUA_KEYWORDS[name] then return "." .. name end
  return ("[%q]"):format(name)
end

function M.var(ti, ci) return ("t%d_%d"):format(ti, ci) end

-- Lines that set the locals of table t's used columns from a record: a (and b for a pair),
-- a table with the column names as fields, an array in column order, or a scalar.
function M.extract(t, a, b)
  local cols, used = t.def.columns, {}
  for ci in pairs(t.used) do used[#used + 1] = ci end
  table.sort(used)
  if #used == 0 then return {} end
  local names, named, arr = {}, {}, {}
  for i, ci in ipairs(used) do
    names[i] = M.var(t.index, ci)
    named[i] = a .. ident_ok(cols[ci])
    arr[i] = ("%s[%d]"):format(a, ci)
  end
  local lhs = table.concat(names, ", ")
  local lines = { ("local %s"):format(lhs) }
  local cond = "if"
  if b and #cols == 2 then
    local pair = {}
    for i, ci in ipairs(used) do pair[i] = ci == 1 and a or b end
    lines[#lines + 1] = ("if %s ~= nil then %s = %s"):format(b, lhs, table.concat(pair, ", "))
    cond = "elseif"
  end
  lines[#lines + 1] = ("%s type(%s) ~= \"table\" then %s = %s"):format(cond, a, names[1],
    used[1] == 1 and a or "nil")
  local any_named = {}
  for i, c in ipairs(cols) do any_named[i] = ("%s%s ~= nil"):format(a, ident_ok(c)) end
  lines[#lines + 1] = ("elseif %s then %s = %s"):format(table.concat(any_named, " or "), lhs, table.concat(named, ", "))
  lines[#lines + 1] = ("else %s = %s end"):format(lhs, table.concat(arr, ", "))
  return lines
end

return M

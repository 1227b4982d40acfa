-- SQLite as the oracle of the SQL specs: the same rows loaded into sqlite3 (the CLI, a program
-- nobody here wrote), the same queries run there, and the answers compared with dstream's.
local cjson = require("cjson")

local M = {}

local function sql_value(v)
  if v == nil then return "NULL" end
  if type(v) == "number" then return string.format("%.17g", v) end
  return "'" .. tostring(v):gsub("'", "''") .. "'"
end

-- Statements that make a table `name` with `columns` holding `rows` (arrays, nil = NULL).
function M.table_sql(name, columns, rows)
  local out = { ("CREATE TABLE %s(%s);"):format(name, table.concat(columns, ", ")) }
  for _, r in ipairs(rows) do
    local vals = {}
    for i = 1, #columns do vals[i] = sql_value(r[i]) end
    out[#out + 1] = ("INSERT INTO %s VALUES(%s);"):format(name, table.concat(vals, ", "))
  end
  return table.concat(out, "\n")
end

-- Runs every query of `queries` after `setup`; returns one array of rows (tables keyed by
-- column name, cjson.null for NULL) per query.
function M.run(setup, queries)
  local script = os.tmpname()
  local fh = assert(io.open(script, "w"))
  fh:write("PRAGMA case_sensitive_like = ON;\n", setup, "\n.mode json\n")
  for _, q in ipairs(queries) do fh:write(".print ###\n", q, ";\n") end
  fh:close()
  local p = assert(io.popen("sqlite3 -bail :memory: < " .. script .. " 2>&1"))
  local text = p:read("*a")
  p:close()
  os.remove(script)
  local results = {}
  for chunk in (text .. "###"):gmatch("(.-)###") do results[#results + 1] = chunk end
  table.remove(results, 1) -- before the first marker
  assert(#results == #queries, "sqlite3 answered " .. #results .. " of " .. #queries .. " queries:\n" .. text)
  for i, chunk in ipairs(results) do
    chunk = chunk:gsub("^%s+", ""):gsub("%s+$", "")
    results[i] = chunk == "" and {} or cjson.decode(chunk)
  end
  return results
end

-- A row as comparable text, in column order: numbers rounded, booleans as SQLite's 1/0.
local function cell(v)
  if v == nil or v == cjson.null then return "NULL" end
  if v == true then return "1" elseif v == false then return "0" end
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", v) end
    return string.format("%.9g", v)
  end
  return "'" .. tostring(v) .. "'"
end
function M.row_text(row, columns)
  local out = {}
  for i, c in ipairs(columns) do out[i] = cell(row[c]) end
  return "(" .. table.concat(out, ", ") .. ")"
end

-- Both answers as lists of row texts; sorted unless the order matters.
function M.texts(rows, columns, ordered)
  local out = {}
  for i, r in ipairs(rows) do out[i] = M.row_text(r, columns) end
  if not ordered then table.sort(out) end
  return out
end

return M

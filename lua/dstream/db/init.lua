-- dstream/db/init.lua: what users require for databases outside a job's batches: a statement
-- or a query run at once on the driver (making tables before a job, reading one after it).
-- Jobs write with stream:to_sql and read with ctx:read_sql (dstream.sinks.database).
--
--   local db = require("dstream.db")
--   db.exec(url, "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, n BIGINT)")
--   for _, row in ipairs(db.query(url, "SELECT k, n FROM t ORDER BY k")) do print(row.k, row.n) end
--
-- Both use the driver's own connection to the database (dstream.db.connections), kept open.
local connections = require("dstream.db.connections")
local util = require("dstream.util")

local M = {}

local function conn_for(url, who)
  local u, err = connections.parse(url)
  if not u then util.raise(who .. ": " .. err) end
  local c, cerr = connections.get(u)
  if not c then util.raise(who .. ": " .. u.name .. ": " .. tostring(cerr)) end
  return c, u
end

-- Runs one or more statements (no parameters). Raises with the database's message.
function M.exec(url, sql)
  local c, u = conn_for(url, "db.exec")
  local ok, err, class = c:exec(sql)
  if not ok then
    if class == "connection" then connections.drop(u) end
    util.raise("db.exec: " .. u.name .. ": " .. tostring(err))
  end
  return true
end

-- The rows of a query as tables by column name (NULL is nil); params fill $1.. (PostgreSQL)
-- or ? (SQLite). A second result: the column names in order.
function M.query(url, sql, params)
  local c, u = conn_for(url, "db.query")
  local res, err, class = c:query(sql, params)
  if not res then
    if class == "connection" then connections.drop(u) end
    util.raise("db.query: " .. u.name .. ": " .. tostring(err))
  end
  local rows = {}
  for i, arr in ipairs(res.rows) do
    local row = {}
    for j, name in ipairs(res.columns) do row[name] = arr[j] end
    rows[i] = row
  end
  return rows, res.columns
end

return M

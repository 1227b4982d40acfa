-- dstream/db/statements.lua: the SQL dstream writes, for both drivers: a sink's INSERT/COPY
-- text (made once per task spec) and the exactly-once markers of `dstream_commits`. Worker
-- states (and the driver's checks).
--
-- Markers: one row per (job, table, batch time, partition) whose rows are committed, written in
-- the same transaction as the rows. A task finds its marker first and, if it is there, writes
-- nothing: the batch ran before a crash (or an attempt's commit answer was lost) and its rows
-- are in the table already.
local url_mod = require("dstream.db.url")

local M = {}

local q = url_mod.quote_ident

-- w: the statements of a sink: table, columns, mode, key (arrays of names), for `driver`.
function M.writer(spec, driver)
  local cols = {}
  for i, c in ipairs(spec.columns) do cols[i] = q(c) end
  local target = q(spec.table) .. " (" .. table.concat(cols, ", ") .. ")"
  local w = { ncols = #cols, mode = spec.mode, table = spec.table, target = q(spec.table),
    column_list = table.concat(cols, ", ") }
  w.copy_sql = "COPY " .. target .. " FROM STDIN"
  w.insert_prefix = "INSERT INTO " .. target .. " VALUES "
  w.insert_suffix = ""
  if spec.mode == "upsert" then
    local keys, is_key, sets = {}, {}, {}
    for i, k in ipairs(spec.key) do keys[i], is_key[k] = q(k), true end
    for _, c in ipairs(spec.columns) do
      if not is_key[c] then sets[#sets + 1] = q(c) .. " = " .. driver.excluded .. "." .. q(c) end
    end
    w.insert_suffix = " ON CONFLICT (" .. table.concat(keys, ", ") .. ") "
      .. (#sets > 0 and "DO UPDATE SET " .. table.concat(sets, ", ") or "DO NOTHING")
  end
  local marks = {}
  for i = 1, #cols do marks[i] = driver.placeholder(i) end
  w.sql = w.insert_prefix .. "(" .. table.concat(marks, ", ") .. ")" .. w.insert_suffix
  return w
end

local function p(driver, n)
  local t = {}
  for i = 1, n do t[i] = driver.placeholder(i) end
  return t
end

-- The markers' table, made if missing (once per connection).
function M.ensure_markers(conn, driver)
  if conn.markers_ready then return true end
  local ok, err, class = conn:exec("CREATE TABLE IF NOT EXISTS dstream_commits ("
    .. "job TEXT NOT NULL, tbl TEXT NOT NULL, batch " .. driver.bigint .. " NOT NULL, "
    .. "part INTEGER NOT NULL, rows_written " .. driver.bigint .. " NOT NULL, "
    .. "committed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (job, tbl, batch, part))")
  if not ok and class ~= "connection" then
    -- Two workers creating it at once: PostgreSQL may refuse the second (a unique violation in
    -- its catalog). It exists then.
    local again = conn:query("SELECT 1 FROM dstream_commits WHERE 1 = 0")
    if not again then return nil, err, class end
  elseif not ok then
    return nil, err, class
  end
  conn.markers_ready = true
  return true
end

-- The rows a committed (job, table, batch, partition) wrote, or false when it has no marker.
function M.committed(conn, driver, job, tbl, batch, part)
  local ph = p(driver, 4)
  local res, err, class = conn:query("SELECT rows_written FROM dstream_commits WHERE job = " .. ph[1]
    .. " AND tbl = " .. ph[2] .. " AND batch = " .. ph[3] .. " AND part = " .. ph[4], { job, tbl, batch, part }, 4)
  if not res then return nil, err, class end
  if #res.rows == 0 then return false end
  return res.rows[1][1] or 0
end

function M.mark(conn, driver, job, tbl, batch, part, rows)
  local ph = p(driver, 5)
  local res, err, class = conn:query("INSERT INTO dstream_commits (job, tbl, batch, part, rows_written) VALUES ("
    .. table.concat(ph, ", ") .. ")", { job, tbl, batch, part, rows }, 5)
  if not res then return nil, err, class end
  return true
end

-- Markers of batches before `before` (ms): no restart re-runs them any more.
function M.prune(conn, driver, job, tbl, part, before)
  local ph = p(driver, 4)
  local res, err, class = conn:query("DELETE FROM dstream_commits WHERE job = " .. ph[1] .. " AND tbl = "
    .. ph[2] .. " AND part = " .. ph[3] .. " AND batch < " .. ph[4], { job, tbl, part, before }, 4)
  if not res then return nil, err, class end
  return true
end

return M

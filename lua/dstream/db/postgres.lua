-- dstream/db/postgres.lua: PostgreSQL connections through libpq (Debian's libpq5, the official
-- client library), bound with LuaJIT's FFI. Both Lua states: workers write
-- (dstream.worker.ops.database), read_sql reads.
--
-- The interface is dstream.db's (see db/sqlite.lua's header): failures return nil, message,
-- class; class "connection" (the server is gone or refuses for now: retried with backoff),
-- "data" (this row: SQLSTATE 22xxx, 23xxx), "schema" (every row would fail: 42xxx) or "other".
-- Rows go in batches: COPY ... FROM STDIN for append; for upsert, COPY into a staging table
-- and one INSERT ... SELECT ... ON CONFLICT. A batch the server refuses is undone to a
-- savepoint and written again a row at a time (a savepoint each) to find the row, its message,
-- and keep the others.
local ffi = require("ffi")
local buffer = require("string.buffer")

pcall(ffi.cdef, [[
typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
PGconn *PQconnectdb(const char *conninfo);
int PQstatus(const PGconn *conn);
char *PQerrorMessage(const PGconn *conn);
void PQfinish(PGconn *conn);
PGresult *PQexec(PGconn *conn, const char *query);
PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const unsigned int *paramTypes,
  const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat);
int PQresultStatus(const PGresult *res);
char *PQresultErrorField(const PGresult *res, int fieldcode);
char *PQresultErrorMessage(const PGresult *res);
int PQntuples(const PGresult *res);
int PQnfields(const PGresult *res);
char *PQfname(const PGresult *res, int field_num);
unsigned int PQftype(const PGresult *res, int field_num);
char *PQgetvalue(const PGresult *res, int tup_num, int field_num);
int PQgetlength(const PGresult *res, int tup_num, int field_num);
int PQgetisnull(const PGresult *res, int tup_num, int field_num);
void PQclear(PGresult *res);
int PQputCopyData(PGconn *conn, const char *buffer, int nbytes);
int PQputCopyEnd(PGconn *conn, const char *errormsg);
PGresult *PQgetResult(PGconn *conn);
int PQtransactionStatus(const PGconn *conn);
]])

local ok_lib, lib = pcall(ffi.load, "pq")
if not ok_lib then ok_lib, lib = pcall(ffi.load, "libpq.so.5") end

local ffi_string, tonumber, type, fmt = ffi.string, tonumber, type, string.format

local CONNECTION_OK = 0
local COMMAND_OK, TUPLES_OK, COPY_IN = 1, 2, 4
local DIAG_SQLSTATE, DIAG_PRIMARY, DIAG_DETAIL = 67, 77, 68 -- 'C', 'M', 'D'
local NUMERIC_OIDS = { [20] = true, [21] = true, [23] = true, [700] = true, [701] = true, [1700] = true, [26] = true }
local BOOL_OID = 16
local COPY_CHUNK = 256 * 1024

local M = {}

local Conn = {}
Conn.__index = Conn

local function class_of(conn, state)
  if lib.PQstatus(conn) ~= CONNECTION_OK then return "connection" end
  local c = state and state:sub(1, 2) or ""
  if c == "08" or c == "53" or c == "40" or c == "57" then return "connection" end -- connection, resources, serialization, shutdown
  if c == "22" or c == "23" then return "data" end
  if c == "42" or c == "3F" then return "schema" end
  return "other"
end

local function one_line(s) return (s:gsub("%s+$", ""):gsub("\n%s*", "; ")) end

-- The failure a result (or its absence) reports: nil, message, class.
local function fail(self, res)
  if res == nil then
    return nil, one_line(ffi_string(lib.PQerrorMessage(self.conn))), "connection"
  end
  local state = lib.PQresultErrorField(res, DIAG_SQLSTATE)
  state = state ~= nil and ffi_string(state) or nil
  local primary = lib.PQresultErrorField(res, DIAG_PRIMARY)
  local msg = primary ~= nil and ffi_string(primary) or one_line(ffi_string(lib.PQresultErrorMessage(res)))
  if msg == "" then msg = one_line(ffi_string(lib.PQerrorMessage(self.conn))) end
  local detail = lib.PQresultErrorField(res, DIAG_DETAIL)
  if detail ~= nil then msg = msg .. " (" .. ffi_string(detail) .. ")" end
  local class = class_of(self.conn, state)
  lib.PQclear(res)
  return nil, msg .. (state and " [SQLSTATE " .. state .. "]" or ""), class
end

-- Drains the results of the last command: true when every one is OK (nil, err, class else).
local function drain(self, res)
  local r1, r2, r3 = true, nil, nil
  while res ~= nil do
    local st = lib.PQresultStatus(res)
    if st ~= COMMAND_OK and st ~= TUPLES_OK and r1 then
      r1, r2, r3 = fail(self, res)
    else
      lib.PQclear(res)
    end
    res = lib.PQgetResult(self.conn)
  end
  if r1 and lib.PQstatus(self.conn) ~= CONNECTION_OK then return fail(self, nil) end
  return r1, r2, r3
end

function M.open(u)
  if not ok_lib then return nil, "libpq is not installed (Debian: apt-get install libpq5): " .. tostring(lib), "other" end
  local url = u.url
  -- A server that does not answer fails the attempt after 10 s (the retry loop waits on).
  if not url:find("connect_timeout=", 1, true) then
    url = url .. (url:find("?", 1, true) and "&" or "?") .. "connect_timeout=10"
  end
  if not url:find("application_name=", 1, true) then url = url .. "&application_name=dstream" end
  local conn = lib.PQconnectdb(url)
  if conn == nil then return nil, "cannot allocate a libpq connection", "other" end
  if lib.PQstatus(conn) ~= CONNECTION_OK then
    local msg = one_line(ffi_string(lib.PQerrorMessage(conn)))
    lib.PQfinish(conn)
    -- Authentication and a missing database are not passing: no retry.
    local class = (msg:find("authentication failed", 1, true) or msg:find("does not exist", 1, true)
      or msg:find("no password supplied", 1, true)) and "other" or "connection"
    return nil, msg, class
  end
  -- Closed when the Lua state closes (a worker VM at the pool's end) if not before.
  local self = setmetatable({ conn = ffi.gc(conn, lib.PQfinish), name = u.name, sql_cache = {} }, Conn)
  -- Notices ("relation already exists, skipping") would be printed on stderr by libpq; a
  -- notice callback could not be called from compiled code, so the server keeps them.
  local ok, err, class = self:exec("SET client_min_messages = warning")
  if not ok then
    self:close()
    return nil, err, class
  end
  return self
end

function Conn:exec(sql)
  local res = lib.PQexec(self.conn, sql)
  return drain(self, res)
end

local function text_of(v)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then
    if v % 1 == 0 and v >= -9007199254740992 and v <= 9007199254740992 then return fmt("%d", v) end
    if v ~= v then return "NaN" end
    if v == math.huge then return "Infinity" elseif v == -math.huge then return "-Infinity" end
    return fmt("%.17g", v)
  end
  if tv == "boolean" then return v and "true" or "false" end
  return nil -- nil: NULL
end
M.text_of = text_of

-- Runs command with parameters params[1..n] (text; nil is NULL).
local function exec_params(self, sql, params, n)
  n = n or (params and #params or 0)
  local values = n > 0 and ffi.new("const char *[?]", n) or nil
  local keep = {}
  for i = 1, n do
    local s = text_of(params[i])
    keep[i] = s
    values[i - 1] = s
  end
  local res = lib.PQexecParams(self.conn, sql, n, nil, values, nil, nil, 0)
  keep = nil
  return res
end

-- sql with params -> { columns =, rows = } (numbers and booleans converted) or nil, err, class.
function Conn:query(sql, params, n)
  local res = exec_params(self, sql, params, n)
  if res == nil or lib.PQresultStatus(res) ~= TUPLES_OK and lib.PQresultStatus(res) ~= COMMAND_OK then
    local r1, r2, r3 = fail(self, res)
    while lib.PQgetResult(self.conn) ~= nil do end
    return r1, r2, r3
  end
  local ncol, nrow = lib.PQnfields(res), lib.PQntuples(res)
  local cols, conv = {}, {}
  for j = 0, ncol - 1 do
    cols[j + 1] = ffi_string(lib.PQfname(res, j))
    local oid = lib.PQftype(res, j)
    conv[j] = NUMERIC_OIDS[oid] and "n" or oid == BOOL_OID and "b" or "s"
  end
  local rows = {}
  for i = 0, nrow - 1 do
    local row = {}
    for j = 0, ncol - 1 do
      if lib.PQgetisnull(res, i, j) == 0 then
        local s = ffi_string(lib.PQgetvalue(res, i, j), lib.PQgetlength(res, i, j))
        local c = conv[j]
        if c == "n" then row[j + 1] = tonumber(s) or s
        elseif c == "b" then row[j + 1] = s == "t"
        else row[j + 1] = s end
      end
    end
    rows[i + 1] = row
  end
  lib.PQclear(res)
  return { columns = cols, rows = rows }
end

function Conn:begin() return self:exec("BEGIN") end
function Conn:commit() return self:exec("COMMIT") end
function Conn:rollback()
  self.staged = nil -- a staging table made in the transaction is gone with it
  return self:exec("ROLLBACK")
end

-- COPY's text format: \N is NULL; backslash, tab, newline and return are escaped.
local COPY_ESC = { ["\\"] = "\\\\", ["\t"] = "\\t", ["\n"] = "\\n", ["\r"] = "\\r" }
local copy_buf = buffer.new()

local function copy_rows(self, w, vals, first, last, copy_sql)
  local res = lib.PQexec(self.conn, copy_sql or w.copy_sql)
  if res == nil or lib.PQresultStatus(res) ~= COPY_IN then return drain(self, res) end
  lib.PQclear(res)
  local ncols, b = w.ncols, copy_buf:reset()
  local find, gsub = string.find, string.gsub
  for i = first, last do
    local base = (i - 1) * ncols
    for j = 1, ncols do
      local v = vals[base + j]
      local tv = type(v)
      -- Straight into the buffer: no string per value for numbers (put writes an integer
      -- below 1e14 exactly) nor for text without a character to escape.
      if tv == "string" then
        if find(v, "[\\\t\n\r]") then v = gsub(v, "[\\\t\n\r]", COPY_ESC) end
        b:put(v)
      elseif tv == "number" and v % 1 == 0 and v > -1e14 and v < 1e14 then
        b:put(v == 0 and 0 or v) -- (-0 as 0)
      elseif v == nil then
        b:put("\\N")
      else
        b:put(text_of(v))
      end
      b:put(j < ncols and "\t" or "\n")
    end
    if #b >= COPY_CHUNK then
      if lib.PQputCopyData(self.conn, b:ref()) ~= 1 then break end
      b:reset()
    end
  end
  if #b > 0 then lib.PQputCopyData(self.conn, b:ref()) end
  if #b > COPY_CHUNK then b:free() else b:reset() end
  lib.PQputCopyEnd(self.conn, nil)
  return drain(self, lib.PQgetResult(self.conn))
end

-- INSERT ... VALUES ($1, $2), ($3, $4) ... [ON CONFLICT ...] for `rows` rows of w.
local function insert_sql(self, w, rows)
  local key = w.insert_prefix .. rows
  local sql = self.sql_cache[key]
  if sql then return sql end
  local b, p = buffer.new(), 0
  b:put(w.insert_prefix)
  for r = 1, rows do
    b:put(r > 1 and ",(" or "(")
    for j = 1, w.ncols do
      p = p + 1
      b:put(j > 1 and ",$" or "$", p)
    end
    b:put(")")
  end
  b:put(w.insert_suffix)
  sql = b:tostring()
  self.sql_cache[key] = sql
  return sql
end

-- Upserts go through a staging table: COPY into it, then one INSERT ... SELECT ... ON CONFLICT
-- (the rows travel as COPY's text, not as a parameter each). A temporary table per connection
-- and target, made in the first transaction that needs it, before the savepoint (a refused
-- row does not drop it), emptied at each commit.
local function stage(self, w)
  self.staged = self.staged or {}
  local name = self.staged[w.table]
  if name then return name end
  self.nstaged = (self.nstaged or 0) + 1
  name = "dstream_stage_" .. self.nstaged
  local ok, err, class = self:exec("CREATE TEMP TABLE IF NOT EXISTS " .. name .. " (LIKE " .. w.target
    .. ") ON COMMIT DELETE ROWS")
  if not ok then return nil, err, class end
  self.staged[w.table] = name
  return name
end

local function upsert_rows(self, w, vals, n, name)
  local ok, err, class = copy_rows(self, w, vals, 1, n, "COPY " .. name .. " (" .. w.column_list .. ") FROM STDIN")
  if not ok then return nil, err, class end
  return self:exec("INSERT INTO " .. w.target .. " (" .. w.column_list .. ") SELECT " .. w.column_list
    .. " FROM " .. name .. w.insert_suffix)
end

-- Writes rows 1..n of vals (flat, w.ncols values a row) inside the caller's transaction. A
-- row the server refuses: on_bad(i, message) when given (the others are written), else
-- nil, message, "data", i.
function Conn:write(w, vals, n, on_bad)
  if n == 0 then return true end
  local name, serr, sclass
  if w.mode == "upsert" then
    name, serr, sclass = stage(self, w)
    if not name then return nil, serr, sclass end
  end
  local ok, err, class = self:exec("SAVEPOINT dstream_rows")
  if not ok then return nil, err, class end
  if w.mode == "append" then
    ok, err, class = copy_rows(self, w, vals, 1, n)
  else
    ok, err, class = upsert_rows(self, w, vals, n, name)
  end
  if ok or class ~= "data" then return ok, err, class end
  -- A row was refused: undo the batch, then one row at a time, each behind a savepoint.
  local rok, rerr, rclass = self:exec("ROLLBACK TO SAVEPOINT dstream_rows")
  if not rok then return nil, rerr, rclass end
  local one = {}
  for i = 1, n do
    local base = (i - 1) * w.ncols
    for j = 1, w.ncols do one[j] = vals[base + j] end
    local sok, serr, sclass = self:exec("SAVEPOINT dstream_row")
    if not sok then return nil, serr, sclass end
    ok, err, class = drain(self, exec_params(self, insert_sql(self, w, 1), one, w.ncols))
    if not ok then
      if class ~= "data" or not on_bad then return nil, err, class, i end
      sok, serr, sclass = self:exec("ROLLBACK TO SAVEPOINT dstream_row")
      if not sok then return nil, serr, sclass end
      on_bad(i, err)
    else
      sok, serr, sclass = self:exec("RELEASE SAVEPOINT dstream_row")
      if not sok then return nil, serr, sclass end
    end
  end
  return true
end

-- After a lost connection (or a server shutting down) a new one is opened.
function Conn:usable() return self.conn ~= nil and lib.PQstatus(self.conn) == CONNECTION_OK end

function Conn:close()
  if self.conn ~= nil then lib.PQfinish(ffi.gc(self.conn, nil)) end
  self.conn = nil
end

M.placeholder = function(i) return "$" .. i end
M.excluded = "EXCLUDED"
M.bigint = "BIGINT"

return M

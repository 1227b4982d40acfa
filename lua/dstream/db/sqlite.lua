-- dstream/db/sqlite.lua: SQLite connections through libsqlite3 (Debian's libsqlite3-0), bound
-- with LuaJIT's FFI. Both Lua states: workers write (dstream.worker.ops.database), the driver
-- and workers read (read_sql).
--
-- A connection is the driver-neutral interface of dstream.db (see db/init.lua): exec, query,
-- begin/commit/rollback, write (rows with one prepared statement, stepped per row inside the
-- caller's transaction) and close. Failures return nil, message, class, where class is
-- "connection" (the file is locked or unreadable for now: retried with backoff), "data" (this
-- row: a constraint, a type of a STRICT table) or "schema" (every row would fail: a missing
-- table or column).
local ffi = require("ffi")

pcall(ffi.cdef, [[
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
int sqlite3_open_v2(const char *filename, sqlite3 **ppDb, int flags, const char *zVfs);
int sqlite3_close_v2(sqlite3 *);
int sqlite3_busy_timeout(sqlite3 *, int ms);
int sqlite3_exec(sqlite3 *, const char *sql, void *callback, void *arg, char **errmsg);
const char *sqlite3_errmsg(sqlite3 *);
int sqlite3_extended_errcode(sqlite3 *);
int sqlite3_prepare_v2(sqlite3 *db, const char *zSql, int nByte, sqlite3_stmt **ppStmt, const char **pzTail);
int sqlite3_bind_null(sqlite3_stmt *, int);
int sqlite3_bind_int64(sqlite3_stmt *, int, int64_t);
int sqlite3_bind_double(sqlite3_stmt *, int, double);
int sqlite3_bind_text(sqlite3_stmt *, int, const char *, int, intptr_t destructor);
int sqlite3_step(sqlite3_stmt *);
int sqlite3_reset(sqlite3_stmt *);
int sqlite3_clear_bindings(sqlite3_stmt *);
int sqlite3_finalize(sqlite3_stmt *);
int sqlite3_column_count(sqlite3_stmt *);
const char *sqlite3_column_name(sqlite3_stmt *, int);
int sqlite3_column_type(sqlite3_stmt *, int);
int64_t sqlite3_column_int64(sqlite3_stmt *, int);
double sqlite3_column_double(sqlite3_stmt *, int);
const unsigned char *sqlite3_column_text(sqlite3_stmt *, int);
int sqlite3_column_bytes(sqlite3_stmt *, int);
int sqlite3_changes(sqlite3 *);
]])

local ok_lib, lib = pcall(ffi.load, "sqlite3")
if not ok_lib then ok_lib, lib = pcall(ffi.load, "libsqlite3.so.0") end

local ffi_string, tonumber, type = ffi.string, tonumber, type

local SQLITE_OK, SQLITE_ROW, SQLITE_DONE = 0, 100, 101
local OPEN_FLAGS = 0x2 + 0x4 + 0x8000 -- READWRITE | CREATE | NOMUTEX (one thread per connection)
local TRANSIENT = -1 -- SQLITE_TRANSIENT: sqlite copies the bytes (the Lua string may move on)
local INTEGER, FLOAT, NULL = 1, 2, 5

local M = {}

-- Which failures are whose (primary result codes, the low byte of the extended code).
local function class_of(code)
  local primary = code % 256
  if primary == 19 or primary == 20 or primary == 18 or primary == 25 then return "data" end -- CONSTRAINT, MISMATCH, TOOBIG, RANGE
  if primary == 5 or primary == 6 or primary == 10 or primary == 13 or primary == 15 then
    return "connection" -- BUSY, LOCKED, IOERR, FULL, PROTOCOL: may pass; retried with backoff
  end
  if primary == 1 then return "schema" end -- SQLITE_ERROR: no such table, no such column, syntax
  return "other"
end

local Conn = {}
Conn.__index = Conn

local function fail(self, what)
  local code = lib.sqlite3_extended_errcode(self.db)
  local msg = ffi_string(lib.sqlite3_errmsg(self.db))
  return nil, (what and what .. ": " or "") .. msg, class_of(code)
end

function M.open(u)
  if not ok_lib then return nil, "libsqlite3 is not installed (Debian: apt-get install libsqlite3-0): " .. tostring(lib), "other" end
  local pdb = ffi.new("sqlite3*[1]")
  local rc = lib.sqlite3_open_v2(u.path, pdb, OPEN_FLAGS, nil)
  if rc ~= SQLITE_OK then
    local msg = pdb[0] ~= nil and ffi_string(lib.sqlite3_errmsg(pdb[0])) or ("error " .. rc)
    if pdb[0] ~= nil then lib.sqlite3_close_v2(pdb[0]) end
    return nil, "cannot open " .. u.path .. ": " .. msg, rc == 14 and "other" or class_of(rc)
  end
  -- Closed when the Lua state closes (a worker VM at the pool's end) if not before; close_v2
  -- waits for the statements, each finalized by its own finalizer.
  local self = setmetatable({ db = ffi.gc(pdb[0], lib.sqlite3_close_v2), name = u.name, stmts = {} }, Conn)
  -- Writers on several workers share the file: each waits its turn for up to 1 s, past
  -- which the task's retry loop takes over (with its backoff, its log lines and its time
  -- limit). WAL lets readers (read_sql, sqlite3) in while a batch is written.
  lib.sqlite3_busy_timeout(self.db, 1000)
  if u.path ~= ":memory:" then self:exec("PRAGMA journal_mode=WAL") end
  return self
end

function Conn:exec(sql)
  local err = ffi.new("char*[1]")
  local rc = lib.sqlite3_exec(self.db, sql, nil, nil, err)
  if rc ~= SQLITE_OK then
    local msg = err[0] ~= nil and ffi_string(err[0]) or ffi_string(lib.sqlite3_errmsg(self.db))
    return nil, msg, class_of(lib.sqlite3_extended_errcode(self.db))
  end
  return true
end

-- A prepared statement, kept per connection by its text (a sink's INSERT is prepared once per
-- worker, not once per task).
function Conn:prepare(sql)
  local st = self.stmts[sql]
  if st then return st end
  local pst = ffi.new("sqlite3_stmt*[1]")
  if lib.sqlite3_prepare_v2(self.db, sql, #sql, pst, nil) ~= SQLITE_OK then return fail(self) end
  st = ffi.gc(pst[0], lib.sqlite3_finalize)
  self.stmts[sql] = st
  return st
end

local function bind(st, i, v)
  local tv = type(v)
  if v == nil then return lib.sqlite3_bind_null(st, i) end
  if tv == "number" then
    if v % 1 == 0 and v >= -9007199254740992 and v <= 9007199254740992 then
      return lib.sqlite3_bind_int64(st, i, v)
    end
    return lib.sqlite3_bind_double(st, i, v)
  end
  if tv == "boolean" then return lib.sqlite3_bind_int64(st, i, v and 1 or 0) end
  return lib.sqlite3_bind_text(st, i, v, #v, TRANSIENT) -- strings (tables are text by now)
end

local function column(st, j)
  local t = lib.sqlite3_column_type(st, j)
  if t == NULL then return nil end
  if t == INTEGER then return tonumber(lib.sqlite3_column_int64(st, j)) end
  if t == FLOAT then return lib.sqlite3_column_double(st, j) end
  local p = lib.sqlite3_column_text(st, j)
  return ffi_string(p, lib.sqlite3_column_bytes(st, j))
end

-- Runs sql with params (an array, may hold nils up to n) and returns the rows:
-- { columns = { names }, rows = { { v1, v2, ... }, ... } } or nil, err, class.
function Conn:query(sql, params, n)
  local pst = ffi.new("sqlite3_stmt*[1]")
  if lib.sqlite3_prepare_v2(self.db, sql, #sql, pst, nil) ~= SQLITE_OK then return fail(self) end
  local st = pst[0]
  for i = 1, n or (params and #params or 0) do bind(st, i, params[i]) end
  local ncol = lib.sqlite3_column_count(st)
  local cols = {}
  for j = 0, ncol - 1 do cols[j + 1] = ffi_string(lib.sqlite3_column_name(st, j)) end
  local rows = {}
  while true do
    local rc = lib.sqlite3_step(st)
    if rc == SQLITE_DONE then break end
    if rc ~= SQLITE_ROW then
      local r1, r2, r3 = fail(self)
      lib.sqlite3_finalize(st)
      return r1, r2, r3
    end
    local row = {}
    for j = 0, ncol - 1 do row[j + 1] = column(st, j) end
    rows[#rows + 1] = row
  end
  lib.sqlite3_finalize(st)
  return { columns = cols, rows = rows }
end

-- IMMEDIATE takes the write lock now: two workers' transactions never deadlock upgrading
-- their read locks, one waits (busy_timeout) for the other.
function Conn:begin() return self:exec("BEGIN IMMEDIATE") end
function Conn:commit() return self:exec("COMMIT") end
function Conn:rollback() return self:exec("ROLLBACK") end

-- Writes rows n of `vals` (a flat array, ncols values a row) with the statement w.sql inside
-- the caller's transaction. A row the database refuses: on_bad(i, message) when given (the
-- statement alone is undone; the rest go on), else nil, message, "data", i.
function Conn:write(w, vals, n, on_bad)
  local st, err, class = self:prepare(w.sql)
  if not st then return nil, err, class end
  local ncols = w.ncols
  for i = 1, n do
    local base = (i - 1) * ncols
    for j = 1, ncols do bind(st, j, vals[base + j]) end
    local rc = lib.sqlite3_step(st)
    local _, msg, cls
    if rc ~= SQLITE_DONE then _, msg, cls = fail(self) end
    lib.sqlite3_reset(st)
    if rc ~= SQLITE_DONE then
      if cls ~= "data" or not on_bad then return nil, msg, cls, i end
      on_bad(i, msg)
    end
  end
  lib.sqlite3_clear_bindings(st)
  return true
end

-- A busy or locked file needs no new connection: the same one tries again.
function Conn:usable() return self.db ~= nil end

function Conn:close()
  if not self.db then return end
  for _, st in pairs(self.stmts) do lib.sqlite3_finalize(ffi.gc(st, nil)) end
  self.stmts = {}
  lib.sqlite3_close_v2(ffi.gc(self.db, nil))
  self.db = nil
end

-- SQL dialect: placeholders and the text of statements (dstream.db.sql builds them).
M.placeholder = function() return "?" end
M.excluded = "excluded"
M.bigint = "INTEGER"

return M

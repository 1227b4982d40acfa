-- bench/db.lua: rows per second into a database with stream:to_sql, and the same rows as
-- tab-separated files for the baselines (bench/run): `psql \copy` of them all (append), and
-- per batch `\copy` into a staging table + one INSERT ... SELECT ... ON CONFLICT (upsert).
--   dstream bench/db.lua write URL ROWS WORKERS MODE   MODE: append | upsert
--   dstream bench/db.lua tsv FILE ROWS                 the rows, for \copy
-- Rows are (id, word, n): id 1..ROWS, word "w<i mod ROWS/10>", n = i mod 1000, in 10 batches of
-- ROWS/10 (so each batch upserts every word once: batch 1 inserts, the others update). The
-- table is made afresh; the time is from the first batch to the end of the last, all rows
-- committed (with their markers).
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local mode = arg[1]

local function rows_of(total, batch, per)
  local list = {}
  for i = (batch - 1) * per + 1, math.min(total, batch * per) do
    list[#list + 1] = { i, "w" .. (i % per), i % 1000 }
  end
  return list
end

if mode == "tsv" then -- FILE: every row; FILE.1 .. FILE.10: the batches (the upsert baseline's)
  local path, total = arg[2], tonumber(arg[3])
  local per = math.ceil(total / 10)
  local f = assert(io.open(path, "w"))
  for b = 1, 10 do
    local fb = assert(io.open(path .. "." .. b, "w"))
    for _, r in ipairs(rows_of(total, b, per)) do
      f:write(r[1], "\t", r[2], "\t", r[3], "\n")
      fb:write(r[1], "\t", r[2], "\t", r[3], "\n")
    end
    fb:close()
  end
  f:close()
  return
end

local url, total, workers, how = arg[2], tonumber(arg[3]), tonumber(arg[4] or 1), arg[5] or "append"
local per = math.ceil(total / 10)
local dstream = require("dstream")
local db = require("dstream.db")
db.exec(url, "DROP TABLE IF EXISTS bench_rows")
db.exec(url, "CREATE TABLE bench_rows (id BIGINT, word TEXT" .. (how == "upsert" and " PRIMARY KEY" or "") .. ", n BIGINT)")
pcall(db.exec, url, "DELETE FROM dstream_commits")

local batches = {}
for b = 1, 10 do batches[b] = rows_of(total, b, per) end
local ctx = dstream.context { batch = "1s", clock = "manual", workers = workers, partitions = workers,
  name = "bench-db" }
ctx:queue_stream(batches)
  :to_sql { url = url, table = "bench_rows", columns = { "id", "word", "n" }, mode = how,
    key = how == "upsert" and "word" or nil }
ctx:parallelize({ 1 }):count() -- the workers are up
ctx:start()
local t0, c0 = lib.now(), lib.cpu()
ctx:advance(10)
local secs, cpu = lib.now() - t0, lib.cpu() - c0
ctx:stop()
local got = db.query(url, "SELECT count(*) AS n FROM bench_rows")[1].n
local want = how == "upsert" and per or total
if got ~= want then error(string.format("bench_rows holds %d rows, expected %d", got, want), 0) end
lib.result {
  { "workload", "db_" .. how }, { "impl", (url:match("^sqlite") and "sqlite" or "postgres") .. "-" .. workers .. "w" },
  { "records", total }, { "secs", secs }, { "cpu", cpu },
}

-- examples/postgres_totals.lua: running word totals kept in a database table, exactly once.
-- Each batch upserts every word's total into word_totals (INSERT ... ON CONFLICT DO UPDATE)
-- and appends its raw lines to lines; at the end the tables are read back and printed.
--
--   dstream examples/postgres_totals.lua postgresql://user@host:5432/db   (a PostgreSQL server)
--   dstream examples/postgres_totals.lua                                  (no server: SQLite)
local dstream = require("dstream")
local db = require("dstream.db")

local url = arg[1]
if not url then -- no server given: a SQLite file of our own
  local base = os.tmpname() -- (an empty file reserving the name)
  os.remove(base)
  url = "sqlite:" .. base .. ".sqlite"
end
print("database: " .. (url:gsub(":[^:@/]*@", ":***@")))

db.exec(url, "DROP TABLE IF EXISTS word_totals")
db.exec(url, "DROP TABLE IF EXISTS lines")
db.exec(url, "CREATE TABLE word_totals (word TEXT PRIMARY KEY, n BIGINT NOT NULL)")
db.exec(url, "CREATE TABLE lines (line TEXT NOT NULL)")

local ctx = dstream.context { batch = "1s", clock = "manual", name = "postgres_totals" }
local lines = ctx:queue_stream {
  { "to be or not to be", "that is the question" },
  { "to sleep perchance to dream" },
  { "the rest is silence" },
}
lines:to_sql { url = url, table = "lines", columns = { "line" } } -- mode = "append"
lines
  :flat_map(function(line) return line:gmatch("%a+") end)
  :map(function(w) return w, 1 end)
  :update_state_by_key(function(counts, total)
    total = total or 0
    for _, c in ipairs(counts) do total = total + c end
    return total
  end)
  :to_sql { url = url, table = "word_totals", columns = { "word", "n" }, mode = "upsert", key = "word" }

ctx:start()
ctx:advance(3)
ctx:stop()

local top = db.query(url, "SELECT word, n FROM word_totals WHERE n > 1 ORDER BY n DESC, word")
for _, row in ipairs(top) do print(string.format("%-6s %d", row.word, row.n)) end
local n = db.query(url, "SELECT count(*) AS n FROM lines")[1].n
local words = db.query(url, "SELECT count(*) AS n FROM word_totals")[1].n
print(string.format("%d lines, %d distinct words", n, words))

-- bench/sql.lua: SQL against the same job written with operators, on the same cached words of
-- the corpus (so both read the same records from memory):
--   word count:          SELECT word, COUNT(*) AS n FROM words GROUP BY word
--                    vs  words:map(pair):reduce_by_key(add):map(row)
--   filter+projection:   SELECT word, length(word) AS len FROM words WHERE word LIKE 'th%'
--                    vs  words:filter(starts with "th"):map(row)
-- The two sides alternate, 6 runs each, each going first every other time (the machine's noise falls on both alike); the best
-- time of each goes in a result line (impl = operators or sql).
--   dstream bench/sql.lua CORPUS WORKERS
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local path, workers = arg[1], tonumber(arg[2] or 1)

local text = require("dstream.text")
local ctx, data = lib.static_dataset(path, workers)
local words = data:flat_map(function(line) return text.words(line) end):cache()
local nwords = words:count() -- computes and keeps the words
words:to_table("words", { "word" })

local function timed(fn)
  collectgarbage()
  local t0, c0 = lib.now(), lib.cpu()
  local out = fn()
  return lib.now() - t0, lib.cpu() - c0, out
end

-- Each run builds its batch again (a batch keeps its shuffle's output: counting it twice would
-- skip the map side); for SQL that includes parsing and planning (about half a millisecond).
local jobs = {
  wordcount = {
    operators = function()
      return words:map(function(w) return w, 1 end):reduce_by_key(function(a, b) return a + b end)
        :map(function(w, n) return { word = w, n = n } end)
    end,
    sql = function() return ctx:sql("SELECT word, COUNT(*) AS n FROM words GROUP BY word") end,
  },
  filter_project = {
    operators = function()
      return words:filter(function(w) return w:sub(1, 2) == "th" end)
        :map(function(w) return { word = w, len = #w } end)
    end,
    sql = function() return ctx:sql("SELECT word, length(word) AS len FROM words WHERE word LIKE 'th%'") end,
  },
}

for _, name in ipairs { "wordcount", "filter_project" } do
  local best = { operators = { secs = math.huge }, sql = { secs = math.huge } }
  for round = 1, 6 do
    for _, impl in ipairs(round % 2 == 1 and { "operators", "sql" } or { "sql", "operators" }) do
      local build = jobs[name][impl]
      local secs, cpu, n = timed(function() return build():count() end)
      local b = best[impl]
      if secs < b.secs then b.secs, b.cpu = secs, cpu end
      b.rows = n
    end
  end
  for _, impl in ipairs { "operators", "sql" } do
    local b = best[impl]
    lib.result {
      { "workload", "sql_" .. name }, { "impl", impl .. "-" .. workers .. "w" }, { "records", nwords },
      { "rows", b.rows }, { "secs", b.secs }, { "cpu", b.cpu },
    }
  end
  assert(best.operators.rows == best.sql.rows, name .. ": SQL and operators disagree")
end
ctx:stop()

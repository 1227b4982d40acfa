-- examples/sql_wordcount.lua: Spark's SqlNetworkWordCount in dstream: every batch of lines
-- becomes the table `words`, and a SQL query counts them, printed as Spark's show() prints a
-- DataFrame. Then the same table as a static dataset: the whole text at once.
--
--   dstream examples/sql_wordcount.lua                 (the lines of examples/data/streams.txt,
--                                                       in 3 batches of half a second)
--   dstream examples/sql_wordcount.lua HOST PORT       (lines from a socket, as Spark's:
--                                                       nc -lk 9999, then type words)
--
-- The query is compiled into the same operators a hand-written job uses (a map, then
-- reduce_by_key combined in each partition): `ctx:explain(query)` shows them.
local dstream = require("dstream")

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local host, port = arg[1], tonumber(arg[2])
local ctx = dstream.context { batch = "500ms", workers = 2 }

local lines
if host and port then
  lines = ctx:socket_text_stream(host, port)
else
  local all = {}
  for line in io.lines(here .. "/data/streams.txt") do all[#all + 1] = line end
  local per = math.ceil(#all / 3)
  local batches = {}
  for i = 1, #all, per do batches[#batches + 1] = { unpack(all, i, math.min(i + per - 1, #all)) } end
  lines = ctx:queue_stream(batches)
end

-- The words of each batch, lower-cased, as a one-column table.
local words = lines:flat_map(function(line) return line:lower():gmatch("%a+") end)
words:to_table("words", { "word" })

local query = "SELECT word, COUNT(*) AS total FROM words GROUP BY word ORDER BY total DESC, word LIMIT 5"
local batches = 0
ctx:sql(query):foreach_rdd(function(rdd, time)
  batches = batches + 1
  print(("========= %d ms ========="):format(time))
  rdd:show()
  if not (host and port) and batches == 3 then ctx:stop() end
end)
ctx:start()
ctx:await_termination()

-- The same query over a static dataset: every line of the file at once.
local static_ctx = dstream.context { workers = 2 }
static_ctx:text_file(here .. "/data/streams.txt")
  :flat_map(function(line) return line:lower():gmatch("%a+") end)
  :to_table("words", { "word" })
print("========= the whole text =========")
static_ctx:sql(query):show()
static_ctx:stop()

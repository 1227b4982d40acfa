-- examples/wordcount.lua: the top words of every batch.
--
--   dstream examples/wordcount.lua              built-in source: lines of data/streams.txt,
--                                               2000 lines a second, for 5 seconds
--   dstream examples/wordcount.lua HOST PORT [SECONDS]   words from a TCP text server
--                                               (try: nc -lk 9999, then type lines)
local dstream = require("dstream")

local host, port = arg[1], tonumber(arg[2])
local seconds = tonumber(arg[3] or (port and 3600) or 5)
local ctx = dstream.context { batch = "1s", name = "wordcount" }

local lines
if port then
  lines = ctx:socket_text_stream(host, port)
else
  -- The built-in source: rate_stream numbers each row; a row becomes a line of the text.
  local dir = arg[0]:match("^(.*)/[^/]*$") or "."
  local text = {}
  for line in io.lines(dir .. "/data/streams.txt") do text[#text + 1] = line end
  lines = ctx:rate_stream { rows_per_second = 2000 }
    :map(function(i) return text[i % #text + 1] end)
end

lines
  :flat_map(function(line) return line:lower():gmatch("%a+") end)
  :map(function(word) return word, 1 end) -- two values: a key/value pair
  :reduce_by_key(function(a, b) return a + b end)
  :foreach_rdd(function(rdd, time)
    local counts = rdd:collect()
    table.sort(counts, function(x, y) return x[2] > y[2] or (x[2] == y[2] and x[1] < y[1]) end)
    local top = {}
    for i = 1, math.min(5, #counts) do top[i] = counts[i][1] .. "=" .. counts[i][2] end
    print(string.format("batch %d ms: %d distinct words; top: %s", time, #counts,
      #top > 0 and table.concat(top, " ") or "(none)"))
  end)

ctx:start()
ctx:await_termination(seconds)
ctx:stop { graceful = true }

-- examples/windowed_wordcount.lua: word counts over the last 3 seconds, every second, built
-- incrementally from panes (reduce_by_key_and_window with an inverse function), plus the
-- number of lines in each 2-second window.
--
--   dstream examples/windowed_wordcount.lua            built-in source, ends after ~6 s
--   dstream examples/windowed_wordcount.lua HOST PORT  words from a TCP text server
local dstream = require("dstream")

local host, port = arg[1], tonumber(arg[2])
local ctx = dstream.context { batch = "1s", name = "windowed_wordcount" }

local lines
if port then
  lines = ctx:socket_text_stream(host, port)
else
  lines = ctx:queue_stream {
    { "to be or not to be" },
    { "that is the question" },
    { "to sleep perchance to dream" },
    {},
    {},
  }
end

lines
  :flat_map(function(line) return line:gmatch("%a+") end)
  :map(function(word) return word, 1 end)
  :reduce_by_key_and_window(function(a, b) return a + b end, "3s", "1s", {
    inverse = function(acc, old) return acc - old end, -- subtract the batch leaving the window
    filter = function(_, n) return n > 0 end,          -- and forget words that left it
  })
  :foreach_rdd(function(rdd, time)
    local counts = rdd:collect()
    table.sort(counts, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
    local shown = {}
    for i = 1, math.min(5, #counts) do shown[i] = counts[i][1] .. "=" .. counts[i][2] end
    print(string.format("window ending %d: %s", time, #shown > 0 and table.concat(shown, " ") or "(empty)"))
  end)

lines:count_by_window("2s", "1s"):foreach_rdd(function(rdd, time)
  print(string.format("window ending %d: %s lines in the last 2 s", time, tostring(rdd:first() or 0)))
end)

ctx:start()
if port then
  ctx:await_termination()
else
  ctx:await_termination(6)
  ctx:stop { graceful = true }
end

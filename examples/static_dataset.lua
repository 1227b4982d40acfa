-- examples/static_dataset.lua: the same word count on two static datasets.
--
--   dstream examples/static_dataset.lua [N]     (prints the top N words, default 5)
--
-- ctx:parallelize(list) and ctx:text_file(path) make batches (rdds) without any stream: they
-- have the operators and actions of a stream's batch, run on the same workers, and their
-- actions can be called at the top level of a script. One function counts the words of both.
local dstream = require("dstream")

local top_n = tonumber(arg[1]) or 5
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local ctx = dstream.context { workers = 2, partitions = 4 }

-- rdd of lines -> array of { word, count }, most frequent first (ties by word).
local function word_counts(lines)
  local counts = lines
    :flat_map(function(line) return line:lower():gmatch("%a+") end)
    :map(function(word) return word, 1 end)
    :reduce_by_key(function(a, b) return a + b end)
    :collect()
  table.sort(counts, function(x, y) return x[2] > y[2] or (x[2] == y[2] and x[1] < y[1]) end)
  return counts
end

local function show(title, lines)
  local counts = word_counts(lines)
  local top = {}
  for i = 1, math.min(top_n, #counts) do top[i] = counts[i][1] .. "=" .. counts[i][2] end
  print(("%s: %d lines, %d distinct words; top %d: %s"):format(title, lines:count(), #counts,
    #top, table.concat(top, " ")))
end

show("parallelize", ctx:parallelize({
  "the quick brown fox jumps over the lazy dog",
  "the dog sleeps, the fox runs",
  "a fox is quick and a dog is lazy",
}))

show("text_file", ctx:text_file(here .. "/data/streams.txt"))

ctx:stop()

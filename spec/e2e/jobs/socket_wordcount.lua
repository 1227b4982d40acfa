-- spec/e2e/jobs/socket_wordcount.lua: word counts of a TCP text stream, merged on the driver.
--   dstream socket_wordcount.lua HOST PORT EXPECTED_WORDS [LIMIT_SECONDS]
-- Counts words per batch on the workers (flat_map, map, reduce_by_key), adds each batch's
-- counts into driver totals in foreach_rdd, and stops once EXPECTED_WORDS words were counted
-- (plus a few batches more, where a word counted twice would show), or after LIMIT_SECONDS.
-- Prints "word count" lines, then "# batches B words W" on stderr.
local dstream = require("dstream")

local host, port = arg[1], tonumber(arg[2])
local expected, limit = tonumber(arg[3]), tonumber(arg[4] or 40)
local ctx = dstream.context { batch = "200ms", name = "e2e-socket-wordcount" }

local totals, words, batches = {}, 0, 0
ctx:socket_text_stream(host, port)
  :flat_map(function(line) return line:gmatch("%S+") end)
  :map(function(word) return word, 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :foreach_rdd(function(rdd)
    batches = batches + 1
    for _, kv in ipairs(rdd:collect()) do
      totals[kv[1]] = (totals[kv[1]] or 0) + kv[2]
      words = words + kv[2]
    end
  end)

ctx:start()
local deadline = os.time() + limit
while words < expected and os.time() < deadline do
  if ctx:await_termination(0.2) then break end
end
ctx:await_termination(0.6)
ctx:stop { graceful = true }

local sorted = {}
for w in pairs(totals) do sorted[#sorted + 1] = w end
table.sort(sorted)
for _, w in ipairs(sorted) do print(w .. " " .. totals[w]) end
io.stderr:write(string.format("# batches %d words %d\n", batches, words))

-- examples/stateful_wordcount.lua: running word totals across batches with
-- update_state_by_key, and per-word "new record" alerts with map_with_state.
--
--   dstream examples/stateful_wordcount.lua            built-in source: 4 batches on a manual
--                                                      clock (the third is empty), then it ends
--   dstream examples/stateful_wordcount.lua HOST PORT  words from a TCP text server
local dstream = require("dstream")

local host, port = arg[1], tonumber(arg[2])
local ctx = dstream.context { batch = "1s", name = "stateful_wordcount", clock = port and "system" or "manual" }

local lines
if port then
  lines = ctx:socket_text_stream(host, port)
else
  lines = ctx:queue_stream {
    { "the quick brown fox", "the lazy dog" },
    { "the fox jumps", "over the dog" },
    {},
    { "quick quick fox" },
  }
end

local pairs_stream = lines
  :flat_map(function(line) return line:lower():gmatch("%a+") end)
  :map(function(word) return word, 1 end)

-- Totals since the start: fn(values, state) runs for every word in every batch.
pairs_stream
  :update_state_by_key(function(values, total)
    total = total or 0
    for _, n in ipairs(values) do total = total + n end
    return total
  end)
  :foreach_rdd(function(rdd, time)
    local totals = rdd:collect()
    table.sort(totals, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
    local shown = {}
    for i = 1, math.min(4, #totals) do shown[i] = totals[i][1] .. "=" .. totals[i][2] end
    print(string.format("batch %d: %d words so far; top %s", time, #totals, table.concat(shown, " ")))
  end)

-- map_with_state: emit a word when its count reaches a new multiple of 3.
pairs_stream
  :map_with_state { fn = function(word, one, state)
    if one == nil then return nil end -- timing out: nothing to say
    local n = (state:get() or 0) + one
    state:set(n)
    if n % 3 == 0 then return word, n end
  end, timeout = "1h" }
  :foreach_rdd(function(rdd, time)
    for _, kv in ipairs(rdd:collect()) do
      print(string.format("batch %d: '%s' reached %d", time, kv[1], kv[2]))
    end
  end)

ctx:start()
if port then
  ctx:await_termination()
else
  ctx:advance(4)
  ctx:stop()
end

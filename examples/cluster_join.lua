-- examples/cluster_join.lua: cluster mode with two streams joined within a time: ad clicks
-- joined with the ad's impressions less than 2 s apart (left_outer_join within "2s"), on three
-- processes.
--
--   dstream examples/cluster_join.lua
--
-- Starts an embedded Kafka broker in this process with the topics the job needs: its input
-- "words" (6 partitions) and, for the join named "pairs" with 6 state partitions,
-- example-join-pairs-repartition and example-join-pairs-changelog (the embedded broker has no
-- admin API, so a job cannot make them itself). Then three processes of the same job (this
-- file again, run as `dstream --cluster example-join FILE --member ...`): the group shares the
-- input's partitions and the state partitions out, two each. Line i ("a b t=<ms>") is an
-- impression of ad a and a click on ad b, both at 800 i ms. Each member sends every record,
-- tagged impression or click, to the state partition of its ad (one topic for both sides); the
-- member owning it pairs each impression with the clicks on its ad 2 s before or after it,
-- wherever they were read, and emits an impression no click came for once the watermark (the
-- smaller of the two sides' largest times, less 30 s) passes its time + 2 s; a last line far in
-- the future ends them all. After ~16 s each member prints the state partitions it owns and its
-- pairs, as ad:impression>click (ms; "-": no click), and stops: an ad's pairs all come from one
-- member, and together they are the join of what was produced.
local dstream = require("dstream")
-- The broker, the members and the producer standing in for machines (examples/lib/).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/lib/?.lua;" .. package.path
local demo = require("cluster_demo")

local APP, N = "example-join", 6

if arg[1] == "--member" then
  -- One member (the command line gave --cluster APP): its context and its input, "words".
  local ctx, lines, name = demo.member(dstream)
  -- "kafka group t=4300": the word `pick` (1: the impression, 2: the click) at 4300 ms;
  -- "~ t=..." is on both sides (it only moves the watermark).
  local function side(pick)
    return lines:map(function(line)
        local ts, words = tonumber(line:match("t=(%d+)")), {}
        for w in line:gmatch("%S+") do
          if not w:find("^t=") then words[#words + 1] = w end
        end
        return words[pick] or words[1], ts
      end)
      -- Event time runs 8 times faster than the clock here (a line every 100 ms, 800 ms apart
      -- in event time): 30 s of it is about 4 s of the members reading at different paces
      -- (5 s made early records late when a loaded machine held a member back).
      :event_time(function(_, ts) return ts end, { watermark = "30s" })
  end
  local impressions, clicks = side(1), side(2)
  local pairs_of = impressions:left_outer_join(clicks, { within = "2s", partitions = N })
    :name("pairs")
  -- Every pair this member emitted (its state partitions' ads); printed once, 16 s after the
  -- start (the input and the last line were produced by then), then the member stops.
  local started, shown, printed = os.time(), {}, false
  pairs_of:foreach_rdd(function(rdd)
    for _, kv in ipairs(rdd:collect()) do
      if kv[1] ~= "~" then
        shown[#shown + 1] = { kv[1], kv[2][1], string.format("%s:%d>%s", kv[1], kv[2][1], kv[2][2] or "-") }
      end
    end
    if printed or os.time() - started < 16 then return end
    printed = true
    table.sort(shown, function(x, y) return x[1] < y[1] or x[1] == y[1] and (x[2] < y[2] or x[2] == y[2] and x[3] < y[3]) end)
    local texts = {}
    for i, s in ipairs(shown) do texts[i] = s[3] end
    demo.say_and_stop(ctx, string.format("%s owns state partitions %s: %d joined %s; late %d", name,
      demo.owned(pairs_of), #shown, table.concat(texts, " "), impressions:late_count() + clicks:late_count()))
  end)
  demo.serve(ctx)
  return
end

-- The driver of the example: a broker, three members, a producer (each line with its time).
demo.run { app = APP, operator = "pairs", partitions = N, done = "owns",
  stamp = function(i) return 800 * i end, flush = 800 * 40 + 60000,
  words = { "shoes", "tea", "bikes", "books", "maps", "lamps", "socks", "pens" } }

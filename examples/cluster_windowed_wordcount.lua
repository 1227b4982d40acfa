-- examples/cluster_windowed_wordcount.lua: cluster mode with windows: a windowed word count
-- (reduce_by_key_and_window, tumbling windows of 2 s) on three processes.
--
--   dstream examples/cluster_windowed_wordcount.lua
--
-- Starts an embedded Kafka broker in this process with the topics the job needs: its input
-- "words" (6 partitions) and, for the window operator named "windows" with 6 state partitions,
-- example-windows-windows-repartition and example-windows-windows-changelog (the embedded
-- broker has no admin API, so a job cannot make them itself). Then three processes of the same
-- job (this file again, run as `dstream --cluster example-windows FILE --member ...`): the
-- group shares the input's partitions and the state partitions out, two each. Each member
-- sends its batches' counts per word to the state partition of the word; the member owning that
-- partition keeps the word's panes and emits its windows, every 2 s (at multiples of 2 s since
-- the epoch, the same instants in every process). After ~15 s each member prints the state
-- partitions it owns, its last window, and its windows' counts added up, and stops: a word's
-- windows all come from one member, and the members' sums are what was produced.
local dstream = require("dstream")
-- The broker, the members and the producer standing in for machines (examples/lib/).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/lib/?.lua;" .. package.path
local demo = require("cluster_demo")

local APP, N = "example-windows", 6

if arg[1] == "--member" then
  -- One member (the command line gave --cluster APP): its context and its input, "words".
  local ctx, lines, name = demo.member(dstream)
  local windows = lines:flat_map(function(line) return line:gmatch("%S+") end)
    :map(function(w) return w, 1 end)
    :reduce_by_key_and_window(function(a, b) return a + b end, "2s", "2s", { partitions = N })
    :name("windows")
  -- Every window this member emitted (its state partitions' words), added up; printed once,
  -- 15 s after the start (the input was produced by then), then the member stops.
  local started, total, last, count, printed = os.time(), {}, nil, 0, false
  windows:foreach_rdd(function(rdd, time)
    local window = {}
    for _, kv in ipairs(rdd:collect()) do
      window[kv[1]] = kv[2]
      total[kv[1]] = (total[kv[1]] or 0) + kv[2]
    end
    if next(window) then
      last, count = string.format("[%s, %s) %s", os.date("%H:%M:%S", (time - 2000) / 1000),
        os.date("%H:%M:%S", time / 1000), demo.shown(window)), count + 1
    end
    if printed or os.time() - started < 15 then return end
    printed = true
    demo.say_and_stop(ctx, string.format("%s owns state partitions %s: %d windows, the last %s; in all: %s", name,
      demo.owned(windows), count, last or "(none)", demo.shown(total)))
  end)
  demo.serve(ctx)
  return
end

-- The driver of the example: a broker, three members, a producer.
demo.run { app = APP, operator = "windows", partitions = N, done = "owns",
  words = { "kafka", "group", "member", "partition", "window", "batch", "pane", "topic" }, extra = "window" }

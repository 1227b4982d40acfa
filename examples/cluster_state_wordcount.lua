-- examples/cluster_state_wordcount.lua: cluster mode with keyed state: a running word count
-- (update_state_by_key) on three processes.
--
--   dstream examples/cluster_state_wordcount.lua
--
-- Starts an embedded Kafka broker in this process with the topics the job needs: its input
-- "words" (6 partitions) and, for the state operator named "counts" with 6 state partitions,
-- example-counts-counts-repartition and example-counts-counts-changelog (the embedded broker
-- has no admin API, so a job cannot make them itself). Then three processes of the same job
-- (this file again, run as `dstream --cluster example-counts FILE --member ...`): the group
-- shares the input's partitions and the state partitions out, two each. Each member counts
-- the words of the lines it reads per batch (reduce_by_key), sends the counts to the state
-- partition of each word (the repartition topic), and adds what its own state partitions
-- receive to their running counts, which start from an initial state (counts carried over from
-- an earlier job: seeded once, at the cluster's first start, by the first owner of each state
-- partition, which writes them to the changelog). After ~15 s each prints the state partitions it owns and
-- their counts, the keys it holds and the restores it ran, and stops: every word is in one
-- member's output, with its whole count.
local dstream = require("dstream")
-- The broker, the members and the producer standing in for machines (examples/lib/).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/lib/?.lua;" .. package.path
local demo = require("cluster_demo")

local APP, N = "example-counts", 6
local INITIAL = { { "kafka", 100 }, { "legacy", 5 } } -- the (word, count) pairs the state starts from

if arg[1] == "--member" then
  -- One member (the command line gave --cluster APP): its context and its input, "words".
  local ctx, lines, name = demo.member(dstream)
  local counts = lines:flat_map(function(line) return line:gmatch("%S+") end)
    :map(function(w) return w, 1 end)
    :reduce_by_key(function(a, b) return a + b end)
    :update_state_by_key(function(values, total)
      total = total or 0
      for i = 1, #values do total = total + values[i] end
      return total
    end, { partitions = N, initial = ctx:parallelize(INITIAL, 1, { pairs = true }) })
    :name("counts")
  -- The counts of the state partitions this member owns, printed once, 15 s after the start
  -- (the input was produced by then), then the member stops.
  local started, printed = os.time(), false
  counts:foreach_rdd(function(rdd)
    if printed or os.time() - started < 15 then return end
    printed = true
    local shown = {}
    for _, kv in ipairs(rdd:collect()) do shown[#shown + 1] = kv[1] .. "=" .. kv[2] end
    table.sort(shown)
    print(string.format("%s owns state partitions %s: %s", name, demo.owned(counts),
      table.concat(shown, " ")))
    -- What /metrics (and, with --ui, the live page's Cluster section) says of it: the keys it
    -- holds (its own state partitions' only), the restores from the changelog it ran, and the
    -- entries its state skipped as applied already (a batch of a killed member read again: none
    -- here, nobody is killed).
    local m = ctx:metrics()
    m:render() -- (runs the collectors that refresh the gauges)
    local op = { operator = "counts" }
    demo.say_and_stop(ctx, string.format("%s holds %d keys; restored %d state partitions (%d changelog records);"
      .. " skipped %d entries as applied already", name,
      m:get("dstream_state_keys"):value(op) or 0, m:get("dstream_cluster_restores_total"):value(op) or 0,
      m:get("dstream_cluster_restored_changes_total"):value(op) or 0,
      m:get("dstream_cluster_replayed_entries_total"):value(op) or 0))
  end)
  demo.serve(ctx)
  return
end

-- The driver of the example: a broker, three members, a producer.
demo.run { app = APP, operator = "counts", partitions = N, done = "restored", initial = INITIAL,
  words = { "kafka", "group", "member", "partition", "stream", "batch", "state", "topic" }, extra = "state" }

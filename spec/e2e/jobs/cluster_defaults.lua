-- spec/e2e/jobs/cluster_defaults.lua: the job of spec/e2e/cluster_defaults.sh, a cluster member
-- at the settings a user gets: no consumer conf (librdkafka's session.timeout.ms of 45 s and
-- heartbeat of 3 s), the default batch interval (1 s) and checkpoint_interval (10 s).
--   dstream --cluster APP [--checkpoint DIR] [--ui ADDR] cluster_defaults.lua BROKERS TOPIC OUT N
-- A running word count (update_state_by_key, "counts"), a sliding windowed count
-- (reduce_by_key_and_window with an inverse, 4 s every 2 s, "windows") and an interval join of
-- two streams ("pairs": each line's first word, at 10 ms per offset of its partition, the lines
-- of partitions 0 and 2 joined with those of 1 and 3 within 30 ms), all with N state
-- partitions. Writes, as each batch is computed:
--   OUT.ranges   the input offsets each batch read ("partition from until"), before its pairs go
--                on to the repartition topics (so a batch killed half-way is there too);
--   OUT.state    after each batch: "# owns P,Q" (the counts' state partitions it owns), then
--                the (word, count) pairs of those partitions (replaced whole, by a rename);
--   OUT.windows  every window it emitted: "time word count" lines, appended;
--   OUT.windows-owned  after each batch: the windows' state partitions it owns ("P,Q");
--   OUT.pairs    every pair the join emitted: "partition offset partition offset" (left, right).
local dstream = require("dstream")
local text = require("dstream.text")
local brokers, topic, out, n = arg[1], arg[2], arg[3], tonumber(arg[4])

local ctx = dstream.context { workers = 2, name = "e2e-cluster-defaults" }
local lines = ctx:kafka_stream { brokers = brokers, topics = { topic }, start = "earliest",
  with_meta = true } -- (records: { partition =, offset =, value =, ... })
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local read = require("read_ranges")(lines, out)
local words = read:flat_map(function(r) return text.words(r.value) end):map(function(w) return w, 1 end)

local counts = words:reduce_by_key(function(a, b) return a + b end)
  :update_state_by_key(function(values, total)
    total = total or 0
    for i = 1, #values do total = total + values[i] end
    return total
  end, { partitions = n })
  :name("counts")
-- "P,Q": the state partitions of a keyed operator's stream this process owns now.
local function owned(stream)
  local parts = {}
  for _, o in ipairs(stream:kafka_stats().assigned or {}) do parts[#parts + 1] = o.partition end
  table.sort(parts)
  return table.concat(parts, ",")
end
-- Writes FILE whole (a reader never sees half of it).
local function replace(file, content)
  local tmp = assert(io.open(file .. ".tmp", "w"))
  tmp:write(content)
  tmp:close()
  os.rename(file .. ".tmp", file)
end

counts:foreach_rdd(function(rdd)
  local rows = { "# owns " .. owned(counts) }
  for _, kv in ipairs(rdd:collect()) do rows[#rows + 1] = kv[1] .. " " .. kv[2] end
  replace(out .. ".state", table.concat(rows, "\n") .. "\n")
end)

local windows = words:reduce_by_key_and_window(function(a, b) return a + b end, "4s", "2s", {
  inverse = function(acc, old) return acc - old end,
  filter = function(_, c) return c > 0 end,
  partitions = n,
}):name("windows")
local wf = assert(io.open(out .. ".windows", "a"))
windows:foreach_rdd(function(rdd, time)
  local got = rdd:collect()
  for i = 1, #got do wf:write(time, " ", got[i][1], " ", got[i][2], "\n") end
  wf:flush()
  replace(out .. ".windows-owned", owned(windows) .. "\n")
end)

-- The join: event time from the offset, so python3 knows each record's time from the chunk
-- files; a watermark of 1 h, so that no record is late however far apart the processes read
-- (the killed process's partitions wait minutes for their next owner) and the state keeps
-- every record: the pairs are the nested-loop join of the input, plus those of lines read twice.
local function side(parity)
  return read:filter(function(r) return r.partition % 2 == parity end)
    :map(function(r) return r.value:match("^(%S+)") or "", { r.partition, r.offset } end)
    :event_time(function(_, po) return po[2] * 10 end, { watermark = "1h" })
end
local joined = side(0):join(side(1), { within = "30ms", partitions = n }):name("pairs")
local pf = assert(io.open(out .. ".pairs", "a"))
joined:foreach_rdd(function(rdd)
  for _, kv in ipairs(rdd:collect()) do
    local l, r = kv[2][1], kv[2][2]
    pf:write(l[1], " ", l[2], " ", r[1], " ", r[2], "\n")
  end
  pf:flush()
end)

ctx:start()
ctx:await_termination()

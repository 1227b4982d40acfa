-- bench/cluster_restore.lua: how long cluster mode takes to restore keyed state from a
-- changelog (issue 19): one process of `dstream --cluster` gets every state partition of an
-- update_state_by_key whose changelog already holds KEYS keys, and brings them up to date
-- before its first batch. Prints a table: keys, changelog bytes read, the restore's time
-- (the tasks' sum, and the batch's wall time: partitions restore in parallel on the workers),
-- and the time per million keys.
--
--   dstream bench/cluster_restore.lua [KEYS] [WORKERS]      (default 250000 keys, 2 workers)
--
-- The embedded broker keeps 5 MiB per partition, so the changelog has a partition per 25,000
-- keys (at least 8); the changelog is written beforehand with a producer, in the format the
-- keyed stage writes (string.buffer key and state, a batch's marker per partition).
local buffer = require("string.buffer")
local dstream = require("dstream")
local kafka = require("dstream.kafka")
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")

local KEYS = tonumber(arg[1]) or 250000
local WORKERS = tonumber(arg[2]) or 2
local N = math.max(8, math.ceil(KEYS / 25000))
local APP = "bench-restore"
local changelog, repartition = APP .. "-counts-changelog", APP .. "-counts-repartition"

local mock = kafka.mock_cluster { brokers = 1, topics = { input = 1, [changelog] = N, [repartition] = N } }
local brokers = mock:bootstrap()

-- The changelog: key i with count i, in the partition the map side would send it to.
local hash = require("dstream.worker.task").key_hash
local producer = kafka.producer { brokers = brokers }
local enc = buffer.new()
for i = 1, KEYS do
  local k = "key" .. i
  local p = hash(k) % N
  local kb = enc:reset():encode(k):tostring()
  producer:send(changelog, enc:reset():encode(i):tostring(), kb, p)
  if i % 50000 == 0 then assert(producer:flush(60000)) end
end
for p = 0, N - 1 do producer:send(changelog, "0", "\0", p) end
assert(producer:flush(60000))
producer:close()

local ctx = dstream.context { batch = "1s", clock = "manual", workers = WORKERS, cluster = APP }
local input = ctx:kafka_stream { brokers = brokers, topic = "input", start = "earliest",
  conf = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 } }
local held = 0
local counts = input:map(function(w) return w, 1 end):update_state_by_key(function(values, n)
  return n
end, { partitions = N }):name("counts")
counts:foreach_rdd(function(rdd) held = rdd:count() end)
ctx:start()
-- Wait for the group to give this process every state partition (the first join waits 3 s).
local t_wait = lib.now()
while #(counts:kafka_stats().assigned or {}) < N do
  os.execute("sleep 0.1")
  assert(lib.now() - t_wait < 60, "no assignment within 60 s")
end
local t0 = lib.now()
ctx:advance(1)
local wall = lib.now() - t0
local m = ctx:metrics()
local function metric(name)
  local text = m:render()
  return tonumber(text:match(name .. '{operator="counts"} ([%d.e+-]+)')) or 0
end
local secs, bytes = metric("dstream_cluster_restore_seconds_total"), metric("dstream_cluster_restored_bytes_total")
ctx:stop()
mock:close()
assert(held == KEYS, "the state holds " .. held .. " keys, not " .. KEYS)
print(string.format("%-10s %-9s %-10s %-14s %-14s %-12s %s", "keys", "workers", "partitions",
  "changelog MB", "tasks' sum s", "batch wall s", "s per million keys (wall)"))
print(string.format("%-10d %-9d %-10d %-14.1f %-14.2f %-12.2f %.2f", KEYS, WORKERS, N,
  bytes / 1e6, secs, wall, wall / KEYS * 1e6))

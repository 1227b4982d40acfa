-- spec/e2e/jobs/cluster_window_kill.lua: the job of spec/e2e/cluster_output_kill.sh, a cluster
-- member at the settings a user gets (no consumer conf: librdkafka's 45 s session timeout; the
-- default batch interval and checkpoint_interval), whose output can be killed.
--   dstream --cluster APP [--checkpoint DIR] cluster_window_kill.lua BROKERS TOPIC OUT KILL_AT [fast]
-- A windowed word count (2 s windows every 1 s, so each record is in 2 windows) appending each
-- window's "time word count" lines to OUT. KILL_AT = k > 0: at the k-th window that holds
-- anything, the process SIGKILLs itself before writing it: its keyed stage applied the batch
-- and wrote the changes to the changelog, the batch's output never happened. `fast`: the
-- settings of spec/cluster_once_spec.lua's run of it (3 s sessions, 500 ms batches, 80
-- records per partition and batch), of which this suite's run is the twin at the defaults.
local dstream = require("dstream")
local text = require("dstream.text")
local brokers, topic, out_file, kill_at, fast = arg[1], arg[2], arg[3], tonumber(arg[4]), arg[5] == "fast"

local ctx = dstream.context { name = "e2e-cluster-window-kill", batch = fast and "500ms" or nil,
  workers = fast and 2 or nil }
local out, seen = assert(io.open(out_file, "a")), 0
ctx:kafka_stream { brokers = brokers, topics = { topic }, start = "earliest",
    max_rate_per_partition = fast and 80 or nil,
    conf = fast and { ["session.timeout.ms"] = "3000", ["heartbeat.interval.ms"] = "300" } or nil }
  :flat_map(function(line) return text.words(line) end)
  :map(function(w) return w, 1 end)
  :reduce_by_key_and_window(function(a, b) return a + b end, "2s", "1s", { partitions = 3 })
  :name("windows")
  :foreach_rdd(function(rdd, time)
    local got = rdd:collect()
    if #got > 0 then
      seen = seen + 1
      if seen == kill_at then
        io.stderr:write("killing this process before it writes window ", time, "\n")
        os.execute("kill -9 " .. io.open("/proc/self/stat"):read("*l"):match("^(%d+)"))
      end
    end
    for _, kv in ipairs(got) do out:write(string.format("%d %s %d\n", time, kv[1], kv[2])) end
    out:flush()
  end)
ctx:start()
ctx:await_termination()

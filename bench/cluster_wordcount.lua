-- bench/cluster_wordcount.lua: records/s of a running word count (reduce_by_key per batch,
-- then update_state_by_key across the processes) on 1, 2 and 3 processes of
-- `dstream --cluster`, against an embedded broker in this process (issue 19). For each
-- count: the members start and join the group, then LINES lines are produced into "words"
-- (6 partitions), and the clock runs until the members' states hold every word. Prints a
-- table: processes, words, seconds, words/s, words/s per core (the cores in use: one worker
-- per process, at most the machine's), and how long the states took to hold every word after
-- the last line was produced. When that is about a batch (0.5 s), the members kept up and the
-- figure is the producer's (one thread in this process, sharing the cores), not the cluster's.
--
--   dstream bench/cluster_wordcount.lua [LINES]          (default 200000)
local kafka = require("dstream.kafka")

if arg[1] == "--member" then
  -- A member: arg[2] brokers, arg[3] the file it writes "words-held owned-partitions" to.
  local dstream = require("dstream")
  local text = require("dstream.text")
  local brokers, out = arg[2], arg[3]
  local ctx = dstream.context { batch = "500ms", workers = 1 }
  local lines = ctx:kafka_stream { brokers = brokers, topics = { "words" }, start = "earliest",
    max_rate_per_partition = 200000,
    conf = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500 } }
  local counts = lines:flat_map(function(l) return text.words(l) end)
    :map(function(w) return w, 1 end)
    :reduce_by_key(function(a, b) return a + b end)
    :update_state_by_key(function(values, n)
      n = n or 0
      for i = 1, #values do n = n + values[i] end
      return n
    end, { partitions = 6 }):name("counts")
  counts:foreach_rdd(function(rdd)
    local held = 0
    for _, kv in ipairs(rdd:collect()) do held = held + kv[2] end
    local f = assert(io.open(out .. ".tmp", "w"))
    f:write(held, " ", #(counts:kafka_stats().assigned or {}), " ", #(lines:kafka_stats().assigned or {}), "\n")
    f:close()
    os.rename(out .. ".tmp", out)
  end)
  ctx:start()
  ctx:await_termination()
  return
end

local LINES = tonumber(arg[1]) or 200000
local ffi = require("ffi")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout); int kill(int pid, int sig);")
local function sleep_ms(ms) ffi.C.poll(nil, 0, ms) end
local function now() return require("dstream.core").now_ms() / 1000 end
local self_path, interpreter = arg[0], arg[-1] or "dstream"
local words_list = { "the", "a", "stream", "batch", "window", "kafka", "broker", "partition",
  "offset", "record", "key", "value", "topic", "group", "commit", "state" }

local function run(nproc)
  local app = "bench-cw" .. nproc
  local mock = kafka.mock_cluster { brokers = 1, topics = { words = 6,
    [app .. "-counts-repartition"] = 6, [app .. "-counts-changelog"] = 6 } }
  local brokers = mock:bootstrap()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  for m = 1, nproc do
    os.execute(string.format("%q --cluster %s --log-level error %q --member %q %s/m%d > %s/m%d.log 2>&1 & echo $! > %s/m%d.pid",
      interpreter, app, self_path, brokers, dir, m, dir, m, dir, m))
  end
  local function status(m)
    local f = io.open(string.format("%s/m%d", dir, m))
    if not f then return 0, 0, 0 end
    local held, state_parts, input_parts = f:read("*n", "*n", "*n")
    f:close()
    return held or 0, state_parts or 0, input_parts or 0
  end
  -- Wait until the group has given out every input and state partition.
  local t_wait = now()
  while true do
    local s, i = 0, 0
    for m = 1, nproc do
      local _, sp, ip = status(m)
      s, i = s + sp, i + ip
    end
    if s == 6 and i == 6 then break end
    assert(now() - t_wait < 90, "the members did not share the partitions within 90 s")
    sleep_ms(200)
  end
  local producer = kafka.producer { brokers = brokers }
  local total, t0 = 0, now()
  for i = 1, LINES do
    local n = 1 + i % 7
    local parts = {}
    for j = 1, n do parts[j] = words_list[1 + (i * j) % #words_list] end
    total = total + n
    producer:send("words", table.concat(parts, " "), nil, i % 6)
    if i % 20000 == 0 then assert(producer:flush(60000)) end
  end
  assert(producer:flush(60000))
  producer:close()
  local t_produced = now()
  local held
  repeat
    held = 0
    for m = 1, nproc do held = held + status(m) end
    assert(now() - t0 < 300, "the members did not count every word within 300 s")
    sleep_ms(100)
  until held >= total
  local t_done = now()
  local secs = t_done - t0
  for m = 1, nproc do
    local f = io.open(string.format("%s/m%d.pid", dir, m))
    local pid = f and tonumber(f:read("*l"))
    if f then f:close() end
    if pid then ffi.C.kill(pid, 15) end
  end
  sleep_ms(3000)
  os.execute("rm -rf " .. dir)
  mock:close()
  return total, held, secs, t_done - t_produced
end

print(string.format("%-10s %-10s %-10s %-9s %-12s %-17s %s", "processes", "words", "held", "seconds",
  "words/s", "words/s per core", "after the input s"))
local cores = require("dstream.core").cores()
for nproc = 1, 3 do
  local total, held, secs, after = run(nproc)
  print(string.format("%-10d %-10d %-10d %-9.2f %-12.0f %-17.0f %.2f", nproc, total, held, secs,
    total / secs, total / secs / math.min(nproc, cores), after))
  io.stdout:flush()
end

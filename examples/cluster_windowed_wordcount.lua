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
local kafka = require("dstream.kafka")

local APP, N = "example-windows", 6

local function shown(counts)
  local list = {}
  for w, n in pairs(counts) do list[#list + 1] = w .. "=" .. n end
  table.sort(list)
  return table.concat(list, " ")
end

if arg[1] == "--member" then
  -- One member: arg[2] = brokers, arg[3] = its name. The command line gave --cluster APP.
  local brokers, name = arg[2], arg[3]
  local ctx = dstream.context { batch = "500ms", workers = 2, name = name }
  local lines = ctx:kafka_stream { brokers = brokers, topics = { "words" }, start = "earliest",
    -- A member that dies is noticed after its session timeout: short here, for the example.
    conf = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 } }
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
        os.date("%H:%M:%S", time / 1000), shown(window)), count + 1
    end
    if printed or os.time() - started < 15 then return end
    printed = true
    local parts = {}
    for _, o in ipairs(windows:kafka_stats().assigned or {}) do parts[#parts + 1] = o.partition end
    table.sort(parts)
    print(string.format("%s owns state partitions %s: %d windows, the last %s; in all: %s", name,
      table.concat(parts, ","), count, last or "(none)", shown(total)))
    io.stdout:flush()
    ctx:stop { graceful = true }
  end)
  ctx:start()
  ctx:await_termination()
  return
end

-- The driver of the example: a broker, three members, a producer.
local mock = kafka.mock_cluster { brokers = 1, topics = { words = 6,
  [APP .. "-windows-repartition"] = N, [APP .. "-windows-changelog"] = N } }
local brokers = mock:bootstrap()
local self_path, interpreter = arg[0], arg[-1] or "dstream"
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir) == 0 or true)
for m = 1, 3 do
  -- In the background (&): the three run at once and join the group together.
  os.execute(string.format("%q --cluster %s --log-level error %q --member %q member%d > %s/member%d.out 2>&1 &",
    interpreter, APP, self_path, brokers, m, dir, m))
end
local producer = kafka.producer { brokers = brokers }
local words = { "kafka", "group", "member", "partition", "window", "batch", "pane", "topic" }
local ffi = require("ffi")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")
-- Lines for 4 s once the members have joined (the embedded broker's first rebalance waits 3 s;
-- a member that reads while the group rebalances may read records again: see the guide);
-- what was produced is printed at the end, to compare with the members' sums.
os.execute("sleep 7")
local produced = {}
for i = 1, 40 do
  local a, b = words[1 + (i - 1) % 8], words[1 + (i * 3) % 8]
  assert(producer:send("words", a .. " " .. b .. (i % 4 == 0 and " window" or ""), nil, (i - 1) % 6))
  produced[a] = (produced[a] or 0) + 1
  produced[b] = (produced[b] or 0) + 1
  if i % 4 == 0 then produced.window = (produced.window or 0) + 1 end
  assert(producer:flush(5000))
  ffi.C.poll(nil, 0, 100)
end
producer:close()
-- The members print 15 s after their start, and stop: wait for them.
local function output(m)
  local fh = io.open(string.format("%s/member%d.out", dir, m))
  local text = fh and fh:read("*a") or ""
  if fh then fh:close() end
  return text
end
for _ = 1, 200 do
  if output(1):find("owns") and output(2):find("owns") and output(3):find("owns") then break end
  ffi.C.poll(nil, 0, 100)
end
for m = 1, 3 do
  local text = output(m)
  io.write(text ~= "" and text or ("member" .. m .. ": no output\n"))
  os.remove(string.format("%s/member%d.out", dir, m))
end
print("produced " .. shown(produced))
os.remove(dir)
mock:close()

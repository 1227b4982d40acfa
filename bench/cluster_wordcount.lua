-- bench/cluster_wordcount.lua: records/s of a running word count (reduce_by_key per batch,
-- then update_state_by_key across the processes) on 1, 2 and 3 processes of
-- `dstream --cluster`, against an embedded broker in this process (issue 19).
--
-- For each count of processes: LINES lines are produced into topic "words" (24 partitions)
-- first, before any member starts, so no producer competes with the members for the cores
-- while they are timed. Then the members start together (the embedded broker's first join
-- waits 3 s, so they join as one group and share the partitions from the first assignment)
-- and count. Each member writes, after each batch, the words its state holds, when its first
-- batch with records began and when its held count last moved; the run's time is from the
-- earliest first batch to the last move, once the states hold every word. CPU seconds are
-- read from /proc for the members (user + system) and for this process (the broker serving
-- the fetches, repartition and changelog writes), so the per-core figures say what a second
-- of CPU does, whatever the number of processes sharing this machine's cores.
--
-- "send tasks" and "keyed tasks" add up, over the members and their batches, the run time of the
-- tasks of the stage that sends the combined pairs to the repartition topic and of the keyed
-- stage (stage task_ms of on_batch_completed): the two ends of the repartition topic.
--
-- Prints a table; never fails on timing (only when the words are not all counted).
--
-- The words come from a list of 16 by default, so a batch's per-task combine leaves few keys to
-- send; words=N takes them from N distinct words ("w0".."w<N-1>"), so each map task sends up to N
-- keys per batch through the repartition topic (its bundles, dstream.worker.bundles).
--
--   dstream bench/cluster_wordcount.lua [LINES] [PROCESSES...] [words=N]
--   (default 2000000 lines; 1 2 3; the list of 16 words)
local kafka = require("dstream.kafka")
local core = require("dstream.core")

local PARTS, STATE_PARTS, BATCH_MS = 24, 6, 500

if arg[1] == "--member" then
  -- A member: arg[2] brokers, arg[3] the file it writes its figures to.
  local dstream = require("dstream")
  local text = require("dstream.text")
  local brokers, out = arg[2], arg[3]
  local ctx = dstream.context { batch = BATCH_MS .. "ms", workers = 1 }
  local lines = ctx:kafka_stream { brokers = brokers, topics = { "words" }, start = "earliest",
    max_rate_per_partition = 400000,
    conf = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 500 } }
  local first_ms, last_ms, moved_ms, last_held = 0, 0, 0, -1
  local send_ms, keyed_ms = 0, 0 -- the tasks' time in the map side's stage that sends, the keyed stage's
  ctx:on_batch_completed(function(b) -- (b.records: what its inputs sealed into the batch)
    if b.records > 0 then
      if first_ms == 0 then first_ms = b.time - BATCH_MS end -- (they arrived in its interval)
      last_ms = b.finished_at
    end
    for _, st in ipairs(b.stages or {}) do
      if st.name == "update_state_by_key (repartition)" then send_ms = send_ms + st.task_ms
      elseif st.name == "update_state_by_key" then keyed_ms = keyed_ms + st.task_ms end
    end
  end)
  local counts = lines:flat_map(text.words)
    :map(function(w) return w, 1 end)
    :reduce_by_key(function(a, b) return a + b end)
    :update_state_by_key(function(values, n)
      n = n or 0
      for i = 1, #values do n = n + values[i] end
      return n
    end, { partitions = STATE_PARTS }):name("counts")
  counts:foreach_rdd(function(rdd)
    local held = 0
    for _, kv in ipairs(rdd:collect()) do held = held + kv[2] end
    if held ~= last_held then last_held, moved_ms = held, core.now_ms() end
    local f = assert(io.open(out .. ".tmp", "w"))
    f:write(string.format("%d %d %d %.0f %.0f %.0f %d %.1f %.1f\n", held, #(counts:kafka_stats().assigned or {}),
      #(lines:kafka_stats().assigned or {}), first_ms, last_ms, moved_ms, lines:kafka_stats().rebalances or 0,
      send_ms, keyed_ms))
    f:close()
    os.rename(out .. ".tmp", out)
  end)
  -- Every member starts (joins the group) when the bench says go, so that they join in the
  -- same round of the group's first assignment (the embedded broker waits 3 s for members).
  local ffi = require("ffi")
  pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")
  while not io.open(out .. ".go") do ffi.C.poll(nil, 0, 5) end
  ctx:start()
  ctx:await_termination()
  return
end

local LINES, VOCAB, COUNTS = 2000000, nil, {}
for i = 1, #arg do
  local words = arg[i]:match("^words=(%d+)$")
  if words then VOCAB = tonumber(words)
  elseif i == 1 then LINES = tonumber(arg[1])
  else COUNTS[#COUNTS + 1] = tonumber(arg[i]) end
end
if #COUNTS == 0 then COUNTS = { 1, 2, 3 } end
-- The embedded broker keeps 5 MiB per partition and drops what comes before: a line here
-- takes about 40 bytes of its log.
if LINES / PARTS * 40 > 4.5 * 2 ^ 20 then
  error(string.format("%d lines would pass the embedded broker's 5 MiB per partition (%d partitions):"
    .. " at most %d", LINES, PARTS, math.floor(4.5 * 2 ^ 20 / 40 * PARTS)), 0)
end
local ffi = require("ffi")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout); int kill(int pid, int sig);")
local function sleep_ms(ms) ffi.C.poll(nil, 0, ms) end
local function now() return core.now_ms() / 1000 end
local self_path, interpreter = arg[0], arg[-1] or "dstream"
local words_list = { "the", "a", "stream", "batch", "window", "kafka", "broker", "partition",
  "offset", "record", "key", "value", "topic", "group", "commit", "state" }
local TICKS = 100 -- clock ticks per second of /proc/PID/stat (USER_HZ: 100 on Linux)

-- CPU seconds (user + system) of process `pid` ("self" for this one), from /proc.
local function cpu_seconds(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local line = f:read("*l")
  f:close()
  local rest = line:match("%) (.*)$") -- after the command name, which may hold spaces
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  return (tonumber(fields[12]) + tonumber(fields[13])) / TICKS -- utime, stime (fields 14, 15)
end

local function run(nproc)
  local app = "bench-cw" .. nproc
  local mock = kafka.mock_cluster { brokers = 1, topics = { words = PARTS,
    [app .. "-counts-repartition"] = STATE_PARTS, [app .. "-counts-changelog"] = STATE_PARTS } }
  local brokers = mock:bootstrap()
  -- The input, produced before any member starts.
  local producer = kafka.producer { brokers = brokers }
  local total = 0
  for i = 1, LINES do
    local n = 1 + i % 7
    local parts = {}
    for j = 1, n do parts[j] = VOCAB and "w" .. (i * j) % VOCAB or words_list[1 + (i * j) % #words_list] end
    total = total + n
    producer:send("words", table.concat(parts, " "), nil, i % PARTS)
    if i % 50000 == 0 then assert(producer:flush(60000)) end
  end
  assert(producer:flush(60000))
  producer:close()

  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  local self_cpu0 = cpu_seconds("self")
  for m = 1, nproc do -- (exec: the pid written is the member's own, not a shell's)
    os.execute(string.format("sh -c 'echo $$ > %s/m%d.pid; exec %q --cluster %s --log-level error %q --member %q %s/m%d' > %s/m%d.log 2>&1 &",
      dir, m, interpreter, app, self_path, brokers, dir, m, dir, m))
  end
  local function status(m)
    local f = io.open(string.format("%s/m%d", dir, m))
    if not f then return 0, 0, 0, 0, 0, 0, 0, 0, 0 end
    local held, state_parts, input_parts, first_ms, last_ms, moved_ms, rebalances, send_ms, keyed_ms =
      f:read("*n", "*n", "*n", "*n", "*n", "*n", "*n", "*n", "*n")
    f:close()
    return held or 0, state_parts or 0, input_parts or 0, first_ms or 0, last_ms or 0, moved_ms or 0,
      rebalances or 0, send_ms or 0, keyed_ms or 0
  end
  sleep_ms(1500) -- (the members load)
  for m = 1, nproc do io.open(string.format("%s/m%d.go", dir, m), "w"):close() end
  local t_launch, held, last_held, t_moved, rebalanced = now(), 0, -1, now(), false
  local shares = {}
  repeat
    held = 0
    for m = 1, nproc do
      local h, sp, ip, _, _, _, rb = status(m)
      held, rebalanced = held + h, rebalanced or rb > 1
      shares[m] = ip .. "/" .. sp .. " (" .. rb .. ")"
    end
    if held ~= last_held then last_held, t_moved = held, now() end
    assert(now() - t_moved < 30, string.format("the states hold %d of the %d words, and no more for 30 s", held, total))
    assert(now() - t_launch < 300, "the members did not count every word within 300 s")
    sleep_ms(100)
  until held >= total
  local first, last_in, last, send_s, keyed_s = math.huge, 0, 0, 0, 0
  for m = 1, nproc do
    local _, _, _, first_ms, last_ms, moved_ms, _, send_ms, keyed_ms = status(m)
    if first_ms > 0 then first = math.min(first, first_ms) end
    last_in, last = math.max(last_in, last_ms), math.max(last, moved_ms)
    send_s, keyed_s = send_s + send_ms / 1000, keyed_s + keyed_ms / 1000
  end
  local member_cpu = 0
  local pids = {}
  for m = 1, nproc do
    local f = io.open(string.format("%s/m%d.pid", dir, m))
    pids[m] = f and tonumber(f:read("*l"))
    if f then f:close() end
    member_cpu = member_cpu + (pids[m] and cpu_seconds(pids[m]) or 0)
  end
  local broker_cpu = cpu_seconds("self") - self_cpu0
  for m = 1, nproc do
    if pids[m] then ffi.C.kill(pids[m], 15) end
  end
  sleep_ms(3000)
  os.execute("rm -rf " .. dir)
  mock:close()
  return { total = total, held = held, secs = (last_in - first) / 1000, after = (last - last_in) / 1000,
    member_cpu = member_cpu, send_s = send_s, keyed_s = keyed_s,
    broker_cpu = broker_cpu, shares = table.concat(shares, " "), rebalanced = rebalanced }
end

local cores = core.cores()
print(string.format("%d lines of %s into %d partitions, produced before the members start; %d state"
  .. " partitions; 1 worker per process; %d cores (shared)", LINES, VOCAB and VOCAB .. " distinct words"
  or "16 distinct words", PARTS, STATE_PARTS, cores))
print(string.format("%-10s %-9s %-8s %-10s %-13s %-12s %-11s %-12s %-12s %-11s %-11s %s", "processes", "words",
  "seconds", "words/s", "words/s/core", "members CPU", "broker CPU", "words/CPU-s", "state after",
  "send tasks", "keyed tasks", "input/state partitions per member (input rebalances)"))
for _, nproc in ipairs(COUNTS) do
  -- A run whose group moved partitions after its first assignment (the embedded broker's
  -- rebalances, see the guide) times the moves, not the cluster: it is run again (3 tries).
  local r
  for try = 1, 3 do
    r = run(nproc)
    if not r.rebalanced then break end
    print(string.format("# %d processes, try %d: the group rebalanced during the run (%.2f s); again", nproc, try, r.secs))
  end
  -- Per core: the cores the members could use at once (one worker each, at most the machine's).
  print(string.format("%-10d %-9d %-8.2f %-10.0f %-13.0f %-12.2f %-11.2f %-12.0f %-12.2f %-11.2f %-11.2f %s", nproc,
    r.total, r.secs, r.total / r.secs, r.total / r.secs / math.min(nproc, cores), r.member_cpu, r.broker_cpu,
    r.total / r.member_cpu, r.after, r.send_s, r.keyed_s, r.shares))
  io.stdout:flush()
end

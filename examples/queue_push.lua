-- examples/queue_push.lua: feeding a running job from the driver with queue_stream's push.
--
--   dstream examples/queue_push.lua
--
-- A work queue with retries: each batch takes the tasks queued before it. A task "fails" on
-- its first attempts (deterministically: task n needs n % 3 + 1 attempts), and foreach_rdd
-- pushes the failed ones back into the queue, so they are in the next batch. The script
-- pushes new work between batches too (ctx:advance runs one batch at a time on the manual
-- clock). It prints each batch's outcome and ends with "OK" once every task is done.
local dstream = require("dstream")

local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2 }

-- Items are lists of tasks; one_at_a_time = false: a batch takes everything queued.
local queue = ctx:queue_stream({}, { one_at_a_time = false })

local results = queue:map(function(t)
  local done = t.attempt >= t.id % 3 + 1
  return { id = t.id, attempt = t.attempt, done = done }
end)

local finished = {}
results:foreach_rdd(function(rdd, time)
  local ok, retry = {}, {}
  for _, r in ipairs(rdd:collect()) do
    if r.done then
      ok[#ok + 1] = r.id
      finished[r.id] = r.attempt
    else
      retry[#retry + 1] = { id = r.id, attempt = r.attempt + 1 }
    end
  end
  table.sort(ok)
  table.sort(retry, function(a, b) return a.id < b.id end)
  if #retry > 0 then queue:push(retry) end -- the next batch takes them
  local ids = {}
  for i, t in ipairs(retry) do ids[i] = t.id end
  print(string.format("batch %d ms: done %s; retry %s", time,
    #ok > 0 and table.concat(ok, ",") or "-", #ids > 0 and table.concat(ids, ",") or "-"))
end)

local function work(from, to)
  local tasks = {}
  for id = from, to do tasks[#tasks + 1] = { id = id, attempt = 1 } end
  return tasks
end

queue:push(work(1, 4)) -- before the start: the first batch takes it
ctx:start()
ctx:advance(1)
queue:push(work(5, 6)) -- while the job runs: the second batch takes it, with the retries
ctx:advance(3)
ctx:stop()

local n = 0
for id, attempts in pairs(finished) do
  assert(attempts == id % 3 + 1, "task " .. id .. " took " .. attempts .. " attempts")
  n = n + 1
end
assert(n == 6, "expected 6 tasks done, got " .. n)
print("OK")

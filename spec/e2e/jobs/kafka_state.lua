-- spec/e2e/jobs/kafka_state.lua: running word counts of a Kafka topic kept in keyed state
-- (update_state_by_key), for restarts from a checkpoint.
--   dstream --checkpoint DIR kafka_state.lua BROKERS TOPIC GROUP EXPECTED [option=value ...]
-- Counts every word of every message, and the messages under the key "#messages", in state
-- named "counts". Once the state holds EXPECTED messages (and a few batches more, where a
-- message counted twice would show), stops gracefully and prints the state: "word count"
-- lines, sorted, then "# messages M" on stderr. Options:
--   limit=SECONDS (90)   rate=N (max_rate_per_partition)   progress=FILE (messages so far)
--   sink=TOPIC exactly_once=1 (to_kafka of every message value)   session=MS
--   assign=group (the group assigns partitions)
local dstream = require("dstream")

local brokers, topic, group, expected = arg[1], arg[2], arg[3], tonumber(arg[4])
local opt = {}
for i = 5, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  opt[k] = v
end
local ctx = dstream.context { batch = "300ms", name = "e2e-kafka-state" }
local lines = ctx:kafka_stream {
  brokers = brokers, topics = { topic }, group = group, start = "earliest",
  max_rate_per_partition = opt.rate and tonumber(opt.rate) or nil, assign = opt.assign,
  -- With assign=group, a member killed with SIGKILL stays in the group until its session
  -- times out.
  conf = opt.session and { ["session.timeout.ms"] = opt.session,
    ["heartbeat.interval.ms"] = math.floor(tonumber(opt.session) / 3) } or nil,
}
local counts = lines
  :flat_map(function(line)
    local t = { "#messages" }
    for w in line:gmatch("%S+") do t[#t + 1] = w end
    return t
  end)
  :map(function(w) return w, 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :update_state_by_key(function(new, old)
    local n = old or 0
    for i = 1, #new do n = n + new[i] end
    return n
  end)
  :name("counts")

local final, seen, after = nil, 0, 0
counts:foreach_rdd(function(rdd)
  local all = rdd:collect()
  local m = 0
  for _, kv in ipairs(all) do
    if kv[1] == "#messages" then m = kv[2] end
  end
  seen = m
  if opt.progress then -- whole or not at all: a reader never sees the file empty
    local fh = io.open(opt.progress .. ".tmp", "w")
    fh:write(m, "\n")
    fh:close()
    os.rename(opt.progress .. ".tmp", opt.progress)
  end
  if m >= expected then
    after = after + 1
    final = all
  end
end)
if opt.sink then
  lines:to_kafka { brokers = brokers, topic = opt.sink, exactly_once = opt.exactly_once == "1" }
end

ctx:start()
local deadline = os.time() + tonumber(opt.limit or 90)
while os.time() < deadline and after < 4 do
  if ctx:await_termination(0.2) then break end
end
ctx:stop { graceful = true }

table.sort(final or {}, function(a, b) return a[1] < b[1] end)
for _, kv in ipairs(final or {}) do
  if kv[1] ~= "#messages" then print(kv[1] .. " " .. kv[2]) end
end
io.stderr:write(string.format("# messages %d\n", seen))

-- spec/e2e/jobs/kafka_count.lua: word counts of a Kafka topic, merged on the driver.
--   dstream kafka_count.lua BROKERS TOPIC GROUP EXPECTED [option=value ...]
-- Reads TOPIC with consumer group GROUP from the earliest offset, counts the words of every
-- message per batch on the workers, adds each batch's counts and message count into driver
-- totals, and stops gracefully once EXPECTED messages were seen (plus a few batches more,
-- where a message counted twice would show). EXPECTED 0: stop after `idle` batches in a row
-- without a message, once messages came. Options:
--   limit=SECONDS (60)  sink=TOPIC (also produce every message value to TOPIC)
--   exactly_once=1      rate=N (max_rate_per_partition)   save=PREFIX (save_as_text_files of
--   the values)         idle=N (3)   progress=FILE (the message count after every batch)
--   session=MS (the group's session.timeout.ms)   assign=group (the group assigns partitions)
-- Prints "word count" lines, then "# batches B messages M" on stderr.
local dstream = require("dstream")

local brokers, topic, group, expected = arg[1], arg[2], arg[3], tonumber(arg[4])
local opt = {}
for i = 5, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  opt[k] = v
end
local limit = tonumber(opt.limit or 60)
local ctx = dstream.context { batch = "500ms", name = "e2e-kafka-count" }

local lines = ctx:kafka_stream {
  brokers = brokers, topics = { topic }, group = group, start = "earliest",
  max_rate_per_partition = opt.rate and tonumber(opt.rate) or nil, assign = opt.assign,
  -- With assign=group, a member killed with SIGKILL stays in the group until its session
  -- times out.
  conf = opt.session and { ["session.timeout.ms"] = opt.session,
    ["heartbeat.interval.ms"] = math.floor(tonumber(opt.session) / 3) } or nil,
}
local totals, messages, batches, idle = {}, 0, 0, 0
lines:foreach_rdd(function(rdd)
  batches = batches + 1
  local n = rdd:count()
  messages = messages + n
  if n == 0 and messages > 0 then idle = idle + 1 else idle = 0 end
  if opt.progress then -- whole or not at all: a reader never sees the file empty
    local fh = io.open(opt.progress .. ".tmp", "w")
    fh:write(messages, "\n")
    fh:close()
    os.rename(opt.progress .. ".tmp", opt.progress)
  end
end)
lines
  :flat_map(function(line) return line:gmatch("%S+") end)
  :map(function(word) return word, 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :foreach_rdd(function(rdd)
    for _, kv in ipairs(rdd:collect()) do totals[kv[1]] = (totals[kv[1]] or 0) + kv[2] end
  end)
if opt.sink then
  lines:to_kafka { brokers = brokers, topic = opt.sink, exactly_once = opt.exactly_once == "1" }
end
if opt.save then lines:save_as_text_files(opt.save) end

ctx:start()
local deadline = os.time() + limit
local idle_limit = tonumber(opt.idle or 3)
while os.time() < deadline do
  if expected > 0 and messages >= expected then break end
  if expected == 0 and idle >= idle_limit then break end
  if ctx:await_termination(0.2) then break end
end
ctx:await_termination(1.5)
ctx:stop { graceful = true }

local sorted = {}
for w in pairs(totals) do sorted[#sorted + 1] = w end
table.sort(sorted)
for _, w in ipairs(sorted) do print(w .. " " .. totals[w]) end
io.stderr:write(string.format("# batches %d messages %d\n", batches, messages))

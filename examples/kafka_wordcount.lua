-- examples/kafka_wordcount.lua: word counts of a Kafka topic, per batch and in total.
--
--   dstream examples/kafka_wordcount.lua       an embedded broker in this process (no Kafka
--                                              needed): produces data/streams.txt 20 times
--                                              into topic "words" (4 partitions), counts the
--                                              words and ends once every message is counted
--   dstream examples/kafka_wordcount.lua --brokers HOST:PORT [--topic words] [--seconds N]
--                                              a real Kafka: counts what arrives on the topic
--                                              (from the group's committed offsets, else the
--                                              earliest) for N seconds, or until Ctrl-C
-- Offsets are committed to the group "kafka-wordcount" after every batch.
local dstream = require("dstream")
local kafka = require("dstream.kafka")

local opts = { topic = "words" }
local i = 1
while arg[i] do
  local name = arg[i]:match("^%-%-(%w+)$")
  if not name or not arg[i + 1] then
    io.stderr:write("usage: dstream kafka_wordcount.lua [--brokers HOST:PORT] [--topic T] [--seconds N]\n")
    os.exit(2)
  end
  opts[name] = arg[i + 1]
  i = i + 2
end

local brokers, mock, expected = opts.brokers, nil, nil
if not brokers then
  -- The embedded broker, and some text produced into it.
  mock = kafka.mock_cluster { brokers = 1, topics = { [opts.topic] = 4 } }
  brokers = mock:bootstrap()
  local dir = arg[0]:match("^(.*)/[^/]*$") or "."
  local producer = kafka.producer { brokers = brokers }
  expected = 0
  for round = 1, 20 do
    for line in io.lines(dir .. "/data/streams.txt") do
      assert(producer:send(opts.topic, line, "line" .. expected))
      expected = expected + 1
    end
  end
  assert(producer:flush(10000))
  producer:close()
  print(string.format("produced %d lines into the embedded broker at %s", expected, brokers))
end

local ctx = dstream.context { batch = "1s", name = "kafka-wordcount" }
local lines = ctx:kafka_stream { brokers = brokers, topics = { opts.topic }, group = "kafka-wordcount",
  start = "earliest" }

local totals, messages = {}, 0
lines:foreach_rdd(function(rdd) messages = messages + rdd:count() end)
lines
  :flat_map(function(line) return line:lower():gmatch("%a+") end)
  :map(function(word) return word, 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :foreach_rdd(function(rdd, time)
    local counts = rdd:collect()
    if #counts == 0 then return end
    table.sort(counts, function(x, y) return x[2] > y[2] or (x[2] == y[2] and x[1] < y[1]) end)
    local top = {}
    for k = 1, #counts do
      totals[counts[k][1]] = (totals[counts[k][1]] or 0) + counts[k][2]
      if k <= 5 then top[k] = counts[k][1] .. "=" .. counts[k][2] end
    end
    print(string.format("batch %d ms: %d distinct words; top: %s", time, #counts, table.concat(top, " ")))
  end)

ctx:start()
local deadline = os.time() + tonumber(opts.seconds or (mock and 60 or 1e9))
while os.time() < deadline and not (expected and messages >= expected) do
  if ctx:await_termination(0.2) then break end
end
ctx:stop { graceful = true }

local words, n = {}, 0
for w, c in pairs(totals) do
  words[#words + 1] = { w, c }
  n = n + c
end
table.sort(words, function(x, y) return x[2] > y[2] or (x[2] == y[2] and x[1] < y[1]) end)
local top = {}
for k = 1, math.min(5, #words) do top[k] = words[k][1] .. "=" .. words[k][2] end
print(string.format("total: %d words in %d messages; top: %s", n, messages, table.concat(top, " ")))
if mock then mock:close() end

-- examples/kafka_exactly_once.lua: running word counts of a Kafka topic, kept in keyed state
-- that survives restarts, with every count update written to a topic in transactions.
--
--   dstream --checkpoint DIR examples/kafka_exactly_once.lua
--        an embedded broker in this process (no Kafka needed): produces data/streams.txt 5
--        times into topic "lines", counts until every message is in the state, and prints
--        the top words and the group's committed offsets. The embedded broker lives and dies
--        with the process, so each run needs a fresh DIR (a DIR from an earlier run holds the
--        offsets of a broker that is gone: the job refuses it and says so)
--   dstream --checkpoint DIR examples/kafka_exactly_once.lua --brokers HOST:PORT [--seconds N]
--        a real Kafka: reads "lines", writes "word count" updates to "word-counts"; kill it
--        (even with kill -9) and start it again with the same DIR: the counts go on exactly
--        where the checkpoint left them, and "word-counts" (read with isolation.level =
--        read_committed) holds each batch's updates once
--
-- With a checkpoint directory, to_kafka{ exactly_once = true } commits in two phases: each
-- batch's transaction (its records and the input offsets) is committed right after the
-- batch's checkpoint is written, and a restart goes back to the checkpoint that matches what
-- Kafka committed (see "exactly_once with checkpoints" in docs/guide.md).
local dstream = require("dstream")
local kafka = require("dstream.kafka")

local opts = {}
local i = 1
while arg[i] do
  local name = arg[i]:match("^%-%-(%w+)$")
  if not name or not arg[i + 1] then
    io.stderr:write("usage: dstream --checkpoint DIR kafka_exactly_once.lua [--brokers HOST:PORT] [--seconds N]\n")
    os.exit(2)
  end
  opts[name] = arg[i + 1]
  i = i + 2
end

local brokers, mock, expected = opts.brokers, nil, nil
if not brokers then
  mock = kafka.mock_cluster { brokers = 1, topics = { lines = 2, ["word-counts"] = 1 } }
  brokers = mock:bootstrap()
  local dir = arg[0]:match("^(.*)/[^/]*$") or "."
  local producer = kafka.producer { brokers = brokers }
  expected = 0
  for _ = 1, 5 do
    for line in io.lines(dir .. "/data/streams.txt") do
      assert(producer:send("lines", line))
      expected = expected + 1
    end
  end
  assert(producer:flush(10000))
  producer:close()
  print(string.format("produced %d lines into the embedded broker at %s", expected, brokers))
end

local ctx = dstream.context { batch = "500ms", name = "kafka-exactly-once" }
local counts = ctx:kafka_stream { brokers = brokers, topics = { "lines" }, group = "kafka-exactly-once",
    start = "earliest" }
  :flat_map(function(line)
    local words = { "#lines" } -- also count the messages, under a key of their own
    for w in line:lower():gmatch("%a+") do words[#words + 1] = w end
    return words
  end)
  :map(function(word) return word, 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :update_state_by_key(function(new, total)
    total = total or 0
    for k = 1, #new do total = total + new[k] end
    return total
  end)
  :name("word counts")

-- Every batch, the counts of all words so far, as "word count" messages keyed by word.
counts:map(function(word, n) return word, word .. " " .. n end)
  :to_kafka { brokers = brokers, topic = "word-counts", exactly_once = true }

local seen, top = 0, {}
counts:foreach_rdd(function(rdd)
  local all = rdd:collect()
  table.sort(all, function(x, y) return x[2] > y[2] or (x[2] == y[2] and x[1] < y[1]) end)
  top = {}
  for _, kv in ipairs(all) do
    if kv[1] == "#lines" then seen = kv[2] elseif #top < 5 then top[#top + 1] = kv[1] .. "=" .. kv[2] end
  end
end)

ctx:start()
local deadline = os.time() + tonumber(opts.seconds or (mock and 60 or 1e9))
while os.time() < deadline and not (expected and seen >= expected) do
  if ctx:await_termination(0.2) then break end
end
ctx:stop { graceful = true }

print(string.format("counted %d lines; top: %s", seen, table.concat(top, " ")))
local committed = kafka.committed { brokers = brokers, group = "kafka-exactly-once", topic = "lines" }
if committed then
  local parts = {}
  for p = 0, #committed do parts[#parts + 1] = string.format("[%d] %d", p, committed[p]) end
  print("committed offsets of lines: " .. table.concat(parts, ", "))
end
if mock then mock:close() end

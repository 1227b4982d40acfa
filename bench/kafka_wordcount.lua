-- bench/kafka_wordcount.lua: word count of a Kafka topic (the corpus, one message per line,
-- produced beforehand into the embedded broker by bench/run). kafka_stream reads it from the
-- earliest offset into 100 ms batches; each batch's words are counted (reduce_by_key) and
-- summed on the driver. The time runs from the first batch that had messages (less one batch
-- interval, while they were fetched) until the batch holding the last message is done: the
-- consumer group's join (seconds on the embedded broker) is not part of it.
--   dstream bench/kafka_wordcount.lua BROKERS TOPIC MESSAGES WORKERS
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local dstream = require("dstream")
local brokers, topic, expected, workers = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4] or 2)

-- User code (bench/wordcount_user.lua, as bench/wordcount.lua) ------------------------------
local user = require("wordcount_user")("words")
local split, pair, add, summary = user.split, user.pair, user.add, user.summary
-----------------------------------------------------------------------------------------------

local BATCH_MS = 100 -- (the run's time is counted in batches: 250 ms made 2 M words 2 or 3 of them)
local ctx = dstream.context { batch = BATCH_MS .. "ms", workers = workers, partitions = workers }
local words, messages, t_first, c_first, d_first, t_end, c_end, d_end, batches = 0, 0, nil, nil, nil, nil, nil, nil, 0
-- A group of its own, named by the wall clock's microseconds: the group's committed offsets come
-- before start = "earliest", so a run in a group an earlier run committed to would start at the
-- end of the topic and read nothing (os.time() and the unseeded math.random named two runs in
-- the same second alike).
ctx:kafka_stream { brokers = brokers, topics = { topic }, start = "earliest",
    group = string.format("bench-%d", lib.wall_us()) }
  :flat_map(split):map(pair):reduce_by_key(add)
  :foreach_rdd(function(rdd)
    for _, s in ipairs(rdd:map_partitions(summary):collect()) do words = words + s[2] end
  end)
ctx:on_batch_started(function(info)
  if not t_first and (info.records or 0) > 0 then
    t_first, c_first, d_first = lib.now() - BATCH_MS / 1000, lib.cpu(), lib.thread_cpu()
  end
end)
ctx:on_batch_completed(function(info)
  messages, batches = messages + (info.records or 0), batches + (t_first and 1 or 0)
  if messages >= expected and not t_end then
    t_end, c_end, d_end = lib.now(), lib.cpu(), lib.thread_cpu()
    ctx:stop()
  end
end)
ctx:start()
ctx:await_termination(300)
if not t_end then error("timed out: " .. messages .. " of " .. expected .. " messages received") end

lib.result {
  { "workload", "kafka_wordcount" }, { "impl", "dstream-" .. workers .. "w" },
  { "records", messages }, { "words", words }, { "batches", batches },
  { "secs", t_end - t_first }, { "cpu", c_end - c_first },
  { "driver_cpu", d_end - d_first },
}

-- dstream/kafka.lua: what users require for Kafka, and the option checks the two driver halves
-- share.
--
--   local kafka = require("dstream.kafka")
--   kafka.mock_cluster{ brokers = 3, topics = { words = 4 } }   an embedded broker
--   kafka.producer{ brokers = }, kafka.committed{ brokers =, group =, topic = }
--   kafka.offset_ranges(rdd)                                     a batch's offset ranges
--
-- Kafka is in four modules: the direct stream (ctx:kafka_stream, dstream.sources.kafka), the
-- to_kafka sink (stream:to_kafka, dstream.sinks.kafka), what workers run (record parsing,
-- decode, dead letters, the sink's terminals: dstream.worker.ops.kafka) and this one. This one
-- holds the client helpers users call and the checks of brokers, conf and option names that the
-- stream and the sink both make: the guide and the examples require("dstream.kafka"), so the
-- shared helpers live in the module that has to stay rather than in a fifth one. Driver only: a
-- worker VM loads dstream.worker.ops.kafka and nothing of this.
local core = require("dstream.core")
local util = require("dstream.util")

local M = {}

function M.log(level, msg) core.kafka_log(level, msg) end

---------------------------------------------------------------------------------------------
-- Option checks: they raise at the user's line (util.raise).

function M.brokers_of(v, who)
  if type(v) == "userdata" then -- a mock cluster
    local ok, b = pcall(function() return v:bootstrap() end)
    if ok then return b end
  end
  if type(v) == "table" then v = table.concat(v, ",") end
  if type(v) ~= "string" or v == "" then
    util.raise(who .. ": brokers must be a \"host:port,host:port\" string (or a mock cluster), got "
      .. type(v))
  end
  return v
end

function M.check_conf(v, who)
  if v == nil then return {} end
  if type(v) ~= "table" then util.raise(who .. ": conf must be a table of librdkafka properties") end
  local out = {}
  for k, val in pairs(v) do
    local tv = type(val)
    if type(k) ~= "string" or (tv ~= "string" and tv ~= "number" and tv ~= "boolean") then
      util.raise(who .. ": conf entries are name = string | number | boolean (bad entry '"
        .. tostring(k) .. "')")
    end
    out[k] = tostring(val)
  end
  return out
end

function M.check_known(opts, known, who)
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      util.raise(who .. ": unknown option '" .. tostring(k) .. "' (options: " .. table.concat(names, ", ")
        .. ")")
    end
  end
end

function M.duration_ms(v, who, what, default)
  if v == nil then return default end
  local ms, err = require("dstream.util").parse_duration(v)
  if not ms then util.raise(who .. ": " .. what .. ": " .. err) end
  return ms
end

---------------------------------------------------------------------------------------------
-- Embedded broker and small clients

-- mock_cluster{ brokers = n, topics = { name = partitions } }: a Kafka cluster on 127.0.0.1
-- inside this process, with :bootstrap(), :broker_down(id), :broker_up(id),
-- :create_topic(name, partitions), :topic_error(name, code) (code 3: clients see no such topic;
-- 0: none again), :close().
function M.mock_cluster(opts)
  opts = opts or {}
  if type(opts) ~= "table" then util.raise("mock_cluster: expected a table of options") end
  M.check_known(opts, { brokers = true, topics = true }, "mock_cluster")
  local m = core.kafka_mock(opts.brokers or 1)
  local names = {}
  for name in pairs(opts.topics or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do m:create_topic(name, opts.topics[name]) end
  return m
end

-- producer{ brokers =, conf = {}, transactional_id = } -> a producer with
-- :send(topic, value [, key [, partition [, headers]]]), :flush([timeout_ms]), :close([ms]).
function M.producer(opts)
  if type(opts) ~= "table" then util.raise("producer: expected a table of options") end
  M.check_known(opts, { brokers = true, conf = true, transactional_id = true, timeout_ms = true }, "producer")
  local p, err = core.kafka_producer {
    brokers = M.brokers_of(opts.brokers, "producer", 2), conf = M.check_conf(opts.conf, "producer", 2),
    transactional_id = opts.transactional_id, timeout_ms = opts.timeout_ms,
  }
  if not p then util.raise("producer: " .. err) end
  return p
end

-- committed{ brokers =, group =, topic = } -> { [partition] = next offset (-1: none) }
function M.committed(opts)
  if type(opts) ~= "table" then util.raise("committed: expected a table of options") end
  M.check_known(opts, { brokers = true, conf = true, group = true, topic = true }, "committed")
  local brokers = M.brokers_of(opts.brokers, "committed", 2)
  local holder = { conf = M.check_conf(opts.conf, "committed", 2) }
  local n, err = core.kafka_partitions(brokers, opts.topic, holder)
  if not n then return nil, err end
  local parts = {}
  for p = 0, n - 1 do parts[p + 1] = { topic = opts.topic, partition = p } end
  local res, cerr = core.kafka_committed(brokers, opts.group, parts, holder)
  if not res then return nil, cerr end
  local out = {}
  for _, o in ipairs(res) do out[o.partition] = o.offset end
  return out
end

-- The offset ranges of the Kafka input of a batch (rdd), like Spark's HasOffsetRanges:
-- { { topic, partition, from, until, count }, ... } for every Kafka source in its lineage.
function M.offset_ranges(rdd)
  local out, seen, todo = {}, {}, { rdd }
  while #todo > 0 do
    local r = table.remove(todo)
    if type(r) == "table" and not seen[r] then
      seen[r] = true
      if r.parts and r.parts.offset_ranges then
        for _, range in ipairs(r.parts.offset_ranges) do out[#out + 1] = range end
      end
      if r.parent then todo[#todo + 1] = r.parent end
      for _, p in ipairs(r.parents or {}) do todo[#todo + 1] = p end
    end
  end
  return out
end

return M

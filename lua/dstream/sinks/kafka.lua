-- dstream/sinks/kafka.lua: stream:to_kafka, Kafka's sink (driver side).
--
--   stream:to_kafka{ brokers =, topic =, key = fn, conf = {...}, exactly_once =, timeout =,
--                    transactional_id = }
--
-- Every task of the batch produces its records (a producer per worker VM, idempotent) and
-- succeeds only once every message is delivered (terminal kafka_sink, in
-- dstream.worker.ops.kafka). exactly_once: one task on worker 0 writes the batch and its
-- input offsets in one transaction (kafka_txn); with checkpoints the transaction is committed
-- in a second phase, once the batch's checkpoint is written (kafka_txn_commit), and at
-- recovery a checkpoint whose positions are past what the transactions committed is skipped.
local buffer = require("string.buffer")
local ffi = require("ffi")
local core = require("dstream.core")
local kafka = require("dstream.kafka")
local kafka_source = require("dstream.sources.kafka")
local util = require("dstream.util")

pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")

local M = {}

local log = kafka.log

local sink_options = {
  brokers = true, topic = true, key = true, conf = true, exactly_once = true,
  transactional_id = true, timeout = true,
}

-- The input offsets of batch `time` for each Kafka source of ctx, with its group metadata.
local function batch_offsets(ctx, time)
  local out = {}
  for _, K in ipairs(kafka_source.of_context(ctx)) do
    local ranges = K.ranges[time]
    if ranges and #ranges > 0 then
      local offsets = {}
      for _, r in ipairs(ranges) do
        if r["until"] >= 0 then offsets[#offsets + 1] = { topic = r.topic, partition = r.partition, offset = r["until"] } end
      end
      local gm, err = K:group_metadata()
      if #offsets > 0 then
        if not gm then error("to_kafka: cannot read the consumer group metadata: " .. tostring(err), 0) end
        out[#out + 1] = { group_metadata = gm, offsets = offsets }
      end
    end
  end
  return out
end

-- Runs one task per plan of rdd `r` on worker 0 (where the transactional producer lives).
local function run_on_worker0(r, plans, term, stage)
  local specs = r:_tasks(plans, function() return term end, stage)
  for _, spec in ipairs(specs) do spec.affinity = 0 end
  return r.ctx:_scheduler():run_tasks(specs)
end

-- The offsets group K.group committed for the partitions of `pos` (a checkpoint's positions):
-- topic -> { [partition] = offset }. Retries while the broker may still be starting.
local function committed_offsets(K, pos)
  local by_topic = {}
  for _, o in ipairs(pos) do
    by_topic[o.topic] = by_topic[o.topic] or {}
    table.insert(by_topic[o.topic], { topic = o.topic, partition = o.partition })
  end
  local out = {}
  for topic, parts in pairs(by_topic) do
    local res, err
    for _ = 1, 10 do
      res, err = core.kafka_committed(K.brokers, K.group, parts, { conf = K.conf })
      if res then break end
      ffi.C.poll(nil, 0, 1000)
    end
    if not res then
      error("kafka_stream " .. K.name .. ": cannot read the offsets group " .. K.group
        .. " committed, to choose the checkpoint to restart from: " .. tostring(err), 0)
    end
    out[topic] = {}
    for _, o in ipairs(res) do out[topic][o.partition] = o.offset end
  end
  return out
end

-- The checkpoints a job may restart from, with a to_kafka{ exactly_once } sink: a checkpoint
-- whose Kafka positions are past what the group has committed holds a batch whose transaction
-- was never committed (the job died between the two); restarting there would lose its
-- output, so the one before it is used and the batch runs again.
local function positions_committed(ctx)
  local committed = {} -- group -> topic -> { [partition] = offset }, read once
  return function(doc)
    for _, K in ipairs(kafka_source.of_context(ctx)) do
      local pos = doc.sources[K.key] or {}
      local byg = committed[K.group]
      if not byg and #pos > 0 then
        byg = committed_offsets(K, pos)
        committed[K.group] = byg
      end
      for _, o in ipairs(pos) do
        local c = byg[o.topic] and byg[o.topic][o.partition] or -1
        -- A position no batch completed (start = true) has no transaction to agree with.
        if o.offset > c and not o.start then
          return false, string.format("its position in %s [%d] is offset %d, but to_kafka (exactly once) "
            .. "committed only up to %d (the transaction of its last batch was not committed)",
            o.topic, o.partition, o.offset, c)
        elseif o.offset < c then
          log("warn", string.format("kafka_stream %s: the checkpoint is at offset %d of %s [%d], "
            .. "but group %s committed %d: the records between are read and written again",
            K.name, o.offset, o.topic, o.partition, K.group, c))
        end
      end
    end
    return true
  end
end

-- The second phase of to_kafka{ exactly_once } with checkpoints: the batch's transaction
-- (records and input offsets, prepared by its output) is committed once the checkpoint of the
-- batch is written. A failed commit fails the batch (and the job): the restart goes back to
-- the checkpoint before it (positions_committed).
local function two_phase_commit(ctx, term, prepared)
  local rdd_mod = require("dstream.rdd")
  local commit_term = {
    kind = "kafka_txn_commit", brokers = term.brokers, conf = term.conf,
    transactional_id = term.transactional_id, timeout_ms = term.timeout_ms,
  }
  local first = not ctx._kafka_txn_checked
  ctx._kafka_txn_checked = true
  ctx:_two_phase_output(function(time)
    if not prepared[time] then return end
    prepared[time] = nil
    local t = {}
    for k, v in pairs(commit_term) do t[k] = v end
    t.batch_time = time
    local r = rdd_mod.empty(ctx, 1)
    run_on_worker0(r, { { ops = {}, slices = {} } }, t, "to_kafka (commit)")
  end, first and positions_committed(ctx) or nil)
end

-- Cluster mode: every process runs the same script, and one transactional.id shared by all
-- would make each process's init_transactions fence the others' producers on a real broker.
-- Each process takes its own, as Kafka Streams' exactly_once_v2 does (one producer per
-- process; a zombie is fenced by the group generation send_offsets_to_transaction carries,
-- KIP-447, not by the id): the id and this part, the process's checkpoint directory's (stable
-- across its restarts, so a restart's init_transactions aborts the transaction its killed
-- predecessor left open) or, without one, its start (time and pid).
pcall(ffi.cdef, "int getpid(void);")
local function process_part(ctx)
  local dir = ctx.checkpoint_dir
  if not dir then return string.format("%x-%d", core.now_ms(), ffi.C.getpid()) end
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or "") .. "/" .. dir end
  local h = 2166136261 -- FNV-1a, 32 bits
  for i = 1, #dir do -- (h * 16777619 as 2^24 + 403, exact in doubles)
    h = bit.bxor(h, dir:byte(i))
    h = bit.tobit(bit.lshift(h, 24) + h * 403)
  end
  return "ck" .. bit.tohex(h)
end

-- stream:to_kafka(opts).
function M.sink(stream, opts)
  local who = "to_kafka"
  if type(opts) ~= "table" then util.raise(who .. ": expected a table of options, got " .. type(opts)) end
  kafka.check_known(opts, sink_options, who)
  local ctx = stream.ctx
  if type(opts.topic) ~= "string" or opts.topic == "" then util.raise(who .. ": topic must be a topic name") end
  if opts.exactly_once ~= nil and type(opts.exactly_once) ~= "boolean" then
    util.raise(who .. ": exactly_once must be true or false, got " .. type(opts.exactly_once) .. " "
      .. tostring(opts.exactly_once))
  end
  if opts.key ~= nil and type(opts.key) ~= "function" then
    util.raise(who .. ": key must be a function(record) returning the message key")
  end
  local conf = kafka.check_conf(opts.conf, who)
  local timeout_ms = kafka.duration_ms(opts.timeout, who, "timeout", 30000)
  if not conf["message.timeout.ms"] then conf["message.timeout.ms"] = string.format("%d", timeout_ms) end
  local term = {
    kind = "kafka_sink", brokers = kafka.brokers_of(opts.brokers, who), topic = opts.topic,
    conf = conf, timeout_ms = timeout_ms + 5000,
    key = opts.key and ctx:_ship(opts.key, who .. " key") or nil,
  }
  -- Each task reports how many messages it delivered (shown with --log-level debug).
  local function count(results, time)
    local n = 0
    for _, outputs in ipairs(results) do
      for _, o in ipairs(outputs) do
        if o[1] == 0 then n = n + buffer.decode(o[2]:bytes())[1][1] end
      end
    end
    log("debug", string.format("to_kafka %s: batch %d ms: %d messages delivered", opts.topic, time, n))
  end
  if not opts.exactly_once then
    ctx:_add_output(stream, function(r, time)
      count(r:_run(function() return term end, "to_kafka"), time)
    end)
  else
    term.kind = "kafka_txn"
    term.transactional_id = opts.transactional_id or ("dstream-" .. ctx.name .. "-" .. opts.topic)
    if type(term.transactional_id) ~= "string" then util.raise(who .. ": transactional_id must be a string") end
    if ctx.cluster then
      term.transactional_id = term.transactional_id .. "-" .. process_part(ctx)
      log("info", string.format("to_kafka %s: transactional.id %s (cluster mode: one per process)",
        opts.topic, term.transactional_id))
    end
    -- With checkpoints, the transaction is committed in a second phase, once the checkpoint
    -- of its batch is on disk (every batch is checkpointed): see two_phase_commit.
    local prepared = {}
    if ctx.checkpoint_dir then
      term.defer_commit = true
      ctx.checkpoint_ms = ctx.batch_ms
      two_phase_commit(ctx, term, prepared)
    end
    ctx:_add_output(stream, function(r, time)
      local t = {}
      for k, v in pairs(term) do t[k] = v end
      t.inputs = batch_offsets(ctx, time)
      t.batch_time = time
      -- One task, always on worker 0 (one transactional.id, one producer), over every record.
      local one = r:_shuffle({ kind = "partition", who = "to_kafka" }, nil, 1)
      count(run_on_worker0(one, one:_plans(), t, "to_kafka (transaction)"), time)
      if term.defer_commit then prepared[time] = true end
    end)
  end
  return stream
end

return M

-- dstream/cluster/keyed.lua: keyed state across the processes of a cluster (issue 19), driver
-- side. stream:update_state_by_key and stream:map_with_state in cluster mode come here.
--
-- A stateful operator has n state partitions, fixed at the cluster's first start (its
-- topics' partition count; a later start asking for another n fails). Each batch of a process:
--
--   1. the map side: the pairs this process computed (from the Kafka partitions it owns) go to
--      topic APP-<operator>-repartition, partition key_hash(key) % n (terminal
--      repartition_send, dstream.worker.ops.cluster);
--   2. the keyed stage: the repartition topic is one more input of consumer group APP (an
--      internal kafka_stream), so the group gives each process some of its partitions, and
--      partition p of it is state partition p, run on worker p % workers. Its task first
--      brings the partition's state up to date from APP-<operator>-changelog (a restore when
--      the partition is new here), applies the batch, and writes the changed keys to the
--      changelog (operator cluster_update_state);
--   3. the stream's batch is the (key, state) pairs of the state partitions this process owns
--      (map_with_state: what its function returned for their records).
--
-- So the keyed stage sees a record one or more batches after the map side wrote it, and a
-- process's state stream holds only its own partitions' keys.
local cluster_metrics = require("dstream.cluster.metrics")
local holding = require("dstream.cluster.holding")
local core = require("dstream.core")
local entry_counts = require("dstream.cluster.entry_counts")
local kafka_source = require("dstream.sources.kafka")
local origins = require("dstream.cluster.origins")
local rdd_mod = require("dstream.rdd")
local stream_mod = require("dstream.stream")
local util = require("dstream.util")

local M = {}

local DISCARD, COLLECT = { kind = "discard" }, { kind = "collect" }
local TIMEOUT_MS = 30000

-- The name of a stateful operator in its topics' names: the stream's name (stream:name()),
-- else its kind and state id.
local function operator_name(entry, kind)
  local name = entry.name or (kind .. "-" .. entry.id)
  if not name:match("^[%w._-]+$") then
    error(string.format("%s: the name '%s' cannot be part of a Kafka topic's name (letters,"
      .. " digits, '.', '_' and '-')", kind, name), 0)
  end
  return name
end

-- Makes (or finds) the operator's topics with n partitions; an error when one has another count.
local function ensure_topics(brokers, topics, n, who)
  for _, t in ipairs(topics) do
    local count, err = core.kafka_topic_ensure(brokers, t, n)
    if not count then -- (all of the operator's topics named: the next start would stop at the next one)
      local args, cmds = {}, {}
      for i, name in ipairs(topics) do
        args[i], cmds[i] = name .. ":" .. n, "`topic " .. name .. " " .. n .. "`"
      end
      error(who .. ": " .. tostring(err) .. " (a broker without the admin API, such as dstream"
        .. " kafka-mock, needs the job's topics made first: " .. table.concat(args, " ") .. " on"
        .. " kafka-mock's command line, or " .. table.concat(cmds, " and ") .. " on its standard input)", 0)
    end
    if count ~= n then
      error(string.format("%s: topic %s has %d partitions, but this start asks for %d state partitions:"
        .. " state partitions are fixed at the cluster's first start; run with partitions = %d, or"
        .. " under a new cluster name to start afresh", who, t, count, n, count), 0)
    end
  end
end

-- A batch's keyed stages leave their changelog batches unmarked (held by no restore) until
-- the batch's outputs are done: then every worker writes its markers
-- (operator cluster_commit_markers, dstream.worker.ops.cluster), before the batch's input
-- offsets are committed. So a process killed in between its keyed stages and the end of its
-- outputs leaves the batch to the next owner whole, which emits its windows and pairs again
-- (at least once), rather than skipping what the killed process had applied but never output.
local function mark_after_outputs(ctx)
  if ctx._cluster_markers then return ctx._cluster_markers end
  local due = { time = nil }
  ctx._cluster_markers = due
  ctx:_on_outputs_done(function(time)
    if due.time ~= time then return end -- (no keyed stage ran a task in this batch)
    due.time = nil
    local each = rdd_mod.empty(ctx, ctx.workers)
    local plans = each:_plans()
    for w, plan in ipairs(plans) do
      plan.ops, plan.state_part = { { kind = "cluster_commit_markers" } }, w - 1 -- (on worker w - 1)
    end
    ctx:_scheduler():run_tasks(each:_tasks(plans, function() return DISCARD end, "changelog markers"))
  end)
  return due
end

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

-- A stateful operator `who` of stream `self` across the cluster: its state id and topics, the
-- keyed stage's input (the repartition topic), and a stream whose compute(time) sends the
-- batch's pairs on (terminal repartition_send, or the fields of `opts.send` over it), runs the
-- keyed stage over the state partitions this process owns (an operator of kind `kind` with the
-- fields of `fields`, or of fields(time) when it is a function; terminal `term`) and returns
-- result(run_results, owned partitions, time); opts.initial, a batch of (key, state) pairs, seeds
-- the state once, at the cluster's first start. dstream.cluster.windows builds on it too.
function M.keyed_operator(self, who, n, kind, fields, term, result, opts)
  local ctx = self.ctx
  local first = kafka_source.of_context(ctx)[1]
  if not first then
    util.raise(who .. ": cluster mode keeps keyed state in Kafka topics on the job's brokers:"
      .. " create the job's kafka_stream before its stateful operators")
  end
  local id, entry = ctx:_new_state(who, n, true)
  local keys_acc = ctx:_state_keys_counter(id)
  local held = holding.new(ctx, entry, id, n, keys_acc, who) -- memory and keys: owned partitions only
  local brokers = first.brokers
  local topics = {} -- repartition, changelog: named at ctx:start() (stream:name() may follow)

  -- The keyed stage's input: the repartition topic, read by the group like any input.
  local incoming = kafka_source.stream(ctx, {
    brokers = brokers, topics = { "(named at start)" }, start = "earliest",
    conf = copy(first.conf), name = who .. " (repartition)",
  })
  local K = incoming.kafka
  -- Backpressure holds the job's own inputs, not this one: its rate follows theirs, and a limit
  -- on it would count Kafka messages (bundles of pairs) while its figures count pairs.
  K.input.internal = true
  -- The topics are named and checked before the job's first Kafka input opens, so that the
  -- process's consumers join the group together: a member joining later is a rebalance of its
  -- own (on the embedded broker, one that waits for the session timeout of members at the
  -- default 45 s).
  local first_open = first.input.open
  function first.input.open()
    if not topics.repartition then
      local name = ctx.cluster .. "-" .. operator_name(entry, who)
      topics.repartition, topics.changelog = name .. "-repartition", name .. "-changelog"
      ensure_topics(brokers, { topics.repartition, topics.changelog }, n, who)
      K.topics[1] = topics.repartition
    end
    return first_open()
  end

  local restore_acc, replayed_acc, after_batch = cluster_metrics.operator(ctx, K, n,
    function() return operator_name(entry, who) end, id)
  local entries_acc, count_entries = entry_counts.new(ctx, K) -- (the input counts entries, not bundles)
  local send_term = { kind = "repartition_send", brokers = brokers, conf = {}, partitions = n,
    kafka_ms = TIMEOUT_MS, who = who .. " (repartition)" }
  for k, v in pairs(opts and opts.send or {}) do send_term[k] = v end
  local function stage_op(range, time)
    local op = { kind = kind, state = id, keys_acc = keys_acc, brokers = brokers, conf = {},
      conf_key = "", changelog = topics.changelog, from = range.from, ["until"] = range["until"],
      kafka_ms = TIMEOUT_MS, who = who, restore_acc = restore_acc, entries_acc = entries_acc,
      replayed_acc = replayed_acc }
    for k, v in pairs(type(fields) == "function" and fields(time) or fields) do op[k] = v end
    return op
  end

  local markers_due = mark_after_outputs(ctx)
  local initial = opts and opts.initial -- (worker/ops/cluster.lua says when it seeds the state)
  local out = stream_mod.new(ctx, { self, incoming }, function(s, time)
    if initial then -- the initial pairs of each state partition to its worker, once a process
      initial:_run_stateful(id, { kind = "cluster_seed", state = id, who = who }, n, DISCARD,
        who .. " (initial state)")
      initial = nil
    end
    local mapped, arrived = s.parents[1]:get_rdd(time), s.parents[2]:get_rdd(time)
    if mapped then
      send_term.topic = topics.repartition
      -- The batch's plan first, then each task's bundles say which input ranges they carry.
      kafka_source.plan_batch(ctx, time)
      local from = origins.of(mapped)
      mapped:_run(function(i)
        if not from[i + 1] then return send_term end
        local t = copy(send_term)
        t.origin = from[i + 1]
        return t
      end, who .. " (repartition)")
    end
    local owned, results = {}, {}
    if arrived then
      local plans, run = arrived:_plans(), {}
      for i, range in ipairs(kafka_source.ranges_at(K, time) or {}) do
        local plan = plans[i]
        plan.ops, plan.state_part = { stage_op(range, time) }, range.partition
        run[#run + 1] = plan
        owned[#owned + 1] = range.partition
      end
      if #run > 0 then
        results = ctx:_scheduler():run_tasks(arrived:_tasks(run, function() return term end, who))
        markers_due.time = time
      end
      count_entries(time)
    end
    held:settle(owned)
    after_batch(owned)
    return result(results, owned, time)
  end, who)
  out.state_id = id
  -- The state partitions this process owns: the repartition topic's partitions the group gave
  -- it (group, member_id, rebalances, assigned).
  function out.kafka_stats() return K:stats() end
  function out.state_snapshots(s) return held:snapshots(s) end -- (map_with_state's)
  ctx:_eager(out) -- every key is updated in every batch
  return out, id
end

-- stream:update_state_by_key(fn, opts) in cluster mode (opts checked by the caller).
function M.update_state_by_key(self, fn, opts)
  local ctx, who = self.ctx, "update_state_by_key"
  local n = opts.partitions or ctx.partitions
  local id
  local out
  out, id = M.keyed_operator(self, who, n, "cluster_update_state",
    { fn = ctx:_ship(fn, who), with_key = opts.with_key and true or nil }, DISCARD,
    function(_, owned)
      if #owned == 0 then return rdd_mod.empty(ctx, 1) end
      return rdd_mod.state_source(ctx, id, n, nil, owned)
    end, { initial = opts.initial })
  return out
end

-- stream:map_with_state(spec) in cluster mode (spec checked by the caller; timeout in ms).
function M.map_with_state(self, spec, timeout)
  local ctx, who = self.ctx, "map_with_state"
  local n = spec.partitions or ctx.partitions
  local out = M.keyed_operator(self, who, n, "cluster_map_state",
    { fn = ctx:_ship(spec.fn, who), timeout_ms = timeout }, COLLECT,
    function(results) return rdd_mod.from_outputs(ctx, results) end, { initial = spec.initial })
  out.state_partitions = n
  return out
end

return M

-- dstream/cluster/metrics.lua: the figures of a cluster process (issue 19), kept per stateful
-- operator and shown by /metrics (here) and by /api/streams and the live page
-- (dstream.cluster.status): the state partitions each stateful operator owns here, the
-- restores its keyed stage ran (from the changelog: how many, changes and bytes read,
-- seconds, the last few one by one) and those running now, and per Kafka input of the group
-- its member id, assigned partitions and rebalances.
local core = require("dstream.core")
local kafka_source = require("dstream.sources.kafka")
local shared = require("dstream.state.shared")

local M = {}

local RECENT = 10 -- restores kept one by one per operator (the latest)

local families = setmetatable({}, { __mode = "k" }) -- ctx -> metric families
local operators = setmetatable({}, { __mode = "k" }) -- ctx -> { operator, ... }

-- The cluster operators of ctx: { name, state_id, partitions (n), owned (the state partitions
-- of its last batch), tag (the restore accumulator's id: what its restores report progress
-- under), acc, K (the keyed stage's input) }.
function M.operators(ctx)
  local list = operators[ctx] or {}
  for _, op in ipairs(list) do -- (stream:name() may come after the operator)
    local ok, name = pcall(op.name_of)
    op.name = ok and name or op.name or "?"
  end
  return list
end

-- The restores running now in ctx's workers: { operator, partition, worker, changes, bytes,
-- seconds } (from the tasks' progress reports, dstream.worker.ops.cluster).
function M.restoring(ctx, now_ms)
  local list, by_tag = {}, {}
  for _, op in ipairs(M.operators(ctx)) do by_tag[op.tag] = op end
  local sched = ctx.sched
  for _, p in ipairs(sched and sched:progress() or {}) do
    local op = by_tag[p.tag]
    if op then
      list[#list + 1] = { operator = op.name, partition = p.part, worker = p.worker,
        changes = p.a, bytes = p.b, seconds = math.max(0, (now_ms - p.since_ms) / 1000) }
    end
  end
  table.sort(list, function(a, b)
    if a.operator ~= b.operator then return a.operator < b.operator end
    return a.partition < b.partition
  end)
  return list
end

-- Restore figures of a task, added on the workers (worker.current.accums) and summed here;
-- `recent` keeps the last RECENT restores one by one.
local function sum(a, b)
  local recent = {}
  for _, r in ipairs(a.recent or {}) do recent[#recent + 1] = r end
  for _, r in ipairs(b.recent or {}) do recent[#recent + 1] = r end
  table.sort(recent, function(x, y) return x.at > y.at end)
  for i = #recent, RECENT + 1, -1 do recent[i] = nil end
  return { n = a.n + b.n, changes = a.changes + b.changes, bytes = a.bytes + b.bytes, ms = a.ms + b.ms,
    recent = recent }
end

-- Refreshes the gauges that follow live figures (before every render of /metrics).
local function collect(ctx, f)
  local running = {}
  for _, r in ipairs(M.restoring(ctx, core.now_ms())) do
    local t = running[r.operator] or { n = 0, changes = 0, bytes = 0 }
    running[r.operator] = t
    t.n, t.changes, t.bytes = t.n + 1, t.changes + r.changes, t.bytes + r.bytes
  end
  for _, op in ipairs(M.operators(ctx)) do
    local t, labels = running[op.name] or { n = 0, changes = 0, bytes = 0 }, { operator = op.name }
    f.running:set(t.n, labels)
    f.running_changes:set(t.changes, labels)
    f.running_bytes:set(t.bytes, labels)
  end
  for _, K in ipairs(kafka_source.of_context(ctx)) do
    local st = K:stats()
    if st.member_id or st.assigned then
      local labels = { input = K.name }
      f.rebalances:inc(math.max(0, (st.rebalances or 0) - (f.rebalances:value(labels) or 0)), labels)
      f.assigned:set(#(st.assigned or {}), labels)
      -- The member id as a label of a gauge of its own (Prometheus' info pattern); a new id
      -- (a rejoin) replaces the old one.
      local id = st.member_id or ""
      if K._member_labels and K._member_labels.member_id ~= id then f.member:remove(K._member_labels) end
      K._member_labels = { input = K.name, group = st.group or "", member_id = id }
      f.member:set(1, K._member_labels)
    end
  end
end

local function families_of(ctx)
  local f = families[ctx]
  if f then return f end
  local r = ctx:metrics()
  local op, input = { "operator" }, { "input" }
  f = {
    owned = r:gauge("dstream_cluster_state_partitions", "State partitions of a stateful operator this process owns now", op),
    restores = r:counter("dstream_cluster_restores_total", "Times a state partition was brought up to date from its changelog here", op),
    changes = r:counter("dstream_cluster_restored_changes_total", "Changelog records read by those restores", op),
    bytes = r:counter("dstream_cluster_restored_bytes_total", "Bytes of changelog records read by those restores", op),
    seconds = r:counter("dstream_cluster_restore_seconds_total", "Time those restores took", op),
    running = r:gauge("dstream_cluster_restores_running", "State partitions being restored from their changelog now", op),
    running_changes = r:gauge("dstream_cluster_restoring_changes", "Changelog records the restores running now have read so far", op),
    running_bytes = r:gauge("dstream_cluster_restoring_bytes", "Bytes of changelog records the restores running now have read so far", op),
    rebalances = r:counter("dstream_cluster_rebalances_total", "Rebalances of a Kafka input's group membership (assignments and revocations)", input),
    assigned = r:gauge("dstream_cluster_assigned_partitions", "Partitions of a Kafka input the group gives this process now", input),
    replayed = r:counter("dstream_cluster_replayed_entries_total", "Entries of the repartition topic the keyed stage skipped as applied already (a batch read again after a kill, or a task re-run)", op),
    member = r:gauge("dstream_cluster_member", "1, labelled with the group and this process's member id in it, per Kafka input", { "input", "group", "member_id" }),
  }
  families[ctx] = f
  r:collector(function() collect(ctx, f) end)
  return f
end

-- Registers a stateful operator of state `state_id` with n state partitions, whose keyed
-- stage reads input K and which name_of() names: returns the accumulator's id (for the keyed
-- stage's tasks), the replayed entries' accumulator's id (added to by the tasks' decoders)
-- and after(owned), to call after each batch with the state partitions it held.
function M.operator(ctx, K, n, name_of, state_id)
  local f = families_of(ctx)
  local acc = shared.accumulator(ctx, { n = 0, changes = 0, bytes = 0, ms = 0, recent = {} }, sum)
  local replayed = shared.accumulator(ctx, 0)
  local seen = { n = 0, changes = 0, bytes = 0, ms = 0, replayed = 0 }
  local op = { name_of = name_of, state_id = state_id, partitions = n, owned = {}, tag = acc.id,
    acc = acc, K = K }
  local list = operators[ctx] or {}
  operators[ctx] = list
  list[#list + 1] = op
  return acc.id, replayed.id, function(owned)
    op.owned = owned
    local labels, v = { operator = name_of() }, acc.value
    f.owned:set(#owned, labels)
    f.restores:inc(v.n - seen.n, labels)
    f.changes:inc(v.changes - seen.changes, labels)
    f.bytes:inc(v.bytes - seen.bytes, labels)
    f.seconds:inc((v.ms - seen.ms) / 1000, labels)
    f.replayed:inc(replayed.value - seen.replayed, labels)
    seen = { n = v.n, changes = v.changes, bytes = v.bytes, ms = v.ms, replayed = replayed.value }
  end
end

return M

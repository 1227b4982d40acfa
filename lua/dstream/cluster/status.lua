-- dstream/cluster/status.lua: what a process of a cluster (issue 19) says about itself on its
-- live page: the `cluster` object of /api/streams. Which member of group APP it is, the
-- partitions the group gives it per Kafka input, and per stateful operator the state
-- partitions it owns, the keys it holds, the restores running now (changelog records and
-- bytes read so far, seconds) and the last ones done, and the rebalances. Built from
-- dstream.cluster.metrics' figures and the Kafka inputs' stats; nil outside cluster mode.
local cluster_metrics = require("dstream.cluster.metrics")
local core = require("dstream.core")
local kafka_source = require("dstream.sources.kafka")
local array = require("dstream.monitor.json").array

local M = {}

local function round(x, digits)
  local m = 10 ^ (digits or 0)
  return math.floor(x * m + 0.5) / m
end

-- The state partitions of the operator's last batch (what its keys and snapshots cover).
local function owned_of(list)
  local out = array()
  for i, p in ipairs(list) do out[i] = p end
  table.sort(out)
  return out
end

function M.describe(ctx)
  if not ctx.cluster then return nil end
  local now = core.now_ms()
  local inputs, state_input = array(), {}
  for _, op in ipairs(cluster_metrics.operators(ctx)) do state_input[op.K] = op end
  local member_id, rebalances = nil, 0
  for _, K in ipairs(kafka_source.of_context(ctx)) do
    local st = K:stats()
    rebalances = rebalances + (st.rebalances or 0)
    member_id = member_id or st.member_id
    local assigned = array()
    for i, o in ipairs(st.assigned or {}) do assigned[i] = o.topic .. "[" .. o.partition .. "]" end
    table.sort(assigned)
    inputs[#inputs + 1] = { name = K.name, member_id = st.member_id,
      rebalances = st.rebalances or 0, assigned = assigned,
      state_of = state_input[K] and state_input[K].name or nil }
  end
  local restoring = cluster_metrics.restoring(ctx, now)
  local operators = array()
  for _, op in ipairs(cluster_metrics.operators(ctx)) do
    local v = op.acc.value
    local entry = ctx._states and ctx._states[op.state_id]
    local running = array()
    for _, r in ipairs(restoring) do
      if r.operator == op.name then
        running[#running + 1] = { partition = r.partition, worker = r.worker, changes = r.changes,
          bytes = r.bytes, seconds = round(r.seconds, 3) }
      end
    end
    local recent = array()
    for i, r in ipairs(v.recent or {}) do
      recent[i] = { partition = r.partition, from = r.from, to = r.to, changes = r.changes,
        bytes = r.bytes, seconds = round(r.ms / 1000, 3), at = round(r.at) }
    end
    local ok, keys = pcall(entry and entry.keys or function() end)
    operators[#operators + 1] = {
      operator = op.name, partitions = op.partitions, owned = owned_of(op.owned),
      keys = ok and keys or nil, restoring = running,
      restores = { count = v.n, changes = v.changes, bytes = v.bytes, seconds = round(v.ms / 1000, 3) },
      recent_restores = recent,
    }
  end
  return { name = ctx.cluster, group = ctx.cluster, member_id = member_id, rebalances = rebalances,
    inputs = inputs, state = operators }
end

return M

-- dstream/cluster/metrics.lua: what /metrics shows of a cluster process (issue 19): the state
-- partitions each stateful operator owns here, the restores its keyed stage ran (from the
-- changelog: how many, changes and bytes read, seconds), and the rebalances its group
-- membership went through. The live page's /api/streams shows the same members' ids and
-- assigned partitions (the repartition inputs are inputs of the context).
local shared = require("dstream.state.shared")

local M = {}

local families = setmetatable({}, { __mode = "k" }) -- ctx -> metric families

local function families_of(ctx)
  local f = families[ctx]
  if f then return f end
  local r = ctx:metrics()
  local op = { "operator" }
  f = {
    owned = r:gauge("dstream_cluster_state_partitions", "State partitions of a stateful operator this process owns now", op),
    restores = r:counter("dstream_cluster_restores_total", "Times a state partition was brought up to date from its changelog here", op),
    changes = r:counter("dstream_cluster_restored_changes_total", "Changelog records read by those restores", op),
    bytes = r:counter("dstream_cluster_restored_bytes_total", "Bytes of changelog records read by those restores", op),
    seconds = r:counter("dstream_cluster_restore_seconds_total", "Time those restores took", op),
    rebalances = r:counter("dstream_cluster_rebalances_total", "Rebalances of a Kafka input's group membership (assignments and revocations)", { "input" }),
  }
  families[ctx] = f
  return f
end

-- Restore figures of a task, added on the workers (worker.current.accums) and summed here.
local function sum(a, b)
  return { n = a.n + b.n, changes = a.changes + b.changes, bytes = a.bytes + b.bytes, ms = a.ms + b.ms }
end

-- The figures of one stateful operator: returns the accumulator's id (for the keyed stage's
-- tasks) and after(owned, name), to call after each batch with the partitions owned and the
-- operator's name.
function M.operator(ctx, K)
  local f = families_of(ctx)
  local acc = shared.accumulator(ctx, { n = 0, changes = 0, bytes = 0, ms = 0 }, sum)
  local seen = { n = 0, changes = 0, bytes = 0, ms = 0 }
  local rebalances = 0
  return acc.id, function(owned, name)
    local labels, v = { operator = name }, acc.value
    f.owned:set(#owned, labels)
    f.restores:inc(v.n - seen.n, labels)
    f.changes:inc(v.changes - seen.changes, labels)
    f.bytes:inc(v.bytes - seen.bytes, labels)
    f.seconds:inc((v.ms - seen.ms) / 1000, labels)
    seen = { n = v.n, changes = v.changes, bytes = v.bytes, ms = v.ms }
    local r = K:stats().rebalances or 0
    f.rebalances:inc(r - rebalances, { input = K.name })
    rebalances = r
  end
end

return M

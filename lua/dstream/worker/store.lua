-- dstream/worker/store.lua: the keyed state a worker's Lua state keeps between batches, by state
-- id and partition (update_state_by_key, reducing windows' panes, event-time windows). Partition
-- p of a stateful operator always runs on worker p % workers (task affinity), so a store is
-- only ever touched by the one thread that owns this Lua state.
local slot = require("dstream.worker.task").slot

local M = {}

local stores = {} -- state id -> partition -> { states = {k -> state}, touched = {k -> time} }

function M.store_of(id, part)
  local by_part = slot(stores, id)
  local store = by_part[part]
  if not store then
    store = { states = {}, touched = {} }
    by_part[part] = store
  end
  return store
end

-- Makes `store` partition `part`'s store of state `id` (a restored checkpoint).
function M.replace(id, part, store)
  slot(stores, id)[part] = store
end

-- Forgets partition `part`'s store of state `id` (cluster mode: the partition moved to
-- another process). Returns whether there was one.
function M.drop(id, part)
  local by_part = stores[id]
  if not (by_part and by_part[part]) then return false end
  by_part[part] = nil
  return true
end

-- The number of keys kept per state id, over this worker's partitions.
function M.key_counts()
  local out = {}
  for id, by_part in pairs(stores) do
    local n = 0
    for _, store in pairs(by_part) do
      for _ in pairs(store.states) do n = n + 1 end
    end
    out[id] = n
  end
  return out
end

return M

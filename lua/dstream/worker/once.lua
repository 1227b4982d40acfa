-- dstream/worker/once.lua: which input ranges a state partition has applied (cluster mode,
-- issue 19). Worker states only; pure data, kept in the store (store.once) so that a
-- checkpoint, a restore from the changelog and a move bring it along.
--
-- Every repartition bundle names where it came from (dstream.worker.bundles' trailer, made by
-- dstream.cluster.origins): the Kafka input ranges its map task read ("rg", sorted keys
-- "topic\0partition\0from\0until"), the reduce partition's index when a shuffle mixed them
-- ("r", else -1), the sides of unions it came through ("br", a self-join's two sides read the
-- same ranges) and its piece ("pc", counting from 0, "last" on the task's last bundle for that
-- state partition); its key (M.key) is the first three together. A batch of a killed process is read again
-- by the partition's next owner as exactly the same ranges (its plan, ds_kafka_source_plan),
-- so its bundles come again, with the same origin or, when its partitions went to several
-- processes, a part of it. verdict() says what to do with a bundle:
--   "new"      apply it;
--   "applied"  skip it: its piece of the same origin was applied, or its ranges are a part of
--              an origin applied whole (every piece up to the last: a per-batch reduce's
--              bundle of several partitions, read again by the owners of each);
--   "partial"  its ranges are part of an origin of which only some pieces were applied (a
--              kill between two pieces of a bundle over 512 KiB): it cannot be split by key,
--              so it is applied, and its records may count twice.
-- Only the last KEEP ranges of each input partition are remembered: a range is read again only
-- while it is the last one planned (a process stalled past its session timeout aside).
local M = {}

local KEEP = 8

function M.new() return { groups = {}, by_range = {}, recent = {} } end

-- An origin's key: its ranges (sorted), its reduce partition's index (>= 0 after a shuffle)
-- and the sides of unions it came through (when any).
function M.key(ranges, index, branch)
  local key = table.concat(ranges, ","):gsub("%z", ":")
  if index and index >= 0 then key = key .. "#" .. index end
  if branch then key = key .. "/" .. branch end
  return key
end

local function key_of(o)
  local k = o.k
  if not k then
    k = M.key(o.rg, o.r, o.br)
    o.k = k
  end
  return k
end

local function complete(g) return g.last ~= nil and g.npieces == g.last + 1 end

local function part_of(rg, set)
  for i = 1, #rg do
    if not set[rg[i]] then return false end
  end
  return true
end

function M.verdict(once, o)
  if not (once and o) then return "new" end
  local groups = once.groups
  local g = groups[key_of(o)]
  if g then return g.pieces[o.pc] and "applied" or "new" end
  for _, key in ipairs(once.by_range[o.rg[1]] or {}) do
    local h = groups[key]
    if h and h.r == o.r and h.br == o.br and part_of(o.rg, h.set) then return complete(h) and "applied" or "partial" end
  end
  return "new"
end

-- Forgets the oldest range of an input partition, and every origin holding it.
local function forget(once, rk)
  for _, key in ipairs(once.by_range[rk] or {}) do once.groups[key] = nil end
  once.by_range[rk] = nil
end

-- Records that the bundle of origin o was applied.
function M.note(once, o)
  if not o then return end
  local g = once.groups[key_of(o)]
  if not g then
    g = { r = o.r, br = o.br, set = {}, pieces = {}, npieces = 0 }
    once.groups[o.k] = g
    for _, rk in ipairs(o.rg) do
      g.set[rk] = true
      local list = once.by_range[rk]
      if not list then
        list = {}
        once.by_range[rk] = list
        local tp = rk:match("^[^%z]*%z[^%z]*")
        local recent = once.recent[tp] or {}
        once.recent[tp] = recent
        recent[#recent + 1] = rk
        if #recent > KEEP then forget(once, table.remove(recent, 1)) end
      end
      list[#list + 1] = o.k
    end
  end
  if not g.pieces[o.pc] then
    g.pieces[o.pc] = true
    g.npieces = g.npieces + 1
  end
  if o.last then g.last = o.pc end
end

return M

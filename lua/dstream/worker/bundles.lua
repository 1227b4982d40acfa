-- dstream/worker/bundles.lua: the messages of a repartition topic in cluster mode (issue 19).
-- Worker states only.
--
-- A map task does not send a Kafka message per (key, value) pair: it appends its entries,
-- each the key, the value and an optional third value in string.buffer's format one after
-- another, to a bundle per destination partition, and sends a partition's bundle as one
-- message when the task ends (writer's finish), or as soon as it reaches LIMIT bytes (then
-- the next entries start a new bundle). So a batch of 10,000 distinct keys is one message per
-- state partition, not 10,000: the cost of a message (a call into C, a Lua string,
-- librdkafka's per-message work and the broker's per-record work) is paid per bundle.
--
-- Why a bundle changes nothing for the keyed stage's once-only logic: the marker and
-- store.applied count Kafka offsets, and a bundle is one message, so it is skipped or taken
-- whole; a bundle holds the entries of one map task, so of one batch of one process (the
-- writer lives as long as its task).
--
-- LIMIT keeps a message far below the producer's and the broker's message.max.bytes
-- (1,000,000 by default): a bundle is at most LIMIT plus its last entry.
local buffer = require("string.buffer")

local M = {}

M.LIMIT = 512 * 1024

-- A writer over ship(part, bytes), which sends one message to partition `part`:
-- add(part) returns the partition's bundle (a string.buffer) to encode an entry into, and
-- after the entry, full(part, b) ships it when it reached the limit; finish() ships every
-- bundle left and returns how many messages were shipped in all.
function M.writer(ship, limit)
  limit = limit or M.LIMIT
  local bundles, shipped = {}, 0
  local function add(part)
    local b = bundles[part]
    if not b then
      b = buffer.new()
      bundles[part] = b
    end
    return b
  end
  local function full(part, b)
    if #b >= limit then
      ship(part, b:tostring())
      b:reset()
      shipped = shipped + 1
    end
  end
  local function finish()
    for part, b in pairs(bundles) do
      if #b > 0 then
        ship(part, b:tostring())
        shipped = shipped + 1
      end
      bundles[part] = nil
    end
    return shipped
  end
  return add, full, finish
end

-- A reader of bundles: each(raw) calls push(k, v) (push(k, v, extra) when `extra`) for every
-- entry of the bundle `raw`, in the order the map task added them, and returns how many.
function M.reader(push, extra)
  local dec = buffer.new()
  return function(raw)
    dec:set(raw)
    local n = 0
    if extra then
      while #dec > 0 do
        local k, v = dec:decode(), dec:decode()
        push(k, v, dec:decode())
        n = n + 1
      end
    else
      while #dec > 0 do
        local k, v = dec:decode(), dec:decode()
        push(k, v)
        n = n + 1
      end
    end
    return n
  end
end

return M

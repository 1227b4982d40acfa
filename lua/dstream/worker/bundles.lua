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
-- writer lives as long as its task). Its trailer names the input ranges it came from, so that
-- a batch read again after a kill is skipped where it was applied (dstream.worker.once).
--
-- LIMIT keeps a message far below the producer's and the broker's message.max.bytes
-- (1,000,000 by default): a bundle is at most LIMIT plus its last entry.
local buffer = require("string.buffer")

local M = {}

M.LIMIT = 512 * 1024

-- A writer over ship(part, bytes), which sends one message to partition `part`:
-- add(part) returns the partition's bundle (a string.buffer) to encode an entry into, and
-- after the entry, full(part, b) ships it when it reached the limit; finish() ships every
-- bundle left and returns how many messages were shipped in all. Every bundle ends with its
-- trailer: `origin` (dstream.cluster.origins: the input ranges of the task, or nil) with the
-- bundle's piece number for its partition and whether it is the last, in string.buffer's
-- format, then the trailer's length in 4 bytes (little-endian). Pieces are cut by size in the
-- order the task adds its entries, so a task re-run over the same records cuts the same pieces.
function M.writer(ship, limit, origin)
  limit = limit or M.LIMIT
  local bundles, pieces, shipped = {}, {}, 0
  local tail = buffer.new()
  local function send(part, b, last)
    local piece = pieces[part] or 0
    pieces[part] = piece + 1
    tail:reset()
    if origin then
      tail:encode({ rg = origin.ranges, r = origin.index, br = origin.branch, pc = piece, last = last })
    else
      tail:encode(false)
    end
    local n = #tail
    b:put(tail, string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256,
      math.floor(n / 16777216)))
    ship(part, b:tostring())
    b:reset()
    shipped = shipped + 1
  end
  local function add(part)
    local b = bundles[part]
    if not b then
      b = buffer.new()
      bundles[part] = b
    end
    return b
  end
  local function full(part, b)
    if #b >= limit then send(part, b, false) end
  end
  local function finish()
    for part, b in pairs(bundles) do
      if #b > 0 then send(part, b, true) end
      bundles[part] = nil
    end
    return shipped
  end
  return add, full, finish
end

-- A bundle's trailer: its origin (a table, or false when it has none) and the length of its
-- entries in bytes.
function M.trailer(raw)
  local len = #raw
  local a, b, c, d = raw:byte(len - 3, len)
  local n = a + b * 256 + c * 65536 + d * 16777216
  return buffer.decode(raw:sub(len - 3 - n, len - 4)), len - 4 - n
end

-- A reader of bundles: each(raw) calls push(k, v) (push(k, v, extra) when `extra`) for every
-- entry of the bundle `raw`, in the order the map task added them, and returns how many and
-- the bundle's origin; when take(origin) is given and says false, nothing is pushed (the
-- entries are only counted) and the third result is true.
function M.reader(push, extra, take)
  local dec = buffer.new()
  return function(raw)
    local origin, body = M.trailer(raw)
    local tail = #raw - body
    dec:set(raw)
    local n = 0
    if take and not take(origin) then
      while #dec > tail do
        dec:decode()
        dec:decode()
        if extra then dec:decode() end
        n = n + 1
      end
      return n, origin, true
    end
    if extra then
      while #dec > tail do
        local k, v = dec:decode(), dec:decode()
        push(k, v, dec:decode())
        n = n + 1
      end
    else
      while #dec > tail do
        local k, v = dec:decode(), dec:decode()
        push(k, v)
        n = n + 1
      end
    end
    return n, origin, false
  end
end

return M

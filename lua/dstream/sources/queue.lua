-- dstream/sources/queue.lua: queue_stream, batches taken from a list of lists (Spark's queueStream).
local rdd_mod = require("dstream.rdd")
local sources = require("dstream.sources")
local util = require("dstream.util")

local M = {}

-- batches: a list of lists; each batch takes the next list.
-- opts: one_at_a_time (default true), default (a list for batches once the queue is empty),
-- pairs (each element {k, v} becomes the pair k, v).
function M.queue_stream(self, batches, opts)
  sources.check_not_started(self, "queue_stream")
  util.check_table(batches, "queue_stream", "the queue")
  opts = opts or {}
  local queue = {}
  for i, b in ipairs(batches) do
    if type(b) ~= "table" then util.raise("queue_stream: batch " .. i .. " must be a list, got " .. type(b)) end
    queue[i] = b
  end
  local one_at_a_time = opts.one_at_a_time ~= false
  local taken = 0 -- lists taken from the queue: the position a checkpoint keeps
  local s = sources.input(self, "queue_stream", function(_, time)
    local list
    if one_at_a_time then
      list = table.remove(queue, 1) or opts.default or {}
      taken = taken + 1
    else
      list = {}
      for _, b in ipairs(queue) do for _, v in ipairs(b) do list[#list + 1] = v end end
      taken = taken + #queue
      queue = {}
    end
    return rdd_mod.from_list(self, list, self.partitions, opts.pairs)
  end)
  s.position = function() return taken end
  s.restore = function(_, pos)
    for _ = 1, pos do table.remove(queue, 1) end
    taken = pos
  end
  return s
end

return M

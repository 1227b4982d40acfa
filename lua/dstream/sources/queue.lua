-- dstream/sources/queue.lua: queue_stream, batches taken from a queue of lists and rdds that the
-- job may push to while it runs (Spark's queueStream).
local rdd_mod = require("dstream.rdd")
local sources = require("dstream.sources")
local util = require("dstream.util")

local M = {}

local OPTIONS = { one_at_a_time = true, default = true, pairs = true }

-- An item of the queue: a list of records, or an rdd of this context.
local function check_item(ctx, v, what)
  if rdd_mod.is_rdd(v) then
    if v.ctx ~= ctx then util.raise("queue_stream: " .. what .. " is an rdd of another context") end
  elseif type(v) ~= "table" then
    util.raise("queue_stream: " .. what .. " must be a list or an rdd, got " .. type(v))
  end
  return v
end

-- batches: a list whose items are lists of records or rdds (nil: an empty queue).
-- opts: one_at_a_time (default true: each batch takes one item; false: each batch takes
-- everything queued), default (a list or an rdd: the batch when the queue is empty), pairs
-- (each element {k, v} of a list becomes the pair k, v; an rdd keeps what it holds).
-- The stream's push(item) queues one more item, also while the job runs.
function M.queue_stream(self, batches, opts)
  sources.check_not_started(self, "queue_stream")
  if batches ~= nil then util.check_table(batches, "queue_stream", "the queue") end
  if opts ~= nil then util.check_table(opts, "queue_stream", "the options") end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then
      util.raise("queue_stream: unknown option '" .. tostring(k) .. "' (it takes one_at_a_time, default, pairs)")
    end
  end
  local queue = {}
  for i, b in ipairs(batches or {}) do queue[i] = check_item(self, b, "item " .. i) end
  if opts.default ~= nil then check_item(self, opts.default, "default") end
  local one_at_a_time = opts.one_at_a_time ~= false
  local default_rdd -- the default as an rdd, made once

  -- The rdd of a batch that took `items` (in queue order): lists next to each other are
  -- concatenated, and the pieces are unioned in order, as Spark unions the queued rdds.
  local function batch_rdd(items)
    if #items == 0 then
      if opts.default == nil then return rdd_mod.empty(self) end
      if not default_rdd then
        default_rdd = rdd_mod.is_rdd(opts.default) and opts.default
          or rdd_mod.from_list(self, opts.default, self.partitions, opts.pairs)
      end
      return default_rdd
    end
    local out, lists = nil, {}
    local function add(r) out = out and out:union(r) or r end
    local function end_lists()
      local list = lists[1]
      if lists[2] then
        list = {}
        for _, l in ipairs(lists) do table.move(l, 1, #l, #list + 1, list) end
      end
      if list then add(rdd_mod.from_list(self, list, self.partitions, opts.pairs)) end
      lists = {}
    end
    for _, item in ipairs(items) do
      if rdd_mod.is_rdd(item) then
        end_lists()
        add(item)
      else
        lists[#lists + 1] = item
      end
    end
    end_lists()
    return out
  end

  -- Items leave the queue at the batch boundary (seal), so an item pushed before a boundary
  -- is in that batch. taken: items taken so far, the position a checkpoint keeps.
  local taken = 0
  local function take(n)
    local k, len = math.min(n, #queue), #queue
    local items = table.move(queue, 1, k, 1, {})
    table.move(queue, k + 1, len + k, 1) -- shifts the rest down, nils past the end included
    taken = taken + k
    return items
  end
  local function records(items) -- of the lists: an rdd's count is known only once it runs
    local n = 0
    for _, item in ipairs(items) do if not rdd_mod.is_rdd(item) then n = n + #item end end
    return n
  end

  local s
  s = sources.input(self, "queue_stream", function(_, time)
    local b = s.sealed[time]
    s.sealed[time] = nil
    return b and b.rdd or rdd_mod.empty(self)
  end, function(_, time)
    local items = take(one_at_a_time and 1 or #queue)
    s.sealed[time] = { rdd = batch_rdd(items), count = records(items), took = #items }
    s.pos_at[time] = taken
    return true
  end)
  s.sealed, s.pos_at, s.done_pos = {}, {}, 0

  function s:push(item)
    queue[#queue + 1] = check_item(self.ctx, item, "push: the item")
    return self
  end

  -- Checkpoints keep the count of items taken as of the last completed batch; a restart drops
  -- that many from the front of the queue the script builds again (its list and what it
  -- pushes before ctx:start()). Items are not kept: what was pushed while the job ran is gone.
  s.on_batch_done = function(_, time)
    s.done_pos = s.pos_at[time] or s.done_pos
    for t in pairs(s.pos_at) do if t <= time then s.pos_at[t] = nil end end
    for t in pairs(s.sealed) do if t <= time then s.sealed[t] = nil end end -- no output read it
  end
  s.position = function() return s.done_pos end
  s.restore = function(_, pos)
    take(pos)
    taken, s.done_pos = pos, pos
  end
  -- A batch of the batch log takes as many items again (from the queue after restore).
  s.log_entry = function(_, time) return s.sealed[time].took end
  s.replay = function(_, time, n)
    local items = take(n)
    s.sealed[time] = { rdd = batch_rdd(items), count = records(items), took = n }
    s.pos_at[time] = taken
  end
  return s
end

return M

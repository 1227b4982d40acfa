-- dstream/worker/terminals.lua: the ends of a task's pipeline. Each constructor takes (task,
-- spec) and returns push(a, b) and finish(): a shuffle's buckets, results for the driver,
-- files. Worker states only; dstream.worker builds pipelines from these.
local format = require("dstream.format")
local table_new = require("table.new")
local task = require("dstream.worker.task")
local handoff = require("dstream.worker.handoff")
local shipped, emit, out_buffer, current = task.shipped, task.emit, task.out_buffer, task.current
local key_hash, key_of, nil_key, not_pair = task.key_hash, task.key_of, task.nil_key, task.not_pair
local buckets = task.buckets
local error, pairs, type = error, pairs, type

local terminals = {}

-- The records, encoded for the driver (collect, take, print ...) or for the next stage.
function terminals.collect(task, spec)
  local ka, va, n, pairs_flag = {}, {}, 0, nil
  local limit = spec.limit or math.huge
  local function push(a, b)
    if a == nil or n >= limit then return end -- nil is no record (a function returned nothing)
    if pairs_flag == nil then pairs_flag = b ~= nil end
    if pairs_flag ~= (b ~= nil) then
      error("records of this stream mix key/value pairs and single values (this one: "
        .. format.brief(a, b) .. ")", 0)
    end
    n = n + 1
    ka[n], va[n] = a, b
  end
  local function finish()
    emit(task, 0, n, pairs_flag, ka, va)
    ka, va = nil, nil -- a trace may keep this closure alive: not the records (docs/performance.md)
  end
  return push, finish
end

-- After bucket t was emitted: its arrays, for the reduce task of this VM, when partition t
-- runs on this worker (spec.workers, set with several workers): keyed state pins it there,
-- a plain shuffle's reduce task prefers it (dstream.driver.planner).
local function keep_local(task, spec, t, keys, values)
  local workers = spec.workers
  if workers and t % workers == current.worker then handoff.keep_arrays(task, keys, values) end
end

-- Which shuffle a map task belongs to, for handoff.begin: two map tasks of one shuffle give
-- the same (two shuffles may too, which only drops what one kept earlier than needed).
local function generation(spec)
  return (spec.fn or spec.who or "") .. "@" .. current.time .. "/" .. spec.partitions
end

-- Map side of a keyed shuffle with a combiner: one value per key per task, then buckets.
-- With spec.create (combine_by_key) the first value of a key becomes create(v).
-- `added` counts the keys added, never fewer than the table holds: the loop over the table
-- leaves after that many (see operators.merge).
-- The table starts at the size the same combiner reached in its last task on this worker
-- (batches of a stream look alike): no rehashing while it fills.
local combine_sizes = {} -- spec.fn -> keys in its last task
function terminals.combine(task, spec)
  local f, nparts, who = shipped(spec.fn), spec.partitions, spec.who
  handoff.begin(generation(spec))
  local create = spec.create and shipped(spec.create)
  local acc, added = table_new(0, combine_sizes[spec.fn] or 0), 0
  local function push(k, v)
    if v == nil then
      if k == nil then return end -- no record
      not_pair(who)
    end
    local old = acc[k]
    if old == nil then -- a new key, or an array key (stored as its representative: key_of)
      local tk = type(k)
      if tk ~= "string" and tk ~= "number" or k ~= k then
        k = key_of(k, who, v)
        old = acc[k]
      end
      if old == nil then
        added = added + 1
        if create then acc[k] = create(v) else acc[k] = v end
        return
      end
    end
    acc[k] = f(old, v)
  end
  local function finish()
    local keys, values, counts = {}, {}, {}
    local left, per_bucket = added, math.ceil(added / nparts)
    combine_sizes[spec.fn] = added
    local hashed = nparts > 1 -- (one partition: every key goes to 0, no hash to compute; the
    -- keys were checked as they came, in push)
    -- One partition per worker: this worker's own partition keeps the table itself, the
    -- other partitions' keys taken out of it (a nil stored while pairs() walks is allowed),
    -- so its reduce task neither reads those keys from arrays nor inserts them again.
    local mine = hashed and spec.workers == nparts and current.worker or -1
    for k, v in pairs(acc) do
      local t = hashed and key_hash(k, who) % nparts or 0
      local n = (counts[t] or 0) + 1
      if n == 1 then keys[t], values[t] = table_new(per_bucket, 0), table_new(per_bucket, 0) end
      keys[t][n], values[t][n] = k, v
      counts[t] = n
      if mine >= 0 and t ~= mine then acc[k] = nil end
      left = left - 1
      if left == 0 then break end
    end
    local combined = acc
    acc = nil -- a trace may keep push alive: not the task's table
    for t, n in pairs(counts) do
      emit(task, t, n, true, keys[t], values[t])
      if t == mine then handoff.keep_table(task, combined, n)
      elseif hashed then keep_local(task, spec, t, keys[t], values[t]) end
    end
    -- One bucket: the table itself for a reduce task of this VM (dstream.worker.handoff).
    if not hashed and added > 0 then handoff.keep_table(task, combined, added) end
  end
  return push, finish
end

-- Map side of a shuffle without combining: by key hash, or round robin for single values.
function terminals.partition(task, spec)
  local nparts, who, by_key = spec.partitions, spec.who, spec.by_key
  handoff.begin(generation(spec))
  local keys, values, counts = buckets(nparts)
  local next_target = spec.start or 0
  local pairs_flag
  local function push(a, b)
    if a == nil then
      if b ~= nil then nil_key(who, b) end -- a pair with a nil key (also for repartition)
      return
    end
    local t
    if by_key then
      if b == nil then not_pair(who) end
      t = key_hash(a, who, b) % nparts
    else
      t = next_target
      next_target = (t + 1) % nparts
    end
    if pairs_flag == nil then pairs_flag = b ~= nil end
    local n = counts[t] + 1
    counts[t] = n
    keys[t][n], values[t][n] = a, b
  end
  local function finish()
    for t = 0, nparts - 1 do
      if counts[t] > 0 then
        emit(task, t, counts[t], pairs_flag, keys[t], values[t])
        keep_local(task, spec, t, keys[t], pairs_flag and values[t] or nil)
      end
    end
    keys, values = nil, nil -- a trace may keep push alive: not the task's records
  end
  return push, finish
end

-- count(): every task emits its count, empty or not, so the total is always there.
function terminals.count(task)
  local n = 0
  local function push(a) if a ~= nil then n = n + 1 end end
  local function finish() emit(task, 0, 1, false, { n }) end
  return push, finish
end

-- reduce(f): one partial value per non-empty task.
function terminals.reduce(task, spec)
  local f = shipped(spec.fn)
  local acc, seen = nil, false
  local function push(a, b)
    if a == nil then return end
    if b ~= nil then error("reduce: the records are key/value pairs; use reduce_by_key", 0) end
    if seen then acc = f(acc, a) else acc, seen = a, true end
  end
  local function finish()
    if seen then emit(task, 0, 1, false, { acc }) end
  end
  return push, finish
end

function terminals.foreach(task, spec)
  local f = shipped(spec.fn)
  return function(a, b) if a ~= nil then f(a, b) end end, function() end
end

-- The records of a task, kept for consume(iterate, n, keys, values) at its end; iterate()
-- starts a walk over them (one at a time). The walk's closure is made here: creating a
-- closure is not compiled (FNEW), and a trace following the end of the task into it aborts.
local function buffered(consume)
  local ka, va, n, i = {}, {}, 0, 0
  local function push(a, b)
    n = n + 1
    ka[n], va[n] = a, b
  end
  local function walk()
    i = i + 1
    if i <= n then return ka[i], va[i] end
  end
  local function iterate()
    i = 0
    return walk
  end
  return push, function()
    consume(iterate, n, ka, va)
    ka, va = nil, nil -- a trace may keep push alive: not the task's records
  end
end

function terminals.foreach_partition(task, spec)
  local f = shipped(spec.fn)
  return buffered(function(iterate) f(iterate()) end)
end

local function write_file(path, data)
  local fh, err = io.open(path, "wb")
  if not fh then error("cannot write " .. path .. ": " .. err, 0) end
  local ok, werr = fh:write(data)
  local cok, cerr = fh:close()
  if not ok or not cok then error("cannot write " .. path .. ": " .. tostring(werr or cerr), 0) end
end

-- One part file per task: text lines (pairs as k<TAB>v, tables as JSON).
function terminals.save_text(task, spec)
  local buf, text = out_buffer(1), format.text
  local function push(a, b) if a ~= nil then buf:put(text(a, b), "\n") end end
  local function finish() write_file(spec.path, buf:tostring()) end
  return push, finish
end

-- One part file per task: records in string.buffer encoding (a pair as two values).
function terminals.save_object(task, spec)
  local buf = out_buffer(1)
  local function push(a, b)
    if a == nil then return end
    buf:encode(a)
    if b ~= nil then buf:encode(b) end
  end
  local function finish() write_file(spec.path, buf:tostring()) end
  return push, finish
end

return { terminals = terminals, buffered = buffered }

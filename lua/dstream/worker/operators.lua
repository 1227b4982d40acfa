-- dstream/worker/operators.lua: the narrow operators of a stage, fused into one pipeline:
-- each constructor takes (spec, push, finish) of the next step and returns its own. Worker
-- states only; dstream.worker builds pipelines from these.
local task = require("dstream.worker.task")
local shipped, emit, out_buffer, current = task.shipped, task.emit, task.out_buffer, task.current
local key_hash, key_of, nil_key, not_pair = task.key_hash, task.key_of, task.nil_key, task.not_pair
local buffered = require("dstream.worker.terminals").buffered
local type, error, pairs = type, error, pairs
local table_new = require("table.new")

local operators = {}

-- A function that returns nil makes no record (here, not only at the end of the stage).
-- nil, v is a pair with a nil key: it goes on, for a keyed operator to refuse.
function operators.map(spec, nxt, fin)
  local f = shipped(spec.fn)
  return function(a, b)
    local x, y = f(a, b)
    if x ~= nil or y ~= nil then return nxt(x, y) end
  end, fin
end

function operators.filter(spec, nxt, fin)
  local f = shipped(spec.fn)
  return function(a, b) if f(a, b) then return nxt(a, b) end end, fin
end

function operators.map_values(spec, nxt, fin)
  local f = shipped(spec.fn)
  return function(k, v)
    local x = f(v)
    if x ~= nil then return nxt(k, x) end
  end, fin
end

local function not_expansion(who, r)
  error(who .. ": the function must return an array or an iterator, not a " .. type(r), 0)
end

-- A flat_map that is not the first operator of its stage (the first one runs in the
-- reader's loop: read_flat).
local function flat_map_push(f, nxt, who)
  return function(a, b)
    local r, s, c = f(a, b)
    local tr = type(r)
    if tr == "function" then
      for x, y in r, s, c do nxt(x, y) end
    elseif tr == "table" then
      for i = 1, #r do nxt(r[i]) end
    elseif r ~= nil then
      not_expansion(who, r)
    end
  end
end

function operators.flat_map(spec, nxt, fin)
  return flat_map_push(shipped(spec.fn), nxt, "flat_map"), fin
end

function operators.map_partitions(spec, nxt, fin)
  local f = shipped(spec.fn)
  local forward = flat_map_push(function(iterate) return f(iterate) end, nxt, "map_partitions")
  return buffered(function(iterate)
    forward(iterate())
    fin()
  end)
end

function operators.glom(_, nxt, fin)
  return buffered(function(_, n, ka, va)
    local arr = {}
    for i = 1, n do
      if va[i] ~= nil then arr[i] = { ka[i], va[i] } else arr[i] = ka[i] end
    end
    nxt(arr)
    fin()
  end)
end

-- Reduce side of combine: merges the map side's partial values per key.
-- The loop over the keys leaves by `break` after the last key it knows of (`added` counts the
-- keys added, never fewer than the table holds), not when pairs() runs out: a compiled pairs()
-- loop that runs out exits to its own start, which enters the trace again, until that exit is
-- hot (10 times); so at the end of the first task a side trace is recorded there, and it
-- follows the task into the next operators, whose loops have no trace yet (abort: loop unroll
-- limit reached). A `break` exits once per task.
-- As the map side's (terminals.combine), the table starts at the size the same function
-- reached in its last task on this worker: no rehashing at every doubling while it fills.
local merge_sizes = {} -- spec.fn -> keys in its last task
function operators.merge(spec, nxt, fin)
  local f = shipped(spec.fn)
  -- The map side's table when it was kept in this VM (dstream.worker.handoff): no decode, no
  -- key inserted again.
  local acc, added = current.handoff, current.handoff_keys
  if acc then
    current.handoff, current.handoff_keys = nil, nil
  else
    acc, added = table_new(0, merge_sizes[spec.fn] or 0), 0
  end
  local function push(k, v)
    local old = acc[k]
    if old == nil then
      if type(k) == "table" then -- an array key: its representative (task.key_of)
        k = key_of(k)
        old = acc[k]
      end
      if old == nil then
        acc[k], added = v, added + 1
        return
      end
    end
    acc[k] = f(old, v)
  end
  return push, function()
    local merged, left = acc, added
    merge_sizes[spec.fn] = added
    acc = nil -- a trace may keep push alive: not the task's table
    for k, v in pairs(merged) do
      nxt(k, v)
      left = left - 1
      if left == 0 then break end
    end
    fin()
  end
end

-- Reduce side of count(): the sum of the partial counts, 0 when there were none.
function operators.sum_counts(_, nxt, fin)
  local total = 0
  return function(n) total = total + n end, function()
    nxt(total)
    fin()
  end
end

-- Reduce side of reduce(f): one record, or none for an empty batch.
function operators.reduce_partials(spec, nxt, fin)
  local f = shipped(spec.fn)
  local acc, seen = nil, false
  return function(a)
    if seen then acc = f(acc, a) else acc, seen = a, true end
  end, function()
    if seen then nxt(acc) end
    fin()
  end
end

return { operators = operators, flat_map_push = flat_map_push, not_expansion = not_expansion }

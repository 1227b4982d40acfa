-- dstream/worker/init.lua: what runs inside each worker's Lua state.
--
-- A task names a pipeline: the narrow operators of one stage, fused, and a terminal that
-- writes the stage's output (shuffle buckets, results for the driver, files). The worker
-- builds the pipeline as a chain of small closures, then runs one Lua loop over the task's
-- input records, read from C memory through the FFI, pushing each record down the chain.
-- LuaJIT traces that loop together with the user's closures: there is no C call per record.
-- Shipped closures are decoded once per worker and cached by id.
local ffi = require("ffi")
local buffer = require("string.buffer")
local cdefs = require("dstream.worker.cdefs")
local protocol = require("dstream.protocol")
local ship = require("dstream.ship")
local format = require("dstream.format")
local table_new = require("table.new")
local task_mod = require("dstream.worker.task")
local terminals = require("dstream.worker.terminals").terminals
local ops = require("dstream.worker.operators")
local operators = ops.operators
local readers = require("dstream.worker.readers")
local read_all, read_flat, pull_slice, pull_int = readers.read_all, readers.read_flat, readers.pull_slice, readers.pull_int
local failure = require("dstream.worker.failure")
local handoff = require("dstream.worker.handoff")

local C = ffi.C
local tonumber, pairs = tonumber, pairs
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local ffi_cast = ffi.cast
local shipped, emit, current = task_mod.shipped, task_mod.emit, task_mod.current

local M = {}
M.boot = task_mod.boot
M.current = current
M.nil_key, M.key_hash = task_mod.nil_key, task_mod.key_hash
-- How an input record is quoted in a failure, by the kind of the stage's first operator.
M.record_text = failure.record_text

---------------------------------------------------------------------------------------------

-- The pipeline from the operator at index `first` (the ones before it run in the reader).
local function build(desc, task, first)
  local term = terminals[desc.term.kind]
  if not term then error("unknown terminal " .. tostring(desc.term.kind), 0) end
  local push, fin = term(task, desc.term)
  local ops = desc.ops
  for i = #ops, first, -1 do
    local op = ops[i]
    push, fin = operators[op.kind](op, push, fin)
  end
  return push, fin
end





-- A reduce stage that starts from its map side's table when that table is kept in this VM
-- (dstream.worker.handoff): current.handoff, taken by the first operator's constructor
-- (operators.merge, window_reduce); the input it stands for is not read. Returns that input's
-- index, or nil.
local adopters = { merge = true, window_reduce = true }
local function take_handoff(task, desc)
  local first = desc.ops[1]
  if not (first and adopters[first.kind]) or desc.state or desc.range or desc.file or desc.nleft then
    return nil
  end
  for i = 0, task.ninputs - 1 do
    local kind, t, keys = handoff.take(task.inputs[i], handoff.TABLE)
    if kind then
      current.handoff, current.handoff_keys = t, keys
      return i
    end
  end
end

-- An input in pull form: the arrays the map side kept in this VM (dstream.worker.handoff), or
-- the bytes decoded.
local function pull_input(s)
  local kind, keys, values = handoff.take(s, handoff.ARRAYS)
  if kind then return readers.pull_arrays(keys, values, tonumber(s.count)) end
  return pull_slice(s)
end

-- (Only if the first operator did not take the table: its pairs go down the pipeline.)
local function push_handoff(push)
  local t = current.handoff
  current.handoff, current.handoff_keys = nil, nil
  if t then
    for k, v in pairs(t) do push(k, v) end
  end
end

local function execute(task, desc)
  current.part, current.time, current.worker = desc.part or 0, desc.time or 0, task_mod.worker_index
  current.desc, current.task = desc, task
  -- A first flat_map runs in the reader's loop (read_flat); not on a state source, nor on
  -- two-sided inputs (cogroup, join: the first nleft slices are the left side).
  local nleft, first = desc.nleft, desc.ops[1]
  local expand = first and first.kind == "flat_map" and not desc.state and not nleft
    and shipped(first.fn)
  local taken = take_handoff(task, desc)
  local push, finish = build(desc, task, expand and 2 or 1)
  if taken then push_handoff(push) end
  local records = 0
  if desc.state then -- a state source: the keys this worker keeps for the partition
    M.read_state(desc.state, desc.part, push, desc.state_time)
  elseif desc.range then
    local st = { desc.range[1] - 1, desc.range[1] + desc.range[2] - 1 }
    if expand then read_flat(pull_int, st, expand, push) else read_all(pull_int, st, push) end
    records = desc.range[2]
  elseif desc.file then -- text_file: this partition's blocks of the file, one at a time
    for _, b in ipairs(desc.file) do
      local pull, st, n = readers.text_block(b)
      if expand then read_flat(pull, st, expand, push) else read_all(pull, st, push) end
      records = records + n
    end
    readers.release_text_block()
  else
    for i = 0, task.ninputs - 1 do
      local s = task.inputs[i]
      if i ~= taken then -- (the one taken is the first operator's table already)
        local pull, st = pull_input(s)
        if expand then
          read_flat(pull, st, expand, push)
        else
          read_all(pull, st, push, nleft and (i < nleft and 1 or 2) or nil)
        end
      end
      records = records + tonumber(s.count)
    end
  end
  finish()
  -- (An operator that reads its records itself, as cluster mode's keyed stage decoding bundles,
  -- says how many it read: current.records_in.)
  task.records_in = current.records_in or records
end

-- Accumulator updates travel back as an output for target -1: { ids, values }.
local function emit_accumulators(task)
  local ids, values, n = {}, {}, 0
  for id, v in pairs(current.accums) do
    n = n + 1
    ids[n], values[n] = id, v
  end
  emit(task, protocol.TARGET_ACCUMULATORS, n, true, ids, values)
end

-- A task runs in a coroutine of its own, not under xpcall: a trace cannot return through
-- xpcall's frame (NYI: return to lower frame, in this LuaJIT), so a side trace that followed
-- the end of a per-record loop to the end of the task aborted there; it stops cleanly where
-- the coroutine returns. An error leaves the coroutine's frames for failure_text.
local function task_body(task, desc)
  execute(task, desc)
  if current.accums then emit_accumulators(task) end
  if current.report then M.emit_report(task) end
end

-- Operator modules: each returns register(W), which adds constructors to W.operators and
-- W.terminals and may set the hooks W.emit_report, W.kept_result, W.read_state, W.state_keys
-- and W.record_text. At load a module reads only what is set here, never what another module
-- adds (that is read when a task runs), so their order does not matter. Shared worker state
-- is a module of its own (dstream.worker.store).
M.operators, M.terminals = operators, terminals
M.shipped, M.emit = shipped, emit
M.buffered, M.flat_map_push = require("dstream.worker.terminals").buffered, ops.flat_map_push
for _, name in ipairs { "keyed", "state", "window", "event_time", "kafka", "cluster", "cluster_window", "interval_join", "sort", "batch", "database" } do
  require("dstream.worker.ops." .. name)(M)
end

local desc_reader = buffer.new()

function M.run(task_ptr)
  task_mod.forget_dropped() -- broadcasts the driver let go since the last task
  local task = ffi_cast("ds_task *", task_ptr)
  desc_reader:set(task.desc, task.desc_len)
  local desc = desc_reader:decode()
  local on_success = {}
  current.on_success, current.accums, current.report, current.records_in = on_success, nil, nil, nil
  local co = co_create(task_body)
  local ok, err = co_resume(co, task, desc)
  if ok and co_status(co) ~= "dead" then -- a closure yielded: the task's coroutine is not its own
    ok, err = false, "attempt to yield from outside a coroutine"
  end
  if ok then
    for i = 1, #on_success do on_success[i]() end -- e.g. keyed state becomes the new state
  end
  local no_retry = current.no_retry -- failed on its records (task.records_error)
  current.on_success, current.accums, current.report, current.desc, current.no_retry = {}, nil, nil, nil, nil
  current.task, current.handoff, current.handoff_keys = nil, nil, nil
  task_mod.reset_buffers()
  if ok then
    readers.release_text_block()
    return
  end
  if err == "not enough memory" then
    readers.release_text_block() -- (a task that failed inside a text_file block)
    C.ds_task_set_error(task, protocol.TASK_OOM, err, #err)
    return
  end
  local described, text = pcall(failure.failure_text, co, err, desc)
  -- Only now: the failing line of read_words is in the block (its bytes, not a string).
  readers.release_text_block()
  if not described then
    if text == "not enough memory" then
      C.ds_task_set_error(task, protocol.TASK_OOM, text, #text)
      return
    end
    text = tostring(err)
  end
  C.ds_task_set_error(task, no_retry and protocol.TASK_NO_RETRY or protocol.TASK_FAILED, text, #text)
end

-- Code that runs once per task before its loops is never compiled: a trace would be worth
-- nothing there, and one starts there only when a hot counter it shares with a per-record loop
-- trips, to abort at its first closure creation (FNEW, not compiled) or, in M.run, at its first
-- line (a light userdata cast to a pointer). The operators' and terminals' constructors make
-- the task's closures; only those closures run per record. A trace that reaches a jit.off
-- function aborts, so what runs after a loop (execute, between slices; task_body) stays
-- compiled: the side trace at the end of a slice, hot when a task has many slices, goes on
-- there to the next slice's loop.
for _, f in ipairs({ M.run, build, take_handoff, push_handoff }) do
  jit.off(f)
end
for _, kind in ipairs({ operators, terminals }) do
  for _, constructor in pairs(kind) do jit.off(constructor) end
end

return M
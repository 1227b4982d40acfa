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

local C = ffi.C
local type, select, error, tonumber, pairs = type, select, error, tonumber, pairs
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local u8p, u32p = ffi.typeof("const uint8_t *"), ffi.typeof("const uint32_t *")
local ffi_string, ffi_cast = ffi.string, ffi.cast
local FMT_LINES, FMT_SBUF = cdefs.FMT_LINES, cdefs.FMT_SBUF

local M = {}

local pool          -- ds_pool* of this worker
local worker_index  -- 0-based
local fn_cache = {} -- blob id -> decoded value
local blob_len = ffi.new("size_t[1]")
local task_buffers = {} -- reusable output buffers, one per shuffle target

function M.boot(pool_ptr, index, boot_arg)
  pool = ffi_cast("ds_pool *", pool_ptr)
  worker_index = index
  if boot_arg and #boot_arg > 0 then
    local settings = buffer.decode(boot_arg)
    local jitopt = require("dstream.jitopt")
    for _, cmd in ipairs(settings.jit or {}) do jitopt.apply(cmd) end
  end
end

local function shipped(id)
  local v = fn_cache[id]
  if v == nil then
    local p = C.ds_pool_get_blob(pool, id, blob_len)
    if p == nil then error("shipped code " .. id .. " is missing on worker " .. worker_index, 0) end
    v = ship.decode(ffi_string(p, blob_len[0]))
    fn_cache[id] = v
  end
  return v
end

local function out_buffer(i)
  local b = task_buffers[i]
  if not b then
    b = buffer.new()
    task_buffers[i] = b
  end
  return b:reset()
end

-- A slice in DS_FMT_SBUF holds one encoded value: { values } for single records, or
-- { keys, values } for pairs. Decoding a whole slice in one call keeps string.buffer's decoder
-- out of the per-record loop (this LuaJIT build re-runs a JIT-compiled decode() after a type
-- guard fails, which skips a value), and leaves the loop a plain array walk.
local unsendable -- (err, target, count, pairs_flag, keys, values): raises what was wrong
local function emit(task, target, count, pairs_flag, keys, values)
  if count == 0 then return end
  local buf = out_buffer(1)
  local encoded, err = pcall(buf.encode, buf, pairs_flag and { keys, values } or { keys })
  if not encoded then unsendable(err, target, count, pairs_flag, keys, values) end
  local p, len = buf:ref()
  if C.ds_task_emit(task, target, FMT_SBUF, pairs_flag and 1 or 0, p, len, count) ~= 0 then
    error("out of memory while storing the task's output", 0)
  end
  if len > 4194304 then buf:free() end -- the bytes are in C memory now: do not keep a big buffer
end

---------------------------------------------------------------------------------------------
-- Keys

-- The C calls are not tail calls: a trace that starts at this function (hot before the loop
-- calling it is compiled) then stops at its return instead of aborting in the caller's loop.
-- A pair whose key is nil (`return s:match(p), 1` on a string that does not match): an
-- error, never a dropped record. (nil, nil) is no record; (x, nil) is a single value.
local function nil_key(who, v)
  error(who .. ": a key is nil, which cannot be grouped (the pair " .. format.brief(nil, v)
    .. "): keys must be strings, numbers or booleans; a failed match() or a missing field"
    .. " gives nil: filter those records out, or give them a key", 0)
end
M.nil_key = nil_key

-- A single value where a pair was needed.
local function not_pair(who)
  error(who .. ": a record is a single value, not a key/value pair (return key, value from map)", 0)
end

-- v, when given, is the value of the pair (for the message of a nil key).
local function key_hash(k, who, v)
  local tk = type(k)
  if tk == "string" then
    local h = C.ds_hash_bytes(k, #k)
    return h
  end
  if tk == "number" then
    if k ~= k then error(who .. ": a key is NaN, which cannot be grouped", 0) end
    local h = C.ds_hash_number(k)
    return h
  end
  if tk == "boolean" then return k and 1 or 0 end
  if tk == "nil" then nil_key(who, v) end
  error(who .. ": keys must be strings, numbers or booleans, got a " .. tk .. " key", 0)
end
M.key_hash = key_hash

---------------------------------------------------------------------------------------------
-- Terminals: the end of a pipeline. Each returns push(a, b) and finish().

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

-- Map side of a keyed shuffle with a combiner: one value per key per task, then buckets.
-- With spec.create (combine_by_key) the first value of a key becomes create(v).
-- `added` counts the keys added, never fewer than the table holds: the loop over the table
-- leaves after that many (see operators.merge).
-- The table starts at the size the same combiner reached in its last task on this worker
-- (batches of a stream look alike): no rehashing while it fills.
local combine_sizes = {} -- spec.fn -> keys in its last task
function terminals.combine(task, spec)
  local f, nparts, who = shipped(spec.fn), spec.partitions, spec.who
  local create = spec.create and shipped(spec.create)
  local acc, added = table_new(0, combine_sizes[spec.fn] or 0), 0
  local function push(k, v)
    if v == nil then
      if k == nil then return end -- no record
      not_pair(who)
    end
    local old = acc[k]
    if old == nil then
      if k == nil or k ~= k then key_hash(k, who, v) end
      added = added + 1
      if create then acc[k] = create(v) else acc[k] = v end
    else
      acc[k] = f(old, v)
    end
  end
  local function finish()
    local keys, values, counts = {}, {}, {}
    local left, per_bucket = added, math.ceil(added / nparts)
    combine_sizes[spec.fn] = added
    for k, v in pairs(acc) do
      local t = key_hash(k, who) % nparts
      local n = (counts[t] or 0) + 1
      if n == 1 then keys[t], values[t] = table_new(per_bucket, 0), table_new(per_bucket, 0) end
      keys[t][n], values[t][n] = k, v
      counts[t] = n
      left = left - 1
      if left == 0 then break end
    end
    acc = nil -- a trace may keep push alive: not the task's table
    for t, n in pairs(counts) do emit(task, t, n, true, keys[t], values[t]) end
  end
  return push, finish
end

-- Map side of a shuffle without combining: by key hash, or round robin for single values.
function terminals.partition(task, spec)
  local nparts, who, by_key = spec.partitions, spec.who, spec.by_key
  local keys, values, counts = {}, {}, {}
  for t = 0, nparts - 1 do
    keys[t], values[t], counts[t] = {}, {}, 0
  end
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
      t = key_hash(a, who) % nparts
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
    for t = 0, nparts - 1 do emit(task, t, counts[t], pairs_flag, keys[t], values[t]) end
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

---------------------------------------------------------------------------------------------
-- Narrow operators: each wraps the next push(a, b) / finish().

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
function operators.merge(spec, nxt, fin)
  local f = shipped(spec.fn)
  local acc, added = {}, 0
  local function push(k, v)
    local old = acc[k]
    if old == nil then
      acc[k], added = v, added + 1
    else
      acc[k] = f(old, v)
    end
  end
  return push, function()
    local merged, left = acc, added
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

---------------------------------------------------------------------------------------------
-- Readers: the per-record loops. `input_record` is the name the error handler looks for.

-- The inputs in pull form: pull(st) gives the next input record (and value), nil after the
-- last; st holds the position. Plain functions and a state table, not closures made per
-- slice: a side trace that follows the end of one slice into the next one would abort at the
-- closure's creation (FNEW is not compiled).
local function pull_line(st) -- st: { records (const uint8_t *), bytes, offset }
  local off = st[3]
  if off >= st[2] then return nil end
  local p = st[1]
  local len = ffi_cast(u32p, p + off)[0]
  st[3] = off + 4 + len
  local line = ffi_string(p + off + 4, len)
  return line
end

local function pull_value(st) -- st: { values, count, index }
  local i = st[3]
  if i >= st[2] then return nil end
  i = i + 1
  st[3] = i
  return st[1][i]
end

local function pull_pair(st) -- st: { keys, count, index, values }
  local i = st[3]
  if i >= st[2] then return nil end
  i = i + 1
  st[3] = i
  return st[1][i], st[4][i]
end

local function pull_int(st) -- st: { last integer given, last integer of the range }
  local i = st[1]
  if i >= st[2] then return nil end
  st[1] = i + 1
  return i + 1
end

-- A slice in pull form: pull, st.
local reader = buffer.new()
local function pull_slice(s)
  if s.format == FMT_LINES then return pull_line, { ffi_cast(u8p, s.data), tonumber(s.len), 0 } end
  reader:set(s.data, s.len)
  local arrays = reader:decode()
  if arrays[2] then return pull_pair, { arrays[1], tonumber(s.count), 0, arrays[2] } end
  return pull_value, { arrays[1], tonumber(s.count), 0 }
end

-- The reader of a stage that does not start with flat_map. side: 1 or 2 for the left or
-- right input of a two-sided stage (cogroup, join).
local function read_all(pull, st, push, side)
  while true do
    local input_record, input_value = pull(st)
    if input_record == nil and input_value == nil then return end -- nil, v: a nil key
    push(input_record, input_value, side)
  end
end

-- A stage that starts with flat_map (a word count's `text_file(p):flat_map(words)`) runs one
-- loop over the input records and the records each expands to, instead of a loop per input
-- record inside flat_map's push: that loop ends with every line, and LuaJIT records a loop's
-- trace from the iteration its hot counter trips at, which on a line of ten words is the
-- last one time in ten (abort: "leaving loop in root trace"). Each abort delays the loop's
-- trace; meanwhile the functions it calls per word get hot and start traces of their own,
-- whose side traces return into the loop while it has no trace and abort too (loop unroll
-- limit), until their exits are left to the interpreter. This loop ends once per slice.
-- pull(st) gives the next input record (and value), nil after the last.
-- The iterator's first call is made where the record is read, so that its control variable
-- is never nil where the loop begins again (a slot whose type changes there makes the side
-- traces of the refill fail to link back: "persistent type instability"); for the same
-- reason `iterating` is a number, not a boolean (true and false are two types to a trace).
local function read_flat(pull, st, f, push)
  local input_record, input_value
  local r, s, c = nil, nil, nil -- the current record's iterator (r a function) or array
  local iterating, i, n = 0, 0, 0
  while true do
    if iterating == 1 then
      local x, y = r(s, c)
      if x == nil then
        iterating = 0
      else
        c = x
        push(x, y)
      end
    elseif i < n then
      i = i + 1
      push(r[i])
    else
      input_record, input_value = pull(st)
      if input_record == nil and input_value == nil then return end -- nil, v: a nil key
      local fr, fs, fc = f(input_record, input_value)
      local tr = type(fr)
      if tr == "function" then
        local x, y = fr(fs, fc)
        if x ~= nil then
          r, s, c, iterating = fr, fs, x, 1
          push(x, y)
        end
      elseif tr == "table" then
        r, i, n = fr, 0, #fr
      elseif fr ~= nil then
        not_expansion("flat_map", fr)
      end
    end
  end
end

local readers = { [read_all] = true, [read_flat] = true }

-- How an input record is quoted, by the kind of the stage's first operator, for inputs that
-- are not plain values (Kafka's frames: dstream.kafka adds kafka_record): fn(op, a, b) -> text.
M.record_text = {}

-- The input record being processed when the task's coroutine co stopped on an error: found
-- in the reader's frame, which the coroutine keeps.
local function current_record(co, desc)
  for level = 0, 200 do
    local info = debug.getinfo(co, level, "f")
    if not info then return nil end
    if readers[info.func] then
      local a, b
      for i = 1, 50 do
        local name, v = debug.getlocal(co, level, i)
        if not name then break end
        if name == "input_record" then a = v elseif name == "input_value" then b = v end
      end
      local first = desc and desc.ops and desc.ops[1]
      local quote = first and M.record_text[first.kind]
      local ok, text = true, nil
      if quote and (a ~= nil or b ~= nil) then ok, text = pcall(quote, first, a, b) end
      if ok and text then return text end
      if a ~= nil or b ~= nil then return "record " .. format.brief(a, b, 200) end
      return nil
    end
  end
end

-- The message of a task that failed with err: the record, the error, the user's frames (the
-- traceback stops where dstream's worker code begins).
local function failure_text(co, err, desc)
  local text = type(err) == "string" and err or ("error object: " .. tostring(err))
  local record = current_record(co, desc)
  if record then text = record .. ": " .. text end
  local lines = { text }
  -- LuaJIT has no current line for the top frame of a coroutine that died in a Lua function
  -- (a run-time error there): the message starts with it.
  local where = type(err) == "string" and err:match("^([^\n]-:%d+): ")
  local src = where and where:match("^(.*):%d+$")
  for line in debug.traceback(co, "", 0):gmatch("[^\n]+") do
    if line:find("dstream/worker/", 1, true) then break end
    if src and line:sub(1, 1) == "\t" then
      if line:find("\t" .. src .. ": in ", 1, true) == 1 then
        line = "\t" .. where .. line:sub(#src + 2)
      end
      src = nil -- the top frame only
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end

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

-- What operators may know of the task they run in: its partition and batch time, work to
-- do only if the whole task succeeds (state commits), and accumulator updates.
local current = { part = 0, time = 0, on_success = {}, accums = nil }
M.current = current

-- The first value inside v (a record) that string.buffer cannot encode, as (type, path).
local function find_unsendable(v, path, seen)
  local t = type(v)
  if t == "function" or t == "thread" or t == "userdata" or t == "cdata" then return t, path end
  if t ~= "table" or seen[v] then return nil end
  seen[v] = true
  for k, x in pairs(v) do
    local kt, kp = find_unsendable(k, path .. " (the key of a field)", seen)
    if kt then return kt, kp end
    local field = type(k) == "string" and k:match("^[%a_][%w_]*$") and "." .. k
      or "[" .. format.brief(k, nil, 40) .. "]"
    local xt, xp = find_unsendable(x, path .. field, seen)
    if xt then return xt, xp end
  end
end

-- A record as text for that message: tables as { k = v, ... } up to some depth, values that
-- cannot be sent as <function> etc., cut at `max` characters.
local function record_text(v, max)
  local out, n = {}, 0
  local function put(s)
    n = n + #s
    out[#out + 1] = s
    return n < max
  end
  local function walk(x, depth)
    local t = type(x)
    if t == "string" then return put(string.format("%q", #x > 60 and x:sub(1, 60) .. "..." or x))
    elseif t == "number" or t == "boolean" or t == "nil" then return put(tostring(x))
    elseif t ~= "table" then return put("<" .. t .. ">")
    elseif depth > 3 then return put("{...}") end
    if not put("{ ") then return false end
    local first = true
    for k, y in pairs(x) do
      if not first and not put(", ") then return false end
      first = false
      if type(k) == "string" and k:match("^[%a_][%w_]*$") then
        if not put(k .. " = ") then return false end
      else
        if not put("[") or not walk(k, depth + 1) or not put("] = ") then return false end
      end
      if not walk(y, depth + 1) then return false end
    end
    return put(" }")
  end
  walk(v, 1)
  local s = table.concat(out)
  return #s > max and s:sub(1, max) .. "..." or s
end

-- A stage's output that cannot be encoded (a record holding a function, a coroutine, cdata,
-- userdata): names the operator whose function made it, its line, and the record.
unsendable = function(err, target, count, pairs_flag, keys, values)
  local record, what, path
  for i = 1, count do
    local seen = {}
    local side = pairs_flag and "its key" or "it"
    what, path = find_unsendable(keys[i], "", seen)
    if not what and pairs_flag then
      side = "its value"
      what, path = find_unsendable(values[i], "", seen)
    end
    if what then
      record = pairs_flag and "(" .. record_text(keys[i], 80) .. ", " .. record_text(values[i], 120)
        .. ")" or record_text(keys[i], 200)
      what = side .. (path == "" and " is a " .. what or " holds a " .. what .. " at " .. path)
      break
    end
  end
  if not what then error(err, 0) end
  local desc, who, fn = current.desc, nil, nil
  if target == protocol.TARGET_ACCUMULATORS then
    who = "an accumulator"
  elseif desc then
    for i = #desc.ops, 1, -1 do
      if desc.ops[i].fn then who, fn = desc.ops[i].kind, desc.ops[i].fn break end
    end
    if not fn and desc.term.fn then who, fn = desc.term.who or desc.term.kind, desc.term.fn end
  end
  local f = fn and shipped(fn)
  local info = type(f) == "function" and debug.getinfo(f, "S")
  local where = info and info.what == "Lua" and (" (the function at " .. info.short_src .. ":"
    .. info.linedefined .. ")") or ""
  error(string.format("%s%s made a record that cannot be sent on: %s (record %s);"
    .. " records may hold strings, numbers, booleans and tables of them: return data, not"
    .. " functions, coroutines, cdata or userdata", who or "an operator", where, what, record), 0)
end

local function execute(task, desc)
  current.part, current.time, current.worker = desc.part or 0, desc.time or 0, worker_index
  current.desc = desc
  -- A first flat_map runs in the reader's loop (read_flat); not on a state source, nor on
  -- two-sided inputs (cogroup, join: the first nleft slices are the left side).
  local nleft, first = desc.nleft, desc.ops[1]
  local expand = first and first.kind == "flat_map" and not desc.state and not nleft
    and shipped(first.fn)
  local push, finish = build(desc, task, expand and 2 or 1)
  local records = 0
  if desc.state then -- a state source: the keys this worker keeps for the partition
    M.read_state(desc.state, desc.part, push, desc.state_time)
  elseif desc.range then
    local st = { desc.range[1] - 1, desc.range[1] + desc.range[2] - 1 }
    if expand then read_flat(pull_int, st, expand, push) else read_all(pull_int, st, push) end
    records = desc.range[2]
  else
    for i = 0, task.ninputs - 1 do
      local s = task.inputs[i]
      local pull, st = pull_slice(s)
      if expand then
        read_flat(pull, st, expand, push)
      else
        read_all(pull, st, push, nleft and (i < nleft and 1 or 2) or nil)
      end
      records = records + tonumber(s.count)
    end
  end
  finish()
  task.records_in = records
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
M.shipped, M.emit, M.buffered, M.flat_map_push = shipped, emit, buffered, flat_map_push
for _, name in ipairs { "keyed", "state", "window", "event_time" } do
  require("dstream.worker.ops." .. name)(M)
end
require("dstream.kafka").register_worker(M)

local desc_reader = buffer.new()

function M.run(task_ptr)
  local task = ffi_cast("ds_task *", task_ptr)
  desc_reader:set(task.desc, task.desc_len)
  local desc = desc_reader:decode()
  local on_success = {}
  current.on_success, current.accums, current.report = on_success, nil, nil
  local co = co_create(task_body)
  local ok, err = co_resume(co, task, desc)
  if ok and co_status(co) ~= "dead" then -- a closure yielded: the task's coroutine is not its own
    ok, err = false, "attempt to yield from outside a coroutine"
  end
  if ok then
    for i = 1, #on_success do on_success[i]() end -- e.g. keyed state becomes the new state
  end
  current.on_success, current.accums, current.report, current.desc = {}, nil, nil, nil
  for i = 1, #task_buffers do task_buffers[i]:reset() end
  if ok then return end
  if err == "not enough memory" then
    C.ds_task_set_error(task, protocol.TASK_OOM, err, #err)
    return
  end
  local described, text = pcall(failure_text, co, err, desc)
  if not described then
    if text == "not enough memory" then
      C.ds_task_set_error(task, protocol.TASK_OOM, text, #text)
      return
    end
    text = tostring(err)
  end
  C.ds_task_set_error(task, protocol.TASK_FAILED, text, #text)
end

-- Code that runs once per task before its loops is never compiled: a trace would be worth
-- nothing there, and one starts there only when a hot counter it shares with a per-record loop
-- trips, to abort at its first closure creation (FNEW, not compiled) or, in M.run, at its first
-- line (a light userdata cast to a pointer). The operators' and terminals' constructors make
-- the task's closures; only those closures run per record. A trace that reaches a jit.off
-- function aborts, so what runs after a loop (execute, between slices; task_body) stays
-- compiled: the side trace at the end of a slice, hot when a task has many slices, goes on
-- there to the next slice's loop.
for _, f in ipairs({ M.run, build }) do
  jit.off(f)
end
for _, kind in ipairs({ operators, terminals }) do
  for _, constructor in pairs(kind) do jit.off(constructor) end
end

return M

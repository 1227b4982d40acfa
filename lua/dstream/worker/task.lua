-- dstream/worker/task.lua: what the code of a task shares inside a worker's Lua state: the
-- worker's pool and index, shipped closures (decoded once per worker, cached by id), the
-- current task, its outputs (emit) and key hashing. Worker states only.
local ffi = require("ffi")
local buffer = require("string.buffer")
local cdefs = require("dstream.worker.cdefs")
local format = require("dstream.format")
local ship = require("dstream.ship")
-- A buffer that grew past this gives its memory back after each use (ds_limits.h).
local BUFFER_KEEP = require("dstream.core").limits().buffer_keep_bytes

local C = ffi.C
local type, error, pairs, next = type, error, pairs, next
local getmetatable, setmetatable = getmetatable, setmetatable
local ffi_string, ffi_cast = ffi.string, ffi.cast
local FMT_SBUF = cdefs.FMT_SBUF

local M = {}

local pool          -- ds_pool* of this worker
local worker_index  -- 0-based
local fn_cache = {} -- blob id -> decoded value
local task_buffers = {} -- reusable output buffers, one per shuffle target

function M.boot(pool_ptr, index, boot_arg)
  pool = ffi_cast("ds_pool *", pool_ptr)
  worker_index = index
  M.worker_index = index
  if boot_arg and #boot_arg > 0 then
    local settings = buffer.decode(boot_arg)
    local jitopt = require("dstream.jitopt")
    for _, cmd in ipairs(settings.jit or {}) do jitopt.apply(cmd) end
  end
end

-- The decoded value of blob `id`: shipped code, or a broadcast's value. Decoded once per
-- worker, and again after the driver let it go (a broadcast unpersisted); a blob the driver
-- dropped for good (a broadcast destroyed) is an error.
function M.shipped(id)
  local v = fn_cache[id]
  if v == nil then
    local len = tonumber(C.ds_pool_copy_blob(pool, id, nil, 0))
    local buf = len >= 0 and ffi.new("char[?]", len > 0 and len or 1)
    if len >= 0 and tonumber(C.ds_pool_copy_blob(pool, id, buf, len)) ~= len then len = -1 end
    if len < 0 then
      local destroyed = require("dstream.state.shared").destroyed_text(id)
      error(destroyed or ("shipped code " .. id .. " is missing on worker " .. worker_index), 0)
    end
    v = ship.decode(ffi_string(buf, len))
    fn_cache[id] = v
  end
  return v
end

-- At the start of each task: forgets the decoded copies of the blobs the driver let go since
-- the last task (ds_pool_drop_blob's ring; all of them when the ring has moved past).
local drops_seen = 0ULL
function M.forget_dropped()
  local n = C.ds_pool_blob_drops(pool)
  if n == drops_seen then return end
  local forget = require("dstream.state.shared").forget_copy
  while drops_seen < n do
    local id = tonumber(C.ds_pool_blob_dropped(pool, drops_seen))
    if id < 0 then
      fn_cache = {}
      forget(nil)
      break
    end
    fn_cache[id] = nil
    forget(id)
    drops_seen = drops_seen + 1
  end
  drops_seen = n
end

-- After a task: the buffers keep their memory for the next one, not their bytes.
function M.reset_buffers()
  for i = 1, #task_buffers do task_buffers[i]:reset() end
end

function M.out_buffer(i)
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
function M.emit(task, target, count, pairs_flag, keys, values)
  if count == 0 then return end
  local buf = M.out_buffer(1)
  local encoded, err = pcall(buf.encode, buf, pairs_flag and { keys, values } or { keys })
  if not encoded then -- (the error path only: raises what was wrong)
    require("dstream.worker.failure").unsendable(err, target, count, pairs_flag, keys, values)
  end
  local p, len = buf:ref()
  if C.ds_task_emit(task, target, FMT_SBUF, pairs_flag and 1 or 0, p, len, count) ~= 0 then
    error("out of memory while storing the task's output", 0)
  end
  if len > BUFFER_KEEP then buf:free() end -- the bytes are in C memory now: do not keep a big buffer
end

-- A map side's output per target partition t = 0 .. nparts-1: keys[t], values[t], counts[t].
-- Each terminal appends a record inline (no call per record on the hot path) and hands every
-- bucket to emit_buckets when its task finishes (an empty bucket emits nothing).
function M.buckets(nparts)
  local keys, values, counts = {}, {}, {}
  for t = 0, nparts - 1 do keys[t], values[t], counts[t] = {}, {}, 0 end
  return keys, values, counts
end

function M.emit_buckets(task, nparts, pairs_flag, keys, values, counts)
  for t = 0, nparts - 1 do M.emit(task, t, counts[t], pairs_flag, keys[t], values[t]) end
end

-- -- Keys

-- What operators may know of the task they run in: its partition and batch time, work to
-- do only if the whole task succeeds (state commits), and accumulator updates. no_retry:
-- the task failed on its records (a key that cannot be a key), so running it again would
-- fail the same way (dstream.worker sends protocol.TASK_NO_RETRY, the scheduler believes it).
-- records_in: the task's input records, when its operator counts them itself.
local current = { part = 0, time = 0, on_success = {}, accums = nil, no_retry = nil, records_in = nil }
M.current = current

-- An error in the records themselves: the task fails once, it is not retried.
local function records_error(msg)
  current.no_retry = true
  error(msg, 0)
end
M.records_error = records_error

-- The C calls are not tail calls: a trace that starts at this function (hot before the loop
-- calling it is compiled) then stops at its return instead of aborting in the caller's loop.
-- A pair whose key is nil (`return s:match(p), 1` on a string that does not match): an
-- error, never a dropped record. (nil, nil) is no record; (x, nil) is a single value.
function M.nil_key(who, v)
  records_error(who .. ": a key is nil, which cannot be grouped (the pair " .. format.brief(nil, v)
    .. "): keys must be strings, numbers or booleans, or arrays of them; a failed match() or"
    .. " a missing field gives nil: filter those records out, or give them a key")
end

-- A single value where a pair was needed.
function M.not_pair(who)
  records_error(who .. ": a record is a single value, not a key/value pair (return key, value from map)")
end

-- A key as text for those messages: a table one level deep, what cannot be shown as <type>.
local function key_text(k, depth)
  local tk = type(k)
  if tk == "string" then return string.format("%q", #k > 60 and k:sub(1, 60) .. "..." or k) end
  if tk == "number" or tk == "boolean" or tk == "nil" then return tostring(k) end
  if tk ~= "table" then return "<" .. tk .. ">" end
  if depth then return "{...}" end
  local parts, n = {}, #k
  for i = 1, n do parts[i] = key_text(k[i], true) end
  for f, x in pairs(k) do
    if type(f) ~= "number" or f < 1 or f > n or f % 1 ~= 0 then
      local name = type(f) == "string" and f:match("^[%a_][%w_]*$") or "[" .. key_text(f, true) .. "]"
      parts[#parts + 1] = name .. " = " .. key_text(x, true)
      if #parts > 8 then parts[#parts + 1] = "..." break end
    end
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

local function bad_key(who, k, v, what)
  records_error(who .. ": keys must be strings, numbers or booleans, or arrays of them (a"
    .. " composite key such as { zip, status }); " .. what .. " (the pair (" .. key_text(k)
    .. ", " .. format.brief(v) .. "))")
end

-- Composite keys. An array of strings, numbers and booleans is a key by value: {"a", 1}
-- returned by two records is one key. The tables that hold keys (a reduce's accumulator,
-- groups, state stores, panes, windows) compare tables by reference, so each worker VM keeps
-- one representative table per key, found by its canonical form (a string of the typed
-- elements: {1} and {"1"} differ): a keyed operator turns an array key into its
-- representative when the key is not in its table yet (a plain key pays at most a type check
-- there), and every later lookup is by reference. Representatives are copies (a record's
-- own table may be reused or changed by the user's code), weakly held: a key nothing uses any
-- more goes away. They are marked by a protected metatable (getmetatable gives REP, which
-- string.buffer and JSON ignore, and setmetatable refuses): a check that costs a field load,
-- where a weak-keyed set of them cost a third of the time of a composite key in collections.
-- Across a shuffle a key is encoded as the array it is and becomes the representative of the
-- receiving VM; a restored checkpoint's keys too (rekey).
local REP = "dstream key"
local REP_MT = { __metatable = REP }
local reps = setmetatable({}, { __mode = "v" }) -- canonical form -> representative
local canon_buf = buffer.new()

-- An element of an array key, appended to its canonical form in b: "s<len>:<bytes>",
-- "i<digits>;" (integers below 1e14, the digits `put` writes exactly), "n<%.17g>;", "T;", "F;".
local function put_element(b, x, i, k, who, v)
  local tx = type(x)
  if tx == "string" then
    b:put("s", #x, ":", x)
  elseif tx == "number" then
    if x ~= x then bad_key(who, k, v, "an array key holds NaN") end
    if x % 1 == 0 and x > -1e14 and x < 1e14 then
      b:put("i", x == 0 and 0 or x, ";") -- (-0 is 0)
    else
      b:putf("n%.17g;", x)
    end
  elseif tx == "boolean" then
    b:put(x and "T;" or "F;")
  elseif tx == "nil" then
    bad_key(who, k, v, "an array key has a hole at [" .. i .. "]")
  else
    bad_key(who, k, v, "an array key holds a " .. tx .. " at [" .. i .. "]")
  end
end

-- k has entries besides 1..n: which (the error path only).
local function not_array(k, n, who, v)
  for f in pairs(k) do
    if type(f) == "number" and f % 1 == 0 and f > n then
      bad_key(who, k, v, "an array key has a hole before [" .. f .. "]")
    elseif type(f) ~= "number" or f < 1 or f % 1 ~= 0 then
      bad_key(who, k, v, "a table key must be an array, this one has other fields")
    end
  end
end

-- The canonical form of an array key, or an error naming who and the pair. Keys of up to 4
-- elements take no loop: a loop this short, run per record, gets a trace of its own, which
-- the per-record loop that calls it cannot contain (its trace aborts: the whole stage would
-- run in the interpreter, 10 times slower). Exactly n entries: the (n+1)th next() is nil.
local function canonical(k, who, v)
  local n = #k
  local b = canon_buf:reset()
  if n <= 4 then
    local f = next(k)
    if n >= 1 then put_element(b, k[1], 1, k, who, v) f = next(k, f) end
    if n >= 2 then put_element(b, k[2], 2, k, who, v) f = next(k, f) end
    if n >= 3 then put_element(b, k[3], 3, k, who, v) f = next(k, f) end
    if n >= 4 then put_element(b, k[4], 4, k, who, v) f = next(k, f) end
    if f ~= nil then not_array(k, n, who, v) end
  else
    for i = 1, n do put_element(b, k[i], i, k, who, v) end
    local fields = 0
    for _ in pairs(k) do fields = fields + 1 end
    if fields ~= n then not_array(k, n, who, v) end
  end
  return b:tostring()
end

-- The key to store k under: k itself for a string, a number or a boolean; an array's
-- representative; an error naming `who` and the pair (k, v) for anything else.
function M.key_of(k, who, v)
  local tk = type(k)
  if tk == "table" then
    if getmetatable(k) == REP then return k end
    local c = canonical(k, who, v)
    local rep = reps[c]
    if rep == nil then
      local n = #k
      if n <= 4 then -- (no loop: see canonical)
        rep = setmetatable({ k[1], k[2], k[3], k[4] }, REP_MT)
      else
        rep = setmetatable({}, REP_MT)
        for i = 1, n do rep[i] = k[i] end
      end
      reps[c] = rep
    end
    return rep
  end
  if tk == "string" or tk == "boolean" then return k end
  if tk == "number" then
    if k ~= k then bad_key(who, k, v, "got NaN") end
    return k
  end
  if tk == "nil" then M.nil_key(who, v) end
  bad_key(who, k, v, "got a " .. tk)
end
local key_of = M.key_of

-- t[k], made an empty table when missing (tables of tables by time: windows, panes).
function M.slot(t, k)
  local v = t[k]
  if not v then
    v = {}
    t[k] = v
  end
  return v
end

-- Keys of a table restored from bytes (a checkpoint's store) are new tables: their
-- representatives instead. Returns t (changed in place).
function M.rekey(t)
  local arrays
  for k in pairs(t) do
    if type(k) == "table" and getmetatable(k) ~= REP then
      arrays = arrays or {}
      arrays[#arrays + 1] = k
    end
  end
  if arrays then
    for i = 1, #arrays do
      local k = arrays[i]
      local v = t[k]
      t[k] = nil
      t[key_of(k, "restore")] = v
    end
  end
  return t
end

-- The hash that picks a key's partition: the same in every worker and every process.
-- v, when given, is the value of the pair (for the message of a bad key).
function M.key_hash(k, who, v)
  local tk = type(k)
  if tk == "string" then
    local h = C.ds_hash_bytes(k, #k)
    return h
  end
  if tk == "number" then
    if k ~= k then bad_key(who, k, v, "got NaN") end
    local h = C.ds_hash_number(k)
    return h
  end
  if tk == "boolean" then return k and 1 or 0 end
  if tk == "table" then
    local c = canonical(k, who, v)
    local h = C.ds_hash_bytes(c, #c)
    return h
  end
  if tk == "nil" then M.nil_key(who, v) end
  bad_key(who, k, v, "got a " .. tk)
end

return M

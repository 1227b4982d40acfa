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
local type, error = type, error
local ffi_string, ffi_cast = ffi.string, ffi.cast
local FMT_SBUF = cdefs.FMT_SBUF

local M = {}

local pool          -- ds_pool* of this worker
local worker_index  -- 0-based
local fn_cache = {} -- blob id -> decoded value
local blob_len = ffi.new("size_t[1]")
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

function M.shipped(id)
  local v = fn_cache[id]
  if v == nil then
    local p = C.ds_pool_get_blob(pool, id, blob_len)
    if p == nil then error("shipped code " .. id .. " is missing on worker " .. worker_index, 0) end
    v = ship.decode(ffi_string(p, blob_len[0]))
    fn_cache[id] = v
  end
  return v
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

-- -- Keys

-- The C calls are not tail calls: a trace that starts at this function (hot before the loop
-- calling it is compiled) then stops at its return instead of aborting in the caller's loop.
-- A pair whose key is nil (`return s:match(p), 1` on a string that does not match): an
-- error, never a dropped record. (nil, nil) is no record; (x, nil) is a single value.
function M.nil_key(who, v)
  error(who .. ": a key is nil, which cannot be grouped (the pair " .. format.brief(nil, v)
    .. "): keys must be strings, numbers or booleans; a failed match() or a missing field"
    .. " gives nil: filter those records out, or give them a key", 0)
end

-- A single value where a pair was needed.
function M.not_pair(who)
  error(who .. ": a record is a single value, not a key/value pair (return key, value from map)", 0)
end

-- v, when given, is the value of the pair (for the message of a nil key).
function M.key_hash(k, who, v)
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
  if tk == "nil" then M.nil_key(who, v) end
  error(who .. ": keys must be strings, numbers or booleans, got a " .. tk .. " key", 0)
end

-- What operators may know of the task they run in: its partition and batch time, work to
-- do only if the whole task succeeds (state commits), and accumulator updates.
M.current = { part = 0, time = 0, on_success = {}, accums = nil }

return M

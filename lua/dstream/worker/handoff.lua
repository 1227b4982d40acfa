-- dstream/worker/handoff.lua: a map side's combined table handed to the reduce task that runs
-- in the same worker VM, instead of that task decoding the bucket and inserting its keys into
-- a table of its own again. Worker states only.
--
-- A combine with one reduce partition (one worker, or `partitions = 1`) still encodes its
-- bucket into C memory as every map side does: the bytes are what any worker, a retried task
-- or a restarted VM reads. Beside them the VM keeps the table it combined into, under the
-- bucket's block. When a reduce task of this VM finds that block among its inputs, it takes
-- the table (merge and window_reduce start from it) and skips the decode and the re-insertion
-- of every key (windowed word count, 1 worker: the reduce side's decode and batch table were
-- 15% of its time, docs/performance.md). A table is taken once: a second read of the same
-- bytes (a retry after a failed attempt, which may have changed the table) decodes them.
--
-- The VM holds a reference to the block while it keeps the table, so the block's address
-- cannot be reused by another block meanwhile (the address is the key); a VM closed with
-- tables kept releases it in the reference's finalizer. At most KEEP tables are kept; the
-- oldest goes first (its reduce task ran elsewhere, or never will).
local ffi = require("ffi")
require("dstream.worker.cdefs")

local C = ffi.C
local ffi_cast, tonumber = ffi.cast, tonumber

local KEEP = 4
local kept = {} -- block address -> { table, keys, block }
local order, first, last = {}, 1, 0 -- the addresses kept, oldest first

local function address(block) return tonumber(ffi_cast("uintptr_t", block)) end

local function release(block)
  ffi.gc(block, nil)
  C.ds_block_release(block)
end

local function drop(addr)
  local e = kept[addr]
  if e then
    kept[addr] = nil
    release(e[3])
  end
end

local M = {}

-- After the map task emitted its one bucket (the task's last output): keep `acc` (its `keys`
-- keys) for a reduce task of this VM.
function M.keep(task, acc, keys)
  local block = task.outputs[task.noutputs - 1].slice.block
  local addr = address(block)
  C.ds_block_retain(block)
  kept[addr] = { acc, keys, ffi.gc(ffi_cast("ds_block *", block), C.ds_block_release) }
  last = last + 1
  order[last] = addr
  while last - first >= KEEP do
    drop(order[first])
    order[first] = nil
    first = first + 1
  end
end

-- The table kept for input slice s, and its key count, taken (nil when not kept here).
function M.take(s)
  local addr = address(s.block)
  local e = kept[addr]
  if not e then return nil end
  kept[addr] = nil
  release(e[3]) -- the reduce task's input holds its own reference
  return e[1], e[2]
end

return M

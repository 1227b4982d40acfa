-- dstream/worker/handoff.lua: a map side's bucket handed to the reduce task that runs in the
-- same worker VM as Lua values, instead of that task decoding the bucket's bytes. Worker
-- states only.
--
-- A map task still encodes every bucket into C memory, as every map side does: the bytes are
-- what any worker, a retried task or a restarted VM reads. Beside them the VM keeps, under
-- the bucket's block, what it encoded from:
--   * with one reduce partition (one worker, or `partitions = 1`), a combine's whole table
--     (kind TABLE): a reduce task starting with merge or window_reduce takes it as its own
--     table and neither decodes the bucket nor inserts its keys again (windowed word count,
--     1 worker: the decode and the batch table were 15% of its time, docs/performance.md);
--   * with several, the arrays of the buckets of partitions p with p % workers == this worker
--     (kind ARRAYS): keyed state pins p's task there, a plain shuffle's reduce task prefers it
--     (the pool runs it elsewhere only when this worker is busy or gone); the reduce task
--     reads them as it reads a decoded bucket, without decoding it;
--   * with one partition per worker, a combine's table less the keys of the other partitions
--     (kind TABLE) for this worker's own partition: its reduce task starts from it as above
--     and merges only the other workers' buckets into it (docs/performance.md, change 21).
-- What is kept is taken once: a second read of the same bytes (a retry after a failed
-- attempt, which may have changed a taken table) decodes them.
--
-- The VM holds a reference to the block while it keeps a bucket, so the block's address
-- cannot be reused by another block meanwhile (the address is the key); a VM closed with
-- buckets kept releases them in the references' finalizers. At most KEEP are kept; the
-- oldest goes first (its reduce task ran elsewhere, or never will).
local ffi = require("ffi")
require("dstream.worker.cdefs")

local C = ffi.C
local ffi_cast, tonumber = ffi.cast, tonumber

local KEEP = 8
local TABLE, ARRAYS = 1, 2
local kept = {} -- block address -> { kind, a, b, block }: TABLE (table, keys) or ARRAYS (keys, values)
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
    release(e[4])
  end
end

-- After the map task emitted a bucket (the task's last output so far).
local function keep(task, kind, a, b)
  local block = task.outputs[task.noutputs - 1].slice.block
  local addr = address(block)
  C.ds_block_retain(block)
  kept[addr] = { kind, a, b, ffi.gc(ffi_cast("ds_block *", block), C.ds_block_release) }
  last = last + 1
  order[last] = addr
  while last - first >= KEEP do
    drop(order[first])
    order[first] = nil
    first = first + 1
  end
end

local M = { TABLE = TABLE, ARRAYS = ARRAYS }

-- At the start of a map task: what other shuffles' map tasks kept and no reduce task took is
-- dropped (a stage's map tasks all run before its reduce tasks, so that reduce task ran on
-- another worker). Kept, a bucket holds its keys' strings, and a longer string table slows
-- every word the VM interns after (keeping the buckets of reduce tasks that ran elsewhere
-- cost top-10 words on 2 workers 30-45% more CPU). `gen` names the shuffle and its batch.
local generation = nil
function M.begin(gen)
  if gen == generation then return end
  generation = gen
  while first <= last do
    drop(order[first])
    order[first] = nil
    first = first + 1
  end
end

-- A combine's whole table `acc` (`keys` keys, never fewer than it holds), its only bucket.
function M.keep_table(task, acc, keys) keep(task, TABLE, acc, keys) end

-- A bucket's arrays as emitted (values nil for single records).
function M.keep_arrays(task, keys, values) keep(task, ARRAYS, keys, values) end

-- What is kept for input slice s, taken: kind, a, b (nil when nothing is kept here). `only`:
-- take it only if it is of that kind.
function M.take(s, only)
  local addr = address(s.block)
  local e = kept[addr]
  if not e or only and e[1] ~= only then return nil end
  kept[addr] = nil
  release(e[4]) -- the reduce task's input holds its own reference
  return e[1], e[2], e[3]
end

return M

-- dstream/state/wal.lua: the write-ahead log of inputs that cannot read their records again
-- (sockets), as Spark's receiver WAL.
--
-- With context{ wal = true } (and a checkpoint directory), what such a receiver has taken is
-- cut into a block every block interval (BLOCK_MS, Spark's spark.streaming.blockInterval) and
-- at every batch boundary, and each block is written to <checkpoint>/wal/<input>-<seq>.blk
-- (framed, checksummed, fsync'd) as it is cut. A batch is the blocks cut since the one before;
-- the batch log (dstream.state.batch_log) names them by sequence number, so a batch re-run after a
-- restart reads the same blocks, and blocks that no logged batch took go into the first batch
-- after the restart. A crash loses at most what arrived in the last block interval (and what
-- the kernel's socket buffer held). A block is deleted once a checkpoint covers its batch.
local buffer = require("string.buffer")
local core = require("dstream.core")
local util = require("dstream.util")

local M = {}

M.BLOCK_MS = 200

local function wal_dir(ctx) return ctx.checkpoint_dir .. "/wal" end

local function block_path(ctx, index, seq)
  return string.format("%s/%d-%d.blk", wal_dir(ctx), index, seq)
end

-- The sequence numbers of input `index`'s blocks on disk, ascending.
local function block_seqs(ctx, index)
  local seqs = {}
  for _, name in ipairs(core.list_dir(wal_dir(ctx)) or {}) do
    local i, seq = name:match("^(%d+)%-(%d+)%.blk$")
    if tonumber(i) == index then seqs[#seqs + 1] = tonumber(seq) end
  end
  table.sort(seqs)
  return seqs
end

local function encode(parts)
  local doc = {}
  for p, part in ipairs(parts) do
    local slices = {}
    for i, slice in ipairs(part) do
      local fmt, pairs_flag = slice:format()
      slices[i] = { fmt, pairs_flag, slice:count(), slice:bytes() }
    end
    doc[p] = slices
  end
  return buffer.encode(doc)
end

local function decode(bytes)
  local parts = { count = 0 }
  for p, slices in ipairs(buffer.decode(bytes)) do
    local part = { count = 0 }
    for i, sl in ipairs(slices) do
      part[i] = core.slice_from_string(sl[4], sl[3], sl[2], sl[1])
      part.count = part.count + sl[3]
    end
    parts[p] = part
    parts.count = parts.count + part.count
  end
  return parts
end

-- The blocks' partitions joined: partition p of the batch is partition p of every block.
local function join(blocks, nparts)
  local parts = { count = 0 }
  for p = 1, nparts do parts[p] = { count = 0 } end
  for _, b in ipairs(blocks) do
    for p, part in ipairs(b.parts) do
      local into = parts[p]
      for _, slice in ipairs(part) do into[#into + 1] = slice end
      into.count = into.count + part.count
    end
    parts.count = parts.count + b.parts.count
  end
  return parts
end

-- Makes the receiver input `input` (the index-th input of ctx) write ahead: its seal cuts a
-- last block and takes the blocks cut since the previous seal; input:cut_block() is called by
-- the context every BLOCK_MS. The input joins the batch log (log_entry, replay) and
-- checkpoints (position: the last block of the completed batches).
function M.attach(ctx, input, index)
  local pending = {}     -- blocks cut and logged, not in a batch yet: { {seq =, parts =}, ... }
  local next_seq = 1
  local taken = {}       -- [time] = { first, last } block numbers of the batch
  local covered = 0      -- the last block of the completed batches
  local dir_made = false

  local function log_block(parts)
    if not dir_made then
      local ok, err = util.mkdir_p(wal_dir(ctx))
      if not ok then return nil, err end
      dir_made = true
    end
    local ok, err = core.durable_write(block_path(ctx, index, next_seq), wal_dir(ctx), encode(parts))
    if not ok then return nil, err end
    pending[#pending + 1] = { seq = next_seq, parts = parts }
    next_seq = next_seq + 1
    return true
  end

  -- Seals what the receiver holds into a logged block. Returns true, or nil and why.
  function input.cut_block()
    if not input.source then return true end
    local parts = input.source:seal(ctx.partitions)
    if parts.count == 0 then return true end
    return log_block(parts)
  end

  -- Records cut into blocks that no batch has taken yet (a graceful stop seals them too).
  function input.unsealed()
    local n = 0
    for _, b in ipairs(pending) do n = n + b.parts.count end
    return n
  end

  input.seal = function(_, time)
    local ok, err = input.cut_block()
    if not ok then return nil, "write-ahead log of " .. input.label .. ": " .. err end
    input.sealed[time] = join(pending, ctx.partitions)
    if #pending > 0 then taken[time] = { pending[1].seq, pending[#pending].seq } end
    pending = {}
    return true
  end

  input.log_entry = function(_, time) return taken[time] or false end

  input.replay = function(_, time, range)
    local blocks = {}
    if range then
      for seq = range[1], range[2] do
        local bytes, err = core.ckpt_read(block_path(ctx, index, seq))
        if bytes then
          blocks[#blocks + 1] = { parts = decode(bytes) }
        else
          core.log("warn", string.format("write-ahead log: batch %d ms cannot be re-run whole: %s", time, err))
        end
      end
      taken[time] = range
      next_seq = math.max(next_seq, range[2] + 1)
    end
    input.sealed[time] = join(blocks, ctx.partitions)
  end

  -- Blocks on disk that no logged batch took (cut after the last one was logged): the first
  -- batch after the restart takes them. Called once the logged batches are replayed.
  input.restore_blocks = function()
    for _, seq in ipairs(block_seqs(ctx, index)) do
      if seq >= next_seq then
        local bytes, err = core.ckpt_read(block_path(ctx, index, seq))
        if bytes then
          pending[#pending + 1] = { seq = seq, parts = decode(bytes) }
        else
          core.log("warn", "write-ahead log: " .. err .. "; its records are lost")
        end
        next_seq = seq + 1
      end
    end
  end

  input.on_batch_done = function(_, time)
    for t, range in pairs(taken) do
      if t <= time then
        covered = math.max(covered, range[2])
        taken[t] = nil
      end
    end
  end
  input.position = function() return { wal_block = covered } end
  input.restore = function(_, pos)
    covered = pos.wal_block or 0
    next_seq = covered + 1
  end
  -- A checkpoint covers the blocks of its completed batches.
  input.prune = function()
    for _, seq in ipairs(block_seqs(ctx, index)) do
      if seq <= covered then os.remove(block_path(ctx, index, seq)) end
    end
  end
end

return M

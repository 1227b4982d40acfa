-- dstream/wal.lua: the write-ahead log of inputs that cannot be replayed (sockets).
--
-- With context{ wal = true } (and a checkpoint directory), every batch sealed from such a
-- receiver is written to <checkpoint>/wal/<input>-<time>.seg (framed and checksummed like a
-- checkpoint, fsync'd) before the batch is queued. A segment is deleted once a checkpoint
-- covers its batch; on a restart the segments newer than the checkpoint are read back and
-- their batches run again with their own times and the same records.
-- Records still unsealed when the process dies (at most one batch interval) are not logged.
local buffer = require("string.buffer")
local core = require("dstream.core")
local util = require("dstream.util")

local M = {}

local function wal_dir(ctx) return ctx.checkpoint_dir .. "/wal" end

local function segment(ctx, input_index, time)
  return string.format("%s/%d-%d.seg", wal_dir(ctx), input_index, time)
end

-- Logs the sealed partitions `parts` of input `input_index` for batch `time`.
function M.write(ctx, input_index, time, parts)
  local ok, err = util.mkdir_p(wal_dir(ctx))
  if not ok then return nil, err end
  local doc = { time = time, parts = {} }
  for p, part in ipairs(parts) do
    local slices = {}
    for i, slice in ipairs(part) do
      local fmt, pairs_flag = slice:format()
      slices[i] = { fmt, pairs_flag, slice:count(), slice:bytes() }
    end
    doc.parts[p] = slices
  end
  return core.durable_write(segment(ctx, input_index, time), wal_dir(ctx), buffer.encode(doc))
end

-- The logged batches of every input newer than `after`: { [time] = { [input_index] = parts } }.
function M.read(ctx, after)
  local names = core.list_dir(wal_dir(ctx)) or {}
  local batches = {}
  for _, name in ipairs(names) do
    local index, time = name:match("^(%d+)%-(%d+)%.seg$")
    index, time = tonumber(index), tonumber(time)
    if index and time > after then
      local bytes, err = core.ckpt_read(wal_dir(ctx) .. "/" .. name)
      if not bytes then
        io.stderr:write("dstream: write-ahead log: " .. err .. "; that batch cannot be replayed\n")
      else
        local doc = buffer.decode(bytes)
        local parts = {}
        for p, slices in ipairs(doc.parts) do
          local part = { count = 0 }
          for i, sl in ipairs(slices) do
            part[i] = core.slice_from_string(sl[4], sl[3], sl[2], sl[1])
            part.count = part.count + sl[3]
          end
          parts[p] = part
        end
        batches[time] = batches[time] or {}
        batches[time][index] = parts
      end
    end
  end
  return batches
end

-- Deletes the segments of batches up to `time` (a checkpoint covers them).
function M.prune(ctx, time)
  for _, name in ipairs(core.list_dir(wal_dir(ctx)) or {}) do
    local t = tonumber(name:match("^%d+%-(%d+)%.seg$"))
    if t and t <= time then os.remove(wal_dir(ctx) .. "/" .. name) end
  end
end

return M

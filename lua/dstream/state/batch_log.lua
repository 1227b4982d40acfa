-- dstream/state/batch_log.lua: the batch log, which makes recovery independent of when checkpoints
-- are written.
--
-- With a checkpoint directory, every batch is logged when it is generated, before any of its
-- outputs run: its time and, for each input that can read its records again, what it took
-- (a file stream's byte ranges, a rate stream's range). The log is durable (framed, fsync'd,
-- like a checkpoint) and a batch's entry is deleted once a checkpoint covers the batch. After
-- a crash the newest checkpoint gives back the state and positions as of its batch, and the
-- logged batches after it run again with their own times and the same input; so a checkpoint
-- interval only trades replay length against write cost, and a re-run batch replaces the
-- output directory its first run wrote (Structured Streaming's offset log plays this part;
-- Spark Streaming keeps its block allocations in its WAL).
-- Inputs that cannot read their records again log nothing here: sockets use the write-ahead
-- log (dstream.state.wal); Kafka resumes from the checkpoint's offsets.
local buffer = require("string.buffer")
local core = require("dstream.core")
local util = require("dstream.util")

local M = {}

local function log_dir(ctx) return ctx.checkpoint_dir .. "/batches" end

local function entry_path(ctx, time) return string.format("%s/%d.batch", log_dir(ctx), time) end

-- Logs batch `time`: `inputs` maps an input's key to what it took. Returns true or nil, err.
function M.write(ctx, time, inputs)
  local dir = log_dir(ctx)
  if not ctx._batch_log_dir_made then
    local ok, err = util.mkdir_p(dir)
    if not ok then return nil, err end
    ctx._batch_log_dir_made = true
  end
  return core.durable_write(entry_path(ctx, time), dir,
    buffer.encode({ time = time, inputs = inputs }))
end

-- The logged batches after `after` (ms), oldest first: { { time =, inputs = }, ... }. An entry
-- that cannot be read is reported and ends the list: batches after it cannot be re-run in
-- order, and their sources resume from the last batch read.
function M.read(ctx, after)
  local times = {}
  for _, name in ipairs(core.list_dir(log_dir(ctx)) or {}) do
    local t = tonumber(name:match("^(%d+)%.batch$"))
    if t and t > after then times[#times + 1] = t end
  end
  table.sort(times)
  local batches = {}
  for _, t in ipairs(times) do
    local bytes, err = core.ckpt_read(entry_path(ctx, t))
    local ok, doc = false, nil
    if bytes then ok, doc = pcall(buffer.decode, bytes) end
    if not (ok and type(doc) == "table" and doc.time == t) then
      core.log("warn", "batch log: " .. (err or (entry_path(ctx, t) .. " cannot be decoded"))
        .. "; the batches from " .. string.format("%d", t) .. " ms on are not re-run")
      break
    end
    batches[#batches + 1] = doc
  end
  return batches
end

-- Deletes the entries of batches up to `time` (a checkpoint covers them).
function M.prune(ctx, time)
  for _, name in ipairs(core.list_dir(log_dir(ctx)) or {}) do
    local t = tonumber(name:match("^(%d+)%.batch$"))
    if t and t <= time then os.remove(log_dir(ctx) .. "/" .. name) end
  end
end

return M

-- dstream/sources/init.lua: the Source contract, and the two kinds of input streams built on it.
--
-- An input is a stream (dstream.stream) in ctx.inputs whose batches come from outside. The
-- context calls the fields below on the driver's Lua state, never on a worker; every field is
-- optional unless marked. A source module (queue, rate, socket, text_file, kafka) builds its
-- input with M.input or M.receiver and sets the fields it needs; it does not wrap another
-- module's functions.
--
--   input:seal(time) -> true | nil, err   (required) at every batch boundary, in time order
--                          (dstream.driver.clock): fix what batch `time` holds. A receiver
--                          keeps it in input.sealed[time] (partitions of C slices, .count).
--   input:log_entry(time) -> value        after seal, with a checkpoint directory: what batch
--                          `time` took, written to the batch log (dstream.state.batch_log)
--                          before the batch runs; plain data (string.buffer encodes it).
--   input:replay(time, value)             at start, before the sources open, for each batch
--                          logged after the restored checkpoint: take the same records again.
--   input:position() -> value             when a checkpoint is written: where the input stands
--                          after the last completed batch (plain data).
--   input:restore(value)                  at start, from the newest checkpoint, before replay.
--   input:on_batch_done(time)             after the outputs of batch `time` ran.
--   input:prune()                         after a checkpoint: delete what it covers (WAL blocks).
--   input.open() -> source                at start (receivers): the object that receives, with
--                          seal(nparts), stats() -> { pending =, ... }, stop().
--   input.deferred(time) -> parts         a re-run batch whose records can only be cut once it
--                          is computed (Kafka: after the consumer fetched that far).
--   input.key                             the input's name in checkpoints and the batch log
--                          (default "#<index>": the order the job created its inputs in).
--   input:set_rate(r), input:rate_stats() backpressure and max_rate (dstream.monitor).
--   input.cut_block(), input.unsealed(), input.restore_blocks()
--                          a receiver with a write-ahead log (dstream.state.wal sets them).
local rdd_mod = require("dstream.rdd")
local stream_mod = require("dstream.stream")
local util = require("dstream.util")

local M = {}

-- Raises at the user's line (the caller of the source's constructor) once the context runs.
function M.check_not_started(ctx, who)
  if ctx.state ~= "initialized" then
    util.raise(who .. ": sources must be created before ctx:start()")
  end
end

-- A source's trailing options, argument `index` of `signature` (e.g. "socket_text_stream(host,
-- port [, opts])"): nil or a table; `...` are arguments past it, which no source takes. Spark's
-- storage levels ("MEMORY_ONLY", ...) get a word on why they do not apply.
function M.check_options(signature, index, opts, ...)
  local extra = select("#", ...)
  if extra > 0 then
    util.raise(string.format("%s takes no argument %d (got a %s)", signature, index + 1, type((...))))
  end
  if opts ~= nil and type(opts) ~= "table" then
    local hint = ""
    if type(opts) == "string" and opts:match("^[%u_%d]+$") then
      hint = " (Spark's storage levels do not apply: dstream keeps received records in C memory;"
        .. " context{ wal = true } logs them to disk)"
    end
    util.raise(string.format("%s: argument %d (opts) must be a table of options, got %s%s", signature,
      index, type(opts) == "string" and string.format("string %q", opts) or type(opts), hint))
  end
end

-- The key of an input in checkpoints and the batch log.
function M.key(input, index) return input.key or ("#" .. index) end

-- An input stream: compute(stream, time) makes batch `time`'s rdd; seal(input, time) is the
-- contract's seal.
function M.input(ctx, name, compute, seal)
  local s = stream_mod.new(ctx, {}, compute, name)
  s.seal = seal
  ctx.inputs[#ctx.inputs + 1] = s
  return s
end

-- An input backed by a receiver (C: runtime/ds_recv_*.c, or Kafka's consumer): open() makes
-- it at start; each seal takes what it received into C-memory slices (see ds_lua_push_sealed).
-- on_sealed(input, time, parts), when given, notes what a live seal took (a file stream's byte
-- ranges, Kafka's offset ranges).
function M.receiver(ctx, name, open, on_sealed)
  local s
  s = M.input(ctx, name, function(_, time)
    local parts = s.sealed[time]
    s.sealed[time] = nil
    -- A re-run batch whose records a source can only cut once it runs (Kafka).
    if not parts and s.deferred then parts = s.deferred(time) end
    if not parts then
      parts = {}
      for i = 1, ctx.partitions do parts[i] = {} end
    end
    return rdd_mod.from_slices(ctx, parts)
  end, function(_, time)
    local parts = s.source:seal(ctx.partitions)
    s.sealed[time] = parts
    if on_sealed then on_sealed(s, time, parts) end
    return true
  end)
  s.sealed = {}
  s.open = open
  return s
end

return M

-- dstream/checkpoint.lua: what a checkpoint holds, and putting it back.
--
-- A checkpoint is data, never code: the script always rebuilds the graph, then the newest
-- good checkpoint in the directory gives back the batch clock, the positions of the sources
-- and the state of every stateful operator. State is matched to operators by name
-- (stream:name("totals")), else by position among the stateful operators; a change that makes
-- it unusable is an error naming the operator. Files are written crash-safely by ds_ckpt
-- (temp file, fsync, rename, fsync of the directory); the last few generations are kept, and
-- a corrupt or truncated newest file falls back to the one before.
local buffer = require("string.buffer")
local core = require("dstream.core")
local rdd_mod = require("dstream.rdd")
local util = require("dstream.util")

local M = {}

M.FORMAT = 1
M.KEEP = 3

local function state_key(entry)
  return entry.name and ("name:" .. entry.name) or ("position:" .. entry.position)
end

-- The graph's shape: the names of its streams in the order the script made them.
local function fingerprint(ctx)
  local names = {}
  for i, s in ipairs(ctx._streams or {}) do names[i] = s.label or "?" end
  return table.concat(names, ",")
end

-- Runs one task per state partition on the worker that keeps it, ending in `term(part)`.
local function state_tasks(ctx, entry, term, stage)
  local plans = {}
  for p = 1, entry.partitions do plans[p] = { ops = {}, slices = {}, state_part = p - 1 } end
  local r = rdd_mod.empty(ctx, entry.partitions)
  return ctx:_scheduler():run_tasks(r:_tasks(plans, term, stage))
end

-- Collects everything and writes generation `gen`. Returns true or nil, message.
function M.write(ctx, time)
  local doc = {
    format = M.FORMAT, name = ctx.name, batch_ms = ctx.batch_ms, zero_time = ctx.zero_time,
    time = time, written_at = core.now_ms(), fingerprint = fingerprint(ctx),
    sources = {}, states = {}, driver = {},
    -- Batches generated but not completed: after a restart their input comes again from the
    -- sources' positions (or the write-ahead log), so they are re-run, not restored.
    pending = {},
  }
  for i, batch in ipairs(ctx.queue) do doc.pending[i] = batch.time end
  for i, input in ipairs(ctx.inputs) do
    if input.position then doc.sources[input.key or ("#" .. i)] = input:position() end
  end
  for _, entry in ipairs(ctx._states or {}) do
    if entry.partitions then
      local results = state_tasks(ctx, entry, function()
        return { kind = "snapshot_store", state = entry.id }
      end, "checkpoint (" .. entry.kind .. ")")
      local parts = {}
      for p, outputs in ipairs(results) do
        local arrays = buffer.decode(outputs[1][2]:bytes())
        parts[p] = arrays[1][1]
      end
      doc.states[state_key(entry)] = { kind = entry.kind, partitions = entry.partitions, parts = parts }
    end
    if entry.driver_state then doc.driver[state_key(entry)] = entry.driver_state() end
  end
  local bytes = buffer.encode(doc)
  local dir = ctx.checkpoint_dir
  local gens = core.ckpt_list(dir) or {}
  local gen = math.max(ctx._checkpoint_gen or 0, gens[#gens] or 0) + 1
  local ok, err = core.ckpt_write(dir, gen, bytes)
  if not ok then return nil, err end
  ctx._checkpoint_gen = gen
  core.ckpt_prune(dir, M.KEEP)
  return true
end

-- The newest readable checkpoint in dir: doc, generation; nil when there is none.
-- Unreadable files are reported (ds log on stderr) and skipped, and so are those that
-- `accept(doc)` (optional) refuses: it returns true, or false and why.
function M.read_newest(dir, accept)
  local gens, err = core.ckpt_list(dir)
  if not gens then return nil, err end
  for i = #gens, 1, -1 do
    local bytes, gen_or_err = core.ckpt_read(core.ckpt_path(dir, gens[i]))
    if bytes then
      local ok, doc = pcall(buffer.decode, bytes)
      if ok and type(doc) == "table" and doc.format == M.FORMAT then
        local usable, why = true, nil
        if accept then usable, why = accept(doc) end
        if usable then return doc, gens[i] end
        io.stderr:write("dstream: checkpoint " .. core.ckpt_path(dir, gens[i]) .. " (batch "
          .. string.format("%d", doc.time) .. " ms) is skipped: " .. tostring(why) .. "; using an older one\n")
      else
        io.stderr:write("dstream: checkpoint " .. core.ckpt_path(dir, gens[i]) .. " cannot be decoded; using an older one\n")
      end
    else
      io.stderr:write("dstream: " .. gen_or_err .. "; using an older checkpoint\n")
    end
  end
  return nil
end

local function fresh_hint(ctx)
  return "To start afresh, remove " .. ctx.checkpoint_dir .. " or use another checkpoint directory."
end

-- Puts a checkpoint back into a context that has been built but not started: the clock,
-- the source positions now; the worker state with restore_states() once pools run.
function M.restore(ctx, doc)
  if doc.batch_ms ~= ctx.batch_ms then
    error(string.format("the checkpoint in %s was written with batch %g ms; this job has %g ms. %s",
      ctx.checkpoint_dir, doc.batch_ms, ctx.batch_ms, fresh_hint(ctx)), 0)
  end
  ctx.zero_time, ctx.time = doc.zero_time, doc.time
  for i, input in ipairs(ctx.inputs) do
    local pos = doc.sources[input.key or ("#" .. i)]
    if pos ~= nil and input.restore then input:restore(pos) end
  end
  for _, entry in ipairs(ctx._states or {}) do
    local key = state_key(entry)
    local saved = doc.states[key]
    if saved then
      if saved.kind ~= entry.kind then
        error(string.format("the checkpoint in %s holds the state of a %s for stateful operator %s, but that operator is now a %s: this change makes the state unusable. %s",
          ctx.checkpoint_dir, saved.kind, entry.name and ("'" .. entry.name .. "'") or ("#" .. entry.position),
          entry.kind, fresh_hint(ctx)), 0)
      end
      if saved.partitions ~= entry.partitions then
        error(string.format("the checkpoint in %s holds the state of %s %s in %d partitions, but it now has %d: keep the partition count, or start afresh. %s",
          ctx.checkpoint_dir, entry.kind, entry.name and ("'" .. entry.name .. "'") or ("#" .. entry.position),
          saved.partitions, entry.partitions, fresh_hint(ctx)), 0)
      end
      entry.restore_parts = saved.parts
    end
    local driver = doc.driver[key]
    if driver ~= nil and entry.restore_driver then entry.restore_driver(driver) end
  end
end

-- Loads restored partitions into the workers (run before the first batch).
function M.restore_states(ctx)
  for _, entry in ipairs(ctx._states or {}) do
    if entry.restore_parts then
      local parts = entry.restore_parts
      entry.restore_parts = nil
      state_tasks(ctx, entry, function(index)
        return { kind = "restore_store", state = entry.id, bytes = parts[index + 1] }
      end, "restore (" .. entry.kind .. ")")
    end
  end
end

-- Checks a checkpoint directory given by the user: it exists or can be made.
function M.prepare_dir(dir)
  local ok, err = util.mkdir_p(dir)
  if not ok then return nil, "checkpoint directory: " .. err end
  return true
end

return M

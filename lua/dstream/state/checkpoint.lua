-- dstream/state/checkpoint.lua: what a checkpoint holds, and putting it back.
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
  local ok, res = pcall(ctx:_scheduler().run_tasks, ctx:_scheduler(), r:_tasks(plans, term, stage))
  if ok then return res end
  -- Out of memory snapshotting or restoring a state partition: more partitions would make
  -- the checkpoint unusable (its partition count must match), so only memory helps.
  if type(res) == "string" and res:find("^out of memory in ") then
    res = res:gsub("%s*Raise context{.*$", "") .. " A worker holds a whole state partition"
      .. " (and its encoded copy) while it is " .. (stage:find("^restore") and "restored" or
      "checkpointed") .. ": raise context{ worker_memory = ... } or --worker-memory. Keep the"
      .. " partition count: a checkpoint is restored only into as many partitions as it was"
      .. " written with."
  end
  error(res, 0)
end

-- Collects everything and writes the next generation. Returns true or nil, message.
-- initial: the checkpoint of ctx:start(), before any batch: no state partition holds
-- anything yet, so none is snapshot (a restore leaves them empty).
function M.write(ctx, time, initial)
  local doc = {
    format = M.FORMAT, name = ctx.name, batch_ms = ctx.batch_ms, zero_time = ctx.zero_time,
    time = time, written_at = core.now_ms(), fingerprint = fingerprint(ctx),
    sources = {}, states = {}, driver = {},
  }
  for i, input in ipairs(ctx.inputs) do
    if input.position then doc.sources[input.key or ("#" .. i)] = input:position() end
  end
  for _, entry in ipairs(ctx._states or {}) do
    if entry.partitions and not initial then
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
  M.prune(dir)
  return true
end

-- The newest readable checkpoint in dir: doc, generation. Plain nil when the directory
-- holds no checkpoint file. nil, message when it holds some and none can be read (all
-- truncated, corrupt, or of a format this dstream does not read): starting afresh over them
-- would lose their state, so the message names each file and what is wrong with it, and says
-- how to start afresh. Files newer than the one used that cannot be read are reported on
-- stderr. A checkpoint that `accept(doc)` (optional: true, or false and why) refuses is
-- reported and skipped, and is not unreadable: when no file is usable but some were refused,
-- the result is plain nil (the caller knows why).
function M.read_newest(dir, accept)
  local gens, err = core.ckpt_list(dir)
  if not gens then return nil, err end
  local unreadable, refused = {}, 0
  for i = #gens, 1, -1 do
    local path = core.ckpt_path(dir, gens[i])
    local bytes, read_err = core.ckpt_read(path)
    if bytes then
      local ok, doc = pcall(buffer.decode, bytes)
      if ok and type(doc) == "table" and doc.format == M.FORMAT then
        local usable, why = true, nil
        if accept then usable, why = accept(doc) end
        if usable then
          for _, problem in ipairs(unreadable) do
            io.stderr:write("dstream: " .. problem .. "; using an older checkpoint\n")
          end
          return doc, gens[i]
        end
        refused = refused + 1
        io.stderr:write("dstream: checkpoint " .. path .. " (batch "
          .. string.format("%d", doc.time) .. " ms) is skipped: " .. tostring(why) .. "; using an older one\n")
      elseif ok and type(doc) == "table" and doc.format ~= nil then
        unreadable[#unreadable + 1] = path .. " holds checkpoint data of format " .. tostring(doc.format)
          .. " (this dstream reads format " .. M.FORMAT .. ")"
      else
        unreadable[#unreadable + 1] = path .. " cannot be decoded"
          .. (ok and (" (it holds a " .. type(doc) .. ")") or (" (" .. tostring(doc) .. ")"))
      end
    else
      unreadable[#unreadable + 1] = read_err
    end
  end
  if #unreadable == 0 then return nil end
  if refused > 0 then
    for _, problem in ipairs(unreadable) do io.stderr:write("dstream: " .. problem .. "\n") end
    return nil
  end
  return nil, "no checkpoint in " .. dir .. " can be read, so the job cannot resume from it: "
    .. table.concat(unreadable, "; ") .. ". The files are left as they are. To start afresh, remove "
    .. dir .. " or use another checkpoint directory."
end

-- Files prune found readable, by path: their stamp then (core.ckpt_stamp). A file whose stamp
-- has not changed since is not read again at every checkpoint.
local verified = {}
-- Unreadable files prune has reported, by path: their stamp (or the error) then.
local reported = {}

-- Deletes old generations in dir: keeps the newest KEEP readable ones and every file it
-- cannot read (never deleted: it may be the only copy of a state someone wants back; it is
-- reported on stderr once), so a corrupt newest file does not make a good one go. Readable:
-- the header, length and checksum are right (core.ckpt_check reads the file). Also removes
-- temporary files of interrupted writes. Returns the paths deleted, or nil, message.
function M.prune(dir)
  local gens, err = core.ckpt_list(dir)
  if not gens then return nil, err end
  local readable, deleted = 0, {}
  for i = #gens, 1, -1 do
    local path = core.ckpt_path(dir, gens[i])
    local stamp = core.ckpt_stamp(path) -- nil: gone meanwhile
    local ok = stamp ~= nil and verified[path] == stamp
    if stamp and not ok then
      local checked, why, now = core.ckpt_check(path)
      if checked then
        verified[path], ok = checked, true
      elseif reported[path] ~= (now or why) then
        reported[path] = now or why
        io.stderr:write("dstream: " .. why .. "; pruning keeps it (an unreadable checkpoint is"
          .. " never deleted): remove it yourself once it is not needed\n")
      end
    end
    if ok then
      readable = readable + 1
      if readable > M.KEEP then
        verified[path] = nil
        if os.remove(path) then deleted[#deleted + 1] = path end
      end
    end
  end
  core.ckpt_remove_temps(dir)
  return deleted
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
        error(string.format("the checkpoint in %s holds the state of %s for stateful operator %s, but that operator is now %s: this change makes the state unusable. %s",
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

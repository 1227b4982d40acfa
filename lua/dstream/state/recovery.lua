-- dstream/state/recovery.lua: what the context does with its checkpoint directory, as methods
-- of the context (dstream.context adds them): writing a checkpoint and pruning what it covers,
-- restoring the newest good one at start, and the outputs that commit in two phases.
local core = require("dstream.core")
local batch_log = require("dstream.state.batch_log")
local checkpoint = require("dstream.state.checkpoint")

local Recovery = {}

-- Registers fn(time), run after each batch's checkpoint (see _batch_done), and a check of the
-- checkpoints at recovery: accept(doc) -> true, or false and why (see checkpoint.read_newest).
function Recovery:_two_phase_output(commit, accept)
  self._commits = self._commits or {}
  self._commits[#self._commits + 1] = commit
  if accept then
    self._checkpoint_checks = self._checkpoint_checks or {}
    self._checkpoint_checks[#self._checkpoint_checks + 1] = accept
  end
end

-- initial: the checkpoint written by start() before any input is taken (no state yet).
function Recovery:_write_checkpoint(time, initial)
  local t0 = core.now_ms()
  local ok, err = checkpoint.write(self, time, initial)
  if not ok then
    error((initial and "the first checkpoint" or ("checkpoint of batch " .. string.format("%d", time) .. " ms"))
      .. " failed: " .. err .. (initial and "" or " (the previous checkpoint is intact)"), 0)
  end
  local f = io.open(core.ckpt_path(self.checkpoint_dir, self._checkpoint_gen), "rb") -- for /api/state
  self.last_checkpoint = { time = time, written_at = core.now_ms(), duration_ms = core.now_ms() - t0,
    bytes = f and f:seek("end"), generation = self._checkpoint_gen }
  if f then f:close() end
  batch_log.prune(self, time)
  for _, input in ipairs(self.inputs) do
    if input.prune then input:prune() end -- write-ahead log blocks the checkpoint covers
  end
end

-- Restart from the newest good checkpoint in checkpoint_dir, if there is one.
function Recovery:_recover()
  local ok, err = checkpoint.prepare_dir(self.checkpoint_dir)
  if not ok then error(err, 0) end
  local skipped, accept = 0, nil
  if self._checkpoint_checks then
    accept = function(d)
      for _, check in ipairs(self._checkpoint_checks) do
        local ok, why = check(d)
        if not ok then
          skipped = skipped + 1
          return false, why
        end
      end
      return true
    end
  end
  local doc, unreadable = checkpoint.read_newest(self.checkpoint_dir, accept)
  if not doc and unreadable then error(unreadable, 0) end
  if not doc and skipped > 0 then
    error("no checkpoint in " .. self.checkpoint_dir .. " agrees with what the job's outputs committed"
      .. " (see above); starting afresh would write their output again. Remove the directory"
      .. " and reset the consumer group's offsets to start over.", 0)
  end
  if not doc then return end
  checkpoint.restore(self, doc)
  checkpoint.restore_states(self)
  self.last_completed = doc.time
  self.recovered_from = doc.time
  self._rerun = batch_log.read(self, doc.time)
end

-- Whether start() restores a checkpoint: before start, whether the directory holds one
-- (get_or_create tells its function); after, whether one was restored.
function Recovery:recovering()
  if self.state ~= "initialized" then return self.recovered_from ~= nil end
  if not self.checkpoint_dir then return false end
  local gens = core.ckpt_list(self.checkpoint_dir)
  return gens ~= nil and #gens > 0
end

return Recovery

-- dstream/driver/clock.lua: the batch clock, as methods of the context (dstream.context adds
-- them): each boundary seals the inputs and queues a batch; batches run one at a time, in time
-- order, each in a coroutine; a finished batch tells the sources what it consumed, writes a
-- checkpoint when one is due, and forgets what no window needs. Driver's Lua state only.
local core = require("dstream.core")
local batch_log = require("dstream.state.batch_log")
local scheduler = require("dstream.driver.scheduler")
local sources = require("dstream.sources")

local Clock = {}

-- How many finished batches the context remembers (ctx.batches: /api/batches, the live page).
Clock.BATCHES_KEPT = 100

-- Seals every input at `time`, logs the batch (with a checkpoint directory) and queues it.
-- `rerun`: a batch of the batch log run again after a restart; its inputs were filled by
-- input:replay at start, and live sources are not sealed. A seal may fail (nil, err: the
-- write-ahead log could not be written), which fails the job.
function Clock:_generate(time, rerun)
  self.time = time
  local records, per_source, logged = 0, {}, {}
  for index, input in ipairs(self.inputs) do
    if input.seal then
      if not rerun then
        local ok, err = input:seal(time)
        if ok == nil and err then return self:_fail("batch " .. string.format("%d", time) .. " ms: " .. err) end
        if input.log_entry then logged[sources.key(input, index)] = input:log_entry(time) end
      end
      local parts = input.sealed[time]
      records = records + (parts and parts.count or 0)
      per_source[#per_source + 1] = { id = input.id, name = input.label, records = parts and parts.count or 0 }
      input.records_total = (input.records_total or 0) + (parts and parts.count or 0)
    end
  end
  if self.checkpoint_dir and not rerun then
    local ok, err = batch_log.write(self, time, logged)
    if not ok then return self:_fail("batch log of batch " .. string.format("%d", time) .. " ms: " .. err) end
  end
  -- The delays count from when the batch was due, as Spark's from its batch time: on the
  -- system clock that is its time, even when the driver's loop was held up (a foreach_rdd that
  -- blocks) and made it late; a manual or re-run batch is due when it is made.
  local now = core.now_ms()
  local due = (self.clock == "system" and not rerun) and math.min(time, now) or now
  self.queue[#self.queue + 1] = { time = time, generated_at = now, due_at = due, records = records,
    sources = per_source }
  self:_pump()
end

-- Streams computed at every batch whether an output asks or not (windows fold every batch into
-- their panes; their parents must have every batch for raw windows).
function Clock:_eager(stream)
  self._eager_streams = self._eager_streams or {}
  for _, s in ipairs(self._eager_streams) do if s == stream then return end end
  self._eager_streams[#self._eager_streams + 1] = stream
end

function Clock:_run_batch(batch)
  self._current_time = batch.time
  for _, s in ipairs(self._eager_streams or {}) do s:get_rdd(batch.time) end
  for i, out in ipairs(self.outputs) do
    local r = out.stream:get_rdd(batch.time)
    if r then
      local ok, err = pcall(out.fn, r, batch.time)
      if not ok then
        err = tostring(err)
        -- Task failures (and out of memory) already say where; a driver-side error gets the
        -- batch and the output.
        if not err:find("task failed after", 1, true)
          and not err:find(string.format("in batch %d ms", batch.time), 1, true) then
          err = string.format("batch %d ms, output operation %d: %s", batch.time, i, err)
        end
        error(err, 0)
      end
    end
  end
  self:_batch_done(batch.time)
end

-- Registers fn(time), run after each batch's outputs and before its inputs commit (see
-- _batch_done).
function Clock:_on_outputs_done(fn)
  self._after_outputs = self._after_outputs or {}
  self._after_outputs[#self._after_outputs + 1] = fn
end

-- After the outputs of a batch: what must follow them but precede the input's commit runs
-- (cluster mode's changelog markers, dstream.cluster.keyed), sources note what the batch
-- consumed, and a checkpoint is written when one is due (in the batch's job, so its state
-- tasks can run).
function Clock:_batch_done(time)
  for _, fn in ipairs(self._after_outputs or {}) do fn(time) end
  for _, input in ipairs(self.inputs) do
    if input.on_batch_done then input:on_batch_done(time) end
  end
  self.last_completed = time
  if self.checkpoint_dir and (time - self.zero_time) % self.checkpoint_ms == 0 then
    self:_write_checkpoint(time)
  end
  -- The second phase of outputs that commit in two (to_kafka{ exactly_once } with
  -- checkpoints): only once the checkpoint that covers the batch is on disk.
  for _, commit in ipairs(self._commits or {}) do commit(time) end
end

-- Starts the next queued batch unless one is running.
function Clock:_pump()
  if self.running or self.state == "stopped" then return end
  local batch = table.remove(self.queue, 1)
  if not batch then
    if self.stopping then
      if self.checkpoint_dir and not self._final_checkpoint and self.last_completed then
        -- A graceful stop ends with a checkpoint of the last completed batch.
        self._final_checkpoint = true
        self.running = { time = self.last_completed, final = true, stages = {} }
        scheduler.spawn(function() self:_write_checkpoint(self.last_completed) end, function(ok, err)
          self.running = nil
          if not ok then return self:_fail(err) end
          self:_terminate()
        end)
        return
      end
      self:_terminate()
    end
    return
  end
  self.running = batch
  batch.started_at = core.now_ms()
  batch.scheduling_delay_ms = batch.started_at - batch.due_at
  batch.stages = {}
  self:_notify("batch_started", batch)
  scheduler.spawn(function() self:_run_batch(batch) end, function(ok, err)
    self.running = nil
    if self.state == "stopped" then return end
    if not ok then
      batch.error = tostring(err)
      self:_notify("batch_failed", batch)
      return self:_fail(err)
    end
    batch.finished_at = core.now_ms()
    batch.processing_ms = batch.finished_at - batch.started_at
    batch.total_delay_ms = batch.finished_at - batch.due_at
    self.batches[#self.batches + 1] = batch
    if #self.batches > Clock.BATCHES_KEPT then table.remove(self.batches, 1) end
    self:_cleanup(batch.time)
    self:_notify("batch_completed", batch)
    self:_pump()
  end)
end

-- Forgets batches of every stream older than the batch just finished.
function Clock:_cleanup(time)
  local seen, todo = {}, {}
  for _, out in ipairs(self.outputs) do todo[#todo + 1] = out.stream end
  while #todo > 0 do
    local s = table.remove(todo)
    if not seen[s] then
      seen[s] = true
      s:_forget(time - (s.remember_ms or 0) + 1)
      for _, p in ipairs(s.parents) do todo[#todo + 1] = p end
    end
  end
end

-- Adds a finished task's figures to its stage in the running batch.
function Clock:_on_task(spec, status, info, err, outputs)
  self.monitor:_worker_task(status, info) -- per worker: tasks, time busy
  if core.log_level() == "debug" then -- (--log-level debug: a line per task)
    core.log("debug", string.format("task %s%s, partition %d: %s on worker %s in %.1f ms, %d records in",
      (spec.time or 0) > 0 and string.format("batch %d ms, ", spec.time) or "", spec.stage or "stage",
      spec.part or 0, status == 0 and "done" or "failed (status " .. tostring(status) .. ")",
      tostring(info and info.worker), info and info.run_ms or 0, info and info.records_in or 0))
  end
  local batch = self.running
  if not batch or spec.time ~= batch.time then return end
  local stages = batch.stages
  local st = stages[spec.stage]
  if not st then
    st = { name = spec.stage, tasks = 0, failed = 0, task_ms = 0, records_in = 0 }
    stages[spec.stage] = st
    stages[#stages + 1] = st
  end
  st.tasks = st.tasks + 1
  if status ~= 0 then st.failed = st.failed + 1 end
  st.task_ms = st.task_ms + (info.run_ms or 0)
  st.records_in = st.records_in + (info.records_in or 0)
  self.monitor:_keep_task(st, spec, status, info, err, outputs) -- the batch page's task rows
end

-- With a write-ahead log, receivers' records are cut into logged blocks every block interval
-- (dstream.state.wal), between batch boundaries.
function Clock:_start_block_timer()
  local cutting = {}
  for _, input in ipairs(self.inputs) do
    if input.cut_block then cutting[#cutting + 1] = input end
  end
  if #cutting == 0 then return end
  local every = require("dstream.state.wal").BLOCK_MS
  self._block_timer = core.timer(function()
    for _, input in ipairs(cutting) do
      local ok, err = input.cut_block()
      if not ok then return self:_fail("write-ahead log of " .. input.label .. ": " .. err) end
    end
    self._block_timer:start(every)
  end)
  self._block_timer:start(every)
end

function Clock:_tick()
  local time = self.next_time
  self.next_time = time + self.batch_ms
  self._timer:start(math.max(0, self.next_time - core.now_ms()))
  self:_generate(time)
end

return Clock

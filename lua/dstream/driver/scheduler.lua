-- dstream/driver/scheduler.lua: runs tasks on a context's worker pool, from the driver.
--
-- A stage is a list of task specs; run_tasks submits them all, waits until every one has
-- succeeded, and returns their outputs in spec order. A failed task is submitted again up to
-- max_attempts times (not one that failed on its records: protocol.TASK_NO_RETRY); then the
-- stage fails with an error naming the batch time, the partition, the record and the user's
-- traceback.
--
-- Waiting never blocks the event loop from inside a callback. Batch jobs run in coroutines
-- made by spawn(): there, waiting yields, and the completion callback resumes the job.
-- Outside any job (a script calling rdd:collect() at top level) waiting drives the loop.
local buffer = require("string.buffer")
local core = require("dstream.core")
local protocol = require("dstream.protocol")
local console_bar = require("dstream.driver.console_bar")
local util = require("dstream.util")

local M = {}
M.__index = M

local job_threads = setmetatable({}, { __mode = "k" }) -- coroutine -> on_finish

function M.new(opts)
  local self = setmetatable({
    pending = {}, -- task id -> { job, index, spec, attempt }
    next_id = 1,
    max_attempts = opts.max_attempts or 4,
    worker_memory = opts.worker_memory,
    task_timeout_ms = opts.task_timeout_ms,
    on_task = opts.on_task, -- optional observer of finished tasks
    on_accumulators = opts.on_accumulators, -- fn(slice) with a successful task's adds
    on_idle = opts.on_idle, -- fn() before tasks are submitted while none is in flight
    workers = opts.workers,
    progress = opts.progress, -- false: no console bar for actions outside batches
  }, M)
  self.pool = core.pool_new {
    workers = opts.workers,
    worker_memory = opts.worker_memory,
    task_timeout_ms = opts.task_timeout_ms,
    package_path = package.path,
    package_cpath = package.cpath,
    boot_arg = buffer.encode({ jit = opts.jit or {} }),
    on_done = function(...) return self:_on_done(...) end,
  }
  return self
end

-- Resumes a job coroutine and reports its end to the function given to spawn().
local function resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if coroutine.status(co) == "dead" then
    local on_finish = job_threads[co]
    job_threads[co] = nil
    if on_finish then on_finish(ok, err) end
  end
end

-- Runs fn in a job coroutine; on_finish(ok, err) is called when it returns or raises.
function M.spawn(fn, on_finish)
  local co = coroutine.create(function()
    return fn()
  end)
  job_threads[co] = on_finish or true
  resume(co)
  return co
end


-- "batch 2000 ms, map, partition 1": where a task runs.
local function task_place(spec)
  -- Static datasets run outside any batch: they have no batch time to name.
  local batch = (spec.time or 0) > 0 and string.format("batch %d ms, ", spec.time) or "static dataset, "
  return batch .. (spec.stage or "stage") .. ", partition " .. (spec.part or 0)
end

local function describe_failure(self, spec, attempts, status, err)
  local where = task_place(spec)
  if status == 2 then
    local limit = self.worker_memory and string.format("%d MiB", self.worker_memory / 1048576) or "its limit"
    return "out of memory in " .. where .. ": a worker's Lua memory went over " .. limit
      .. " (" .. attempts .. " attempts). Raise context{ worker_memory = ... } or --worker-memory,"
      .. " or use more partitions."
  end
  if status == protocol.TASK_NO_RETRY then
    return "task failed, not retried: another attempt would fail the same way (" .. where .. "): "
      .. tostring(err)
  end
  return "task failed after " .. attempts .. (attempts == 1 and " attempt" or " attempts")
    .. " (" .. where .. "): " .. tostring(err)
end

function M:_submit(job, index, spec, attempt)
  local id = self.next_id
  self.next_id = id + 1
  self.pending[id] = { job = job, index = index, spec = spec, attempt = attempt }
  self.pool:submit(id, spec.desc, spec.inputs, spec.affinity, spec.prefer)
end

function M:_on_done(id, status, err, outputs, info)
  local t = self.pending[id]
  self.pending[id] = nil
  if not t then return end
  local job = t.job
  if self.on_task then self.on_task(t.spec, status, info, err, outputs) end
  if job.failed or job.cancelled then return end
  if status == 0 then
    -- Accumulator updates (target -1) count only now that the task has succeeded.
    for i = #outputs, 1, -1 do
      if outputs[i][1] == protocol.TARGET_ACCUMULATORS then
        if self.on_accumulators then self.on_accumulators(table.remove(outputs, i)[2]) end
      end
    end
    job.results[t.index] = outputs
    job.remaining = job.remaining - 1
    job.records = job.records + (info and info.records_in or 0)
  elseif status ~= protocol.TASK_LOST and status ~= protocol.TASK_NO_RETRY
      and t.attempt < self.max_attempts and not job.cancelled then
    -- (A lost task is not retried: its worker is gone, and the same input would most
    -- likely take another one. Nor is one that failed on its records: a key that cannot be
    -- a key is in them the next time too.)
    return self:_submit(job, t.index, t.spec, t.attempt + 1)
  else
    job.failed = describe_failure(self, t.spec, t.attempt, status, err)
  end
  if (job.remaining == 0 or job.failed) and job.waiter then
    local co = job.waiter
    job.waiter = nil
    resume(co)
  end
end

-- Whether the caller runs in a job (a batch's outputs): its actions wait by yielding.
function M:in_job()
  local co = coroutine.running()
  return co ~= nil and job_threads[co] ~= nil
end

-- Submits every spec ({ desc = bytes, inputs = {slices}, time, part, stage, affinity, prefer }) and
-- returns the outputs of each task: an array of { target, slice }.
function M:run_tasks(specs)
  if core.on_worker() then
    error("contexts and actions run on the driver; this closure runs on a worker", 0)
  end
  local job = { remaining = #specs, results = {}, records = 0 }
  if #specs == 0 then return job.results end
  -- Nothing in flight: blobs that no dataset holds any more can go now (no queued task names them).
  if self.on_idle and next(self.pending) == nil then self.on_idle() end
  for i, spec in ipairs(specs) do self:_submit(job, i, spec, 1) end
  local co = coroutine.running()
  if co and job_threads[co] then
    job.waiter = co
    coroutine.yield()
  elseif core.running() then
    job.cancelled = true
    util.raise("a batch action was called from a callback outside a job: call it from foreach_rdd or transform")
  else
    -- An action outside any batch (a static dataset): a console bar on a terminal.
    local bar = self.progress ~= false and console_bar.new(specs[1].stage, #specs, self.workers or 1)
    while job.remaining > 0 and not job.failed do
      core.run("once")
      if bar then bar:update(#specs - job.remaining, job.records) end
      if core.take_interrupt() then -- Ctrl-C at the prompt: the action ends, its tasks are dropped
        job.cancelled = true
        if bar then bar:clear() end
        error("interrupted", 0)
      end
    end
    if bar then bar:clear() end
  end
  if job.failed then
    job.cancelled = true
    error(job.failed, 0)
  end
  return job.results
end

-- The tasks running now, described for people: { "batch 2000 ms, map, partition 1 (worker 0,
-- running 3.1 s)", ... }, longest first.
function M:running()
  if not self.pool then return {} end
  local list = self.pool:running()
  table.sort(list, function(a, b) return a.ms > b.ms end)
  local out = {}
  for _, r in ipairs(list) do
    local t = self.pending[r.id]
    local place = t and task_place(t.spec) or ("task " .. r.id)
    out[#out + 1] = string.format("%s (worker %d, running %.1f s%s)", place, r.worker, r.ms / 1000,
      r.lost and ", given up on" or "")
  end
  return out
end

-- The running tasks that report their progress (ds_task_progress on the worker: cluster
-- mode's restores): { { tag, a, b, since_ms, part, stage, worker }, ... }.
function M:progress()
  local out = {}
  for _, r in ipairs(self.pool and self.pool:running() or {}) do
    local p, t = r.progress, self.pending[r.id]
    if p and t then
      out[#out + 1] = { tag = p[1], a = p[2], b = p[3], since_ms = p[4], part = t.spec.part,
        stage = t.spec.stage, worker = r.worker }
    end
  end
  return out
end

-- Closes the pool: waits up to wait_ms (default 2 s) for running tasks to end; a worker still
-- running one then is abandoned (left to the process's exit). Returns how many were.
function M:close(wait_ms)
  local abandoned = 0
  if self.pool then
    abandoned = self.pool:close(wait_ms)
    self.pool = nil
  end
  return abandoned
end

return M

-- dstream/context.lua: a streaming context: its settings, its sources' constructors, and its lifecycle.
--
-- The context owns the worker pool (through its scheduler), the graph of streams and the
-- output operations. Once started, a clock seals every input at each batch boundary (the
-- wall clock, or ctx:advance() with clock = "manual") and queues a batch job; batch jobs run
-- one at a time, in time order, each in a coroutine that runs the output operations in the
-- order they were registered. The loop keeps receiving while a batch runs, so a slow batch
-- shows as scheduling delay, not as lost input.
local core = require("dstream.core")
local cli_options = require("dstream.options") -- the command line's, defaults for settings
local monitor = require("dstream.monitor")
local scheduler = require("dstream.driver.scheduler")
local shared = require("dstream.state.shared")
local ship = require("dstream.ship")
local sources = require("dstream.sources")
local stream_mod = require("dstream.stream")
require("dstream.window") -- adds the window operators to streams
local util = require("dstream.util")

local Context = {}
Context.__index = require("dstream.names").hint(Context, "context") -- camelCase names: a hint
Context.__name = "context"

local M = { Context = Context }
local live = setmetatable({}, { __mode = "k" }) -- contexts whose pool is open
-- A signal this soon after the first is the same stop, not a second one (`timeout` signals the
-- child and then its process group): it must not abandon what the first lets finish.
M.SECOND_SIGNAL_MS = 250

local function option(opts, key, cli_key, parse, default)
  local v = opts[key]
  if v == nil then v = cli_options[cli_key or key] end
  if v == nil then return default end
  local parsed, err = parse(v)
  if parsed == nil then
    util.raise("dstream.context: " .. key .. ": " .. err)
  end
  return parsed
end

local function parse_count(v)
  local n = tonumber(v)
  if n and n >= 1 and n == math.floor(n) then return n end
  return nil, "expected a whole number of at least 1, got " .. tostring(v)
end

-- Batch and checkpoint intervals are whole milliseconds: batch times are sums of them, and
-- checkpoints are due when (time - zero) % interval == 0, which floats near 1.8e12 ms would
-- make false forever. Other values are rounded to the nearest millisecond.
local function parse_interval(v)
  local ms, err = util.parse_duration(v)
  if not ms then return nil, err end
  return math.max(1, math.floor(ms + 0.5))
end

-- Worker counts and memory a machine can boot (core.worker_limits; the command line's
-- --workers and --worker-memory are checked alike before the script runs).
local function cores_text()
  local cores = core.cores()
  return cores .. (cores == 1 and " core" or " cores")
end

-- The warning for n workers, more per core than a machine gains from, or nil.
local function workers_warning(n)
  local limits = core.worker_limits()
  if n <= limits.warn_workers then return nil end
  return string.format("%d is more than %d per core (%s): workers beyond the cores only wait for"
    .. " them, and each holds a Lua state", n, limits.warn_workers / core.cores(), cores_text())
end

-- n, or nil and why; a third value warns (more than a few per core).
local function parse_workers(v)
  local n, err = parse_count(v)
  if not n then return nil, err end
  local limits = core.worker_limits()
  if n > limits.max_workers then
    return nil, string.format("%s is too many for %s: each worker is a thread with its own Lua"
      .. " state, and dstream refuses more than %d (%d per core, at most %d); more partitions, not"
      .. " more workers, split a batch finer", tostring(v), cores_text(), limits.max_workers,
      limits.max_per_core, limits.max_total)
  end
  return n, nil, workers_warning(n)
end

local function parse_worker_memory(v)
  local bytes, err = util.parse_size(v)
  if not bytes then return nil, err end
  local min = core.worker_limits().min_memory
  if bytes < min then
    return nil, string.format("%s is too small: a worker needs at least %dm to load its libraries"
      .. " and run a task", tostring(v), min / 1048576)
  end
  return bytes
end

-- A cluster's name: its consumer group and the prefix of its internal topics
-- (APP-<operator>-changelog), so only what Kafka takes in a topic name.
local function parse_cluster(v)
  if type(v) ~= "string" or not v:match("^[%w._-]+$") or #v > 200 then
    return nil, "expected the name of the job's consumer group (letters, digits, '.', '_' and"
      .. " '-', as Kafka's topic names), got " .. (type(v) == "string" and ("'" .. v .. "'") or tostring(v))
  end
  return v
end

-- The command line (runtime/ds_main.c) checks --workers, --worker-memory and --cluster with these too.
M.parse_workers, M.parse_worker_memory, M.parse_cluster = parse_workers, parse_worker_memory, parse_cluster

local known_options = {
  batch = true, workers = true, partitions = true, name = true, clock = true,
  worker_memory = true, max_task_attempts = true, checkpoint = true, checkpoint_interval = true,
  task_timeout = true,
  wal = true,
  cluster = true, -- issue 19: every process of the job joins Kafka consumer group `cluster`
  ui = true, ui_public = true, backpressure = true, progress = true, -- dstream.monitor
}

function M.new(opts)
  if core.on_worker() then -- (dstream.context and get_or_create say so already)
    util.raise("dstream.context: contexts and actions run on the driver; this closure runs on a worker")
  end
  opts = opts or {}
  if type(opts) ~= "table" then util.raise("dstream.context: expected a table of settings, got " .. type(opts)) end
  for k in pairs(opts) do
    if not known_options[k] then
      util.raise("dstream.context: unknown setting '" .. tostring(k) .. "'")
    end
  end
  local self = setmetatable({}, Context)
  self.batch_ms = option(opts, "batch", nil, parse_interval, 1000)
  self.workers = option(opts, "workers", nil, parse_workers, core.cores())
  local too_many = opts.workers and workers_warning(self.workers) -- (the command line's: ds_main.c)
  if too_many then core.log("warn", "context: workers = " .. too_many) end
  self.partitions = option(opts, "partitions", nil, parse_count, self.workers)
  self.worker_memory = option(opts, "worker_memory", "worker-memory", parse_worker_memory, core.limits().worker_memory)
  self.max_task_attempts = option(opts, "max_task_attempts", nil, parse_count, 4)
  self.task_timeout_ms = option(opts, "task_timeout", nil, util.parse_duration, nil) -- off by default
  self.name = opts.name or "dstream"
  self.clock = opts.clock or "system"
  self.checkpoint_dir = opts.checkpoint or cli_options.checkpoint
  if self.checkpoint_dir ~= nil and (type(self.checkpoint_dir) ~= "string" or self.checkpoint_dir == "") then
    util.raise("dstream.context: checkpoint must be a directory path, got " .. tostring(self.checkpoint_dir))
  end
  self.wal = opts.wal and true or false
  -- Cluster mode (issue 19): the Kafka streams join this consumer group (--cluster APP too).
  self.cluster = option(opts, "cluster", nil, parse_cluster, nil)
  if opts.cluster ~= nil and cli_options.cluster ~= nil and opts.cluster ~= cli_options.cluster then
    util.raise("dstream.context: cluster = \"" .. opts.cluster .. "\" but the command line says --cluster "
      .. cli_options.cluster .. ": every process of a job must join the same group; drop one of them")
  end
  -- Default: every batch that ends a 10 s stretch (Spark's minimum), at least every batch.
  self.checkpoint_ms = option(opts, "checkpoint_interval", nil, parse_interval,
    math.ceil(10000 / self.batch_ms) * self.batch_ms)
  if self.checkpoint_ms % self.batch_ms ~= 0 then
    util.raise("dstream.context: checkpoint_interval must be a multiple of the batch interval")
  end
  if self.clock ~= "system" and self.clock ~= "manual" then
    util.raise("dstream.context: clock must be \"system\" or \"manual\", got " .. tostring(self.clock))
  end
  self.state = "initialized"
  self.inputs, self.outputs, self.queue = {}, {}, {}
  self.batches = {} -- the last finished batches, newest last
  self._nstreams, self._next_blob = 0, 1
  -- Shipped closures: ids by bytes (equal closures ship once), bytes by id, how many holders
  -- each id has, the ids pinned for the context's life, and the ids whose holders all went.
  self._blobs = { ids = {}, bytes = {}, refs = {}, pinned = {}, unused = {} }
  self.time = 0 -- the last batch time generated (ms)
  self.zero_time = 0 -- batch k is at zero_time + k * batch_ms; windows slide from here
  self.monitor = monitor.new(self, opts, 4) -- metrics, listeners, UI, progress, backpressure
  self.sched = scheduler.new {
    workers = self.workers, worker_memory = self.worker_memory,
    max_attempts = self.max_task_attempts, jit = cli_options.jit,
    task_timeout_ms = self.task_timeout_ms, progress = opts.progress,
    on_task = function(...) self:_on_task(...) end,
    on_idle = function() self:_drop_unused_blobs() end,
    on_accumulators = function(slice)
      local arrays = require("string.buffer").decode(slice:bytes())
      shared.apply(self, arrays[1], arrays[2])
    end,
  }
  live[self] = true
  -- The UI from the start, so a job of static datasets alone (which never calls start) is
  -- served too; start() finds it up.
  if self.monitor.ui_host then self.monitor:start(2) end
  return self
end

function Context:__tostring()
  return string.format("context(%s, batch %d ms, %d workers, %s)", self.name, self.batch_ms,
    self.workers, self.state)
end

---------------------------------------------------------------------------------------------
-- Internals used by streams and rdds

function Context:_scheduler()
  if not self.sched then util.raise("this context is stopped: create a new one") end
  return self.sched
end

-- A holder of blob `id`: when the garbage collector takes it, the id loses a reference.
local function blob_holder(blobs, id)
  local h = newproxy(true)
  getmetatable(h).__gc = function()
    local n = blobs.refs[id] - 1
    blobs.refs[id] = n
    if n == 0 and not blobs.pinned[id] then blobs.unused[#blobs.unused + 1] = id end
  end
  return h
end

-- Ships f to the workers once and returns its id. Raises on the user's line (util.raise) when
-- f captures something that cannot travel. Without `holds` the closure stays for the
-- context's life (a stream's operators ship theirs once). With `holds` (a table) it stays only
-- while that table is reachable: a dataset's operator keeps it in the dataset made, an action
-- in its frame. So a closure made in every batch (a foreach_rdd calling rdd:foreach with a
-- function that captures the batch's time) does not pile up one copy per batch in the
-- workers' memory; Context:_drop_unused_blobs lets them go.
function Context:_ship(f, who, holds)
  local bytes, err = ship.try_encode(f, "the function given to " .. who)
  if not bytes then util.raise(who .. ": " .. err) end
  local blobs = self._blobs
  local id = blobs.ids[bytes]
  if not id then
    id = self._next_blob
    self._next_blob = id + 1
    blobs.ids[bytes], blobs.bytes[id], blobs.refs[id] = id, bytes, 0
    self:_scheduler().pool:put_blob(id, bytes)
  end
  if holds then
    blobs.refs[id] = blobs.refs[id] + 1
    holds[#holds + 1] = blob_holder(blobs, id)
  else
    blobs.pinned[id] = true
  end
  return id
end

-- Frees the closures no dataset or action holds any more. The scheduler calls it when no task
-- is in flight (a queued task could still name one); a closure shipped again since is kept.
function Context:_drop_unused_blobs()
  local blobs = self._blobs
  local unused = blobs.unused
  if #unused == 0 or not self.sched then return end
  blobs.unused = {}
  for _, id in ipairs(unused) do
    if blobs.refs[id] == 0 and not blobs.pinned[id] then
      blobs.ids[blobs.bytes[id]], blobs.bytes[id], blobs.refs[id] = nil, nil, nil
      self.sched.pool:drop_blob(id, true)
    end
  end
end

-- Ships value under an id of its own (not shared with equal bytes, so that dropping it
-- touches nothing else): a broadcast's. Returns the id.
function Context:_ship_once(value, who)
  local bytes, err = ship.try_encode(value, "the value given to " .. who)
  if not bytes then util.raise(who .. ": " .. err) end
  local id = self._next_blob
  self._next_blob = id + 1
  self:_scheduler().pool:put_blob(id, bytes)
  return id
end

-- Lets blob `id` go: the workers forget their decoded copies before their next task; with
-- free_bytes the bytes go too (the id must never be used again).
function Context:_drop_blob(id, free_bytes)
  self:_scheduler().pool:drop_blob(id, free_bytes)
end

-- A new state id. Keyed state (partitions given) lives on the workers under it; state kept
-- on the driver registers driver_state/restore_driver functions. Checkpoints save both.
-- `cluster_ready`: the operator keeps its state across a cluster's processes (dstream.cluster).
function Context:_new_state(kind, partitions, cluster_ready)
  if self.cluster and not cluster_ready then
    util.raise(kind .. ": cluster mode keeps only the state of update_state_by_key, map_with_state"
      .. " and the windows (reduce_by_key_and_window, event-time windows, session_window, window()"
      .. " after event_time) across processes for now (issue 19)")
  end
  self._states = self._states or {}
  local id = #self._states + 1
  self._states[id] = { id = id, kind = kind, partitions = partitions, position = id }
  return id, self._states[id]
end

-- An accumulator of a keyed state's key count per partition (filled by dstream.worker.ops.state);
-- entry.keys() is the total, shown by /metrics as dstream_state_keys.
local function merge_parts(a, b)
  for part, n in pairs(b) do a[part] = n end
  return a
end

function Context:_state_keys_counter(state_id)
  local acc = shared.accumulator(self, {}, merge_parts)
  local entry = self._states[state_id]
  entry.keys = function()
    local total = 0
    for _, n in pairs(acc.value) do total = total + n end
    return total
  end
  return acc.id
end

function Context:_register_stream()
  self._nstreams = self._nstreams + 1
  return self._nstreams
end

function Context:_add_output(stream, fn)
  if self.state ~= "initialized" then
    util.raise("output operations must be added before ctx:start()")
  end
  self.outputs[#self.outputs + 1] = { stream = stream, fn = fn }
end

---------------------------------------------------------------------------------------------
-- Sources: each a method of the context, kept in its module under dstream/sources/ (the
-- Source contract they implement is in dstream/sources/init.lua).

Context.queue_stream = require("dstream.sources.queue").queue_stream
Context.rate_stream = require("dstream.sources.rate").rate_stream
Context.socket_text_stream = require("dstream.sources.socket").socket_text_stream
Context.text_file_stream = require("dstream.sources.text_file").text_file_stream
Context.receiver_stream = require("dstream.sources.receiver").receiver_stream
Context.parallelize = require("dstream.sources.datasets").parallelize
Context.text_file = require("dstream.sources.datasets").text_file

-- A table read from PostgreSQL or SQLite, optionally refreshed (dstream/sinks/database.lua).
function Context:read_sql(url, query, opts)
  return require("dstream.sinks.database").read_sql(self, url, query, opts)
end

-- Kafka's direct stream: one input partition per Kafka partition (see dstream/sources/kafka.lua).
function Context:kafka_stream(opts, ...)
  if select("#", ...) > 0 then sources.check_options("kafka_stream(opts)", 1, opts, ...) end
  return require("dstream.sources.kafka").stream(self, opts)
end

function Context:union(streams)
  util.check_table(streams, "union", "the list of streams")
  local acc = streams[1]
  if not stream_mod.is_stream(acc) then util.raise("union: expected a list of streams") end
  for i = 2, #streams do acc = acc:union(streams[i]) end
  return acc
end


---------------------------------------------------------------------------------------------
-- Shared variables

-- A read-only value for the workers, shipped once per worker however many closures use it.
function Context:broadcast(value)
  return shared.broadcast(self, value)
end

-- acc:add(v) on workers; acc.value on the driver. merge(a, b) defaults to a + b.
function Context:accumulator(initial, merge)
  return shared.accumulator(self, initial, merge)
end

-- A driver-side value checkpointed with the job (dstream/state/driver_state.lua).
Context.driver_state = require("dstream.state.driver_state").register

---------------------------------------------------------------------------------------------
-- The batch clock (dstream.driver.clock) and recovery (dstream.state.recovery): methods of the
-- context kept in modules of their own.

for _, methods in ipairs { require("dstream.driver.clock"), require("dstream.state.recovery") } do
  for name, method in pairs(methods) do
    if type(method) == "function" then Context[name] = method end
  end
end

-- Listeners: fn(info) for "batch_started" and "batch_completed"; info is the batch record:
-- time, records, generated_at, started_at, finished_at (ms), scheduling_delay_ms,
-- processing_ms, total_delay_ms, stages = { {name, tasks, ms, records_in}, ... }.
function Context:_listen(event, fn)
  self._listeners = self._listeners or {}
  local list = self._listeners[event] or {}
  self._listeners[event] = list
  list[#list + 1] = fn
end

-- fn(info) before and after every batch, with the figures of /api/batches (dstream.monitor).
function Context:on_batch_started(fn) self.monitor:on("batch_started", fn, 2) end
function Context:on_batch_completed(fn) self.monitor:on("batch_completed", fn, 2) end
-- The metrics registry served at /metrics: add counters, gauges and histograms to it.
function Context:metrics() return self.monitor.registry end

function Context:_notify(event, info)
  local list = self._listeners and self._listeners[event]
  if not list then return end
  for _, fn in ipairs(list) do fn(info) end
end

function Context:_fail(err)
  if self.error then return end
  self.error = tostring(err)
  self:_terminate()
end

---------------------------------------------------------------------------------------------
-- Lifecycle

function Context:start()
  if self.state == "active" then util.raise("start: the context is already started") end
  if self.wal and not self.checkpoint_dir then
    util.raise("start: a write-ahead log (wal = true) needs a checkpoint directory (checkpoint = dir or --checkpoint)")
  end
  if self.state == "stopped" then util.raise("start: the context is stopped; create a new one") end
  if #self.outputs == 0 then
    util.raise("start: no output operation is registered: add print, foreach_rdd or save_as_text_files to a stream")
  end
  if self.checkpoint_dir then
    -- Two running contexts in one directory would overwrite each other's checkpoints and
    -- batch logs, and each restart would take the other's (--checkpoint is every context's).
    local dir = self.checkpoint_dir:gsub("/+$", "")
    for other in pairs(live) do
      if other ~= self and other.state == "active" and other.checkpoint_dir
          and other.checkpoint_dir:gsub("/+$", "") == dir then
        util.raise("start: context '" .. other.name .. "' is running with checkpoint directory " .. dir
          .. ": give each context a directory of its own (context{ checkpoint = dir }), or stop it first")
      end
    end
  end
  self.monitor:start(2)
  if self.checkpoint_dir then self:_recover() end
  -- Batches logged after the checkpoint take their input again before the sources open, so a
  -- source goes on after the last of them (a file stream from where that batch left a file).
  local rerun = {}
  for _, b in ipairs(self._rerun or {}) do
    rerun[#rerun + 1] = b.time
    for index, input in ipairs(self.inputs) do
      local entry = b.inputs[sources.key(input, index)]
      if entry ~= nil and input.replay then input:replay(b.time, entry) end
    end
  end
  table.sort(rerun)
  for _, input in ipairs(self.inputs) do -- logged records that no logged batch took
    if input.restore_blocks then input.restore_blocks() end
  end
  for _, input in ipairs(self.inputs) do
    if input.open then
      local ok, src = pcall(input.open)
      if not ok then util.raise(input.label .. ": " .. tostring(src)) end
      input.source = src
    end
  end
  self.state = "active"
  self.started_at = core.now_ms()
  local function on_signal(signum)
    if signum == core.SIGINT and M.repl_owns_sigint then return end -- Ctrl-C is the prompt's
    if self.stopping then
      -- A second signal stops now, but not one that comes with the first (M.SECOND_SIGNAL_MS).
      if core.now_ms() - (self._signalled_at or 0) < M.SECOND_SIGNAL_MS then return end
      -- Say what is abandoned; a worker stuck in its task is left running (never joined),
      -- so the process ends now (issue 15).
      local what = self.sched and self.sched:running() or {}
      local msg = "stopped by a second signal before the batches in flight finished"
      if #what > 0 then
        msg = msg .. "; abandoned: " .. table.concat(what, "; ")
      elseif self.running then
        msg = msg .. string.format("; abandoned: batch %d ms", self.running.time)
      end
      self._close_wait_ms = 300
      return self:_fail(msg)
    end
    self._signalled_at = core.now_ms()
    io.stderr:write("dstream: stopping gracefully (finishing batches in flight; signal again to stop now)\n")
    self:stop { graceful = true }
  end
  self._signals = { core.signal(core.SIGINT, on_signal), core.signal(core.SIGTERM, on_signal) }
  local now = core.now_ms()
  if self.clock == "system" then
    if self.recovered_from then -- same zero time: windows and checkpoints keep their phase
      self.next_time = self.zero_time + (math.floor((now - self.zero_time) / self.batch_ms) + 1) * self.batch_ms
    else
      self.next_time = (math.floor(now / self.batch_ms) + 1) * self.batch_ms
      self.zero_time = self.next_time - self.batch_ms
    end
  end
  if self.checkpoint_dir and not self.recovered_from then
    -- The first checkpoint, before any input is taken: the clock's zero and where every
    -- source starts (the files already in a directory, Kafka's resolved offsets), so a crash
    -- at any moment after this resumes here and re-runs the logged batches.
    self.time, self.last_completed = self.zero_time, self.zero_time
    local ok, err = pcall(self._write_checkpoint, self, self.zero_time, true)
    if not ok then
      self:_terminate()
      util.raise(tostring(err))
    end
  end
  -- Logged batches after the checkpoint run first, with their own times and inputs.
  for _, t in ipairs(rerun) do
    if not self.next_time or t < self.next_time then self:_generate(t, true) end
  end
  if self.clock == "system" then
    self._timer = core.timer(function() self:_tick() end)
    self._timer:start(math.max(0, self.next_time - now))
    self:_start_block_timer()
  end
end


-- Manual clock: runs the next n batches now.
function Context:advance(n)
  n = n or 1
  if self.clock ~= "manual" then util.raise("advance: only a context with clock = \"manual\" can be advanced") end
  if self.state ~= "active" then util.raise("advance: the context is " .. self.state .. "; call ctx:start() first") end
  for _ = 1, n do
    core.run("nowait") -- let receivers take what has arrived
    self:_generate(self.time + self.batch_ms)
    while (self.running or #self.queue > 0) and self.state ~= "stopped" do
      core.run("once")
      if core.take_interrupt() then error("interrupted", 0) end -- Ctrl-C at the prompt
    end
    if self.error then util.raise(self.error) end
  end
end

-- Waits until the context stops (ctx:stop, a signal, a failed batch) or `timeout` seconds
-- pass. Returns true if it stopped; raises the error of a failed batch.
function Context:await_termination(timeout)
  if self.state == "initialized" then
    util.raise("await_termination: the context was never started: call ctx:start() first")
  end
  self._awaited = true -- (dstream.cli's hint at the script's end)
  local timer, timed_out
  if timeout then
    local ms = util.parse_duration(timeout)
    if not ms then util.raise("await_termination: timeout must be a number of seconds") end
    timer = core.timer(function() timed_out = true end)
    timer:start(ms)
  end
  while self.state ~= "stopped" and not timed_out do
    core.run("once")
    if core.take_interrupt() then timed_out = "interrupted" end -- Ctrl-C at the prompt
  end
  if timer then timer:close() end
  if timed_out == "interrupted" then error("interrupted", 0) end
  if self.error then util.raise(self.error) end
  return self.state == "stopped"
end

-- Stops the context. graceful: first process everything already received.
-- Spark's positional form works too: stop(stop_context, graceful), e.g. stop(true, true). dstream
-- has no context apart from the streaming one, so stop_context says nothing more.
local STOP_OPTIONS = { graceful = true }
function Context:stop(opts, graceful_arg)
  local graceful
  if type(opts) == "table" then
    for k in pairs(opts) do
      if not STOP_OPTIONS[k] then util.raise("stop: unknown option '" .. tostring(k) .. "' (it takes graceful)") end
    end
    graceful = opts.graceful and true or false
  elseif opts == nil or type(opts) == "boolean" then
    if graceful_arg ~= nil and type(graceful_arg) ~= "boolean" then
      util.raise("stop: graceful (the second argument, as Spark's stop(stopSparkContext, stopGracefully)) must be a boolean, got " .. type(graceful_arg))
    end
    graceful = graceful_arg == true
  else
    util.raise("stop: expected { graceful = true } or Spark's (stop_context, graceful), got " .. type(opts))
  end
  if self.state == "stopped" then return end
  if self.state == "initialized" then return self:_terminate() end
  if self._timer then
    self._timer:close()
    self._timer = nil
  end
  if self._block_timer then
    self._block_timer:close()
    self._block_timer = nil
  end
  if graceful and not self.stopping then
    self.stopping = true
    local pending = false
    for _, input in ipairs(self.inputs) do
      if input.source then
        input.source:stop()
        if (input.source:stats().pending or 0) > 0 then pending = true end
      end
      if input.unsealed and input.unsealed() > 0 then pending = true end
    end
    if pending then
      self:_generate((self.next_time or (self.time + self.batch_ms)))
    end
  else
    if #self.queue > 0 then -- generated, never run: their input is not processed by this run
      local times = {}
      for i, b in ipairs(self.queue) do times[i] = string.format("%d", b.time) end
      core.log("warn", string.format("stop: %d queued batch(es) dropped without running (%s ms)%s",
        #self.queue, table.concat(times, ", "), self.checkpoint_dir
          and "; a restart from the checkpoint runs them again" or ""))
    end
    self.queue = {}
  end
  self.stopping = true
  if not graceful then return self:_terminate() end
  self:_pump() -- nothing left to run: the final checkpoint, then the end
  if self.state ~= "stopped" and not core.running() and not coroutine.running() then
    while self.state ~= "stopped" do core.run("once") end
  end
  if self.error then util.raise(self.error) end
end

function Context:_terminate()
  if self.state == "stopped" then return end
  self.state = "stopped"
  for _, input in ipairs(self.inputs) do
    if input.source then input.source:stop() end
  end
  if self._timer then self._timer:close() end
  if self._block_timer then self._block_timer:close() end
  for _, sig in ipairs(self._signals or {}) do sig:close() end
  if self.sched then
    local wait = self._close_wait_ms or 2000
    local abandoned = self.sched:close(wait)
    if abandoned > 0 and not self._close_wait_ms then -- (a second signal's error says so already)
      core.log("warn", string.format("%d worker(s) still running a task were abandoned at the stop"
        .. " (after waiting up to %d ms): they are left to the process's exit", abandoned, wait))
    end
  end
  self.sched = nil
  self.monitor:stop()
  live[self] = nil
end

-- Information about the running context, for people and tools.
-- Fields: state, batch_ms, workers, queued, running, last_batch, recent (averages and rates
-- of the last batches); tostring gives a report (dstream.inspect).
function Context:status()
  return require("dstream.inspect").status(self)
end

-- The contexts not stopped yet, initialized or active (the interpreter's hint at the end of
-- a script, and the prompt's `ctx` after `dstream -i job.lua`).
function M.open_contexts()
  local out = {}
  for ctx in pairs(live) do if ctx.state ~= "stopped" then out[#out + 1] = ctx end end
  return out
end

-- Stops every context still open (the interpreter calls it before exiting).
function M.shutdown(opts)
  for ctx in pairs(live) do ctx:stop(opts) end
  monitor.linger() -- a failed context's page, served until a signal (dstream.monitor)
end

-- SQL (dstream/sql): a query over the tables registered with to_table; explain prints its
-- plan and generated code.
function Context:sql(text, opts)
  local out = require("dstream.sql").query(self, text, opts)
  return out
end
function Context:explain(text, opts)
  local out = require("dstream.sql").explain(self, text, opts)
  return out
end

return M

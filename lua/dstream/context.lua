-- dstream/context.lua: a streaming context: its settings, sources, batch clock and lifecycle.
--
-- The context owns the worker pool (through its scheduler), the graph of streams and the
-- output operations. Once started, a clock seals every input at each batch boundary (the
-- wall clock, or ctx:advance() with clock = "manual") and queues a batch job; batch jobs run
-- one at a time, in time order, each in a coroutine that runs the output operations in the
-- order they were registered. The loop keeps receiving while a batch runs, so a slow batch
-- shows as scheduling delay, not as lost input.
local core = require("dstream.core")
local monitor = require("dstream.monitor")
local rdd_mod = require("dstream.rdd")
local scheduler = require("dstream.driver.scheduler")
local shared = require("dstream.state.shared")
local ship = require("dstream.ship")
local stream_mod = require("dstream.stream")
require("dstream.window") -- adds the window operators to streams
local util = require("dstream.util")
local batch_log = require("dstream.state.batch_log")

local Context = {}
Context.__index = Context
Context.__name = "context"

local M = { Context = Context }
local live = setmetatable({}, { __mode = "k" }) -- contexts whose pool is open

local function cli_options()
  return package.loaded["dstream.cli.options"] or {}
end

local function option(opts, key, cli_key, parse, default)
  local v = opts[key]
  if v == nil then v = cli_options()[cli_key or key] end
  if v == nil then return default end
  local parsed, err = parse(v)
  if parsed == nil then
    error("dstream.context: " .. key .. ": " .. err, 4)
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
local function parse_workers(v)
  local n, err = parse_count(v)
  if not n then return nil, err end
  local max = core.worker_limits().max_workers
  if n > max then
    return nil, string.format("%d is too many for %d cores: each worker is a thread with its own"
      .. " Lua state, and dstream refuses more than %d; more partitions, not more workers, split"
      .. " a batch finer", n, core.cores(), max)
  end
  return n
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

local known_options = {
  batch = true, workers = true, partitions = true, name = true, clock = true,
  worker_memory = true, max_task_attempts = true, checkpoint = true, checkpoint_interval = true,
  task_timeout = true,
  wal = true,
  ui = true, ui_public = true, backpressure = true, progress = true, -- dstream.monitor
}

function M.new(opts)
  if core.on_worker() then -- (dstream.context and get_or_create say so already)
    error("dstream.context: contexts and actions run on the driver; this closure runs on a worker", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("dstream.context: expected a table of settings, got " .. type(opts), 3) end
  for k in pairs(opts) do
    if not known_options[k] then
      error("dstream.context: unknown setting '" .. tostring(k) .. "'", 3)
    end
  end
  local self = setmetatable({}, Context)
  self.batch_ms = option(opts, "batch", nil, parse_interval, 1000)
  self.workers = option(opts, "workers", nil, parse_workers, core.cores())
  if opts.workers and self.workers > core.worker_limits().warn_workers then
    core.log("warn", string.format("context: workers = %d is more than %d per core (%d cores):"
      .. " workers beyond the cores only wait for them, and each holds a Lua state", self.workers,
      core.worker_limits().warn_workers / core.cores(), core.cores()))
  end
  self.partitions = option(opts, "partitions", nil, parse_count, self.workers)
  self.worker_memory = option(opts, "worker_memory", "worker-memory", parse_worker_memory, 4 * 1024 ^ 3)
  self.max_task_attempts = option(opts, "max_task_attempts", nil, parse_count, 4)
  self.task_timeout_ms = option(opts, "task_timeout", nil, util.parse_duration, nil) -- off by default
  self.name = opts.name or "dstream"
  self.clock = opts.clock or "system"
  self.checkpoint_dir = opts.checkpoint or cli_options().checkpoint
  if self.checkpoint_dir ~= nil and (type(self.checkpoint_dir) ~= "string" or self.checkpoint_dir == "") then
    error("dstream.context: checkpoint must be a directory path, got " .. tostring(self.checkpoint_dir), 3)
  end
  self.wal = opts.wal and true or false
  -- Default: every batch that ends a 10 s stretch (Spark's minimum), at least every batch.
  self.checkpoint_ms = option(opts, "checkpoint_interval", nil, parse_interval,
    math.ceil(10000 / self.batch_ms) * self.batch_ms)
  if self.checkpoint_ms % self.batch_ms ~= 0 then
    error("dstream.context: checkpoint_interval must be a multiple of the batch interval", 3)
  end
  if self.clock ~= "system" and self.clock ~= "manual" then
    error("dstream.context: clock must be \"system\" or \"manual\", got " .. tostring(self.clock), 3)
  end
  self.state = "initialized"
  self.inputs, self.outputs, self.queue = {}, {}, {}
  self.batches = {} -- the last finished batches, newest last
  self._nstreams, self._blob_ids, self._next_blob = 0, {}, 1
  self.time = 0 -- the last batch time generated (ms)
  self.zero_time = 0 -- batch k is at zero_time + k * batch_ms; windows slide from here
  self.monitor = monitor.new(self, opts, 4) -- metrics, listeners, UI, progress, backpressure
  self.sched = scheduler.new {
    workers = self.workers, worker_memory = self.worker_memory,
    max_attempts = self.max_task_attempts, jit = cli_options().jit,
    task_timeout_ms = self.task_timeout_ms,
    on_task = function(spec, status, info) self:_on_task(spec, status, info) end,
    on_accumulators = function(slice)
      local arrays = require("string.buffer").decode(slice:bytes())
      shared.apply(self, arrays[1], arrays[2])
    end,
  }
  live[self] = true
  return self
end

function Context:__tostring()
  return string.format("context(%s, batch %d ms, %d workers, %s)", self.name, self.batch_ms,
    self.workers, self.state)
end

---------------------------------------------------------------------------------------------
-- Internals used by streams and rdds

function Context:_scheduler()
  if not self.sched then error("this context is stopped: create a new one", 3) end
  return self.sched
end

-- Ships f to the workers once and returns its id. Raises on the user's line (`level`) when
-- f captures something that cannot travel.
function Context:_ship(f, who, level)
  local bytes, err = ship.try_encode(f, "the function given to " .. who)
  if not bytes then error(who .. ": " .. err, level) end
  local id = self._blob_ids[bytes]
  if not id then
    id = self._next_blob
    self._next_blob = id + 1
    self._blob_ids[bytes] = id
    self:_scheduler().pool:put_blob(id, bytes)
  end
  return id
end

-- A new state id. Keyed state (partitions given) lives on the workers under it; state kept
-- on the driver registers driver_state/restore_driver functions. Checkpoints save both.
function Context:_new_state(kind, partitions)
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
    error("output operations must be added before ctx:start()", 3)
  end
  self.outputs[#self.outputs + 1] = { stream = stream, fn = fn }
end

local function check_not_started(self, who)
  if self.state ~= "initialized" then
    error(who .. ": sources must be created before ctx:start()", 3)
  end
end

-- An input stream: seal(time) is called by the clock at every batch boundary.
local function input_stream(self, name, compute, seal)
  local s = stream_mod.new(self, {}, compute, name)
  s.seal = seal
  self.inputs[#self.inputs + 1] = s
  return s
end

---------------------------------------------------------------------------------------------
-- Sources

-- batches: a list of lists; each batch takes the next list.
-- opts: one_at_a_time (default true), default (a list for batches once the queue is empty),
-- pairs (each element {k, v} becomes the pair k, v).
function Context:queue_stream(batches, opts)
  check_not_started(self, "queue_stream")
  util.check_table(batches, "queue_stream", "the queue")
  opts = opts or {}
  local queue = {}
  for i, b in ipairs(batches) do
    if type(b) ~= "table" then error("queue_stream: batch " .. i .. " must be a list, got " .. type(b), 2) end
    queue[i] = b
  end
  local one_at_a_time = opts.one_at_a_time ~= false
  local taken = 0 -- lists taken from the queue: the position a checkpoint keeps
  local s = input_stream(self, "queue_stream", function(_, time)
    local list
    if one_at_a_time then
      list = table.remove(queue, 1) or opts.default or {}
      taken = taken + 1
    else
      list = {}
      for _, b in ipairs(queue) do for _, v in ipairs(b) do list[#list + 1] = v end end
      taken = taken + #queue
      queue = {}
    end
    return rdd_mod.from_list(self, list, self.partitions, opts.pairs)
  end)
  s.position = function() return taken end
  s.restore = function(_, pos)
    for _ = 1, pos do table.remove(queue, 1) end
    taken = pos
  end
  return s
end

-- Consecutive integers from 0, rows_per_second of them per second of batch interval. Under a
-- limit (max_rate, or backpressure through s:set_rate) a batch takes fewer rows and the rest
-- wait, in order, for later batches: none is skipped.
function Context:rate_stream(opts)
  check_not_started(self, "rate_stream")
  util.check_table(opts, "rate_stream", "the options")
  local rate, max_rate = opts.rows_per_second, opts.max_rate
  if type(rate) ~= "number" or rate < 0 then
    error("rate_stream: rows_per_second must be a number of at least 0, got " .. tostring(rate), 2)
  end
  if max_rate ~= nil and (type(max_rate) ~= "number" or not (max_rate > 0)) then
    error("rate_stream: max_rate must be a positive number of rows per second, got " .. tostring(max_rate), 2)
  end
  local next_value, carry, backlog, limit_carry, set_rate = 0, 0, 0, 0, nil
  local function limit()
    if max_rate and set_rate then return math.min(max_rate, set_rate) end
    return max_rate or set_rate
  end
  local s
  s = input_stream(self, "rate_stream", function(_, time)
    local b = s.sealed[time] or { first = next_value, count = 0 }
    s.sealed[time] = nil
    return rdd_mod.range(self, b.first, b.count, self.partitions)
  end, function(_, time)
    local rows = rate * self.batch_ms / 1000 + carry
    local due = math.floor(rows)
    carry = rows - due
    backlog = backlog + due
    local count, lim = backlog, limit()
    if lim then
      local allowed = lim * self.batch_ms / 1000 + limit_carry
      local n = math.floor(allowed)
      limit_carry = n < count and allowed - n or 0
      count = math.min(count, n)
    end
    backlog = backlog - count
    s.sealed[time] = { first = next_value, count = count }
    next_value = next_value + count
    s.pos_at[time] = { next_value, carry, backlog, limit_carry }
  end)
  s.sealed, s.pos_at = {}, {}
  -- Checkpoints keep the position as of the last completed batch.
  s.on_batch_done = function(_, time)
    s.done_pos = s.pos_at[time] or s.done_pos
    for t in pairs(s.pos_at) do if t <= time then s.pos_at[t] = nil end end
  end
  s.position = function() return s.done_pos end
  s.restore = function(_, pos) next_value, carry, backlog, limit_carry = pos[1], pos[2], pos[3], pos[4] end
  -- The batch log (dstream.state.batch_log): the batch's rows and where the stream stood after it.
  s.log_entry = function(_, time)
    local b = s.sealed[time]
    return { b.first, b.count, s.pos_at[time] }
  end
  s.replay = function(_, time, e)
    s.sealed[time] = { first = e[1], count = e[2] }
    s.pos_at[time] = e[3]
    s:restore(e[3])
  end
  s.set_rate = function(_, r) set_rate = (r and r > 0) and r or nil return limit() or 0 end
  s.rate_stats = function() return { max_rate = max_rate or 0, rate_limit = limit() or 0, backlog = backlog } end
  return s
end

-- Input backed by a receiver: open() (called by start) returns an object with
-- seal(nparts) -> partitions of slices (see ds_lua_push_sealed), stats() -> table, stop().
-- The clock seals it at each boundary into C-memory slices. Sources written elsewhere
-- (Kafka, Lua receivers) plug in through ctx:_receiver_stream(name, open).
local function receiver_stream(self, name, open)
  local s
  s = input_stream(self, name, function(_, time)
    local parts = s.sealed[time]
    s.sealed[time] = nil
    -- A re-run batch whose records a source can only cut once it runs (Kafka).
    if not parts and s.deferred then parts = s.deferred(time) end
    if not parts then
      parts = {}
      for i = 1, self.partitions do parts[i] = {} end
    end
    return rdd_mod.from_slices(self, parts)
  end, function(_, time)
    s.sealed[time] = s.source:seal(self.partitions)
  end)
  s.sealed = {}
  s.open = open
  return s
end

function Context:_receiver_stream(name, open)
  return receiver_stream(self, name, open)
end

function Context:socket_text_stream(host, port, opts)
  check_not_started(self, "socket_text_stream")
  if type(host) ~= "string" then error("socket_text_stream: expected a host name, got " .. type(host), 2) end
  port = tonumber(port)
  if not port or port < 1 or port > 65535 or port ~= math.floor(port) then
    error("socket_text_stream: expected a port number from 1 to 65535", 2)
  end
  local input = receiver_stream(self, "socket_text_stream " .. host .. ":" .. port, function()
    return core.socket_source(host, port, opts)
  end)
  -- A socket cannot send again: with context{ wal = true } its records are logged as they
  -- come (dstream.state.wal).
  if self.wal then require("dstream.state.wal").attach(self, input, #self.inputs) end
  return input
end

function Context:text_file_stream(dir, opts)
  check_not_started(self, "text_file_stream")
  if type(dir) ~= "string" then error("text_file_stream: expected a directory, got " .. type(dir), 2) end
  local probe = io.open(dir .. "/.", "r")
  if not probe then
    error("text_file_stream: directory '" .. dir .. "' does not exist or cannot be read: create it first", 2)
  end
  probe:close()
  -- Where reading stands, in byte ranges of files (src:take_parts after each seal): `done`
  -- lists the files read whole by completed batches and `partial` the one half read, {name,
  -- end}: a checkpoint's position. `known` and `cursor` are the same as of the newest batch
  -- generated, for a restart: a file is read again from where the last logged batch left it.
  local batch_ranges = {} -- [time] = { {name, start, end, done}, ... }
  local done, done_list, partial = {}, {}, nil
  local known, cursor, restored = {}, nil, false
  local function read_whole(name)
    if not done[name] then
      done[name] = true
      done_list[#done_list + 1] = name
    end
    known[name] = true
  end
  local function took(time, ranges)
    batch_ranges[time] = ranges
    for _, r in ipairs(ranges) do
      if r[4] then
        known[r[1]] = true
        if cursor and cursor[1] == r[1] then cursor = nil end
      else
        cursor = { r[1], r[3] }
      end
    end
  end
  local s
  s = receiver_stream(self, "text_file_stream " .. dir, function()
    if not restored then
      local src = core.file_source(dir, opts)
      -- Files already there are not input (unless new_files_only = false): a restart must
      -- know them, so the checkpoint written at start lists them as read.
      if not (opts and opts.new_files_only == false) then
        for _, name in ipairs(src:seen()) do read_whole(name) end
      end
      return src
    end
    -- Restarted: every file not read by a logged batch is new, even one that was there
    -- before the start (it arrived while the job was down).
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.new_files_only = false
    local src = core.file_source(dir, o)
    for name in pairs(known) do src:mark_seen(name) end
    if cursor then src:resume(cursor[1], cursor[2]) end
    return src
  end)
  local seal = s.seal
  s.seal = function(self_, time)
    seal(self_, time)
    took(time, s.source:take_parts())
  end
  s.log_entry = function(_, time) return batch_ranges[time] end
  s.replay = function(_, time, ranges)
    restored = true
    local paths = {}
    for i, r in ipairs(ranges) do paths[i] = { dir .. "/" .. r[1], r[2], r[3] } end
    local parts, err = core.read_file_ranges(paths, self.partitions, opts and opts.max_line)
    if not parts then
      core.log("warn", string.format("text_file_stream %s: batch %d ms cannot be re-run whole: %s",
        dir, time, err))
    end
    s.sealed[time] = parts
    took(time, ranges)
  end
  s.on_batch_done = function(_, time)
    local times = {}
    for t in pairs(batch_ranges) do if t <= time then times[#times + 1] = t end end
    table.sort(times)
    for _, t in ipairs(times) do
      for _, r in ipairs(batch_ranges[t]) do
        if r[4] then
          read_whole(r[1])
          if partial and partial[1] == r[1] then partial = nil end
        else
          partial = { r[1], r[3] }
        end
      end
      batch_ranges[t] = nil
    end
  end
  s.position = function() return { done = done_list, partial = partial } end
  s.restore = function(_, pos)
    restored = true
    for _, name in ipairs(pos.done or pos) do read_whole(name) end -- (older checkpoints: a list)
    partial = pos.partial
    cursor = partial and { partial[1], partial[2] }
  end
  return s
end

-- Kafka's direct stream: one input partition per Kafka partition (see dstream/kafka.lua).
function Context:kafka_stream(opts)
  local s = require("dstream.kafka").stream(self, opts, 3) -- not a tail call: level 3 is the user
  return s
end

function Context:union(streams)
  util.check_table(streams, "union", "the list of streams")
  local acc = streams[1]
  if not stream_mod.is_stream(acc) then error("union: expected a list of streams", 2) end
  for i = 2, #streams do acc = acc:union(streams[i]) end
  return acc
end

-- Static datasets: batches with the same operators, run on the same workers.
function Context:parallelize(list, nparts, opts)
  util.check_table(list, "parallelize", "the list")
  util.check_count(nparts, "parallelize", "the number of partitions", true)
  return rdd_mod.from_list(self, list, nparts or self.partitions, opts and opts.pairs)
end

-- The lines of `text` (split at "\n", one final "\r" dropped, no empty line after a final
-- "\n") as `nparts` slices of consecutive lines in DS_FMT_LINES, written with the FFI: no Lua
-- string per line (reading lines through Lua took 2 s for 80 MB, this 0.3 s).
local function lines_slices(text, nparts, path)
  local ffi = require("ffi")
  local find, byte = string.find, string.byte
  local n, count, pos = #text, 0, 1
  while pos <= n do
    count = count + 1
    local e = find(text, "\n", pos, true)
    if not e then break end
    pos = e + 1
  end
  local base, u32p = ffi.cast("const uint8_t *", text), ffi.typeof("uint32_t *")
  local buf = require("string.buffer").new()
  local parts = {}
  pos = 1
  for p = 0, nparts - 1 do
    local lo, hi = math.floor(count * p / nparts) + 1, math.floor(count * (p + 1) / nparts)
    local slices, in_buf = {}, 0
    buf:reset()
    for i = lo, hi do
      local e = find(text, "\n", pos, true) or n + 1
      local len = e - pos
      if len > 0 and byte(text, e - 1) == 13 then len = len - 1 end
      if len > 64 * 1048576 then
        error("text_file: line " .. i .. " of " .. path .. " is longer than 64 MiB", 3)
      end
      local dst = buf:reserve(4 + len)
      ffi.cast(u32p, dst)[0] = len
      ffi.copy(dst + 4, base + (pos - 1), len)
      buf:commit(4 + len)
      pos = e + 1
      in_buf = in_buf + 1
      -- Slices of up to 4 MiB: a big file is not held three times over while it is cut.
      if #buf >= 4194304 or i == hi then
        slices[#slices + 1] = core.slice_from_string(buf:tostring(), in_buf, false, "lines")
        buf:reset()
        in_buf = 0
      end
    end
    parts[p + 1] = slices
  end
  buf:free()
  return parts
end

function Context:text_file(path, nparts)
  util.check_count(nparts, "text_file", "the number of partitions", true)
  local fh, err = io.open(path, "rb")
  if not fh then error("text_file: cannot read " .. tostring(path) .. ": " .. tostring(err), 2) end
  local text = fh:read("*a")
  fh:close()
  return rdd_mod.from_slices(self, lines_slices(text, nparts or self.partitions, path))
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

---------------------------------------------------------------------------------------------
-- Batches

-- The key of an input in checkpoints and the batch log.
local function input_key(input, index) return input.key or ("#" .. index) end

-- Seals every input at `time`, logs the batch (with a checkpoint directory) and queues it.
-- `rerun`: a batch of the batch log run again after a restart; its inputs were filled by
-- input:replay at start, and live sources are not sealed. A seal may fail (nil, err: the
-- write-ahead log could not be written), which fails the job.
function Context:_generate(time, rerun)
  self.time = time
  local records, sources, logged = 0, {}, {}
  for index, input in ipairs(self.inputs) do
    if input.seal then
      if not rerun then
        local ok, err = input:seal(time)
        if ok == nil and err then return self:_fail("batch " .. string.format("%d", time) .. " ms: " .. err) end
        if input.log_entry then logged[input_key(input, index)] = input:log_entry(time) end
      end
      local parts = input.sealed[time]
      records = records + (parts and parts.count or 0)
      sources[#sources + 1] = { id = input.id, name = input.label, records = parts and parts.count or 0 }
      input.records_total = (input.records_total or 0) + (parts and parts.count or 0)
    end
  end
  if self.checkpoint_dir and not rerun then
    local ok, err = batch_log.write(self, time, logged)
    if not ok then return self:_fail("batch log of batch " .. string.format("%d", time) .. " ms: " .. err) end
  end
  self.queue[#self.queue + 1] = { time = time, generated_at = core.now_ms(), records = records,
    sources = sources }
  self:_pump()
end

-- Streams computed at every batch whether an output asks or not (windows fold every batch into
-- their panes; their parents must have every batch for raw windows).
function Context:_eager(stream)
  self._eager_streams = self._eager_streams or {}
  for _, s in ipairs(self._eager_streams) do if s == stream then return end end
  self._eager_streams[#self._eager_streams + 1] = stream
end

function Context:_run_batch(batch)
  self._current_time = batch.time
  for _, s in ipairs(self._eager_streams or {}) do s:get_rdd(batch.time) end
  for i, out in ipairs(self.outputs) do
    local r = out.stream:get_rdd(batch.time)
    if r then
      local ok, err = pcall(out.fn, r, batch.time)
      if not ok then
        err = tostring(err)
        -- Task failures already say where; a driver-side error gets the batch and the output.
        if not err:find("task failed after", 1, true) then
          err = string.format("batch %d ms, output operation %d: %s", batch.time, i, err)
        end
        error(err, 0)
      end
    end
  end
  self:_batch_done(batch.time)
end

-- After the outputs of a batch: sources note what the batch consumed, and a checkpoint is
-- written when one is due (in the batch's job, so its state tasks can run).
function Context:_batch_done(time)
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

-- Registers fn(time), run after each batch's checkpoint (see _batch_done), and a check of the
-- checkpoints at recovery: accept(doc) -> true, or false and why (see checkpoint.read_newest).
function Context:_two_phase_output(commit, accept)
  self._commits = self._commits or {}
  self._commits[#self._commits + 1] = commit
  if accept then
    self._checkpoint_checks = self._checkpoint_checks or {}
    self._checkpoint_checks[#self._checkpoint_checks + 1] = accept
  end
end

-- initial: the checkpoint written by start() before any input is taken (no state yet).
function Context:_write_checkpoint(time, initial)
  local ok, err = require("dstream.state.checkpoint").write(self, time, initial)
  if not ok then
    error((initial and "the first checkpoint" or ("checkpoint of batch " .. string.format("%d", time) .. " ms"))
      .. " failed: " .. err .. (initial and "" or " (the previous checkpoint is intact)"), 0)
  end
  batch_log.prune(self, time)
  for _, input in ipairs(self.inputs) do
    if input.prune then input:prune() end -- write-ahead log blocks the checkpoint covers
  end
end

-- Restart from the newest good checkpoint in checkpoint_dir, if there is one.
function Context:_recover()
  local checkpoint = require("dstream.state.checkpoint")
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
function Context:recovering()
  if self.state ~= "initialized" then return self.recovered_from ~= nil end
  if not self.checkpoint_dir then return false end
  local gens = core.ckpt_list(self.checkpoint_dir)
  return gens ~= nil and #gens > 0
end

function Context:_forget(time)
  for _, s in ipairs(self._streams_to_forget or {}) do s:_forget(time) end
end

-- Starts the next queued batch unless one is running.
function Context:_pump()
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
  batch.scheduling_delay_ms = batch.started_at - batch.generated_at
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
    batch.total_delay_ms = batch.finished_at - batch.generated_at
    self.batches[#self.batches + 1] = batch
    if #self.batches > 100 then table.remove(self.batches, 1) end
    self:_cleanup(batch.time)
    self:_notify("batch_completed", batch)
    self:_pump()
  end)
end

-- Forgets batches of every stream older than the batch just finished.
function Context:_cleanup(time)
  self._all_streams = self._all_streams or {}
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
function Context:_on_task(spec, status, info)
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
  if self.state == "active" then error("start: the context is already started", 2) end
  if self.wal and not self.checkpoint_dir then
    error("start: a write-ahead log (wal = true) needs a checkpoint directory (checkpoint = dir or --checkpoint)", 2)
  end
  if self.state == "stopped" then error("start: the context is stopped; create a new one", 2) end
  if #self.outputs == 0 then
    error("start: no output operation is registered: add print, foreach_rdd or save_as_text_files to a stream", 2)
  end
  self.monitor:start(2)
  if self.checkpoint_dir then self:_recover() end
  -- Batches logged after the checkpoint take their input again before the sources open, so a
  -- source goes on after the last of them (a file stream from where that batch left a file).
  local rerun = {}
  for _, b in ipairs(self._rerun or {}) do
    rerun[#rerun + 1] = b.time
    for index, input in ipairs(self.inputs) do
      local entry = b.inputs[input_key(input, index)]
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
      if not ok then error(input.label .. ": " .. tostring(src), 2) end
      input.source = src
    end
  end
  self.state = "active"
  self.started_at = core.now_ms()
  local function on_signal(signum)
    if signum == core.SIGINT and M.repl_owns_sigint then return end -- Ctrl-C is the prompt's
    if self.stopping then
      -- A second signal stops now, but not one that comes with the first (`timeout` signals
      -- the child and then its process group): that would abandon the batch in flight.
      if core.now_ms() - (self._signalled_at or 0) < 1000 then return end
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
      error(tostring(err), 2)
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

-- With a write-ahead log, receivers' records are cut into logged blocks every block interval
-- (dstream.state.wal), between batch boundaries.
function Context:_start_block_timer()
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

function Context:_tick()
  local time = self.next_time
  self.next_time = time + self.batch_ms
  self._timer:start(math.max(0, self.next_time - core.now_ms()))
  self:_generate(time)
end

-- Manual clock: runs the next n batches now.
function Context:advance(n)
  n = n or 1
  if self.clock ~= "manual" then error("advance: only a context with clock = \"manual\" can be advanced", 2) end
  if self.state ~= "active" then error("advance: the context is " .. self.state .. "; call ctx:start() first", 2) end
  for _ = 1, n do
    core.run("nowait") -- let receivers take what has arrived
    self:_generate(self.time + self.batch_ms)
    while (self.running or #self.queue > 0) and self.state ~= "stopped" do
      core.run("once")
      if core.take_interrupt() then error("interrupted", 0) end -- Ctrl-C at the prompt
    end
    if self.error then error(self.error, 2) end
  end
end

-- Waits until the context stops (ctx:stop, a signal, a failed batch) or `timeout` seconds
-- pass. Returns true if it stopped; raises the error of a failed batch.
function Context:await_termination(timeout)
  local timer, timed_out
  if timeout then
    local ms = util.parse_duration(timeout)
    if not ms then error("await_termination: timeout must be a number of seconds", 2) end
    timer = core.timer(function() timed_out = true end)
    timer:start(ms)
  end
  while self.state ~= "stopped" and not timed_out do
    core.run("once")
    if core.take_interrupt() then timed_out = "interrupted" end -- Ctrl-C at the prompt
  end
  if timer then timer:close() end
  if timed_out == "interrupted" then error("interrupted", 0) end
  if self.error then error(self.error, 2) end
  return self.state == "stopped"
end

-- Stops the context. graceful: first process everything already received.
function Context:stop(opts)
  if self.state == "stopped" then return end
  local graceful = type(opts) == "table" and opts.graceful
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
    self.queue = {}
  end
  self.stopping = true
  if not graceful then return self:_terminate() end
  self:_pump() -- nothing left to run: the final checkpoint, then the end
  if self.state ~= "stopped" and not core.running() and not coroutine.running() then
    while self.state ~= "stopped" do core.run("once") end
  end
  if self.error then error(self.error, 2) end
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

-- Stops every context still open (the interpreter calls it before exiting).
function M.shutdown(opts)
  for ctx in pairs(live) do ctx:stop(opts) end
end

return M

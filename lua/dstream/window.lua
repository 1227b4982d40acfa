-- dstream/window.lua: window operators on streams.
--
-- A windowed stream produces a batch when the time since the start is a multiple of its
-- slide; the window covers the last `len` of batches, so the first windows are partial and
-- windows run on past the end of the input, as in Spark Streaming. Reducing windows are
-- built from panes (dstream.worker.ops.window): each batch is reduced once into the pane of its
-- slice of time, on the worker that owns the key's partition, and a window combines panes;
-- with an inverse function the previous window's value is updated with the panes that
-- entered and left instead. window() itself keeps the raw batches and unions them.
local protocol = require("dstream.protocol")
local rdd_mod = require("dstream.rdd")
local stream_mod = require("dstream.stream")
local util = require("dstream.util")

local Stream = stream_mod.Stream

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

-- Checks and converts a window length and slide (default: the batch interval) to ms.
local function window_times(self, len, slide, who)
  local batch = self.ctx.batch_ms
  local len_ms, err = util.parse_duration(len)
  if not len_ms then util.raise(who .. ": window length: " .. err) end
  local slide_ms = batch
  if slide ~= nil then
    slide_ms, err = util.parse_duration(slide)
    if not slide_ms then util.raise(who .. ": slide: " .. err) end
  end
  for _, d in ipairs({ { "window length", len_ms }, { "slide", slide_ms } }) do
    if d[2] % batch ~= 0 then
      util.raise(string.format("%s: the %s (%g ms) must be a multiple of the batch interval (%g ms)",
        who, d[1], d[2], batch))
    end
  end
  return len_ms, slide_ms
end

local function at_slide(ctx, time, slide_ms)
  return (time - ctx.zero_time) % slide_ms == 0
end

local event_records_window -- (event time, below)

-- The raw records of the last `len`, every `slide`. After event_time(), the records of each
-- event-time window as the watermark closes it.
function Stream:window(len, slide)
  local len_ms, slide_ms = window_times(self, len, slide, "window")
  if self.event then return event_records_window(self, len_ms, slide_ms) end
  local ctx, parent = self.ctx, self
  parent.remember_ms = math.max(parent.remember_ms or 0, len_ms)
  ctx:_eager(parent) -- every batch must exist to be in a later window
  local w = stream_mod.new(ctx, { parent }, function(_, time)
    if not at_slide(ctx, time, slide_ms) then return nil end
    local acc
    for t = time - len_ms + ctx.batch_ms, time, ctx.batch_ms do
      local r = parent:get_rdd(t)
      if r then acc = acc and acc:union(r) or r end
    end
    return acc or rdd_mod.empty(ctx)
  end, "window")
  w.slide_ms = slide_ms
  return w
end

---------------------------------------------------------------------------------------------
-- Event time

local buffer = require("string.buffer")

-- The event-time settings of a stream, and its watermark: the largest timestamp seen by the
-- end of the previous batch, minus the allowed delay.
local Event = {}
Event.__index = Event

function Event:watermark()
  if self.max_ts == nil then return nil end
  return self.max_ts - self.delay
end

-- Takes a map stage's side outputs for batch `time`: its tasks' largest timestamps and late
-- records. Several window operators may run the same event_time stage in one batch; the
-- first report of a batch counts.
function Event:absorb(ctx, time, side)
  if self.reported[time] then return end
  self.reported[time] = true
  for _, slice in ipairs(side[protocol.TARGET_WATERMARK] or {}) do
    for _, rep in ipairs(buffer.decode(slice:bytes())[1]) do
      local ts, late = rep[1], rep[2]
      if ts and (self.max_ts == nil or ts > self.max_ts) then self.max_ts = ts end
      self.late_total = self.late_total + late
    end
  end
  if side[protocol.TARGET_LATE] then self.late_rdds[time] = rdd_mod.from_slices(ctx, { side[protocol.TARGET_LATE] }) end
  for t in pairs(self.reported) do -- keep a few batches only
    if t < time - 100 * ctx.batch_ms then self.reported[t], self.late_rdds[t] = nil, nil end
  end
end

-- Records get their event time from fn(record) (milliseconds). opts: watermark = the delay
-- allowed for late records (default 0), late = "drop" or "side" (kept for late_records()),
-- emit = "final" (a window once, when the watermark passes its end) or "update" (windows
-- changed by each batch, every batch).
function Stream:event_time(fn, opts)
  util.check_function(fn, "event_time")
  opts = opts or {}
  util.check_table(opts, "event_time", "the options")
  util.check_names(opts, { "emit", "late", "watermark" }, "event_time")
  local delay = 0
  if opts.watermark ~= nil then
    local err
    delay, err = util.parse_duration(opts.watermark, true) -- (0, the default, said out loud)
    if not delay then util.raise("event_time: watermark: " .. err) end
  end
  local late = opts.late or "drop"
  if late ~= "drop" and late ~= "side" then
    util.raise("event_time: late must be \"drop\" or \"side\", got " .. tostring(late))
  end
  local emit = opts.emit or "final"
  if emit ~= "final" and emit ~= "update" then
    util.raise("event_time: emit must be \"final\" or \"update\", got " .. tostring(emit))
  end
  local ev = setmetatable({ fn = self.ctx:_ship(fn, "event_time"), delay = delay,
    keep_late = late == "side", emit = emit, reported = {}, late_rdds = {}, late_total = 0 }, Event)
  local _, entry = self.ctx:_new_state("event_time", nil, true) -- (driver state only)
  entry.driver_state = function() return { max_ts = ev.max_ts, late_total = ev.late_total } end
  entry.restore_driver = function(d) ev.max_ts, ev.late_total = d.max_ts, d.late_total end
  local out = self:_derive("event_time", function(r)
    return r:_narrow({ kind = "event_time", fn = ev.fn, watermark = ev:watermark(),
      keep_late = ev.keep_late })
  end)
  out.event = ev
  return out
end

-- The records that came later than the watermark, per batch (event_time{ late = "side" }).
function Stream:late_records()
  local ev = self.event
  if not ev or not ev.keep_late then
    util.raise("late_records: call it on a stream made by event_time(fn, { late = \"side\" })")
  end
  local ctx = self.ctx
  return stream_mod.new(ctx, { self }, function(_, time)
    return ev.late_rdds[time] or rdd_mod.empty(ctx, 1)
  end, "late_records")
end

-- Late records dropped (or routed to late_records) so far. Only a stream with event time has
-- a count: anywhere else 0 would read as "nothing was late" (a window's output, say).
function Stream:late_count()
  local ev = self.event
  if not ev then
    util.raise("late_count: this stream has no event time; call it on the stream event_time(fn)"
      .. " made (or a map/filter of it), which counts the late records of the windows after it")
  end
  return ev.late_total or 0
end

-- Runs an event-time stage: the map side ends in map_term (by key into n buckets), the
-- watermark moves, then `reduce_op` runs where the key's state lives. Returns the batch.
local function run_event_stage(self, r, map_term, make_reduce_op, n, stage, time)
  local ctx, ev = self.ctx, self.event
  local sh = r:_shuffle(map_term, nil, n)
  sh:_materialize(time)
  ev:absorb(ctx, time, sh.side)
  local op = make_reduce_op(ev:watermark())
  local plans = sh:_plans()
  for i, plan in ipairs(plans) do
    plan.ops = { op }
    plan.state_part = i - 1
  end
  local results = ctx:_scheduler():run_tasks(sh:_tasks(plans, function()
    return { kind = "collect" }
  end, stage, time))
  return rdd_mod.from_outputs(ctx, results)
end

-- Per key and event-time window: fid folds values on the map side (from create(v) when
-- given), merge (default fid) folds partials on the reduce side; field names the value.
-- filter (a shipped id) keeps what it returns true for; an inverse has nothing to do here
-- (each window is its own state, never updated by subtraction).
local function event_window(self, fid, len_ms, slide_ms, n, who, group, filter)
  local ctx, parent = self.ctx, self
  if ctx.cluster then -- across processes (dstream.cluster.windows)
    return require("dstream.cluster.windows").event_window(self, fid, len_ms, slide_ms, n, who, group, filter)
  end
  local state = ctx:_new_state("event-time window", n)
  local w = stream_mod.new(ctx, { parent }, function(_, time)
    local r = parent:get_rdd(time) or rdd_mod.empty(ctx)
    return run_event_stage(parent, r, { kind = "event_window_combine", fn = fid, len = len_ms,
      slide = slide_ms, who = who, create = group and group.create }, function(watermark)
      return { kind = "event_window_reduce", fn = fid, merge = group and group.merge,
        field = group and "values", filter = filter, state = state, len = len_ms,
        watermark = watermark, emit = parent.event.emit }
    end, n, "event-time window", time)
  end, "event-time window")
  w.state_id = state
  ctx:_eager(w)
  return w
end

-- window() after event_time: each window's records are kept in one state partition (by the
-- window's start) and emitted when the watermark closes the window.
function event_records_window(self, len_ms, slide_ms)
  local ctx, parent = self.ctx, self
  local n = ctx.partitions
  if ctx.cluster then -- across processes (dstream.cluster.windows)
    return require("dstream.cluster.windows").event_records_window(self, len_ms, slide_ms, n)
  end
  local state = ctx:_new_state("event-time window()", n)
  local w = stream_mod.new(ctx, { parent }, function(_, time)
    local r = parent:get_rdd(time) or rdd_mod.empty(ctx)
    return run_event_stage(parent, r, { kind = "event_window_records", who = "window",
      len = len_ms, slide = slide_ms },
      function(watermark)
        return { kind = "event_window_raw", state = state, len = len_ms, slide = slide_ms,
          watermark = watermark, emit = parent.event.emit }
      end, n, "event-time window()", time)
  end, "event-time window()")
  w.state_id = state
  ctx:_eager(w)
  return w
end

-- group_by_key_and_window's folds: a list per key and window. merge_lists makes a new list:
-- its first argument may be the window state's (event_window_reduce).
local function list_of(v) return { v } end
local function append(list, v)
  list[#list + 1] = v
  return list
end
local function merge_lists(a, b)
  local out, n = {}, #a
  for i = 1, n do out[i] = a[i] end
  for i = 1, #b do out[n + i] = b[i] end
  return out
end

-- Sessions per key: records of a key less than `gap` apart are one session. Emits
-- (key, { start, end, values, count }) when the watermark passes a session's end.
function Stream:session_window(gap, nparts)
  if not self.event then
    util.raise("session_window: sessions need event time: call event_time(fn, opts) first")
  end
  local gap_ms, err = util.parse_duration(gap)
  if not gap_ms then util.raise("session_window: gap: " .. err) end
  nparts = util.options(nparts, "session_window").partitions
  local ctx, parent = self.ctx, self
  local n = nparts or ctx.partitions
  if ctx.cluster then -- across processes (dstream.cluster.windows)
    return require("dstream.cluster.windows").session_window(self, gap_ms, n)
  end
  local state = ctx:_new_state("session_window", n)
  local w = stream_mod.new(ctx, { parent }, function(_, time)
    local r = parent:get_rdd(time) or rdd_mod.empty(ctx)
    return run_event_stage(parent, r, { kind = "session_partition" }, function(watermark)
      return { kind = "session_reduce", state = state, gap = gap_ms, watermark = watermark }
    end, n, "session_window", time)
  end, "session_window")
  w.state_id = state
  ctx:_eager(w)
  return w
end

-- The keys of a window, summed over the tasks that kept its partitions (each task's output:
-- { { count } }, worker.ops.window's kept_count): count() of the window's batch is answered
-- from them, without a stage (the windowed word count ran three stages per slide: map side,
-- window, count). nil if a partition did not say.
local function kept_keys(results, nparts)
  local total = 0
  for i = 1, nparts do
    local said
    for _, out in ipairs(results[i] or {}) do
      if out[1] == 0 then
        total, said = total + buffer.decode(out[2]:bytes())[1][1], true
      end
    end
    if not said then return nil end
  end
  return total
end

-- opts: inverse = fn(acc, old) (incremental windows), filter = fn(k, v) (keys kept while it
-- returns true), partitions = n. After event_time(), windows are event-time windows of the
-- records' own timestamps and emit (key, { start, end, value }).
local WINDOW_REDUCE_OPTIONS = { inverse = true, filter = true }
function Stream:reduce_by_key_and_window(f, len, slide, opts)
  util.check_function(f, "reduce_by_key_and_window")
  local len_ms, slide_ms = window_times(self, len, slide, "reduce_by_key_and_window")
  opts = util.options(opts, "reduce_by_key_and_window", WINDOW_REDUCE_OPTIONS)
  local ctx, parent = self.ctx, self
  local fid = ctx:_ship(f, "reduce_by_key_and_window")
  local inverse, filter
  if opts.inverse ~= nil then
    util.check_function(opts.inverse, "reduce_by_key_and_window: inverse")
    inverse = ctx:_ship(opts.inverse, "reduce_by_key_and_window")
  end
  if opts.filter ~= nil then
    util.check_function(opts.filter, "reduce_by_key_and_window: filter")
    filter = ctx:_ship(opts.filter, "reduce_by_key_and_window")
  end
  local n = opts.partitions or ctx.partitions
  if self.event then
    return event_window(self, fid, len_ms, slide_ms, n, "reduce_by_key_and_window", nil, filter)
  end
  if ctx.cluster then -- across processes (dstream.cluster.windows)
    return require("dstream.cluster.windows").reduce_by_key_and_window(self, fid, filter, len_ms,
      slide_ms, gcd(len_ms, slide_ms), n, inverse)
  end
  local state = ctx:_new_state("reduce_by_key_and_window", n)
  local w
  w = stream_mod.new(ctx, { parent }, function(_, time)
    local r = parent:get_rdd(time) or rdd_mod.empty(ctx)
    local emit = at_slide(ctx, time, slide_ms)
    -- The window's value stays on the workers (see ops_window), kept as long as the driver
    -- may read this stream's batches: this one, and those a window over it remembers.
    local op = { kind = "window_reduce", state = state, fn = fid, inverse = inverse,
      filter = filter, len = len_ms, slide = slide_ms, pane = gcd(len_ms, slide_ms),
      zero = ctx.zero_time, emit = emit, keep_from = time - (w.remember_ms or 0) - slide_ms + 1 }
    local results = r:_run_stateful(state, op, n, { kind = "kept_count" }, "reduce_by_key_and_window", fid)
    if emit then
      local out = rdd_mod.state_source(ctx, state, n, time)
      out.known_count = kept_keys(results, n)
      return out
    end
  end, "reduce_by_key_and_window")
  w.slide_ms, w.state_id = slide_ms, state
  ctx:_eager(w) -- every batch goes into a pane, window or not
  return w
end

local function value_of(_, v) return v end
local function to_pair(v) return 0, v end
local function one() return 1 end
local function add(a, b) return a + b end
local function sub(a, b) return a - b end

-- One record per window: f over its records (none for an empty window without inverse).
-- opts: inverse = fn(acc, old) (or the function itself, Spark's positional form).
local INVERSE_OPTION = { inverse = true }
function Stream:reduce_by_window(f, len, slide, opts)
  util.check_function(f, "reduce_by_window")
  window_times(self, len, slide, "reduce_by_window")
  if opts ~= nil and type(opts) ~= "table" then opts = { inverse = opts } end -- Spark's positional invFunc
  opts = util.options(opts, "reduce_by_window", INVERSE_OPTION)
  if opts.partitions then util.raise("reduce_by_window: its windows are one partition; partitions is not an option") end
  if opts.inverse ~= nil then util.check_function(opts.inverse, "reduce_by_window: inverse") end
  return self:map(to_pair)
    :reduce_by_key_and_window(f, len, slide, { inverse = opts.inverse, partitions = 1 })
    :map(value_of)
end

-- The number of records in each window (as Spark: an incremental reduce_by_window).
function Stream:count_by_window(len, slide)
  window_times(self, len, slide, "count_by_window")
  return self:map(one):reduce_by_window(add, len, slide, sub)
end

function Stream:count_by_value_and_window(len, slide, nparts)
  window_times(self, len, slide, "count_by_value_and_window")
  nparts = util.options(nparts, "count_by_value_and_window").partitions
  return self:map(function(v) return v, 1 end)
    :reduce_by_key_and_window(add, len, slide, {
      inverse = sub, partitions = nparts, filter = function(_, n) return n ~= 0 end })
end

-- (key, {values}) per key and window; after event_time(), (key, { start, end, values })
-- per key and event-time window.
function Stream:group_by_key_and_window(len, slide, nparts)
  local len_ms, slide_ms = window_times(self, len, slide, "group_by_key_and_window")
  nparts = util.options(nparts, "group_by_key_and_window").partitions
  if self.event then
    local ctx = self.ctx
    return event_window(self, ctx:_ship(append, "group_by_key_and_window"), len_ms, slide_ms,
      nparts or ctx.partitions, "group_by_key_and_window", {
        create = ctx:_ship(list_of, "group_by_key_and_window"),
        merge = ctx:_ship(merge_lists, "group_by_key_and_window") })
  end
  return self:window(len, slide):group_by_key(nparts)
end

return {}

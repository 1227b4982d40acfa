-- dstream/kafka.lua: Kafka for dstream jobs: the direct stream, the to_kafka sink, the embedded broker.
--
--   ctx:kafka_stream{ brokers =, topics = {...}, group =, start = "earliest" | "latest",
--                     assign = "all" | "group", positions = {...},
--                     max_rate_per_partition =, conf = {...}, with_key =, with_meta =,
--                     decode = fn(value), on_error = "fail" | "skip" | "dead_letter",
--                     dead_letter = { file = path } | { topic = name } }
--   stream:to_kafka{ brokers =, topic =, key = fn, conf = {...}, exactly_once =, timeout = }
--   require("dstream.kafka").mock_cluster{ brokers = 3, topics = { words = 4 } }
--
-- Direct approach (Spark's): a consumer thread in C (ds_kafka_source.c) fills one buffer per Kafka
-- partition; at each batch boundary every assigned partition becomes one input partition, cut
-- at a known offset, and the batch's offset ranges are kept. When the batch's outputs have
-- succeeded ("batch_completed"), the ranges' end offsets are committed to the consumer group,
-- so a restarted job resumes after the last completed batch and lag tools see progress.
--
-- Assignment: by default (assign = "all") the source takes every partition of its topics
-- itself, at positions fixed when it opens (inside ctx:start()): the checkpoint's, else
-- `positions`, else the group's committed offsets (not with a checkpoint directory), else the
-- `start` policy resolved to concrete offsets. No group membership, so neither a start nor a
-- restart after SIGKILL waits for the group coordinator. assign = "group" joins the group
-- (subscribe) for jobs that share topics across processes.
--
-- Records: the message value (a string). With with_key, with_meta or decode, the C side
-- stores a small binary header with each value (topic, partition, offset, timestamp, key,
-- headers: ds_kafka_rec) and a "kafka_record" operator, fused into the workers' pipeline,
-- turns it into (key, value) pairs, tables, or decoded values. This module is also loaded in
-- every worker VM (dstream.worker registers its operator and terminals).
local buffer = require("string.buffer")
local ffi = require("ffi")
local bit = require("bit")
local core = require("dstream.core")
local format = require("dstream.format")

local M = {}

pcall(ffi.cdef, [[
typedef struct ds_kafka_rec {
  int64_t offset;
  int64_t timestamp;
  int32_t partition;
  uint32_t key_len;
  uint32_t nheaders;
  uint16_t topic_len;
  uint8_t flags;
  uint8_t tstype;
} ds_kafka_rec;
]])

pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")

local REC_SIZE = 32
local REC_KEY, REC_VALUE = 1, 2
local rec_ptr = ffi.typeof("const ds_kafka_rec *")
local u8p = ffi.typeof("const uint8_t *")
local u32p = ffi.typeof("const uint32_t *")
local i32p = ffi.typeof("const int32_t *")
local ffi_string, ffi_cast, band, tonumber = ffi.string, ffi.cast, bit.band, tonumber

local function log(level, msg) core.kafka_log(level, msg) end

-- How long a batch re-run after a restart waits for the consumer to fetch its records.
local RERUN_WAIT_MS = 30000

---------------------------------------------------------------------------------------------
-- Option checks (driver)

local function brokers_of(v, who, level)
  if type(v) == "userdata" then -- a mock cluster
    local ok, b = pcall(function() return v:bootstrap() end)
    if ok then return b end
  end
  if type(v) == "table" then v = table.concat(v, ",") end
  if type(v) ~= "string" or v == "" then
    error(who .. ": brokers must be a \"host:port,host:port\" string (or a mock cluster), got "
      .. type(v), level + 1)
  end
  return v
end

local function check_conf(v, who, level)
  if v == nil then return {} end
  if type(v) ~= "table" then error(who .. ": conf must be a table of librdkafka properties", level + 1) end
  local out = {}
  for k, val in pairs(v) do
    local tv = type(val)
    if type(k) ~= "string" or (tv ~= "string" and tv ~= "number" and tv ~= "boolean") then
      error(who .. ": conf entries are name = string | number | boolean (bad entry '"
        .. tostring(k) .. "')", level + 1)
    end
    out[k] = tostring(val)
  end
  return out
end

local function check_known(opts, known, who, level)
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      error(who .. ": unknown option '" .. tostring(k) .. "' (options: " .. table.concat(names, ", ")
        .. ")", level + 1)
    end
  end
end

local function duration_ms(v, who, what, default, level)
  if v == nil then return default end
  local ms, err = require("dstream.util").parse_duration(v)
  if not ms then error(who .. ": " .. what .. ": " .. err, level + 1) end
  return ms
end

local function offsets_sorted(map)
  local out = {}
  for _, o in pairs(map) do out[#out + 1] = { topic = o.topic, partition = o.partition, offset = o.offset } end
  table.sort(out, function(a, b)
    if a.topic ~= b.topic then return a.topic < b.topic end
    return a.partition < b.partition
  end)
  return out
end

local function tp_key(topic, partition) return topic .. "\0" .. partition end

---------------------------------------------------------------------------------------------
-- The direct stream (driver)

local sources_of = setmetatable({}, { __mode = "k" }) -- ctx -> list of stream states

local Source = {}
Source.__index = Source

-- What the context calls: seal(nparts) (nparts is ignored: one partition per Kafka
-- partition), stats(), stop(); positions() for checkpoints.
local function open_source(K)
  local st = K
  local src = core.kafka_source {
    brokers = K.brokers, topics = K.topics, group = K.group, start = K.start, conf = K.conf,
    layout = K.layout, pause_records = K.cap and K.cap * 2 or nil,
    positions = #K.wanted > 0 and K.wanted or nil, assign = K.assign,
    -- With checkpoints, where to resume comes from the checkpoint (with the state it matches),
    -- never from the group's committed offsets, which later batches may have moved on.
    ignore_committed = K.ctx.checkpoint_dir ~= nil,
  }
  st.source = src
  -- Assigned directly, every partition's start is fixed now: position() (a checkpoint written
  -- at start) has them all, "latest" included.
  for _, o in ipairs(src:positions()) do
    local k = tp_key(o.topic, o.partition)
    local had = K.completed[k]
    if not had or had.offset ~= o.offset then K.initial[k] = true end
    K.completed[k] = o
  end
  local handle = {}
  function handle.seal(_, _nparts)
    -- Re-run batches (input.deferred) take their records first: until then, nothing.
    if st.nreruns > 0 then return (src:seal_until({}, 0)) end
    -- A graceful stop's last batch takes everything buffered, whatever the rate limit.
    return src:seal(not st.stopping and st:batch_cap() or 0)
  end
  -- Backpressure (context{ backpressure = true }) sets a rate for the whole source.
  function handle.set_rate(_, rate)
    st.bp_rate = (rate and rate > 0) and rate or nil
    return st.bp_rate or 0
  end
  function handle.stats() return st:stats() end
  function handle.stop() st:stop() end
  function handle.positions() return st:positions() end
  return handle
end

-- Records per partition a batch may take (nil: no limit): max_rate_per_partition, and a
-- backpressure rate shared among the assigned partitions.
function Source:batch_cap()
  local cap = self.cap
  if self.bp_rate then
    local parts = math.max(1, self.source:stats().partitions)
    local bp = math.max(1, math.floor(self.bp_rate * self.ctx.batch_ms / 1000 / parts))
    cap = cap and math.min(cap, bp) or bp
  end
  return cap
end

function Source:stats()
  local t = self.source and not self.source:closed() and self.source:stats() or { pending = 0 }
  if self.rejected then t.rejected = self.rejected.value end
  return t
end

-- The next offset of every partition after the last completed batch (or where its first batch
-- starts, before one completed): where a restarted job resumes (what is committed to the
-- group), and what a checkpoint stores. `marked`: a position no batch of it has completed yet
-- (resolved at start, `positions`, a new partition's start) has start = true, for the check of
-- a checkpoint against the offsets a transactional sink committed.
function Source:positions(marked)
  local out = offsets_sorted(self.completed)
  if marked then
    for _, o in ipairs(out) do
      if self.initial[tp_key(o.topic, o.partition)] then o.start = true end
    end
  end
  return out
end

-- Sets where partitions start (before ctx:start()). `merge` keeps the positions set before for
-- partitions the list lacks (a checkpoint's positions over the `positions` option).
function Source:set_positions(list, level, merge)
  if self.source then error("set_positions: call it before ctx:start()", (level or 2) + 1) end
  if type(list) ~= "table" then error("set_positions: expected a list of {topic, partition, offset}", (level or 2) + 1) end
  local byk = {}
  if merge then
    for _, o in ipairs(self.wanted) do byk[tp_key(o.topic, o.partition)] = o end
  else
    self.completed, self.initial = {}, {}
  end
  for i, o in ipairs(list) do
    if type(o) ~= "table" or type(o.topic) ~= "string" or type(o.partition) ~= "number"
        or type(o.offset) ~= "number" then
      error("set_positions: entry " .. i .. " must be { topic = s, partition = n, offset = n }", (level or 2) + 1)
    end
    local k = tp_key(o.topic, o.partition)
    byk[k] = { topic = o.topic, partition = o.partition, offset = o.offset }
    -- A checkpoint's position came from a completed batch unless it says otherwise; the
    -- positions option's are where the user starts.
    self.initial[k] = (not merge or o.start) and true or nil
  end
  self.wanted = offsets_sorted(byk)
  for _, o in ipairs(self.wanted) do self.completed[tp_key(o.topic, o.partition)] = o end
end

-- Commits the ends of the last completed batch, asynchronously: every partition assigned when
-- it was sealed (the C side skips those no longer assigned). The same offsets are committed
-- again at the end (Source:finish), synchronously: an asynchronous commit may fail or still be
-- in flight when the consumer closes.
function Source:commit()
  local src = self.source
  if not src or src:closed() then return end
  local offsets = self.to_commit
  if not offsets or #offsets == 0 then return end
  local ok, err = src:commit(offsets, true)
  if not ok then log("warn", "kafka_stream " .. self.name .. ": " .. tostring(err)) end
end

local function offsets_text(offsets)
  local list = {}
  for _, o in ipairs(offsets) do list[#list + 1] = string.format("%s[%d] %d", o.topic, o.partition, o.offset) end
  return table.concat(list, ", ")
end

-- How long after the first signal a second one is taken for the same (`timeout` sends one to
-- the process, then one to its process group).
local SECOND_SIGNAL_MS = 250
local cut_short = setmetatable({}, { __mode = "k" }) -- ctx -> a signal ended its Kafka waits

-- The end of the source, once the context has stopped: the last commit (synchronous, 3 s at
-- most) and leaving the group (2 s at most) wait for Kafka, seconds with the brokers gone
-- (issue 15). They run on a thread of the source's while this waits with SIGINT and SIGTERM
-- watched: a signal then (the second of a graceful stop) abandons them, says what was not
-- committed and fails the context, so the process ends now.
function Source:finish()
  local src, name = self.source, "kafka_stream " .. self.name
  local offsets = self.to_commit or {}
  local started, serr = src:finish(offsets)
  if not started then -- no thread: wait here
    log("warn", name .. ": " .. tostring(serr) .. "; the last commit waits on this thread")
    local ok, err = src:commit(offsets, false)
    if not ok then
      log("warn", name .. ": " .. tostring(err))
      log("warn", name .. ": offsets not committed at stop: " .. offsets_text(offsets)
        .. " (the group resumes before them: those records are read again)")
    end
    src:close()
    return
  end
  local ctx = self.ctx
  local function wait(phase)
    if cut_short[ctx] then return "signal" end
    local first = ctx._signalled_at -- the context's first signal, if a signal stopped it
    return src:finish_wait(phase, first and math.max(0, first + SECOND_SIGNAL_MS - core.now_ms()) or 0)
  end
  local how = wait("close")
  local _, committed, cerr = src:finish_state()
  if committed == false and #offsets > 0 then
    log("warn", name .. ": " .. tostring(cerr))
    log("warn", name .. ": offsets not committed at stop: " .. offsets_text(offsets)
      .. " (the group resumes before them: those records are read again)")
  end
  if how == "done" then how = wait("done") end
  if how == "done" then return src:close() end
  -- A signal: nothing more is waited for; the source is left to the process's exit.
  local phase = src:finish_state()
  src:abandon()
  src:close()
  local abandoned = {}
  if #offsets > 0 and committed == nil then -- the commit was still waiting for Kafka
    log("warn", name .. ": offsets not committed at stop: " .. offsets_text(offsets)
      .. " (the group resumes before them: those records are read again)")
  end
  if #offsets > 0 and not committed then
    abandoned[#abandoned + 1] = "the commit of " .. offsets_text(offsets)
  end
  if phase ~= "done" then abandoned[#abandoned + 1] = "leaving consumer group " .. self.group end
  if #abandoned == 0 then return end
  local msg = string.format("%s: stopped by %s before the stop's waits for Kafka ended; abandoned: %s",
    name, ctx._signalled_at and "a second signal" or "a signal", table.concat(abandoned, "; "))
  cut_short[ctx] = true
  -- The context's error (its stop raises it), unless the context failed already.
  if ctx.error then log("warn", msg) else ctx:_fail(msg) end
end
-- The outputs of batch `time` succeeded: its ranges' ends become the positions (before a
-- checkpoint of that batch is written, when the context has checkpoints).
function Source:batch_done(time)
  local ranges = self.ranges[time]
  for t in pairs(self.ranges) do
    if t <= time then self.ranges[t] = nil end
  end
  if not ranges then return end
  self.history[#self.history + 1] = { time = time, ranges = ranges }
  if #self.history > 32 then table.remove(self.history, 1) end
  local offsets = {}
  for _, r in ipairs(ranges) do
    -- A range without records never moves a position back: a batch sealed while re-run
    -- batches were pending took nothing and holds the cut from before them, which those
    -- re-runs (finished first) have moved past. Every partition's position is committed.
    local k = tp_key(r.topic, r.partition)
    local o = self.completed[k]
    if r["until"] >= 0 and (r.count > 0 or not o or r["until"] >= o.offset) then
      o = { topic = r.topic, partition = r.partition, offset = r["until"] }
      self.completed[k] = o
      self.initial[k] = nil
    end
    if r["until"] >= 0 then offsets[#offsets + 1] = o end
  end
  self.to_commit = offsets
end

-- The batch completed ("batch_completed", after any checkpoint of it): commit to the group.
function Source:on_completed(batch)
  self:batch_done(batch.time)
  self:commit()
  if self.rejected then
    local n = self.rejected.value
    if n > self.reported then
      log("warn", string.format("kafka_stream %s: %d record(s) rejected by decode so far%s", self.name, n,
        self.dead_letter_desc or " (skipped)"))
      self.reported = n
    end
  end
end

function Source:stop()
  local src = self.source
  if not src or src:closed() then return end
  self.stopping = true
  -- The context calls stop() when a graceful stop begins (a last batch may still complete and
  -- commit), and again once it has stopped: then commit what completed and leave the group.
  if self.ctx.state == "stopped" then return self:finish() end
  src:stop()
end

function Source:group_metadata()
  if not self.source or self.source:closed() then return nil end
  return self.source:group_metadata()
end

local stream_options = {
  brokers = true, topics = true, topic = true, group = true, start = true,
  max_rate_per_partition = true, conf = true, with_key = true, with_meta = true, decode = true,
  on_error = true, dead_letter = true, positions = true, name = true, assign = true,
}

-- ctx:kafka_stream(opts); `level` blames the user's line.
function M.stream(ctx, opts, level)
  level = level or 2
  local who = "kafka_stream"
  if ctx.state ~= "initialized" then error(who .. ": sources must be created before ctx:start()", level) end
  if type(opts) ~= "table" then error(who .. ": expected a table of options, got " .. type(opts), level) end
  check_known(opts, stream_options, who, level)
  local topics = opts.topics or (opts.topic and { opts.topic })
  if type(topics) ~= "table" or #topics == 0 then
    error(who .. ": topics must be a list of topic names, e.g. topics = { \"words\" }", level)
  end
  for i, t in ipairs(topics) do
    if type(t) ~= "string" or t == "" then error(who .. ": topic " .. i .. " must be a name", level) end
  end
  local start = opts.start or "latest"
  if start ~= "earliest" and start ~= "latest" then
    error(who .. ": start must be \"earliest\" or \"latest\", got " .. tostring(start), level)
  end
  local assign = opts.assign or "all"
  if assign ~= "all" and assign ~= "group" then
    error(who .. ": assign must be \"all\" (this process reads every partition) or \"group\" "
      .. "(the consumer group shares them out), got " .. tostring(assign), level)
  end
  local rate = opts.max_rate_per_partition
  if rate ~= nil and (type(rate) ~= "number" or rate <= 0) then
    error(who .. ": max_rate_per_partition must be a positive number of records per second", level)
  end
  if opts.with_key and opts.with_meta then
    error(who .. ": with_key and with_meta exclude each other (with_meta tables have the key)", level)
  end
  if opts.decode ~= nil and type(opts.decode) ~= "function" then
    error(who .. ": decode must be a function(value) returning the decoded value", level)
  end
  local on_error = opts.on_error or (opts.dead_letter and "dead_letter" or "fail")
  if on_error ~= "fail" and on_error ~= "skip" and on_error ~= "dead_letter" then
    error(who .. ": on_error must be \"fail\", \"skip\" or \"dead_letter\", got " .. tostring(on_error), level)
  end
  local conf = check_conf(opts.conf, who, level)
  local dead_letter
  if on_error == "dead_letter" then
    local dl = opts.dead_letter
    if type(dl) ~= "table" or (type(dl.file) ~= "string") == (type(dl.topic) ~= "string") then
      error(who .. ": on_error = \"dead_letter\" needs dead_letter = { file = path } or { topic = name }", level)
    end
    if dl.file then
      dead_letter = { file = dl.file }
    else
      dead_letter = { topic = dl.topic, brokers = dl.brokers and brokers_of(dl.brokers, who, level) or nil,
        conf = check_conf(dl.conf, who, level) }
    end
  end

  local K = setmetatable({
    ctx = ctx, brokers = brokers_of(opts.brokers, who, level), topics = topics,
    group = opts.group or ("dstream-" .. ctx.name), start = start, conf = conf, assign = assign,
    name = opts.name or table.concat(topics, ","),
    cap = rate and math.max(1, math.floor(rate * ctx.batch_ms / 1000)) or nil,
    ranges = {}, history = {}, completed = {}, initial = {}, wanted = {}, reported = 0,
    reruns = {}, nreruns = 0, -- batches of the batch log to cut again (input.replay)
  }, Source)
  if type(K.group) ~= "string" or K.group == "" then error(who .. ": group must be a name", level) end
  if dead_letter and dead_letter.topic and not dead_letter.brokers then dead_letter.brokers = K.brokers end
  if dead_letter then
    K.dead_letter_desc = dead_letter.file and (" (dead letters in " .. dead_letter.file .. ")")
      or (" (dead letters in topic " .. dead_letter.topic .. ")")
  end
  if opts.positions then K:set_positions(opts.positions, level) end

  local mode = opts.with_meta and "meta" or opts.with_key and "key" or "value"
  local full = mode ~= "value" or opts.decode ~= nil
  K.layout = full and "full" or "value"
  local op
  if full then
    -- The records decode rejects: an accumulator, added to per task on the workers and
    -- merged on the driver when the task succeeded (a retried task counts once).
    K.rejected = ctx:accumulator(0)
    op = {
      kind = "kafka_record", mode = mode, on_error = on_error, dead_letter = dead_letter,
      rejected = ctx:_ship(K.rejected, who .. " rejected records", level + 1),
      decode = opts.decode and ctx:_ship(opts.decode, who .. " decode", level + 1) or nil,
    }
  end

  local input = ctx:_receiver_stream("kafka_stream " .. K.name, function() return open_source(K) end)
  -- Keep each batch's offset ranges by batch time: committed when the batch completes.
  local function took(time, parts)
    K.ranges[time] = parts and parts.offset_ranges or nil
    -- A partition new since the last completed batch (found by a metadata refresh, or
    -- assigned by the group) has its position where its first batch starts.
    for _, r in ipairs(K.ranges[time] or {}) do
      local k = tp_key(r.topic, r.partition)
      if r.from >= 0 and not K.completed[k] then
        K.completed[k] = { topic = r.topic, partition = r.partition, offset = r.from }
        K.initial[k] = true
      end
    end
  end
  local raw_seal = input.seal
  input.seal = function(s, time)
    raw_seal(s, time)
    took(time, s.sealed[time])
  end
  -- The batch log (dstream.batch_log): where the batch cut each partition. A batch re-run
  -- after a restart is cut at the same offsets, so it has the same records and keeps its
  -- time; the consumer starts at the checkpoint's positions, where the first re-run batch
  -- begins, and live batches take nothing until the re-runs have taken theirs.
  input.log_entry = function(_, time)
    local cut = {}
    for _, r in ipairs(K.ranges[time] or {}) do
      if r.count > 0 then cut[#cut + 1] = { topic = r.topic, partition = r.partition, offset = r["until"] } end
    end
    return cut
  end
  input.replay = function(_, time, cut)
    K.reruns[time] = cut
    K.nreruns = K.nreruns + 1
  end
  -- Called when a re-run batch is computed (it runs after the source opened): waits for the
  -- consumer to fetch that far, then cuts.
  input.deferred = function(time)
    local cut = K.reruns[time]
    if not cut then return nil end
    K.reruns[time] = nil
    K.nreruns = K.nreruns - 1
    local parts, short = K.source:seal_until(cut, RERUN_WAIT_MS)
    if short > 0 then
      log("warn", string.format("kafka_stream %s: batch %d ms is re-run with fewer records than"
        .. " its first run: %d partition(s) could not be read up to its cut within %d s (deleted"
        .. " by retention?)", K.name, time, short, RERUN_WAIT_MS / 1000))
    end
    took(time, parts)
    return parts
  end
  -- The explicit position API of this source, also in the shape checkpoints use:
  -- position() is saved with a checkpoint, restore(pos) before the source opens.
  function input.positions() return K:positions() end
  function input.set_positions(_, list) return K:set_positions(list, 2) end
  function input.position() return K:positions(true) end
  function input.restore(_, pos) K:set_positions(pos, 2, true) end
  function input.on_batch_done(_, time)
    -- A re-run batch that no output computed still takes its records (they were its own).
    if K.reruns[time] then input.deferred(time) end
    K:batch_done(time)
  end
  input.key = "kafka:" .. K.group .. ":" .. table.concat(topics, ",")
  K.key = input.key
  input.kafka = K

  local out = input
  if op then
    out = input:_derive("kafka_stream", function(r) return r:_narrow(op) end)
  end
  out.kafka = K
  function out.positions() return K:positions() end
  function out.set_positions(_, list) return K:set_positions(list, 2) end
  function out.offset_ranges(_, time) return M.ranges_at(K, time) end
  function out.kafka_stats() return K:stats() end

  local list = sources_of[ctx]
  if not list then
    list = {}
    sources_of[ctx] = list
  end
  list[#list + 1] = K
  ctx:_listen("batch_completed", function(batch) K:on_completed(batch) end)
  return out
end

-- The offset ranges of the batch at `time` (kept until 32 batches after it completed).
function M.ranges_at(K, time)
  if K.ranges[time] then return K.ranges[time] end
  for _, h in ipairs(K.history) do
    if h.time == time then return h.ranges end
  end
  return nil
end

-- The offset ranges of the Kafka input of a batch (rdd), like Spark's HasOffsetRanges:
-- { { topic, partition, from, until, count }, ... } for every Kafka source in its lineage.
function M.offset_ranges(rdd)
  local out, seen, todo = {}, {}, { rdd }
  while #todo > 0 do
    local r = table.remove(todo)
    if type(r) == "table" and not seen[r] then
      seen[r] = true
      if r.parts and r.parts.offset_ranges then
        for _, range in ipairs(r.parts.offset_ranges) do out[#out + 1] = range end
      end
      if r.parent then todo[#todo + 1] = r.parent end
      for _, p in ipairs(r.parents or {}) do todo[#todo + 1] = p end
    end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- The sink (driver)

local sink_options = {
  brokers = true, topic = true, key = true, conf = true, exactly_once = true,
  transactional_id = true, timeout = true,
}

-- The input offsets of batch `time` for each Kafka source of ctx, with its group metadata.
local function batch_offsets(ctx, time)
  local out = {}
  for _, K in ipairs(sources_of[ctx] or {}) do
    local ranges = K.ranges[time]
    if ranges and #ranges > 0 then
      local offsets = {}
      for _, r in ipairs(ranges) do
        if r["until"] >= 0 then offsets[#offsets + 1] = { topic = r.topic, partition = r.partition, offset = r["until"] } end
      end
      local gm, err = K:group_metadata()
      if #offsets > 0 then
        if not gm then error("to_kafka: cannot read the consumer group metadata: " .. tostring(err), 0) end
        out[#out + 1] = { group_metadata = gm, offsets = offsets }
      end
    end
  end
  return out
end

-- Runs one task per plan of rdd `r` on worker 0 (where the transactional producer lives).
local function run_on_worker0(r, plans, term, stage)
  local specs = r:_tasks(plans, function() return term end, stage)
  for _, spec in ipairs(specs) do spec.affinity = 0 end
  return r.ctx:_scheduler():run_tasks(specs)
end

-- The offsets group K.group committed for the partitions of `pos` (a checkpoint's positions):
-- topic -> { [partition] = offset }. Retries while the broker may still be starting.
local function committed_offsets(K, pos)
  local by_topic = {}
  for _, o in ipairs(pos) do
    by_topic[o.topic] = by_topic[o.topic] or {}
    table.insert(by_topic[o.topic], { topic = o.topic, partition = o.partition })
  end
  local out = {}
  for topic, parts in pairs(by_topic) do
    local res, err
    for _ = 1, 10 do
      res, err = core.kafka_committed(K.brokers, K.group, parts, { conf = K.conf })
      if res then break end
      ffi.C.poll(nil, 0, 1000)
    end
    if not res then
      error("kafka_stream " .. K.name .. ": cannot read the offsets group " .. K.group
        .. " committed, to choose the checkpoint to restart from: " .. tostring(err), 0)
    end
    out[topic] = {}
    for _, o in ipairs(res) do out[topic][o.partition] = o.offset end
  end
  return out
end

-- The checkpoints a job may restart from, with a to_kafka{ exactly_once } sink: a checkpoint
-- whose Kafka positions are past what the group has committed holds a batch whose transaction
-- was never committed (the job died between the two); restarting there would lose its
-- output, so the one before it is used and the batch runs again.
local function positions_committed(ctx)
  local committed = {} -- group -> topic -> { [partition] = offset }, read once
  return function(doc)
    for _, K in ipairs(sources_of[ctx] or {}) do
      local pos = doc.sources[K.key] or {}
      local byg = committed[K.group]
      if not byg and #pos > 0 then
        byg = committed_offsets(K, pos)
        committed[K.group] = byg
      end
      for _, o in ipairs(pos) do
        local c = byg[o.topic] and byg[o.topic][o.partition] or -1
        -- A position no batch completed (start = true) has no transaction to agree with.
        if o.offset > c and not o.start then
          return false, string.format("its position in %s [%d] is offset %d, but to_kafka (exactly once) "
            .. "committed only up to %d (the transaction of its last batch was not committed)",
            o.topic, o.partition, o.offset, c)
        elseif o.offset < c then
          log("warn", string.format("kafka_stream %s: the checkpoint is at offset %d of %s [%d], "
            .. "but group %s committed %d: the records between are read and written again",
            K.name, o.offset, o.topic, o.partition, K.group, c))
        end
      end
    end
    return true
  end
end

-- The second phase of to_kafka{ exactly_once } with checkpoints: the batch's transaction
-- (records and input offsets, prepared by its output) is committed once the checkpoint of the
-- batch is written. A failed commit fails the batch (and the job): the restart goes back to
-- the checkpoint before it (positions_committed).
local function two_phase_commit(ctx, term, prepared)
  local rdd_mod = require("dstream.rdd")
  local commit_term = {
    kind = "kafka_txn_commit", brokers = term.brokers, conf = term.conf,
    transactional_id = term.transactional_id, timeout_ms = term.timeout_ms,
  }
  local first = not ctx._kafka_txn_checked
  ctx._kafka_txn_checked = true
  ctx:_two_phase_output(function(time)
    if not prepared[time] then return end
    prepared[time] = nil
    local t = {}
    for k, v in pairs(commit_term) do t[k] = v end
    t.batch_time = time
    local r = rdd_mod.empty(ctx, 1)
    run_on_worker0(r, { { ops = {}, slices = {} } }, t, "to_kafka (commit)")
  end, first and positions_committed(ctx) or nil)
end

-- stream:to_kafka(opts); `level` blames the user's line.
function M.sink(stream, opts, level)
  level = level or 2
  local who = "to_kafka"
  if type(opts) ~= "table" then error(who .. ": expected a table of options, got " .. type(opts), level) end
  check_known(opts, sink_options, who, level)
  local ctx = stream.ctx
  if type(opts.topic) ~= "string" or opts.topic == "" then error(who .. ": topic must be a topic name", level) end
  if opts.key ~= nil and type(opts.key) ~= "function" then
    error(who .. ": key must be a function(record) returning the message key", level)
  end
  local conf = check_conf(opts.conf, who, level)
  local timeout_ms = duration_ms(opts.timeout, who, "timeout", 30000, level)
  if not conf["message.timeout.ms"] then conf["message.timeout.ms"] = string.format("%d", timeout_ms) end
  local term = {
    kind = "kafka_sink", brokers = brokers_of(opts.brokers, who, level), topic = opts.topic,
    conf = conf, timeout_ms = timeout_ms + 5000,
    key = opts.key and ctx:_ship(opts.key, who .. " key", level + 1) or nil,
  }
  -- Each task reports how many messages it delivered (shown with --log-level debug).
  local function count(results, time)
    local n = 0
    for _, outputs in ipairs(results) do
      for _, o in ipairs(outputs) do
        if o[1] == 0 then n = n + buffer.decode(o[2]:bytes())[1][1] end
      end
    end
    log("debug", string.format("to_kafka %s: batch %d ms: %d messages delivered", opts.topic, time, n))
  end
  if not opts.exactly_once then
    ctx:_add_output(stream, function(r, time)
      count(r:_run(function() return term end, "to_kafka"), time)
    end)
  else
    term.kind = "kafka_txn"
    term.transactional_id = opts.transactional_id or ("dstream-" .. ctx.name .. "-" .. opts.topic)
    if type(term.transactional_id) ~= "string" then error(who .. ": transactional_id must be a string", level) end
    -- With checkpoints, the transaction is committed in a second phase, once the checkpoint
    -- of its batch is on disk (every batch is checkpointed): see two_phase_commit.
    local prepared = {}
    if ctx.checkpoint_dir then
      term.defer_commit = true
      ctx.checkpoint_ms = ctx.batch_ms
      two_phase_commit(ctx, term, prepared)
    end
    ctx:_add_output(stream, function(r, time)
      local t = {}
      for k, v in pairs(term) do t[k] = v end
      t.inputs = batch_offsets(ctx, time)
      t.batch_time = time
      -- One task, always on worker 0 (one transactional.id, one producer), over every record.
      local one = r:_shuffle({ kind = "partition", who = "to_kafka" }, nil, 1)
      count(run_on_worker0(one, one:_plans(), t, "to_kafka (transaction)"), time)
      if term.defer_commit then prepared[time] = true end
    end)
  end
  return stream
end

---------------------------------------------------------------------------------------------
-- Embedded broker and small clients (driver)

-- mock_cluster{ brokers = n, topics = { name = partitions } }: a Kafka cluster on 127.0.0.1
-- inside this process, with :bootstrap(), :broker_down(id), :broker_up(id),
-- :create_topic(name, partitions), :topic_error(name, code) (code 3: clients see no such topic;
-- 0: none again), :close().
function M.mock_cluster(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("mock_cluster: expected a table of options", 2) end
  local m = core.kafka_mock(opts.brokers or 1)
  local names = {}
  for name in pairs(opts.topics or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do m:create_topic(name, opts.topics[name]) end
  return m
end

-- producer{ brokers =, conf = {}, transactional_id = } -> a producer with
-- :send(topic, value [, key [, partition [, headers]]]), :flush([timeout_ms]), :close([ms]).
function M.producer(opts)
  if type(opts) ~= "table" then error("producer: expected a table of options", 2) end
  local p, err = core.kafka_producer {
    brokers = brokers_of(opts.brokers, "producer", 2), conf = check_conf(opts.conf, "producer", 2),
    transactional_id = opts.transactional_id, timeout_ms = opts.timeout_ms,
  }
  if not p then error("producer: " .. err, 2) end
  return p
end

-- committed{ brokers =, group =, topic = } -> { [partition] = next offset (-1: none) }
function M.committed(opts)
  if type(opts) ~= "table" then error("committed: expected a table of options", 2) end
  local brokers = brokers_of(opts.brokers, "committed", 2)
  local holder = { conf = check_conf(opts.conf, "committed", 2) }
  local n, err = core.kafka_partitions(brokers, opts.topic, holder)
  if not n then return nil, err end
  local parts = {}
  for p = 0, n - 1 do parts[p + 1] = { topic = opts.topic, partition = p } end
  local res, cerr = core.kafka_committed(brokers, opts.group, parts, holder)
  if not res then return nil, cerr end
  local out = {}
  for _, o in ipairs(res) do out[o.partition] = o.offset end
  return out
end

---------------------------------------------------------------------------------------------
-- Worker side: the record operator and the sink terminals

-- Parses a FULL-layout record (ds_kafka_rec and what follows).
local function parse(raw, want_headers)
  local p = ffi_cast(u8p, raw)
  local h = ffi_cast(rec_ptr, p)
  local pos = REC_SIZE
  local tlen = h.topic_len
  local topic = ffi_string(p + pos, tlen)
  pos = pos + tlen
  local klen = h.key_len
  local flags = h.flags
  local key
  if band(flags, REC_KEY) ~= 0 then key = ffi_string(p + pos, klen) end
  pos = pos + klen
  local nh = h.nheaders
  local headers
  if want_headers then headers = {} end
  for i = 1, nh do
    local nl = ffi_cast(u32p, p + pos)[0]
    local vl = ffi_cast(i32p, p + pos + 4)[0]
    if headers then
      headers[i] = { key = ffi_string(p + pos + 8, nl), value = vl >= 0 and ffi_string(p + pos + 8 + nl, vl) or nil }
    end
    pos = pos + 8 + nl + (vl > 0 and vl or 0)
  end
  local value
  if band(flags, REC_VALUE) ~= 0 then value = ffi_string(p + pos, #raw - pos) end
  local ts = tonumber(h.timestamp)
  return topic, tonumber(h.partition), tonumber(h.offset), key, value, ts >= 0 and ts or nil,
    headers, h.tstype
end

-- Whether s is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF):
-- only then can a JSON string hold its bytes as they are.
local function valid_utf8(s)
  local i, n, byte = 1, #s, string.byte
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    else
      local len, min
      if c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
      elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
      elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
      else return false end
      if i + len - 1 > n then return false end
      local cp = c % (2 ^ (7 - len))
      for j = i + 1, i + len - 1 do
        local d = byte(s, j)
        if d < 0x80 or d > 0xBF then return false end
        cp = cp * 64 + (d - 0x80)
      end
      if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return false end
      i = i + len
    end
  end
  return true
end

-- A JSON string. Text that is not valid UTF-8 (an error message quoting binary) has its bytes
-- from 0x80 written as \u00XX, so the line stays valid JSON.
local function json_string(s)
  s = tostring(s)
  local pattern = valid_utf8(s) and '[%c"\\]' or '[%c"\\\128-\255]'
  return '"' .. s:gsub(pattern, function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" elseif c == "\t" then return "\\t" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out, byte, sub = {}, string.byte, string.sub
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1, c2 = math.floor(n / 262144) % 64, math.floor(n / 4096) % 64
    local c3, c4 = math.floor(n / 64) % 64, n % 64
    out[#out + 1] = sub(b64chars, c1 + 1, c1 + 1) .. sub(b64chars, c2 + 1, c2 + 1)
      .. (b and sub(b64chars, c3 + 1, c3 + 1) or "=") .. (c and sub(b64chars, c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

-- A key or value of a dead-letter line: '"key":"text"' when its bytes are UTF-8 text (JSON
-- holds them exactly), else '"key_base64":"..."', so every line parses and every byte comes
-- back; '"key":null' when the message has none.
local function json_bytes_field(name, s)
  if s == nil then return '"' .. name .. '":null' end
  if valid_utf8(s) then return '"' .. name .. '":' .. json_string(s) end
  return '"' .. name .. '_base64":"' .. base64(s) .. '"'
end

-- Message bytes of a record value: strings as they are, numbers and tables as text (JSON).
local function message_bytes(v)
  if v == nil or type(v) == "string" then return v end
  return format.value(v)
end

local producers = {} -- this VM's producers, by configuration

local function conf_key(conf)
  local keys = {}
  for k, v in pairs(conf or {}) do keys[#keys + 1] = k .. "=" .. v end
  table.sort(keys)
  return table.concat(keys, "\1")
end

-- A producer of this worker VM for the spec's brokers/conf/transactional id, made on first use.
local function producer_for(spec, who)
  local key = spec.brokers .. "\0" .. (spec.transactional_id or "") .. "\0" .. conf_key(spec.conf)
  local entry = producers[key]
  if entry and entry.p:fatal() then
    entry.p:close()
    producers[key], entry = nil, nil
  end
  if not entry then
    local p, err = core.kafka_producer {
      brokers = spec.brokers, conf = spec.conf, transactional_id = spec.transactional_id,
      timeout_ms = spec.timeout_ms,
    }
    if not p then error(who .. ": " .. tostring(err), 0) end
    entry = { p = p }
    producers[key] = entry
  end
  return entry
end

local function dead_letter(spec, topic, partition, offset, timestamp, key, value, err)
  local dl = spec.dead_letter
  if dl.file then
    local line = string.format('{"topic":%s,"partition":%d,"offset":%d,"timestamp":%s,%s,%s,"error":%s}\n',
      json_string(topic), partition, offset, timestamp and string.format("%d", timestamp) or "null",
      json_bytes_field("key", key), json_bytes_field("value", value), json_string(err))
    local ok, werr = core.kafka_append(dl.file, line)
    if not ok then error("kafka_stream dead letters: " .. werr, 0) end
  else
    local p = producer_for(dl, "kafka_stream dead letters").p
    p:mark()
    local ok, serr = p:send(dl.topic, value, key, nil, {
      { "dstream.error", err }, { "dstream.topic", topic },
      { "dstream.partition", tostring(partition) }, { "dstream.offset", string.format("%d", offset) },
    })
    if ok then ok, serr = p:flush() end
    if not ok then error("kafka_stream dead letters: " .. tostring(serr), 0) end
  end
end

local function with_traceback(e)
  return debug.traceback(tostring(e), 2)
end

-- Registers the worker-side operator and terminals into dstream.worker's tables (W).
function M.register_worker(W)
  local operators, terminals, shipped, emit = W.operators, W.terminals, W.shipped, W.emit

  -- A failing task's input record, quoted from its frame: where it came from, its key and value.
  W.record_text.kafka_record = function(_, raw)
    if type(raw) ~= "string" then return nil end
    local topic, partition, offset, key, value = parse(raw, false)
    return string.format("record kafka %s [%d] offset %d, key %s, value %s", topic, partition,
      offset, key == nil and "null" or format.brief(key, nil, 80),
      value == nil and "null" or format.brief(value, nil, 200))
  end

  -- A FULL-layout record to a value, a (key, value) pair or a table; decode and dead letters.
  function operators.kafka_record(spec, nxt, fin)
    local mode, policy = spec.mode, spec.on_error or "fail"
    local rejected = spec.rejected and shipped(spec.rejected)
    local decode = spec.decode and shipped(spec.decode)
    local meta = mode == "meta"
    return function(raw)
      local topic, partition, offset, key, value, ts, headers, tstype = parse(raw, meta)
      if decode then
        local ok, v, err = xpcall(decode, with_traceback, value)
        if not ok or v == nil then
          local msg = ok and tostring(err or "decode returned nil") or tostring(v)
          if policy == "fail" then
            error(string.format("kafka_stream decode rejected %s [%d] offset %d: %s", topic, partition,
              offset, msg), 0)
          end
          rejected:add(1)
          if policy == "dead_letter" then
            dead_letter(spec, topic, partition, offset, ts, key, value, (msg:gsub("\n.*", "")))
          end
          return
        end
        value = v
      end
      if mode == "value" then
        return nxt(value)
      elseif mode == "key" then
        if key == nil then key = false end
        if value == nil then value = false end
        return nxt(key, value)
      end
      return nxt({
        topic = topic, partition = partition, offset = offset, timestamp = ts,
        timestamp_type = tstype == 1 and "create" or tstype == 2 and "log_append" or nil,
        key = key, value = value, headers = headers,
      })
    end, fin
  end

  local function sender(spec, p)
    local keyf = spec.key and shipped(spec.key)
    local topic = spec.topic
    local n = 0
    local function push(a, b)
      local k, v
      if keyf then k = keyf(a, b) elseif b ~= nil then k = a end
      if b ~= nil then v = b else v = a end
      local ok, err = p:send(topic, message_bytes(v), message_bytes(k))
      if not ok then error("to_kafka: " .. err, 0) end
      n = n + 1
    end
    return push, function() return n end
  end

  -- to_kafka: produce every record of the task, then wait for the delivery reports: the task
  -- succeeds only if every message was delivered (else it fails and is retried).
  function terminals.kafka_sink(task, spec)
    local p = producer_for(spec, "to_kafka").p
    p:mark()
    local push, sent = sender(spec, p)
    return push, function()
      local ok, err = p:flush(spec.timeout_ms)
      if not ok then error("to_kafka: " .. tostring(err), 0) end
      emit(task, 0, 1, false, { sent() })
    end
  end

  -- to_kafka{ exactly_once = true }: one transaction per batch holding every record and the
  -- batch's input offsets (send_offsets_to_transaction).
  function terminals.kafka_txn(task, spec)
    local entry = producer_for(spec, "to_kafka")
    local p = entry.p
    -- On any failure the transaction is aborted (an abort that finds none is harmless) and the
    -- task fails, to be retried as a new transaction. A fatal error (fenced ...) makes
    -- producer_for replace the producer on the next attempt.
    local function check(ok, err)
      if ok then return end
      if entry.in_txn then p:abort() end
      entry.in_txn = false
      error("to_kafka (exactly once): " .. tostring(err), 0)
    end
    if entry.in_txn then -- an earlier attempt failed half-way (in the user's key function ...)
      p:abort()
      entry.in_txn = false
    end
    p:mark()
    check(p:begin())
    entry.in_txn = true
    local push, sent = sender(spec, p)
    return push, function()
      check(p:flush(spec.timeout_ms))
      for _, input in ipairs(spec.inputs or {}) do
        check(p:send_offsets(input.offsets, input.group_metadata))
      end
      if spec.defer_commit then -- committed by a kafka_txn_commit task after the checkpoint
        entry.prepared = spec.batch_time
        return emit(task, 0, 1, false, { sent() })
      end
      local ok, err = p:commit() -- aborts by itself when the commit fails
      entry.in_txn = false
      check(ok, err)
      emit(task, 0, 1, false, { sent() })
    end
  end

  -- The second phase: commits the transaction the batch's kafka_txn task left open.
  function terminals.kafka_txn_commit(task, spec)
    return function()
      error("to_kafka (commit): a commit task takes no records", 0)
    end, function()
      local entry = producer_for(spec, "to_kafka")
      if not entry.in_txn or entry.prepared ~= spec.batch_time then
        error(string.format("to_kafka (exactly once): the transaction of batch %d ms is not open on "
          .. "this worker any more (an earlier commit attempt failed and aborted it)", spec.batch_time), 0)
      end
      local ok, err = entry.p:commit()
      entry.in_txn, entry.prepared = false, nil
      if not ok then error("to_kafka (exactly once): commit of batch " .. string.format("%d", spec.batch_time)
        .. " ms failed: " .. tostring(err), 0) end
      emit(task, 0, 1, false, { 0 })
    end
  end
end

return M

-- dstream/sources/kafka.lua: ctx:kafka_stream, Kafka's direct stream (driver side).
--
--   ctx:kafka_stream{ brokers =, topics = {...}, group =, start = "earliest" | "latest",
--                     assign = "all" | "group", positions = {...},
--                     max_rate_per_partition =, conf = {...}, with_key =, with_meta =,
--                     decode = fn(value), on_error = "fail" | "skip" | "dead_letter",
--                     dead_letter = { file = path } | { topic = name } }
--
-- Direct approach (Spark's): a consumer thread in C (ds_kafka_source.c) fills one buffer per
-- Kafka partition; at each batch boundary every assigned partition becomes one input partition,
-- cut at a known offset, and the batch's offset ranges are kept. When the batch's outputs have
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
-- Cluster mode (context{ cluster = "APP" }, issue 19's first slice): every process runs the
-- same script and each kafka_stream joins consumer group APP (assign = "group") with the
-- cooperative-sticky assignor, so a join or a leave moves only the partitions that must move.
-- Positions are the committed offsets: after each batch to group APP.offsets, which no process
-- joins and no rebalance refuses (ds_kafka_positions.c), and synchronously to both groups when
-- a partition is revoked or lost, once the batches holding its records completed (revoke_wait
-- in ds_kafka_source.c); a checkpoint's positions and the batch log's cuts are not used, since
-- another process may have moved a partition on since.
--
-- Records: the message value (a string). With with_key, with_meta or decode, the C side
-- stores a small binary header with each value (topic, partition, offset, timestamp, key,
-- headers: ds_kafka_rec) and the "kafka_record" operator (dstream.worker.ops.kafka), fused into
-- the workers' pipeline, turns it into (key, value) pairs, tables, or decoded values.
--
-- The input implements the Source contract (dstream.sources): a receiver whose on_sealed keeps
-- each batch's offset ranges, with log_entry/replay/deferred for the batch log, position/
-- restore for checkpoints and on_batch_done.
local ffi = require("ffi")
local core = require("dstream.core")
local kafka = require("dstream.kafka")
local assignment = require("dstream.sources.kafka_assignment")
local sources = require("dstream.sources")
local util = require("dstream.util")

pcall(ffi.cdef, "int getpid(void);")

local M = {}

local log = kafka.log

-- How long a batch re-run after a restart waits for the consumer to fetch its records.
local RERUN_WAIT_MS = 30000

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
-- The stream state

local sources_of = setmetatable({}, { __mode = "k" }) -- ctx -> list of stream states

-- The Kafka streams of ctx (their states: ranges by batch time, group, positions), for the
-- sink's transactions and its checkpoint check.
function M.of_context(ctx) return sources_of[ctx] or {} end

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
    -- never from the group's committed offsets, which later batches may have moved on. Not in
    -- cluster mode: there the group's offsets are the only positions (no keyed state).
    ignore_committed = K.ctx.checkpoint_dir ~= nil and not K.cluster,
    -- Cluster mode: the positions are committed to group APP.offsets too, which no rebalance
    -- refuses (ds_kafka_positions.c), and a partition that moves starts at the later of both.
    positions_group = K.cluster and (K.group .. ".offsets") or nil,
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
  -- Assigned by the group: a long stretch without partitions is told (kafka_assignment).
  local watch = K.assign == "group" and assignment.watch { name = K.name, group = K.group, conf = K.conf }
  local handle = {}
  function handle.seal(_, _nparts)
    if watch and not st.stopping then
      local g = src:group()
      watch:check(#g.assigned, g.member_id, g.rebalances)
    end
    -- Re-run batches (input.deferred) take their records first: until then, nothing.
    if st.nreruns > 0 then return (src:seal_until({}, 0)) end
    -- A batch that reads a killed process's plan again holds nothing else (see replaying).
    if st:replaying_elsewhere() then return (src:seal_until({}, 0)) end
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

-- Cluster mode: whether the batch being sealed (the context's time) reads a plan of another
-- Kafka input of the context again (ds_kafka_source_seal takes a plan's ranges alone within a
-- source; so that a shuffle over several kafka_streams before the state mixes them with
-- nothing new, the others take nothing in that batch either). Asked of every input once per
-- batch, by the first that seals.
local replay_rounds = setmetatable({}, { __mode = "k" }) -- ctx -> { time, due = { [K] = true } }

function Source:replaying_elsewhere()
  if not self.cluster or self.input.internal then return false end
  local ctx = self.ctx
  local round = replay_rounds[ctx]
  if not round or round.time ~= ctx.time then
    round = { time = ctx.time, due = {}, any = false }
    for _, K in ipairs(M.of_context(ctx)) do
      if K.cluster and not K.input.internal and K.source and not K.source:closed() and K.source:replay_due() then
        round.due[K], round.any = true, true
      end
    end
    replay_rounds[ctx] = round
  end
  return round.any and not round.due[self]
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
  local live = self.source and not self.source:closed()
  local t = live and self.source:stats() or { pending = 0 }
  t.rejected = self.rejected and self.rejected.value or 0 -- (no decode: none)
  -- Group assignment: which member this process is and what the group gave it.
  if live and self.assign == "group" then
    local g = self.source:group()
    t.group, t.member_id, t.rebalances, t.assigned = self.group, g.member_id, g.rebalances, g.assigned
  end
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
function Source:set_positions(list, merge)
  if self.source then util.raise("set_positions: call it before ctx:start()") end
  if type(list) ~= "table" then util.raise("set_positions: expected a list of {topic, partition, offset}") end
  local byk = {}
  if merge then
    for _, o in ipairs(self.wanted) do byk[tp_key(o.topic, o.partition)] = o end
  else
    self.completed, self.initial = {}, {}
  end
  for i, o in ipairs(list) do
    if type(o) ~= "table" or type(o.topic) ~= "string" or type(o.partition) ~= "number"
        or type(o.offset) ~= "number" then
      util.raise("set_positions: entry " .. i .. " must be { topic = s, partition = n, offset = n }")
    end
    -- The user's positions (a checkpoint's are dstream's own): a topic the stream does not
    -- read, or an offset that is no offset, would be kept in positions() and checkpoints for
    -- ever without starting anything.
    if not merge then
      local reads = false
      for _, t in ipairs(self.topics) do reads = reads or t == o.topic end
      if not reads then
        util.raise("set_positions: entry " .. i .. " names topic " .. o.topic .. ", which this stream does not read ("
          .. table.concat(self.topics, ", ") .. ")")
      end
      if o.partition < 0 or o.offset < 0 or o.partition % 1 ~= 0 or o.offset % 1 ~= 0 then
        util.raise("set_positions: entry " .. i .. ": partition and offset must be whole numbers of at least 0"
          .. " (the log's ends are start = \"earliest\" or \"latest\")")
      end
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

local cut_short = setmetatable({}, { __mode = "k" }) -- ctx -> a signal ended its Kafka waits

-- Starts the end of the source (its last commit, then leaving the group) on the source's
-- thread, once: true, or nil and why when no thread could be made.
function Source:begin_finish()
  if self.finish_offsets == nil then
    self.finish_offsets = self.to_commit or {}
    self.finish_started, self.finish_err = self.source:finish(self.finish_offsets)
  end
  return self.finish_started, self.finish_err
end

-- The end of the source, once the context has stopped: the last commit (synchronous, 3 s at
-- most) and leaving the group (2 s at most) wait for Kafka, seconds with the brokers gone
-- (issue 15). They run on a thread of the source's while this waits with SIGINT and SIGTERM
-- watched: a signal then (the second of a graceful stop) abandons them, says what was not
-- committed and fails the context, so the process ends now.
function Source:finish()
  local src, name = self.source, "kafka_stream " .. self.name
  local started, serr = self:begin_finish()
  local offsets = self.finish_offsets
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
    return src:finish_wait(phase, first and math.max(0, first + require("dstream.context").SECOND_SIGNAL_MS - core.now_ms()) or 0)
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
  -- Every Kafka source of the context commits before the first leaves: in cluster mode they
  -- share a group, a leave starts a rebalance, and the embedded broker refuses the others'
  -- commits during it ("illegal generation"), so a new start read the last batches again.
  if self.ctx.state == "stopped" then
    if self.cluster then
      local all = M.of_context(self.ctx)
      for _, K in ipairs(all) do K:commit_before_leaving() end
      -- Then they all leave at once: the first leave starts a rebalance, and the embedded
      -- broker answers a leave sent during a rebalance only at its end (~2 s), so one after
      -- another each consumer's close waited for the rebalance the previous one began (at
      -- most LEAVE_ANSWER_MS now: see leave_group in ds_kafka_source.c).
      for _, K in ipairs(all) do
        if K.source and not K.source:closed() then K:begin_finish() end
      end
    end
    return self:finish()
  end
  src:stop()
end

-- The stop's synchronous commit, before any source of the context leaves the group (what
-- finish() would commit is then nothing; a failure leaves it to finish(), which says so).
function Source:commit_before_leaving()
  local src = self.source
  if self.left_committed or not src or src:closed() then return end
  self.left_committed = true
  local offsets = self.to_commit
  if not offsets or #offsets == 0 then return end
  if src:commit(offsets, false) then self.to_commit = {} end
end

-- Cluster mode: before batch `time` sends anything on to a keyed stage, its plan: each
-- range's start committed to APP.offsets with its end (see ds_kafka_source_plan), so that a
-- process that gets the partition after this one died reads exactly that range again, as one
-- batch, and sends on what this one sent (which the keyed stage skips when it had it). Once per
-- batch; a failure is logged (a kill during that batch then sends its records on twice).
local plan_ids = setmetatable({}, { __mode = "k" }) -- ctx -> this process's part of a batch's tag

function M.plan_batch(ctx, time)
  local id = plan_ids[ctx]
  if not id then
    id = string.format("%x.%d", core.now_ms(), ffi.C.getpid())
    plan_ids[ctx] = id
  end
  for _, K in ipairs(M.of_context(ctx)) do
    local ranges, src = K.ranges[time], K.source
    if K.cluster and not K.input.internal and ranges and src and not src:closed()
        and K.planned ~= time then
      K.planned = time
      local ok, err = src:plan(ranges, id .. "@" .. time)
      if not ok then log("warn", "kafka_stream " .. K.name .. ": " .. tostring(err)) end
    end
  end
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

-- ctx:kafka_stream(opts).
function M.stream(ctx, opts)
  local who = "kafka_stream"
  if ctx.state ~= "initialized" then util.raise(who .. ": sources must be created before ctx:start()") end
  if type(opts) ~= "table" then util.raise(who .. ": expected a table of options, got " .. type(opts)) end
  kafka.check_known(opts, stream_options, who)
  local topics = opts.topics or (opts.topic and { opts.topic })
  if type(topics) ~= "table" or #topics == 0 then
    util.raise(who .. ": topics must be a list of topic names, e.g. topics = { \"words\" }")
  end
  for i, t in ipairs(topics) do
    if type(t) ~= "string" or t == "" then util.raise(who .. ": topic " .. i .. " must be a name") end
  end
  local start = opts.start or "latest"
  if start ~= "earliest" and start ~= "latest" then
    util.raise(who .. ": start must be \"earliest\" or \"latest\", got " .. tostring(start))
  end
  local cluster = ctx.cluster
  if cluster and opts.group ~= nil and opts.group ~= cluster then
    util.raise(who .. ": in cluster mode every kafka_stream joins the cluster's consumer group \""
      .. cluster .. "\"; group = " .. tostring(opts.group) .. " cannot be used")
  end
  if cluster and opts.assign == "all" then
    util.raise(who .. ": in cluster mode the consumer group \"" .. cluster .. "\" shares the partitions"
      .. " out (assign = \"group\"); assign = \"all\" cannot be used")
  end
  if cluster and opts.positions ~= nil then
    util.raise(who .. ": in cluster mode partitions start at the group's committed offsets;"
      .. " positions cannot be used")
  end
  local assign = opts.assign or (cluster and "group") or "all"
  if assign ~= "all" and assign ~= "group" then
    util.raise(who .. ": assign must be \"all\" (this process reads every partition) or \"group\" "
      .. "(the consumer group shares them out), got " .. tostring(assign))
  end
  local rate = opts.max_rate_per_partition
  if rate ~= nil and (type(rate) ~= "number" or rate <= 0) then
    util.raise(who .. ": max_rate_per_partition must be a positive number of records per second")
  end
  for _, flag in ipairs { "with_key", "with_meta" } do
    if opts[flag] ~= nil and type(opts[flag]) ~= "boolean" then
      util.raise(who .. ": " .. flag .. " must be true or false, got " .. type(opts[flag]) .. " "
        .. tostring(opts[flag]))
    end
  end
  if opts.with_key and opts.with_meta then
    util.raise(who .. ": with_key and with_meta exclude each other (with_meta tables have the key)")
  end
  if opts.decode ~= nil and type(opts.decode) ~= "function" then
    util.raise(who .. ": decode must be a function(value) returning the decoded value")
  end
  local on_error = opts.on_error or (opts.dead_letter and "dead_letter" or "fail")
  if on_error ~= "fail" and on_error ~= "skip" and on_error ~= "dead_letter" then
    util.raise(who .. ": on_error must be \"fail\", \"skip\" or \"dead_letter\", got " .. tostring(on_error))
  end
  local conf = kafka.check_conf(opts.conf, who)
  -- Cluster mode: a join or a leave moves only the partitions that must move (incremental
  -- cooperative rebalancing); the others go on being read.
  if cluster and conf["partition.assignment.strategy"] == nil then
    conf["partition.assignment.strategy"] = "cooperative-sticky"
  end
  local dead_letter
  if on_error == "dead_letter" then
    local dl = opts.dead_letter
    if type(dl) ~= "table" or (type(dl.file) ~= "string") == (type(dl.topic) ~= "string") then
      util.raise(who .. ": on_error = \"dead_letter\" needs dead_letter = { file = path } or { topic = name }")
    end
    if dl.file then
      dead_letter = { file = dl.file }
    else
      dead_letter = { topic = dl.topic, brokers = dl.brokers and kafka.brokers_of(dl.brokers, who) or nil,
        conf = kafka.check_conf(dl.conf, who) }
    end
  end

  local K = setmetatable({
    ctx = ctx, brokers = kafka.brokers_of(opts.brokers, who), topics = topics,
    group = cluster or opts.group or ("dstream-" .. ctx.name), start = start, conf = conf, assign = assign,
    cluster = cluster,
    name = opts.name or table.concat(topics, ","),
    cap = rate and math.max(1, math.floor(rate * ctx.batch_ms / 1000)) or nil,
    ranges = {}, history = {}, completed = {}, initial = {}, wanted = {}, reported = 0,
    reruns = {}, nreruns = 0, -- batches of the batch log to cut again (input.replay)
  }, Source)
  if type(K.group) ~= "string" or K.group == "" then util.raise(who .. ": group must be a name") end
  if dead_letter and dead_letter.topic and not dead_letter.brokers then dead_letter.brokers = K.brokers end
  if dead_letter then
    K.dead_letter_desc = dead_letter.file and (" (dead letters in " .. dead_letter.file .. ")")
      or (" (dead letters in topic " .. dead_letter.topic .. ")")
  end
  if opts.positions then K:set_positions(opts.positions) end

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
      rejected = ctx:_ship(K.rejected, who .. " rejected records"),
      decode = opts.decode and ctx:_ship(opts.decode, who .. " decode") or nil,
    }
  end

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
  local input = sources.receiver(ctx, "kafka_stream " .. K.name, function() return open_source(K) end,
    function(_, time, parts) took(time, parts) end)
  -- The batch log (dstream.state.batch_log): where the batch cut each partition. A batch re-run
  -- after a restart is cut at the same offsets, so it has the same records and keeps its
  -- time; the consumer starts at the checkpoint's positions, where the first re-run batch
  -- begins, and live batches take nothing until the re-runs have taken theirs.
  -- Not in cluster mode: a cut names partitions this process may no longer own. A batch in
  -- flight at a crash was not committed: the partition's owner reads its records again.
  if not cluster then
    input.log_entry = function(_, time)
      local cut = {}
      for _, r in ipairs(K.ranges[time] or {}) do
        if r.count > 0 then cut[#cut + 1] = { topic = r.topic, partition = r.partition, offset = r["until"] } end
      end
      return cut
    end
  end
  input.replay = function(_, time, cut)
    if cluster then return end
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
  function input.set_positions(_, list) return K:set_positions(list) end
  function input.position() return K:positions(true) end
  function input.restore(_, pos)
    -- Cluster mode: the group's committed offsets, not this process's checkpoint, say where
    -- a partition goes on (another process may have read it since).
    if not cluster then K:set_positions(pos, true) end
  end
  function input.on_batch_done(_, time)
    -- A re-run batch that no output computed still takes its records (they were its own).
    if K.reruns[time] then input.deferred(time) end
    K:batch_done(time)
  end
  input.key = "kafka:" .. K.group .. ":" .. table.concat(topics, ",")
  K.key = input.key
  input.kafka, K.input = K, input

  local out = input
  if op then
    out = input:_derive("kafka_stream", function(r) return r:_narrow(op) end)
  end
  out.kafka = K
  function out.positions() return K:positions() end
  function out.set_positions(_, list) return K:set_positions(list) end
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

return M

-- dstream/interval_join.lua: event-time interval joins of two streams, driver side (Flink's
-- interval join, Kafka Streams' KStream-KStream join with JoinWindows, Spark's stream-stream
-- join with a time-range condition). `left:join(right, { within = "10s" })` (and the outer
-- joins) after event_time on both streams: a left record (k, l) at time tl pairs with each
-- right record (k, r) at time tr in [tl - before, tl + after] (within = d: both d), as
-- (k, { l, r }), once, in the batch where the later of the two arrives. The watermark is the
-- smaller of the two sides' (a side behind the other holds eviction back, loses nothing); an
-- outer join emits a record of its outer side that found no partner as (k, { l, nil }) or
-- (k, { nil, r }) once the watermark passes its time + bound. A record older than its own
-- side's watermark when it arrives is late (dropped, counted by that side's late_count()).
--
-- A join of two streams without `within` joins batch by batch (stream.lua), which cannot be
-- the same across processes (batches are per process): in cluster mode it is refused (refuse).
-- The worker side is dstream.worker.ops.interval_join; across processes it is a keyed operator
-- of dstream.cluster.keyed whose two sides share one repartition topic, tagged by side.
local rdd_mod = require("dstream.rdd")
local stream_mod = require("dstream.stream")
local util = require("dstream.util")

local M = {}

-- Whose unpaired records an outer join emits (1 left, 2 right).
local OUTER = {
  join = {}, left_outer_join = { true }, right_outer_join = { nil, true },
  full_outer_join = { true, true },
}

M.OPTIONS = { within = true, before = true, after = true }

-- The options of a two-stream join (a number of partitions or a table, util.options); a
-- duration alone, join(other, "10s"), is a join within a time written short: say how to write it.
function M.options(opts, mode)
  if type(opts) == "string" then
    util.raise(("%s: expected a number of partitions or a table of options, got the string %q:"
      .. " a join within a time is %s(other, { within = %q }), after event_time on both streams")
      :format(mode, opts, mode == "cogroup" and "join" or mode, opts))
  end
  return util.options(opts, mode, M.OPTIONS)
end

-- Whether opts ask for an interval join.
function M.wanted(opts)
  return opts.within ~= nil or opts.before ~= nil or opts.after ~= nil
end

-- (0 or "0s" is a bound too: before = 0, no right record earlier than the left one)
local function bound(v, mode, what)
  local ms, err = util.parse_duration(v, true)
  if not ms then util.raise(mode .. ": " .. what .. ": " .. err) end
  return ms
end

-- The bounds in ms: tr in [tl - before, tl + after].
local function bounds(opts, mode)
  if opts.within ~= nil then
    if opts.before ~= nil or opts.after ~= nil then
      util.raise(mode .. ": give within = d (|tl - tr| <= d), or before and after (tr in"
        .. " [tl - before, tl + after]), not both")
    end
    local d = bound(opts.within, mode, "within")
    return d, d
  end
  if opts.before == nil or opts.after == nil then
    util.raise(mode .. ": before and after go together (tr in [tl - before, tl + after]; 0 for"
      .. " none), or give within = d")
  end
  return bound(opts.before, mode, "before"), bound(opts.after, mode, "after")
end

-- The other side of a stream's join is not a stream: a batch (rdd), a static dataset, is
-- joined per batch through transform, as in Spark.
function M.not_a_stream(mode, other)
  if rdd_mod.is_rdd(other) then
    util.raise(mode .. ": expected a stream, got a batch (rdd): join a static dataset through"
      .. " transform(function(rdd) return rdd:" .. mode .. "(dataset) end)")
  end
  util.raise(mode .. ": expected a stream, got " .. type(other))
end

-- A two-stream join without within in cluster mode.
function M.refuse(mode)
  local timed = mode == "cogroup" and "join" or mode -- (cogroup has no event-time form)
  util.raise(mode .. ": in cluster mode a join of two streams batch by batch would join only the"
    .. " records each process reads, so a key's records read by two processes would never meet:"
    .. " join on event time, " .. timed .. "(other, { within = \"10s\" }) after event_time on both"
    .. " streams (the same across processes), or join a static dataset through"
    .. " transform(function(rdd) return rdd:" .. mode .. "(dataset) end)")
end

local function check_sides(left, right, mode, cluster)
  if not stream_mod.is_stream(right) then M.not_a_stream(mode, right) end
  for i, s in ipairs { left, right } do
    local which = i == 1 and "left" or "right"
    if not s.event then
      util.raise(mode .. ": a join within a time needs event time on both streams: the " .. which
        .. " stream has none (call event_time(fn, opts) on it first)")
    end
    if cluster and s.event.keep_late then
      util.raise(mode .. ": late = \"side\" (late_records()) on a side of a join within a time is"
        .. " not supported in cluster mode: the " .. which .. " stream's late records are found"
        .. " by the state partitions of other processes; use late = \"drop\" and late_count()")
    end
  end
end

-- One process: each side's map side hashes (key, {ts, value}) into n buckets, both sides'
-- event_time stages report (the watermarks move), then the reduce tasks read both buckets where
-- the state partition lives.
local function one_process(left, right, mode, spec, n)
  local ctx = left.ctx
  local state = ctx:_new_state(mode .. " within", n)
  spec.state = state
  local map_term = { kind = "session_partition", who = mode, stage = mode .. " (map side)" }
  local w = stream_mod.new(ctx, { left, right }, function(_, time)
    local sides = {}
    for i, s in ipairs { left, right } do
      sides[i] = (s:get_rdd(time) or rdd_mod.empty(ctx)):_shuffle(map_term, nil, n)
      sides[i]:_materialize(time)
    end
    local l, r = left.event, right.event
    l:absorb(ctx, time, sides[1].side)
    -- (one event_time stage on both sides, a self-join or two filters of it: each side ran it
    -- on all its records and reported each late record, which counts once)
    if r ~= l then r:absorb(ctx, time, sides[2].side) end
    local wl, wr = l:watermark(), r:watermark()
    local op = {}
    for k, v in pairs(spec) do op[k] = v end
    op.watermark = wl and wr and math.min(wl, wr)
    local plans = {}
    for p = 1, n do
      plans[p] = { ops = { op }, shuffles = sides, index = p - 1, state_part = p - 1 }
    end
    local results = ctx:_scheduler():run_tasks(sides[1]:_tasks(plans, function()
      return { kind = "collect" }
    end, mode, time))
    return rdd_mod.from_outputs(ctx, results)
  end, mode)
  w.state_id = state
  ctx:_eager(w)
  return w
end

-- Cluster mode: the two sides, each record marked with its side, as one stream to the keyed
-- operator's repartition topic; late records are counted by the keyed stages, per side.
local function across_processes(left, right, mode, spec, n)
  local ctx = left.ctx
  local keyed = require("dstream.cluster.keyed")
  local shared = require("dstream.state.shared")
  local note_late = require("dstream.cluster.windows").note_late
  local function marked(s, side)
    return s:_derive(mode, function(r) return r:_narrow({ kind = "join_side", side = side }) end)
  end
  local late1, late2 = shared.accumulator(ctx, 0), shared.accumulator(ctx, 0)
  spec.delay1, spec.delay2 = left.event.delay, right.event.delay
  spec.late1, spec.late2 = late1.id, late2.id
  local l, r = left.event, right.event
  local out = keyed.keyed_operator(marked(left, 1):union(marked(right, 2)), mode, n,
    "cluster_interval_join", spec, { kind = "collect" }, function(results)
      if left == right then -- (a self-join: each record went on both sides, late on both)
        note_late(l, late1.value)
      elseif l == r then
        note_late(l, late1.value + late2.value)
      else
        note_late(l, late1.value)
        note_late(r, late2.value)
      end
      return rdd_mod.from_outputs(ctx, results)
    end, { send = { kind = "cluster_join_send", mode = mode } })
  return out
end

-- left:MODE(right, opts) with within, or before and after (opts checked by util.options).
function M.join(left, right, mode, opts)
  if mode == "cogroup" then
    util.raise("cogroup: within is for join and the outer joins (cogroup groups a batch's values)")
  end
  local ctx = left.ctx
  check_sides(left, right, mode, ctx.cluster)
  local before, after = bounds(opts, mode)
  local outer = OUTER[mode]
  local spec = { kind = ctx.cluster and "cluster_interval_join" or "interval_join", mode = mode,
    before = before, after = after, outer1 = outer[1], outer2 = outer[2] }
  local n = opts.partitions or ctx.partitions
  if ctx.cluster then return across_processes(left, right, mode, spec, n) end
  return one_process(left, right, mode, spec, n)
end

return M

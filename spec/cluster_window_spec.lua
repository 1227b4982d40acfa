-- Cluster mode (issue 19) beyond update_state_by_key: a join with a static dataset, an initial state,
-- session_window and window() on event time, an interval join of two streams,
-- reduce_by_key_and_window and an event-time window run by the members of one cluster (contexts
-- of this process with manual clocks, advanced together, against an embedded broker in this
-- process): two members, then three (the third takes partitions over while the job runs),
-- then one restarted from its checkpoint, compared with one process (a context outside cluster
-- mode) on the same input and with counts made here in plain Lua.
-- Each cluster's first join takes the embedded broker about 3 s (its initial rebalance delay).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local dstream = require("dstream")
local kafka = require("dstream.kafka")
local sleep_ms, wait_for = H.sleep_ms, H.wait_for

-- A session timeout of 3 s for fast moves; spec/e2e/cluster_defaults.sh is the twin at the defaults.
local CONF = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 }
local N = 3 -- state partitions
local LEN, SLIDE = 3000, 1000 -- the processing-time window: each record is in LEN / SLIDE windows
local EV_LEN, EV_SLIDE = 4000, 2000 -- the event-time window
local GAP = 1500 -- session_window's gap, over the records of line i with i % 11 < 5 (a word every
-- 700 ms, then gaps of 1.4 to 4.2 s: sessions of 1 to 5 records)
local function in_sessions(ts) return (ts / 100) % 11 < 5 end
local HALF = 8000 -- the first half's last timestamp (input_lines(1, 80))
-- The interval join: a word's records of even tenths of a second (left) with those of odd
-- ones (right) within 1 s; a word comes every 700 ms (line i and i + 7), so each record pairs
-- with its word's records 700 ms before and after, and the first and last of a word's run
-- find none on one side; the right side has none in (4 s, 6 s], the left none in (10 s, 12 s],
-- so records about them find none at all. The u9 lines (flush, late) go to both sides.
local WITHIN = 1000
local function join_side(word, ts) -- 1 left, 2 right, 3 both, 0 neither
  if word == "flush" or word == "late" then return 3 end
  if ts % 200 == 0 then return (ts > 10000 and ts <= 12000) and 0 or 1 end
  return (ts > 4000 and ts <= 6000) and 0 or 2
end

-- The input: "user word ts" lines, ts in ms in order; users u1..u5 (u5 is not in the table).
local function input_lines(from, to)
  local words = { "red", "green", "blue", "cyan", "plum", "teal", "gold" }
  local lines = {}
  for i = from, to do
    lines[#lines + 1] = string.format("u%d %s %d", 1 + (i * 7) % 5, words[1 + (i * 3) % #words], i * 100)
  end
  return lines
end

local USERS = { { "u1", "ann" }, { "u2", "bob" }, { "u3", "cy" }, { "u4", "dee" } }
-- update_state_by_key's initial state: counts words from these on (plum never comes).
local INITIAL = { { "red", 1000 }, { "gold", 2000 }, { "none", 7 } }

-- What every process's job gives: joined lines, the processing-time windows' values added up
-- per word (each record counts LEN / SLIDE times) and the event-time windows by "word@start",
-- each seen once; read holds the lines the process read.
local function job(ctx, lines)
  local out = { joined = {}, sums = {}, windows = {}, twice = {}, read = {}, sessions = {}, raw = {},
    last = {}, zero_sums = {}, late = {}, wc_sum = 0, pairs = {} }
  local users = ctx:parallelize(USERS, 2, { pairs = true })
  lines:foreach_rdd(function(rdd)
    for _, l in ipairs(rdd:collect()) do out.read[#out.read + 1] = l end
  end)
  local recs = lines:map(function(line)
    local user, word, ts = line:match("^(%S+) (%S+) (%d+)$")
    return user, { word, tonumber(ts) }
  end)
  recs:transform(function(rdd) return rdd:join(users) end):foreach_rdd(function(rdd)
    for _, kv in ipairs(rdd:collect()) do
      out.joined[#out.joined + 1] = kv[1] .. " " .. kv[2][1][1] .. " " .. kv[2][2]
    end
  end)
  local words = recs:map(function(_, r) return r[1], r[2] end)
  out.counts = words:map_values(function() return 1 end)
    :reduce_by_key_and_window(function(a, b) return a + b end, LEN .. "ms", SLIDE .. "ms", { partitions = N })
    :name("counts")
  out.counts:foreach_rdd(function(rdd)
      for _, kv in ipairs(rdd:collect()) do out.sums[kv[1]] = (out.sums[kv[1]] or 0) + kv[2] end
    end)
  -- The same window with an inverse and no filter, keyed by word and half of the input: a key
  -- stays at 0 once its records left (as in Spark), emitted every slide by its partition's
  -- owner, also after the restart for the first half's keys (kept in the changelog).
  -- last = each key's latest value; zero_sums = the values added up.
  recs:map(function(_, r) return r[1] .. (r[2] <= HALF and "<" or ">"), 1 end)
    :reduce_by_key_and_window(function(a, b) return a + b end, LEN .. "ms", SLIDE .. "ms",
      { partitions = N, inverse = function(a, b) return a - b end })
    :name("zeros")
    :foreach_rdd(function(rdd)
      for _, kv in ipairs(rdd:collect()) do
        out.last[kv[1]] = kv[2]
        out.zero_sums[kv[1]] = (out.zero_sums[kv[1]] or 0) + kv[2]
      end
    end)
  -- count_by_window (reduce_by_window with an inverse, one state partition): the number of
  -- records in each window, 0 once they all left, as in Spark. wc_last = the latest count.
  words:count_by_window(LEN .. "ms", SLIDE .. "ms"):foreach_rdd(function(rdd)
    for _, n in ipairs(rdd:collect()) do out.wc_last, out.wc_sum = n, out.wc_sum + n end
  end)
  -- Running word counts from INITIAL's: the cluster's first start seeds them, no later start
  -- or move again (a second seed would set a count back); totals = the last batch's states.
  words:map_values(function() return 1 end)
    :update_state_by_key(function(values, n) return (n or 0) + #values end,
      { partitions = N, initial = ctx:parallelize(INITIAL, 2, { pairs = true }) })
    :name("totals")
    :foreach_rdd(function(rdd)
      out.totals = {}
      for _, kv in ipairs(rdd:collect()) do out.totals[kv[1]] = kv[2] end
    end)
  out.timed = words:event_time(function(_, ts) return ts end, { watermark = "30s" })
  out.events = out.timed:map_values(function() return 1 end)
    :reduce_by_key_and_window(function(a, b) return a + b end, EV_LEN .. "ms", EV_SLIDE .. "ms",
      { partitions = N })
    :name("events")
  -- window() and sessions on event time with late = "side": their late records (as "word ts")
  -- come to late_records() of the process whose state partition found them.
  out.side = words:event_time(function(_, ts) return ts end, { watermark = "30s", late = "side" })
  -- window() on event time: each record once per window it is in ("word ts", sorted at the end).
  out.side:window(EV_LEN .. "ms", EV_SLIDE .. "ms"):name("raw"):foreach_rdd(function(rdd)
    for _, kv in ipairs(rdd:collect()) do out.raw[#out.raw + 1] = kv[1] .. " " .. kv[2] end
  end)
  -- Sessions per word, each seen once: "word@start" = "count end".
  out.side:filter(function(_, ts) return in_sessions(ts) end)
    :session_window(GAP .. "ms", { partitions = N })
    :name("sessions")
    :foreach_rdd(function(rdd)
      for _, kv in ipairs(rdd:collect()) do
        local id = kv[1] .. "@" .. kv[2].start
        if out.sessions[id] then out.twice[#out.twice + 1] = id end
        out.sessions[id] = kv[2].count .. " " .. kv[2]["end"]
      end
    end)
  -- The interval join of two streams (full outer): "word l r" lines ("-" for none).
  local timed = function(_, ts) return ts end
  out.lefts = words:filter(function(w, ts) return join_side(w, ts) % 2 == 1 end)
    :event_time(timed, { watermark = "30s" })
  out.rights = words:filter(function(w, ts) return join_side(w, ts) >= 2 end)
    :event_time(timed, { watermark = "30s" })
  out.pair_stream = out.lefts:full_outer_join(out.rights, { within = WITHIN .. "ms", partitions = N })
    :name("pairs")
  out.pair_stream:foreach_rdd(function(rdd)
      for _, kv in ipairs(rdd:collect()) do
        out.pairs[#out.pairs + 1] = kv[1] .. " " .. (kv[2][1] or "-") .. " " .. (kv[2][2] or "-")
      end
    end)
  out.side:late_records():foreach_rdd(function(rdd)
    for _, kv in ipairs(rdd:collect()) do out.late[#out.late + 1] = kv[1] .. " " .. kv[2] end
  end)
  out.events:foreach_rdd(function(rdd)
      for _, kv in ipairs(rdd:collect()) do
        local id = kv[1] .. "@" .. kv[2].start
        if out.windows[id] then out.twice[#out.twice + 1] = id end
        out.windows[id] = kv[2].value
      end
    end)
  return out
end

-- The same, counted here: joined lines, LEN / SLIDE times each word's count, the event windows.
local function expected(lines)
  local names, e = {}, { joined = {}, sums = {}, windows = {}, totals = {}, sessions = {}, raw = {},
    last = {}, zero_sums = {}, pairs = {} }
  local sides = { {}, {} } -- the interval join's records ({word, ts}), u9's late lines left out
  local stamps = {} -- word -> timestamps in sessions
  for _, u in ipairs(USERS) do names[u[1]] = u[2] end
  for _, kv in ipairs(INITIAL) do e.totals[kv[1]] = kv[2] end
  for _, l in ipairs(lines) do
    local user, word, ts = l:match("^(%S+) (%S+) (%d+)$")
    ts = tonumber(ts)
    if names[user] then e.joined[#e.joined + 1] = user .. " " .. word .. " " .. names[user] end
    e.sums[word] = (e.sums[word] or 0) + LEN / SLIDE
    local half = word .. (ts <= HALF and "<" or ">")
    e.zero_sums[half], e.last[half] = (e.zero_sums[half] or 0) + LEN / SLIDE, 0
    e.totals[word] = (e.totals[word] or 0) + 1
    local side = join_side(word, ts)
    if word ~= "late" then
      if side % 2 == 1 then table.insert(sides[1], { word, ts }) end
      if side >= 2 then table.insert(sides[2], { word, ts }) end
    end
    if user ~= "u9" then -- (u9's lines: the last moves the watermark, its window stays open; the other is late)
      for start = math.floor(ts / EV_SLIDE) * EV_SLIDE, ts - EV_LEN + 1, -EV_SLIDE do
        local id = word .. "@" .. start
        e.windows[id] = (e.windows[id] or 0) + 1
        e.raw[#e.raw + 1] = word .. " " .. ts
      end
      if in_sessions(ts) then
        stamps[word] = stamps[word] or {}
        table.insert(stamps[word], ts)
      end
    end
  end
  for word, list in pairs(stamps) do -- runs of timestamps less than GAP apart
    table.sort(list)
    local start, last, count = list[1], list[1], 0
    for i = 1, #list + 1 do
      local ts = list[i]
      if ts == nil or ts >= last + GAP then
        e.sessions[word .. "@" .. start] = count .. " " .. (last + GAP)
        start, count = ts, 0
      end
      last, count = ts, count + 1
    end
  end
  -- The interval join, a nested loop: every pair of a word within WITHIN, then the records of
  -- each side that found none.
  local paired = { {}, {} }
  for i, l in ipairs(sides[1]) do
    for j, r in ipairs(sides[2]) do
      if l[1] == r[1] and math.abs(l[2] - r[2]) <= WITHIN then
        e.pairs[#e.pairs + 1] = l[1] .. " " .. l[2] .. " " .. r[2]
        paired[1][i], paired[2][j] = true, true
      end
    end
  end
  for i, l in ipairs(sides[1]) do
    if not paired[1][i] then e.pairs[#e.pairs + 1] = l[1] .. " " .. l[2] .. " -" end
  end
  for j, r in ipairs(sides[2]) do
    if not paired[2][j] then e.pairs[#e.pairs + 1] = r[1] .. " - " .. r[2] end
  end
  table.sort(e.pairs)
  table.sort(e.joined)
  table.sort(e.raw)
  return e
end

-- The union of several processes' outputs (joined lines sorted).
local function union(outs)
  local u = { joined = {}, sums = {}, windows = {}, twice = {}, read = {}, sessions = {}, raw = {},
    zero_sums = {}, pairs = {} }
  for _, o in ipairs(outs) do
    for w, n in pairs(o.zero_sums) do u.zero_sums[w] = (u.zero_sums[w] or 0) + n end
    for _, l in ipairs(o.read) do u.read[#u.read + 1] = l end
    for _, r in ipairs(o.joined) do u.joined[#u.joined + 1] = r end
    for _, r in ipairs(o.raw) do u.raw[#u.raw + 1] = r end
    for _, r in ipairs(o.pairs) do u.pairs[#u.pairs + 1] = r end
    for w, n in pairs(o.sums) do u.sums[w] = (u.sums[w] or 0) + n end
    for id, n in pairs(o.windows) do
      if u.windows[id] then u.twice[#u.twice + 1] = id end
      u.windows[id] = n
    end
    for id, v in pairs(o.sessions) do
      if u.sessions[id] then u.twice[#u.twice + 1] = id end
      u.sessions[id] = v
    end
    for _, id in ipairs(o.twice) do u.twice[#u.twice + 1] = id end
  end
  table.sort(u.joined)
  table.sort(u.raw)
  table.sort(u.pairs)
  return u
end

local function same_sums(a, b)
  for w, n in pairs(a) do if b[w] ~= n then return false end end
  for w in pairs(b) do if a[w] == nil then return false end end
  return true
end

describe("cluster mode beyond update_state_by_key", function()
  local mock, B, producer

  setup(function()
    local topics = { cwin = 4 }
    for _, op in ipairs { "counts", "events", "totals", "sessions", "raw", "zeros", "pairs" } do
      local n = op == "raw" and 2 or N -- (window() takes the context's partitions: 2 workers)
      topics["spec-cwin-" .. op .. "-repartition"], topics["spec-cwin-" .. op .. "-changelog"] = n, n
    end
    mock = kafka.mock_cluster { brokers = 1, topics = topics }
    B = mock:bootstrap()
    producer = kafka.producer { brokers = B }
  end)

  teardown(function()
    if producer then producer:close() end
    if mock then mock:close() end
  end)

  local function produce(lines, from)
    for i, l in ipairs(lines) do assert(producer:send("cwin", l, nil, (from + i) % 4)) end
    assert(producer:flush(10000))
  end

  -- A member of cluster spec-cwin.
  local function member(dir)
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, cluster = "spec-cwin",
      checkpoint = dir }
    local s = ctx:kafka_stream { brokers = B, topic = "cwin", start = "earliest", conf = CONF }
    local out = job(ctx, s)
    -- count_by_window's state cannot be named (its stream is a map of it): its topics are
    -- named after its kind and state id.
    for _, entry in ipairs(ctx._states) do
      if entry.kind == "reduce_by_key_and_window" and not entry.name then
        for _, t in ipairs { "repartition", "changelog" } do
          pcall(mock.create_topic, mock, ("spec-cwin-reduce_by_key_and_window-%d-%s"):format(entry.id, t), 1)
        end
      end
    end
    return ctx, out, s
  end

  -- Whether every partition of the input (4) and of each operator's state (N) is owned, by as
  -- many members as `outs` has.
  local function all_owned(outs, streams)
    for _, what in ipairs { "input", "counts", "events", "pair_stream" } do
      local total, members = 0, 0
      for m, o in ipairs(outs) do
        local s = what == "input" and streams[m] or o[what]
        local n = #(s:kafka_stats().assigned or {})
        total, members = total + n, members + (n > 0 and 1 or 0)
      end
      if total ~= (what == "input" and 4 or N) or members ~= #outs then return false end
    end
    return true
  end

  -- One batch of every context; pause ms after.
  local function round(ctxs, pause)
    for _, ctx in ipairs(ctxs) do ctx:advance(1) end
    sleep_ms(pause or 20)
  end

  it("late = \"side\" before an event-time window that folds its values is refused in cluster mode, at the user's line; window() and session_window take it", function()
    local ctx = dstream.context { batch = "1s", clock = "manual", cluster = "spec-cwin-side" }
    local timed = ctx:kafka_stream { brokers = B, topic = "cwin" }
      :map(function(line) return line, 1 end)
      :event_time(function() return 0 end, { late = "side" })
    local ok, err = pcall(function()
      timed:reduce_by_key_and_window(function(a, b) return a + b end, "2s") -- (this line)
    end)
    assert.is_false(ok)
    assert.matches("cluster_window_spec.lua:%d+: reduce_by_key_and_window: late = \"side\" %(late_records%(%)%) is not"
      .. " supported by event%-time windows that fold their values in cluster mode", err)
    assert.has_no.errors(function()
      timed:window("2s")
      timed:session_window("2s")
      timed:late_records()
    end)
  end)

  it("a stream joined with itself within a time: each pair of the self-join, a late record counted once", function()
    if H.sanitizer_build() then return pending("the driver's late count (Lua): release build only") end
    for _, t in ipairs { "spec-cself-ev", "spec-cself-pairs-repartition", "spec-cself-pairs-changelog" } do
      mock:create_topic(t, 2)
    end
    local ctx = dstream.context { batch = "1s", clock = "manual", cluster = "spec-cself" }
    local ev = ctx:kafka_stream { brokers = B, topic = "spec-cself-ev", start = "earliest", conf = CONF }
      :map(function(line) local k, ts = line:match("(%S+) (%d+)"); return k, tonumber(ts) end)
      :event_time(function(_, ts) return ts end)
    local got = {}
    ev:join(ev, { within = "500ms", partitions = 2 }):name("pairs"):foreach_rdd(function(rdd)
      for _, kv in ipairs(rdd:collect()) do got[#got + 1] = kv[1] .. " " .. kv[2][1] .. " " .. kv[2][2] end
    end)
    ctx:start()
    for _, l in ipairs { "a 1000", "a 1200", "b 5000" } do assert(producer:send("spec-cself-ev", l, nil, 0)) end
    assert(producer:flush(10000))
    assert.is_true(wait_for(function() ctx:advance(1); return #got >= 5 end, 30, 200))
    assert(producer:send("spec-cself-ev", "a 100", nil, 1)) -- (late: the watermark is 5000)
    assert(producer:flush(10000))
    assert.is_true(wait_for(function() ctx:advance(1); return ev:late_count() > 0 end, 30, 200))
    ctx:advance(1)
    ctx:stop()
    table.sort(got)
    assert.are.same({ "a 1000 1000", "a 1000 1200", "a 1200 1000", "a 1200 1200", "b 5000 5000" }, got)
    assert.are.equal(1, ev:late_count()) -- (not once per side)
  end)

  it("a static join, reduce_by_key_and_window and an event-time window on 2, then 3 members, then one restarted from its checkpoint: what one process gives", function()
    if H.sanitizer_build() then return pending("multi-process runs: release build only") end
    local first, second, last = input_lines(1, 80), input_lines(81, 160), { "u9 flush 200000" }
    -- Three late lines, all in windows [-2000, 2000) and [0, 4000), closed by then: the map
    -- side folds them into one partial per window (and one list of window()'s records); the
    -- one at 300 ms is also in the sessions' input (in_sessions).
    local late = { "u9 late 500", "u9 late 700", "u9 late 300" }
    local late_records = { "late 300", "late 500", "late 700" } -- (late_records(): word, ts)
    local all = {}
    for _, part in ipairs { first, second, last, late } do
      for _, l in ipairs(part) do all[#all + 1] = l end
    end
    local want = expected(all)
    local dir = os.tmpname()
    os.remove(dir)

    -- Two members: the input's 4 partitions and each operator's 3 state partitions shared out;
    -- then a third joins, taking state partitions (restored from their changelogs) from them.
    produce(first, 0)
    local ctxs, outs, streams = {}, {}, {}
    for m = 1, 3 do ctxs[m], outs[m], streams[m] = member(m == 1 and dir or nil) end
    local ok, err = pcall(function()
      for m = 1, 2 do ctxs[m]:start() end
      assert.is_true(wait_for(function() return all_owned({ outs[1], outs[2] }, streams) end, 30))
      while ctxs[1].time < 4000 do round({ ctxs[1], ctxs[2] }) end
      ctxs[3]:start()
      ctxs[3]:advance(ctxs[1].time / 1000) -- (its manual clock at the others' time, owning nothing yet)
      assert.is_true(wait_for(function()
        round(ctxs) -- (the partitions given up go once their batches completed and committed)
        return all_owned(outs, streams)
      end, 30, 1))
      -- The second half 4 s before a checkpoint (every 10 s, the default interval): its panes
      -- are still in windows at the checkpoint, where the members stop.
      while ctxs[1].time % 10000 ~= 6000 do round(ctxs) end
      produce(second, #first)
      while ctxs[1].time % 10000 ~= 0 do round(ctxs, 300) end
    end)
    for m = 1, 3 do pcall(ctxs[m].stop, ctxs[m]) end
    if not ok then error(err, 0) end
    for m = 1, 3 do assert.is_true(#outs[m].read > 0, "member " .. m .. " read nothing") end
    assert.are.equal(#first + #second, #union(outs).read)
    assert.are.same({}, union(outs).windows) -- the watermark (30 s) closed no window yet
    assert.are.same({}, union(outs).sessions) -- nor any session
    assert.are.same({}, union(outs).raw)
    assert.is_true(#union(outs).pairs > 100, "pairs before the restart: " .. #union(outs).pairs)
    -- The input side is at least once (the guide's Cluster mode says when records are read
    -- twice): what the group committed, or its positions group (spec-cwin.offsets: the ends of the
    -- members' completed batches) when later, is where the restart reads from.
    local committed = kafka.committed { brokers = B, group = "spec-cwin", topic = "cwin" }
    local positions = kafka.committed { brokers = B, group = "spec-cwin.offsets", topic = "cwin" }
    local again_read = 0
    for p = 0, 3 do
      again_read = again_read + (#first + #second) / 4 - math.max(committed[p], positions[p] or -1, 0)
    end

    -- Member 1 restarted from its checkpoint, alone: it restores its state partitions from its
    -- checkpoint and the changelog after it, the others' from the changelog; the flush line
    -- moves the watermark past every window; then the late line comes. Its batches run while
    -- it joins the group: the windows due meanwhile have no owner, and the panes move on by
    -- that time (each record still in LEN / SLIDE windows).
    local again, restarted, rstreams = {}, {}, {}
    again[1], restarted[1], rstreams[1] = member(dir)
    ok, err = pcall(function()
      again[1]:start()
      assert.are.equal(ctxs[1].time, again[1].time) -- (the restart resumes at its checkpoint)
      assert.is_true(wait_for(function()
        round(again)
        return all_owned(restarted, rstreams) and #restarted[1].read >= again_read
      end, 30, 1), string.format("owns all: %s, read %d of the %d after the commits",
        tostring(all_owned(restarted, rstreams)), #restarted[1].read, again_read))
      produce(last, #first + #second)
      assert.is_true(wait_for(function()
        round(again)
        local u = union { outs[1], outs[2], outs[3], restarted[1] }
        local got = expected(u.read)
        -- (every event-time window, window() and session emitted: each state partition's
        -- watermark is past the late lines' windows before they come)
        return #restarted[1].read > again_read and same_sums(u.sums, got.sums) and next(u.windows)
          and #u.joined >= #got.joined and #u.raw >= #got.raw and same_sums(u.sessions, got.sessions)
      end, 40, 1), (function()
        local u = union { outs[1], outs[2], outs[3], restarted[1] }
        local got = expected(u.read)
        local t = {}
        for w, n in pairs(got.sums) do t[#t + 1] = w .. "=" .. tostring(u.sums[w]) .. "/" .. n end
        local nw = 0
        for _ in pairs(u.windows) do nw = nw + 1 end
        return table.concat(t, " ") .. " windows " .. nw .. " joined " .. #u.joined .. "/" .. #got.joined
          .. " time " .. again[1].time
      end)())
      for _, l in ipairs(late) do produce({ l }, #first + #second) end -- (all to partition 1)
      assert.is_true(wait_for(function()
        round(again)
        local u = union { outs[1], outs[2], outs[3], restarted[1] }
        return restarted[1].timed:late_count() >= 3 and #restarted[1].late >= 4 and same_sums(u.sums, expected(u.read).sums)
          and restarted[1].lefts:late_count() >= 3 and restarted[1].rights:late_count() >= 3
          and #u.pairs >= #expected(u.read).pairs
          and same_sums(u.sessions, expected(u.read).sessions) and #u.raw >= #expected(u.read).raw
      end, 20, 1), (function()
        local u = union { outs[1], outs[2], outs[3], restarted[1] }
        return string.format("late_count %d, side %d, join %d/%d, late_records {%s}; sums %s, sessions %s, raw %d/%d, pairs %d/%d",
          restarted[1].timed:late_count(), restarted[1].side:late_count(), restarted[1].lefts:late_count(),
          restarted[1].rights:late_count(), table.concat(restarted[1].late, ","),
          tostring(same_sums(u.sums, expected(u.read).sums)), tostring(same_sums(u.sessions, expected(u.read).sessions)),
          #u.raw, #expected(u.read).raw, #u.pairs, #expected(u.read).pairs)
      end)())
      -- (nothing more comes: every key's records leave the window, each key stays at 0)
      assert.is_true(wait_for(function()
        round(again)
        return same_sums(restarted[1].last, expected(union { outs[1], outs[2], outs[3], restarted[1] }.read).last)
          and restarted[1].wc_last == 0
      end, 20, 1))
      for _ = 1, 2 do round(again) end
    end)
    pcall(again[1].stop, again[1])
    if not ok then error(err, 0) end
    local cluster = union { outs[1], outs[2], outs[3], restarted[1] }
    -- Nothing lost: every line read at least once; those read twice printed.
    local times, twice = {}, 0
    for _, l in ipairs(cluster.read) do times[l] = (times[l] or 0) + 1 end
    for _, l in ipairs(all) do
      assert.is_true((times[l] or 0) >= 1, "line never read: " .. l)
      twice = twice + times[l] - 1
    end
    print(string.format("# the cluster read %d lines, %d of them twice (input read again after a stop)",
      #cluster.read, twice))
    -- The late lines, once each (one process counts records): each is late for both its
    -- windows in both operators (the event-time reduce and window()), whose keyed stages count
    -- the records of a late partial at their earliest window, and late_count() is the most an
    -- operator found. late_records(): window()'s three, and the sessions' one (a record two
    -- operators find late comes from each; one process gives it once).
    assert.are.equal(3, restarted[1].timed:late_count())
    assert.are.equal(3, restarted[1].side:late_count())
    table.sort(restarted[1].late)
    assert.are.same({ "late 300", "late 300", "late 500", "late 700" }, restarted[1].late)
    -- The interval join's late lines: the three, on each side (each side's late_count()).
    assert.are.equal(3, restarted[1].lefts:late_count())
    assert.are.equal(3, restarted[1].rights:late_count())

    -- One process outside cluster mode, on the whole input (fetched before its first batch),
    -- 41 records a batch per partition: it reads the late lines (partition 1's 42nd to 44th,
    -- after the flush line) a batch after the flush.
    local one = dstream.context { batch = "1s", clock = "manual", workers = 2 }
    local input = one:kafka_stream { brokers = B, topic = "cwin", start = "earliest",
      max_rate_per_partition = 41 }
    local single = job(one, input)
    ok, err = pcall(function()
      one:start()
      assert.is_true(wait_for(function() return input:kafka_stats().pending == #all end, 20))
      assert.is_true(wait_for(function()
        round({ one })
        return same_sums(single.sums, want.sums) and single.timed:late_count() >= 3 and #single.late >= 3
          and same_sums(single.sessions, want.sessions) and #single.raw >= #want.raw
          and same_sums(single.last, want.last) and single.wc_last == 0 and #single.pairs >= #want.pairs
      end, 30, 1))
      assert.are.equal(3, single.lefts:late_count())
      assert.are.equal(3, single.rights:late_count())
      assert.are.equal(3, single.timed:late_count()) -- (one process counts records)
      assert.are.equal(3, single.side:late_count())
      table.sort(single.late)
      assert.are.same(late_records, single.late)
    end)
    pcall(one.stop, one)
    if not ok then error(err, 0) end
    table.sort(single.joined)

    -- One process gives the count of the input; the cluster gives the count of what it read
    -- (the same when no line was read twice), each window of a word once.
    assert.are.same(want.joined, single.joined)
    assert.are.same(want.sums, single.sums)
    assert.are.same(want.zero_sums, single.zero_sums)
    assert.are.same(want.last, single.last) -- (every key at 0: emitted after its records left)
    assert.are.equal(#all * LEN / SLIDE, single.wc_sum) -- (each record in LEN / SLIDE windows)
    assert.are.same(want.windows, single.windows)
    assert.are.same(want.totals, single.totals)
    assert.are.same(want.sessions, single.sessions)
    table.sort(single.raw)
    assert.are.same(want.raw, single.raw)
    table.sort(single.pairs)
    assert.are.same(want.pairs, single.pairs)
    local got = expected(cluster.read)
    assert.are.same(got.joined, cluster.joined)
    assert.are.same(got.sums, cluster.sums)
    assert.are.same(got.zero_sums, cluster.zero_sums)
    assert.are.same(got.last, restarted[1].last) -- (the first half's keys too: from the changelog)
    local wc_sum = 0
    for _, o in ipairs { outs[1], outs[2], outs[3], restarted[1] } do wc_sum = wc_sum + o.wc_sum end
    assert.are.equal(#cluster.read * LEN / SLIDE, wc_sum)
    assert.are.equal(0, restarted[1].wc_last) -- (count_by_window: 0 once the records left)
    assert.are.same(got.windows, cluster.windows)
    assert.are.same(got.sessions, cluster.sessions)
    assert.are.same(got.raw, cluster.raw)
    assert.are.same(got.pairs, cluster.pairs)
    local unpaired = 0
    for _, l in ipairs(got.pairs) do if l:find(" %-") then unpaired = unpaired + 1 end end
    print(string.format("# the interval join: %d records out, %d of them unpaired", #got.pairs, unpaired))
    assert.are.same({}, cluster.twice)
    -- The running counts: seeded once (the restarted member owns every state partition now).
    assert.are.same(got.totals, restarted[1].totals)
    if twice == 0 then assert.are.same(single.windows, cluster.windows) end
    os.execute("rm -rf " .. dir)
  end)
end)

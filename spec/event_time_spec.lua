-- Event time: event_time(fn_ts, { watermark, late, emit }) followed by reduce_by_key_and_window
-- (directly, or after map/filter/map_values) and session_window, on a manual clock, with 1 and
-- 4 workers. Inputs are seeded random records shuffled within batches, some of them late; the
-- expectations come from a plain-Lua simulation of the watermark batch by batch
-- (spec/helpers/window_reference.lua): a record is late when it is older than the watermark
-- as it stood at the end of the previous batch; the watermark after a batch is the largest
-- timestamp seen so far minus the delay; a window [start, start + len) is emitted once when the
-- watermark reaches its end ("final"), or every batch that changed it ("update"); a session
-- is emitted when the watermark reaches its last record plus the gap. Hand-made cases show the
-- same rules on a few records, including a late-enough record that bridges two sessions.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local WR = require("window_reference")

local add = function(a, b) return a + b end
local ts_of = function(r) return r[2] end -- records are { key, ts, value }
local kv_of = function(r) return r[1], r[3] end

-- 30 batches of shuffled records up to 6 s old (every 7th batch empty); then a batch with a
-- record far in the future (the watermark jumps: every window closes), two batches of records
-- that are all late by then, and two empty batches.
local function events_input(seed, opts)
  local input = WR.random_events(30, seed, opts or { empty_every = 7, spread = 6000, ahead = 500, max = 25 })
  input[31] = { { "a", 40000, 5 }, { "z", 1000000, 1 }, { "b", 39000, 2 } }
  input[32] = { { "a", 41000, 1 }, { "c", 500000, 3 } }
  input[33] = { { "b", 999999, 4 } }
  return input, 35
end

local EVENTS, NB = events_input(777)

local CONFIGS = { { workers = 1, partitions = 1 }, { workers = 4, partitions = 3 } }

-- Runs build(source) -> events, windowed[, late_stream] on a fresh context over `input` for
-- `nb` batches. Returns per batch: out (collected windowed batch), late (collected late
-- records, when a late stream is given), counts (events:late_count() after the batch), times.
local function run_events(cfg, input, nb, build, qopts)
  return H.with_context(cfg, function(ctx)
    local src = ctx:queue_stream(H.deep_copy(input), qopts)
    local events, out, side = build(src)
    local res = { out = {}, late = {}, counts = {}, times = {} }
    out:foreach_rdd(function(rdd, t)
      res.out[#res.out + 1] = rdd:collect()
      res.times[#res.times + 1] = t
      res.counts[#res.counts + 1] = events:late_count()
    end)
    if side then
      side:foreach_rdd(function(rdd) res.late[#res.late + 1] = rdd:collect() end)
    end
    ctx:start()
    ctx:advance(nb)
    return res
  end)
end

-- Asserts per batch that two lists of records are the same multiset.
local function assert_bags(expected, got, label)
  assert.are.equal(#expected, #got, label .. ": number of batches")
  for b = 1, #expected do
    assert.are.same(WR.bag(expected[b]), WR.bag(got[b]), ("%s: batch %d"):format(label, b))
  end
end

-- Asserts that no (key, window start) is emitted twice across batches.
local function assert_once(out)
  local seen = {}
  for b, records in ipairs(out) do
    for _, rec in ipairs(records) do
      local id = H.repr(rec[1]) .. "@" .. tostring(rec[2].start)
      assert.is_nil(seen[id], ("window %s emitted in batch %s and again in batch %d"):format(id, tostring(seen[id]), b))
      seen[id] = b
    end
  end
end

-- Sessions with their values sorted (their order is not part of the contract).
local function sorted_sessions(batches)
  local out = {}
  for b, records in ipairs(batches) do
    out[b] = {}
    for i, rec in ipairs(records) do
      local s = rec[2]
      out[b][i] = { rec[1], { start = s.start, ["end"] = s["end"], values = H.sorted(s.values), count = s.count } }
    end
  end
  return out
end

-- Event-time window variants: len, slide, watermark (ms and as given), emit.
local VARIANTS = {
  { len = 4000, slide = 2000, delay = 3000, watermark = "3s", emit = "final" },
  { len = 3000, slide = 3000, delay = 0, watermark = nil, emit = "final" },
  { len = 5000, slide = 1000, delay = 3000, watermark = 3, emit = "final" },
  { len = 4000, slide = 2000, delay = 2000, watermark = "2000ms", emit = "update" },
  { len = 1000, slide = 1000, delay = 5000, watermark = "5s", emit = "update" },
}

for _, cfg in ipairs(CONFIGS) do
  local cname = ("workers=%d partitions=%d"):format(cfg.workers, cfg.partitions)

  describe("event-time reduce_by_key_and_window against a watermark simulation (" .. cname .. ")", function()
    for _, v in ipairs(VARIANTS) do
      local vname = ("len=%d slide=%d watermark=%d emit=%s"):format(v.len, v.slide, v.delay, v.emit)
      local ref_opts = { delay = v.delay, len = v.len, slide = v.slide, f = add, emit = v.emit }

      it(vname .. ": windows, late counts", function()
        local res = run_events(cfg, EVENTS, NB, function(src)
          local events = src:event_time(ts_of, { watermark = v.watermark, emit = v.emit })
          return events, events:map(kv_of):reduce_by_key_and_window(add, v.len / 1000 .. "s", v.slide / 1000 .. "s")
        end)
        local expected, _, late_totals = WR.event_windows(EVENTS, NB, ts_of, kv_of, ref_opts)
        assert.are.same(H.times(NB), res.times)
        assert_bags(expected, res.out, vname)
        assert.are.same(late_totals, res.counts)
        assert.is_true(late_totals[NB] > 0) -- the data has late records
        if v.emit == "final" then assert_once(res.out) end
      end)

      it(vname .. ": late = \"side\" routes each batch's late records to late_records()", function()
        local res = run_events(cfg, EVENTS, NB, function(src)
          local events = src:event_time(ts_of, { watermark = v.watermark, emit = v.emit, late = "side" })
          local windows = events:map(kv_of):reduce_by_key_and_window(add, v.len / 1000, v.slide / 1000)
          return events, windows, events:late_records()
        end)
        local expected, late, late_totals = WR.event_windows(EVENTS, NB, ts_of, kv_of, ref_opts)
        assert_bags(expected, res.out, vname)
        assert_bags(late, res.late, vname .. " late records")
        assert.are.same(late_totals, res.counts)
      end)
    end

    it("record-by-record operators after event_time keep the event time (filter, map)", function()
      local keep = function(r) return r[3] % 3 ~= 0 end
      local res = run_events(cfg, EVENTS, NB, function(src)
        local events = src:event_time(ts_of, { watermark = "3s" })
        return events, events:filter(keep):map(kv_of):reduce_by_key_and_window(add, "4s", "2s")
      end)
      -- filtered records were seen by event_time: they still move the watermark
      local expected, _, late_totals = WR.event_windows(EVENTS, NB, ts_of, kv_of,
        { delay = 3000, len = 4000, slide = 2000, f = add, keep = keep })
      assert_bags(expected, res.out, "filter + map")
      assert.are.same(late_totals, res.counts)
    end)

    it("works on a pair stream: fn_ts gets (k, v), map_values keeps the event time", function()
      local pairs_in = {}
      for b, list in ipairs(EVENTS) do
        pairs_in[b] = {}
        for i, r in ipairs(list) do pairs_in[b][i] = { r[1], { ts = r[2], v = r[3] } } end
      end
      local res = run_events(cfg, pairs_in, NB, function(src)
        local events = src:event_time(function(_, v) return v.ts end, { watermark = "3s", late = "side" })
        return events, events:map_values(function(v) return v.v end):reduce_by_key_and_window(add, "4s", "2s"),
          events:late_records()
      end, { pairs = true })
      local expected, late, late_totals = WR.event_windows(pairs_in, NB, function(p) return p[2].ts end,
        function(p) return p[1], p[2].v end, { delay = 3000, len = 4000, slide = 2000, f = add })
      assert_bags(expected, res.out, "pairs")
      assert_bags(late, res.late, "pairs late records")
      assert.are.same(late_totals, res.counts)
    end)

    it("a random session workload against the reference", function()
      local input, nb = events_input(991, { empty_every = 6, spread = 3000, ahead = 300, max = 5 })
      local res = run_events(cfg, input, nb, function(src)
        local events = src:event_time(ts_of, { watermark = "2s", late = "side" })
        return events, events:map(kv_of):session_window("1500ms"), events:late_records()
      end)
      local expected, late = WR.sessions(input, nb, ts_of, kv_of, { delay = 2000, gap = 1500 })
      assert_bags(expected, sorted_sessions(res.out), "sessions")
      assert_bags(late, res.late, "sessions late records")
      local n = 0
      for _, e in ipairs(expected) do n = n + #e end
      assert.is_true(n > 20) -- enough sessions to mean something
    end)

    it("session_window(gap, n) with n partitions", function()
      local input, nb = events_input(992, { spread = 2000, ahead = 300, max = 6 })
      local res = run_events(cfg, input, nb, function(src)
        local events = src:event_time(ts_of, { watermark = "1s" })
        return events, events:map(kv_of):session_window("2s", 2):glom()
      end)
      local expected = WR.sessions(input, nb, ts_of, kv_of, { delay = 1000, gap = 2000 })
      local got = {}
      for b, parts in ipairs(res.out) do
        assert.are.equal(2, #parts, "batch " .. b .. ": partitions")
        got[b] = H.concat(parts)
      end
      assert_bags(expected, sorted_sessions(got), "sessions n=2")
    end)
  end)

  describe("event time by hand (" .. cname .. ")", function()
    -- tumbling 10 s windows, watermark 5 s
    local INPUT = {
      { { "a", 1000, 1 }, { "a", 12000, 2 } },                    -- max 12000, watermark 7000
      { { "a", 9000, 3 }, { "b", 6000, 5 }, { "a", 16000, 1 } },  -- 6000 < 7000: late; wm 11000
      { { "a", 9500, 7 }, { "a", 25000, 1 } },                    -- 9500 < 11000: late; wm 20000
      {},
    }
    local function win(k, start, value) return { k, { start = start, ["end"] = start + 10000, value = value } } end

    it("emit = \"final\": a window once, when the watermark passes its end", function()
      local res = run_events(cfg, INPUT, 4, function(src)
        local events = src:event_time(ts_of, { watermark = "5s", late = "side" })
        return events, events:map(kv_of):reduce_by_key_and_window(add, "10s", "10s"), events:late_records()
      end)
      assert.are.same({ {}, { win("a", 0, 4) }, { win("a", 10000, 3) }, {} }, res.out)
      assert.are.same({ {}, { { "b", 6000, 5 } }, { { "a", 9500, 7 } }, {} }, res.late)
      assert.are.same({ 0, 1, 2, 2 }, res.counts)
    end)

    it("emit = \"update\": every batch emits the windows it changed, with their new values", function()
      local res = run_events(cfg, INPUT, 4, function(src)
        local events = src:event_time(ts_of, { watermark = "5s", emit = "update" })
        return events, events:map(kv_of):reduce_by_key_and_window(add, "10s", "10s")
      end)
      assert_bags({
        { win("a", 0, 1), win("a", 10000, 2) },
        { win("a", 0, 4), win("a", 10000, 3) },
        { win("a", 20000, 1) },
        {},
      }, res.out, "update")
      assert.are.same({ 0, 1, 2, 2 }, res.counts)
    end)

    it("sliding windows: a record is in every window [start, start + len) that holds it", function()
      local res = run_events(cfg, { { { "k", 4500, 1 } }, { { "k", 100000, 0 } } }, 2, function(src)
        local events = src:event_time(ts_of)
        return events, events:map(kv_of):reduce_by_key_and_window(add, "3s", "1s")
      end)
      local function w(start) return { "k", { start = start, ["end"] = start + 3000, value = 1 } } end
      assert.are.same({}, res.out[1])
      assert_bags({ { w(2000), w(3000), w(4000) } }, { res.out[2] }, "sliding")
    end)

    it("session_window: records less than gap apart are one session; a bridging record merges two", function()
      local input = {
        { { "a", 1000, 1 }, { "a", 15000, 2 }, { "b", 2000, 10 },
          { "c", 1000, 20 }, { "c", 11000, 21 } },                -- c: exactly gap apart: two sessions
        { { "a", 8000, 3 } },                                     -- bridges a's [1000] and [15000]
        { { "x", 100000, 0 } },                                   -- the watermark passes them all
        {},
      }
      local res = run_events(cfg, input, 4, function(src)
        local events = src:event_time(ts_of, { watermark = "30s" })
        return events, events:map(kv_of):session_window("10s")
      end)
      local function sess(k, start, last, values)
        return { k, { start = start, ["end"] = last + 10000, values = values, count = #values } }
      end
      local got = sorted_sessions(res.out)
      assert.are.same({}, got[1])
      assert.are.same({}, got[2])
      assert_bags({ {
        sess("a", 1000, 15000, { 1, 2, 3 }),
        sess("b", 2000, 2000, { 10 }),
        sess("c", 1000, 1000, { 20 }),
        sess("c", 11000, 11000, { 21 }),
      } }, { got[3] }, "sessions")
      assert.are.same({}, got[4]) -- x's session is still open
    end)

    it("session_window: emit = \"update\" does not apply, a session comes once, when final (as the guide says)", function()
      local input = { { { "a", 1000, 1 } }, { { "a", 3000, 2 } }, { { "x", 50000, 0 } }, {} }
      local res = run_events(cfg, input, 4, function(src)
        local events = src:event_time(ts_of, { watermark = "10s", emit = "update" })
        return events, events:map(kv_of):session_window("10s")
      end)
      local got = sorted_sessions(res.out)
      assert.are.same({ {}, {}, { { "a", { start = 1000, ["end"] = 13000, values = { 1, 2 }, count = 2 } } }, {} }, got)
    end)

    it("session_window: a record after a session was emitted does not reopen it (it is late)", function()
      local input = {
        { { "a", 1000, 1 } },
        { { "x", 50000, 0 } },   -- watermark 40000: a's session [1000, 11000) is emitted
        { { "a", 9000, 2 } },    -- would have joined it, but is late now
        {},
      }
      local res = run_events(cfg, input, 4, function(src)
        local events = src:event_time(ts_of, { watermark = "10s" })
        return events, events:map(kv_of):session_window("10s")
      end)
      local got = sorted_sessions(res.out)
      assert.are.same({ {}, { { "a", { start = 1000, ["end"] = 11000, values = { 1 }, count = 1 } } }, {}, {} }, got)
      assert.are.same({ 0, 0, 1, 1 }, res.counts)
    end)
  end)
end

describe("event time argument errors", function()
  local ctx, src
  before_each(function()
    ctx = H.context({ workers = 1, partitions = 1 })
    src = ctx:queue_stream({ { { "a", 1, 1 } } })
  end)
  after_each(function() pcall(ctx.stop, ctx) end)

  it("session_window needs event time", function()
    local ok, err = pcall(function() src:map(kv_of):session_window("10s") end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("event_time", 1, true), tostring(err))
  end)

  it("late_records needs late = \"side\"", function()
    local ok, err = pcall(function() src:event_time(ts_of):late_records() end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("late", 1, true), tostring(err))
  end)

  it("late_count needs a stream with event time, and says so at the user's line", function()
    local windows = src:event_time(ts_of):map(kv_of):reduce_by_key_and_window(add, "10s", "10s")
    local ok, err = pcall(function() return windows:late_count() end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("late_count: this stream has no event time", 1, true), tostring(err))
    assert.is_truthy(tostring(err):find("event_time_spec.lua:%d+"), tostring(err))
    assert.are.equal(0, src:event_time(ts_of):map(kv_of):late_count()) -- a map keeps the count
  end)

  it("watermark = 0 (or \"0s\") is the default said out loud; a negative one is refused", function()
    for _, wm in ipairs { 0, "0s", "0ms" } do
      assert.has_no.errors(function() src:event_time(ts_of, { watermark = wm }) end)
    end
    local ok, err = pcall(function() src:event_time(ts_of, { watermark = -1 }) end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("event_time: watermark: a duration must be a positive number of seconds (or 0), got -1", 1, true), tostring(err))
  end)

  it("event-time window lengths must be a multiple of the batch interval too", function()
    local ok, err = pcall(function()
      src:event_time(ts_of):map(kv_of):reduce_by_key_and_window(add, "2500ms", "1s")
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("multiple of the batch interval", 1, true), tostring(err))
  end)
end)

-- Processing-time window operators: window, count_by_window, reduce_by_window (with and
-- without inverse), reduce_by_key_and_window (plain, incremental with opts.inverse,
-- opts.filter, opts.partitions), count_by_value_and_window and group_by_key_and_window, on a
-- manual clock, checked against brute-force recomputation over seeded random input
-- (spec/helpers/window_reference.lua): window lengths of 1, 3, 6 and 7 batches, slides of 1, 2
-- and 3 batches, 1 and 4 workers, empty batches (a gap longer than any window in the middle)
-- and batches past the end of the input. Also: Spark's semantics on small hand-made inputs,
-- the accepted duration forms, graph-building errors for lengths and slides that are not a
-- multiple of the batch interval, and a long sliding window whose worker memory stays bounded.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local K = require("keyed_reference")
local WR = require("window_reference")

local add = function(a, b) return a + b end
local sub = function(a, b) return a - b end

-- 36 batches of random pairs: every 5th empty, and batches 11..18 empty (longer than any
-- window, so keys expire and come back); then 10 more batches with no input.
local NIN = 36
local NB = NIN + 10
local EMPTY = { 11, 12, 13, 14, 15, 16, 17, 18 }
local PAIRS = WR.random_pair_batches(NIN, 4242, { empty_every = 5, empty = EMPTY })
local VALUES = WR.column(PAIRS, 2) -- numbers
local KEYS = WR.column(PAIRS, 1) -- strings, numbers, booleans

local PAIRS_Q = { queue = { pairs = true }, batches = NB }
local SINGLE_Q = { batches = NB }

-- (len, slide) in batches. slide > len only for the operators without an inverse (as in
-- Spark, the incremental form needs the slide to be within the window).
local SHAPES = {
  { len = 1, slide = 1 }, { len = 3, slide = 1 }, { len = 3, slide = 3 },
  { len = 7, slide = 1 }, { len = 7, slide = 3 }, { len = 6, slide = 2 },
  { len = 1, slide = 2, no_inverse = true },
}

-- Durations in the accepted forms, varied per shape: "Ns", N (seconds), "N000ms".
local function dur(n, form)
  form = form % 3
  if form == 0 then return ("%ds"):format(n) end
  if form == 1 then return n end
  return ("%dms"):format(n * 1000)
end

local CONFIGS = { { workers = 1, partitions = 1 }, { workers = 4, partitions = 3 } }

-- A batch's map from its collected pairs, asserting each key appears once.
local function unique_map(records)
  local m, err = K.unique_map(records)
  assert.is_truthy(m, err)
  return m
end

-- Asserts per emission that the collected pair batches equal the expected maps.
local function assert_maps(expected, results, label)
  assert.are.equal(#expected, #results, label .. ": number of batches")
  for i = 1, #expected do
    local got = unique_map(results[i])
    assert.are.same(expected[i], got, ("%s: emission %d"):format(label, i))
  end
end

for _, cfg in ipairs(CONFIGS) do
  for si, shape in ipairs(SHAPES) do
    local L, S = shape.len, shape.slide
    local len, slide = dur(L, si), dur(S, si + 1)
    local label = ("len=%d slide=%d workers=%d partitions=%d"):format(L, S, cfg.workers, cfg.partitions)
    local times = WR.emission_times(NB, S)

    describe("window operators against brute force (" .. label .. ")", function()
      it("window gives the raw records of the window, only at multiples of the slide", function()
        local results, got_times = H.run(cfg, VALUES, function(s) return s:window(len, slide) end, SINGLE_Q)
        assert.are.same(times, got_times)
        local expected = WR.window(VALUES, NB, L, S)
        assert.are.equal(#expected, #results)
        for i = 1, #expected do
          assert.are.same(WR.bag(expected[i]), WR.bag(results[i]), "emission " .. i)
        end
      end)

      it("window of pairs keeps them pairs", function()
        local results = H.run(cfg, PAIRS, function(s) return s:window(len, slide) end, PAIRS_Q)
        local expected = WR.window(PAIRS, NB, L, S)
        for i = 1, #expected do
          assert.are.same(WR.bag(expected[i]), WR.bag(results[i]), "emission " .. i)
        end
      end)

      it("reduce_by_window without inverse: no record for an empty window", function()
        local results, got_times = H.run(cfg, VALUES, function(s)
          return s:reduce_by_window(add, len, slide)
        end, SINGLE_Q)
        assert.are.same(times, got_times)
        assert.are.same(WR.reduce_by_window(VALUES, NB, add, L, S), results)
      end)

      it("reduce_by_window of tables (max and min) without inverse", function()
        local f = function(a, b) return { math.max(a[1], b[1]), math.min(a[2], b[2]) } end
        local results = H.run(cfg, VALUES, function(s)
          return s:map(function(v) return { v, v } end):reduce_by_window(f, len, slide)
        end, SINGLE_Q)
        local boxed = {}
        for j, b in ipairs(VALUES) do
          boxed[j] = {}
          for i, v in ipairs(b) do boxed[j][i] = { v, v } end
        end
        assert.are.same(WR.reduce_by_window(boxed, NB, f, L, S), results)
      end)

      if not shape.no_inverse then
        it("reduce_by_window with inverse: a record from the first record on, neutral when empty", function()
          local results, got_times = H.run(cfg, VALUES, function(s)
            return s:reduce_by_window(add, len, slide, sub)
          end, SINGLE_Q)
          assert.are.same(times, got_times)
          assert.are.same(WR.reduce_by_window(VALUES, NB, add, L, S, { inverse = true, neutral = 0 }), results)
        end)

        it("count_by_window: nothing before the first record, 0 after records expired", function()
          local results, got_times = H.run(cfg, VALUES, function(s)
            return s:count_by_window(len, slide)
          end, SINGLE_Q)
          assert.are.same(times, got_times)
          assert.are.same(WR.count_by_window(VALUES, NB, L, S), results)
        end)
      end

      it("reduce_by_key_and_window without inverse", function()
        local results, got_times = H.run(cfg, PAIRS, function(s)
          return s:reduce_by_key_and_window(add, len, slide)
        end, PAIRS_Q)
        assert.are.same(times, got_times)
        assert_maps(WR.reduce_by_key_and_window(PAIRS, NB, add, L, S), results, "rbkaw")
      end)

      it("reduce_by_key_and_window without inverse, with a filter", function()
        local keep = function(_, v) return v > 10 end
        local results = H.run(cfg, PAIRS, function(s)
          return s:reduce_by_key_and_window(add, len, slide, { filter = keep })
        end, PAIRS_Q)
        assert_maps(WR.reduce_by_key_and_window(PAIRS, NB, add, L, S, { filter = keep }), results,
          "rbkaw filter")
      end)

      it("reduce_by_key_and_window into opts.partitions partitions", function()
        local results = H.run(cfg, PAIRS, function(s)
          return s:reduce_by_key_and_window(add, len, slide, { partitions = 2 }):glom()
        end, PAIRS_Q)
        local expected = WR.reduce_by_key_and_window(PAIRS, NB, add, L, S)
        assert.are.equal(#expected, #results)
        for i = 1, #expected do
          assert.are.equal(2, #results[i], "emission " .. i .. ": partitions")
          assert.are.same(expected[i], unique_map(H.concat(results[i])), "emission " .. i)
        end
      end)

      if not shape.no_inverse then
        it("reduce_by_key_and_window with inverse keeps expired keys at their neutral value", function()
          local results = H.run(cfg, PAIRS, function(s)
            return s:reduce_by_key_and_window(add, len, slide, { inverse = sub })
          end, PAIRS_Q)
          assert_maps(WR.reduce_by_key_and_window(PAIRS, NB, add, L, S, { inverse = true, neutral = 0 }),
            results, "rbkaw inverse")
        end)

        it("reduce_by_key_and_window with inverse and filter (table values) drops emptied keys", function()
          local f = function(a, b) return { n = a.n + b.n, s = a.s + b.s } end
          local inv = function(a, b) return { n = a.n - b.n, s = a.s - b.s } end
          local keep = function(_, v) return v.n > 0 end
          local results = H.run(cfg, PAIRS, function(s)
            return s:map_values(function(v) return { n = 1, s = v } end)
              :reduce_by_key_and_window(f, len, slide, { inverse = inv, filter = keep })
          end, PAIRS_Q)
          local boxed = {}
          for j, b in ipairs(PAIRS) do
            boxed[j] = {}
            for i, kv in ipairs(b) do boxed[j][i] = { kv[1], { n = 1, s = kv[2] } } end
          end
          assert_maps(WR.reduce_by_key_and_window(boxed, NB, f, L, S,
            { inverse = true, neutral = { n = 0, s = 0 }, filter = keep }), results, "rbkaw inverse filter")
        end)

        it("count_by_value_and_window counts the window's values, dropping counts of 0", function()
          local results, got_times = H.run(cfg, KEYS, function(s)
            return s:count_by_value_and_window(len, slide)
          end, SINGLE_Q)
          assert.are.same(times, got_times)
          assert_maps(WR.count_by_value_and_window(KEYS, NB, L, S), results, "cbvaw")
        end)

        it("count_by_value_and_window into n partitions", function()
          local results = H.run(cfg, KEYS, function(s)
            return s:count_by_value_and_window(len, slide, 2):glom()
          end, SINGLE_Q)
          local expected = WR.count_by_value_and_window(KEYS, NB, L, S)
          assert.are.equal(#expected, #results)
          for i = 1, #expected do
            assert.are.equal(2, #results[i], "emission " .. i .. ": partitions")
            assert.are.same(expected[i], unique_map(H.concat(results[i])), "emission " .. i)
          end
        end)
      end

      it("group_by_key_and_window gives k, {values of the window}", function()
        local results, got_times = H.run(cfg, PAIRS, function(s)
          return s:group_by_key_and_window(len, slide)
        end, PAIRS_Q)
        assert.are.same(times, got_times)
        local expected = WR.group_by_key_and_window(PAIRS, NB, L, S)
        assert.are.equal(#expected, #results)
        for i = 1, #expected do
          assert.are.same(expected[i], K.sort_values(unique_map(results[i])), "emission " .. i)
        end
      end)
    end)
  end
end

describe("window semantics (Spark Streaming's)", function()
  local cfg = { workers = 2, partitions = 2 }

  it("count_by_window: nothing until the first record, then counts, 0 after expiry", function()
    local results, times = H.run(cfg, { {}, {}, { "a", "b" }, {}, { "c" } }, function(s)
      return s:count_by_window("2s", "1s")
    end, { batches = 9 })
    assert.are.same(H.times(9), times)
    assert.are.same({ {}, {}, { 2 }, { 2 }, { 1 }, { 1 }, { 0 }, { 0 }, { 0 } }, results)
  end)

  it("reduce_by_window without inverse has no record for an empty window", function()
    local results = H.run(cfg, { {}, { 5 }, {}, {}, { 1, 2 } }, function(s)
      return s:reduce_by_window(add, "2s")
    end, { batches = 7 })
    assert.are.same({ {}, { 5 }, { 5 }, {}, { 3 }, { 3 }, {} }, results)
  end)

  it("reduce_by_window with inverse keeps its record at the neutral value", function()
    local results = H.run(cfg, { {}, { 5 }, {}, {}, { 1, 2 } }, function(s)
      return s:reduce_by_window(add, "2s", "1s", sub)
    end, { batches = 7 })
    assert.are.same({ {}, { 5 }, { 5 }, { 0 }, { 3 }, { 3 }, { 0 } }, results)
  end)

  it("reduce_by_key_and_window with inverse and no filter keeps keys at 0", function()
    local input = { { { "a", 1 }, { "b", 2 } }, { { "a", 3 } }, {}, {}, { { "c", 4 } } }
    local results = H.run(cfg, input, function(s)
      return s:reduce_by_key_and_window(add, "2s", "1s", { inverse = sub })
    end, { queue = { pairs = true }, batches = 7 })
    local maps = {}
    for i, r in ipairs(results) do maps[i] = unique_map(r) end
    assert.are.same({
      { a = 1, b = 2 },
      { a = 4, b = 2 },
      { a = 3, b = 0 },
      { a = 0, b = 0 },
      { a = 0, b = 0, c = 4 },
      { a = 0, b = 0, c = 4 },
      { a = 0, b = 0, c = 0 },
    }, maps)
  end)

  it("reduce_by_key_and_window with inverse and a filter drops keys while it returns false", function()
    local input = { { { "a", 1 }, { "b", 2 } }, { { "a", 3 } }, {}, {}, { { "b", 4 } } }
    local results = H.run(cfg, input, function(s)
      return s:reduce_by_key_and_window(add, "2s", "1s", {
        inverse = sub, filter = function(_, v) return v ~= 0 end })
    end, { queue = { pairs = true }, batches = 7 })
    local maps = {}
    for i, r in ipairs(results) do maps[i] = unique_map(r) end
    assert.are.same({ { a = 1, b = 2 }, { a = 4, b = 2 }, { a = 3 }, {}, { b = 4 }, { b = 4 }, {} }, maps)
  end)

  it("count_by_value_and_window drops values whose count fell to 0", function()
    local results = H.run(cfg, { { "x", "y", "x" }, { "y" }, {}, {} }, function(s)
      return s:count_by_value_and_window("2s", "1s")
    end, { batches = 5 })
    local maps = {}
    for i, r in ipairs(results) do maps[i] = unique_map(r) end
    assert.are.same({ { x = 2, y = 1 }, { x = 2, y = 2 }, { y = 1 }, {}, {} }, maps)
  end)

  it("group_by_key_and_window gives k, {v1, v2, ...} over the window", function()
    local input = { { { "a", 1 }, { "b", 2 } }, { { "a", 3 } }, {} }
    local results = H.run(cfg, input, function(s)
      return s:group_by_key_and_window("2s", "1s")
    end, { queue = { pairs = true }, batches = 4 })
    local maps = {}
    for i, r in ipairs(results) do maps[i] = K.sort_values(unique_map(r)) end
    assert.are.same({ { a = { 1 }, b = { 2 } }, { a = { 1, 3 }, b = { 2 } }, { a = { 3 } }, {} }, maps)
  end)

  it("a windowed stream reaches foreach_rdd only when the time is a multiple of its slide", function()
    local calls = H.with_context(cfg, function(ctx)
      local seen = {}
      ctx:queue_stream({ { 1 }, { 2 }, { 3 } }):window("4s", "2s"):foreach_rdd(function(rdd, t)
        seen[#seen + 1] = { t, H.sorted(rdd:collect()) }
      end)
      ctx:start()
      ctx:advance(8)
      return seen
    end)
    assert.are.same({ { 2000, { 1, 2 } }, { 4000, { 1, 2, 3 } }, { 6000, { 3 } }, { 8000, {} } }, calls)
  end)

  it("windows keep coming, empty, after the input ends", function()
    local results, times = H.run(cfg, { { 1 } }, function(s) return s:window("1s") end, { batches = 4 })
    assert.are.same({ { 1 }, {}, {}, {} }, results)
    assert.are.same(H.times(4), times)
  end)

  it("accepts \"3s\", 3 and \"3000ms\" as the same length", function()
    local input = WR.column(WR.random_pair_batches(12, 7), 2)
    local a = H.run(cfg, input, function(s) return s:reduce_by_window(add, "3s", "2s") end)
    local b = H.run(cfg, input, function(s) return s:reduce_by_window(add, 3, 2) end)
    local c = H.run(cfg, input, function(s) return s:reduce_by_window(add, "3000ms", "2000ms") end)
    assert.are.same(WR.reduce_by_window(input, 12, add, 3, 2), a)
    assert.are.same(a, b)
    assert.are.same(a, c)
  end)

  it("counts time in batch intervals other than 1s (batch = 500ms, window 1500ms sliding 1s)", function()
    local input = { { 1 }, { 2 }, { 3 }, { 4 }, { 5 } }
    local results, times = H.run({ workers = 2, partitions = 2, batch = "500ms" }, input, function(s)
      return s:reduce_by_window(add, "1500ms", "1s")
    end, { batches = 6 })
    assert.are.same({ 1000, 2000, 3000 }, times)
    assert.are.same({ { 3 }, { 9 }, { 9 } }, results)
  end)
end)

describe("window lengths and slides that are not a multiple of the batch interval", function()
  local ctx, src, pairs_src
  before_each(function()
    ctx = H.context({ workers = 1, partitions = 1 })
    src = ctx:queue_stream({ { 1 } })
    pairs_src = ctx:queue_stream({ { { "a", 1 } } }, { pairs = true })
  end)
  after_each(function() pcall(ctx.stop, ctx) end)

  -- (no `return` in these functions: a tail call would hide the caller's line)
  local calls = {
    { "window", function(s, _, len, slide) s:window(len, slide) end },
    { "count_by_window", function(s, _, len, slide) s:count_by_window(len, slide) end },
    { "reduce_by_window", function(s, _, len, slide) s:reduce_by_window(add, len, slide) end },
    { "reduce_by_key_and_window", function(_, p, len, slide) p:reduce_by_key_and_window(add, len, slide) end },
    { "count_by_value_and_window", function(s, _, len, slide) s:count_by_value_and_window(len, slide) end },
    { "group_by_key_and_window", function(_, p, len, slide) p:group_by_key_and_window(len, slide) end },
  }
  for _, c in ipairs(calls) do
    local name, call = c[1], c[2]
    it(name .. ": a length of 1500ms is an error naming the operator", function()
      local ok, err = pcall(call, src, pairs_src, "1500ms", "1s")
      assert.is_false(ok)
      err = tostring(err)
      assert.is_truthy(err:find(name, 1, true), err)
      assert.is_truthy(err:find("multiple of the batch interval", 1, true), err)
    end)

    it(name .. ": a slide of 2.5 (seconds) is an error naming the operator", function()
      local ok, err = pcall(call, src, pairs_src, "5s", 2.5)
      assert.is_false(ok)
      err = tostring(err)
      assert.is_truthy(err:find(name, 1, true), err)
      assert.is_truthy(err:find("multiple of the batch interval", 1, true), err)
    end)

    it(name .. ": the error blames the caller's line", function()
      local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() call(src, pairs_src, "1500ms", "1s") end)
      assert.is_false(ok)
      -- the operator is called by `call`, a one-line function in the table above: its line is
      -- the one to blame (not `line`, where `call` itself is called)
      local l = tostring(err):match("^[^\n]-window_spec%.lua:(%d+):")
      assert.is_truthy(l, "the error does not start with this file's name and a line: " .. tostring(err))
      assert.are.equal(debug.getinfo(call, "S").linedefined, tonumber(l),
        ("blamed line %s, the caller's is %d (and %d calls the caller): %s"):format(
          l, debug.getinfo(call, "S").linedefined, line, tostring(err)))
    end)
  end
end)

describe("a window's value kept on the workers", function()
  local INPUT = { { { "a", 1 }, { "b", 2 } }, { { "a", 3 }, { "c", 1 } }, { { "b", 5 } }, {},
    { { "a", 1 }, { "c", 2 } }, { { "d", 7 } }, {}, { { "a", 2 } } }
  local function windows(cfg, marker, fail_at)
    return H.with_context(cfg, function(ctx)
      local maps, counts = {}, {}
      ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
        :reduce_by_key_and_window(add, "3s", "1s", {
          inverse = sub,
          -- Raises once (and removes the marker) when the marker file exists: the task fails
          -- after the window was changed in place, and is retried.
          filter = function(_, v)
            local fh = marker and io.open(marker)
            if fh then
              fh:close()
              os.remove(marker)
              error("injected failure")
            end
            return v ~= 0
          end,
        })
        :foreach_rdd(function(rdd)
          -- count() first: answered from the window's tasks (worker/ops/window.lua kept_count)
          counts[#maps + 1] = rdd:count()
          maps[#maps + 1] = rdd:collect_as_map()
        end)
      ctx:start()
      for b = 1, #INPUT + 3 do
        if fail_at and fail_at[b] then
          local fh = assert(io.open(marker, "w"))
          fh:close()
        end
        ctx:advance(1)
      end
      return { maps, counts }
    end)
  end

  -- count() of a window's batch is the number of keys its value holds, also when the task that
  -- made it failed once and was retried (the count of the attempt that succeeded).
  local function assert_counts(maps, counts)
    for i, map in ipairs(maps) do
      local n = 0
      for _ in pairs(map) do n = n + 1 end
      assert.equal(n, counts[i], "window " .. i)
    end
  end

  for _, cfg in ipairs({ { workers = 1, partitions = 1 }, { workers = 2, partitions = 3 } }) do
    it(("a task that fails after changing the window in place is retried from the window before it (workers=%d)")
      :format(cfg.workers), function()
      local want, want_counts = unpack(windows(cfg))
      assert.are.same({ a = 4, b = 2, c = 1 }, want[2])
      assert_counts(want, want_counts)
      local marker = os.tmpname()
      os.remove(marker)
      local got, got_counts = unpack(windows(cfg, marker, { [2] = true, [3] = true, [5] = true, [9] = true }))
      assert.is_nil(io.open(marker), "every injected failure happened")
      assert.are.same(want, got)
      assert_counts(got, got_counts)
    end)
  end

  it("a window over a windowed stream reads the windows it remembers", function()
    local results = H.run({ workers = 2, partitions = 2 }, INPUT, function(s)
      return s:reduce_by_key_and_window(add, "2s", "1s", { inverse = sub, filter = function(_, v) return v ~= 0 end })
        :window("3s", "1s")
        :reduce_by_key(add)
    end, { queue = { pairs = true }, batches = #INPUT })
    -- windows of 2 batches: {a1 b2} {a4 b2 c1} {a3 c1 b5} {b5} {a1 c2} {a1 c2 d7} {d7} {a2};
    -- the sums of the last 3 of them:
    local want = { { a = 1, b = 2 }, { a = 5, b = 4, c = 1 }, { a = 8, b = 9, c = 2 },
      { a = 7, b = 12, c = 2 }, { a = 4, b = 10, c = 3 }, { a = 2, b = 5, c = 4, d = 7 },
      { a = 2, c = 4, d = 14 }, { a = 3, c = 2, d = 14 } }
    for i = 1, #want do assert.are.same(want[i], H.to_map(results[i]), "batch " .. i) end
  end)

  it("reading a window's batch after the job forgot it is a clear error", function()
    local err = H.with_context({ workers = 1 }, function(ctx)
      local saved
      ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
        :reduce_by_key_and_window(add, "2s", "1s", { inverse = sub })
        :foreach_rdd(function(rdd) saved = saved or rdd end)
      ctx:start()
      ctx:advance(3)
      local ok, e = pcall(saved.collect, saved)
      assert.is_false(ok)
      return tostring(e)
    end)
    assert.matches("the window of batch 1000 ms is no longer kept on the workers", err, 1, true)
    assert.matches("collect() it to keep it longer", err, 1, true)
    assert.matches("task failed, not retried", err, 1, true) -- a retry would not find it either
  end)
end)

describe("a long sliding window #slow", function()
  it("a long sliding window whose memory stays bounded", function()
    local NKEYS, RATE = 2000, 20000
    local cfg = { workers = 2, partitions = 2 }
    local got = H.with_context(cfg, function(ctx)
      local last, last_inv = {}, {}
      local pairs_s = ctx:rate_stream { rows_per_second = RATE }:map(function(x) return x % NKEYS, 1 end)
      pairs_s:reduce_by_key_and_window(add, "60s", "1s"):foreach_rdd(function(rdd)
        last = rdd:collect_as_map()
      end)
      pairs_s:reduce_by_key_and_window(add, "60s", "1s", { inverse = sub }):foreach_rdd(function(rdd)
        last_inv = rdd:collect_as_map()
      end)
      ctx:start()
      local pool = ctx.sched.pool
      local function memory()
        local m = 0
        for i = 0, cfg.workers - 1 do m = m + pool:worker_memory(i) end
        return m
      end
      -- the peak over the last 20 batches before each point (one reading could fall right
      -- after or right before a collection)
      local peak80, peak200 = 0, 0
      for k = 1, 200 do
        ctx:advance(1)
        if k > 60 and k <= 80 then peak80 = math.max(peak80, memory()) end
        if k > 180 then peak200 = math.max(peak200, memory()) end
      end
      return { peak80 = peak80, peak200 = peak200, last = last, last_inv = last_inv }
    end)
    -- the windows are right: 60 batches of RATE records, spread evenly over NKEYS keys
    local expected = {}
    for k = 0, NKEYS - 1 do expected[k] = 60 * RATE / NKEYS end
    assert.are.same(expected, got.last)
    assert.are.same(expected, got.last_inv)
    assert.is_true(got.peak80 > 0)
    assert.is_true(got.peak200 < 2 * got.peak80 + 1024 * 1024,
      ("worker memory grew from %d bytes (batches 61-80) to %d (batches 181-200)"):format(got.peak80, got.peak200))
  end)
end)

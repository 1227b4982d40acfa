-- Keyed operators on streams and on batches (rdds): reduce_by_key, group_by_key,
-- combine_by_key, map_values, flat_map_values, join, left/right/full_outer_join, cogroup and
-- count_by_key, with 1 and 4 workers and 1, 3 and 16 output partitions, on keys of mixed types
-- (strings, integers, floats, booleans) and empty batches, checked against plain-Lua references
-- (spec/helpers/keyed_reference.lua). Also: hash partitioning is the same on every worker and
-- in every run, group_by_key keeps arrival order with one input partition, and a key of any
-- other type, or nil (a failed match in map), is an error naming the operator and the record.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local K = require("keyed_reference")

local add = function(a, b) return a + b end

-- Left and right sides of the two-sided operators, batch by batch: both sides filled, only
-- the right side, only the left side, both empty, string keys only with partial overlap.
local SMALL = { { "a", 1 }, { "b", 2 }, { "a", 3 }, { 1, 10 }, { 2.5, 20 }, { true, 30 },
  { false, 40 }, { 1, 11 }, { "1", 12 }, { true, 31 } }
local STR_A = { "apple", "banana", "cherry", "date", "elder" }
local STR_B = { "cherry", "date", "elder", "fig", "grape" }
local LEFT = {
  K.random_pairs(400, 101),
  {},
  SMALL,
  {},
  K.random_pairs(200, 102, STR_A),
}
local RIGHT = {
  K.random_pairs(80, 103),
  K.random_pairs(30, 104),
  {},
  {},
  K.random_pairs(80, 105, STR_B),
}
local NBATCHES = #LEFT

local PAIRS_Q = { queue = { pairs = true } }

-- Runs a one-sided operator over LEFT.
local function run1(cfg, build)
  return H.run(cfg, LEFT, build, PAIRS_Q)
end

-- Runs a two-sided operator over LEFT and RIGHT.
local function run2(cfg, build)
  return H.run(cfg, LEFT, function(s, ctx)
    return build(s, ctx:queue_stream(H.deep_copy(RIGHT), { pairs = true }))
  end, PAIRS_Q)
end

-- Asserts a batch's records are pairs with distinct keys and returns their map.
local function unique_map(records)
  local m, err = K.unique_map(records)
  assert.is_truthy(m, err)
  return m
end

-- Runs fn(rdd, ctx) on a parallelized pair dataset (context not started) and returns its result.
local function on_batch(cfg, list, fn)
  return H.with_context(cfg, function(ctx)
    return fn(ctx:parallelize(H.deep_copy(list), cfg.partitions, { pairs = true }), ctx)
  end)
end

local JOIN_MODES = { "join", "left_outer_join", "right_outer_join", "full_outer_join" }

for _, workers in ipairs({ 1, 4 }) do
  for _, n in ipairs({ 1, 3, 16 }) do
    local cfg = { workers = workers, partitions = 2 }
    describe(("keyed operators (workers=%d, n=%d)"):format(workers, n), function()
      describe("reduce_by_key", function()
        it("reduces the values of each key, one record per key, empty batches empty", function()
          local results = run1(cfg, function(s) return s:reduce_by_key(add, n) end)
          assert.are.equal(NBATCHES, #results)
          for i, b in ipairs(LEFT) do
            assert.are.same(H.ref.reduce_by_key(b, add), unique_map(results[i]))
          end
          assert.are.same({}, results[2])
        end)

        it("gives n partitions", function()
          local results = run1(cfg, function(s) return s:reduce_by_key(add, n):glom() end)
          for i, b in ipairs(LEFT) do
            assert.are.equal(n, #results[i])
            assert.are.same(H.ref.reduce_by_key(b, add), unique_map(H.concat(results[i])))
          end
        end)

        it("works on a batch (rdd)", function()
          local got = on_batch(cfg, LEFT[1], function(r) return r:reduce_by_key(add, n):collect() end)
          assert.are.same(H.ref.reduce_by_key(LEFT[1], add), unique_map(got))
        end)
      end)

      describe("group_by_key", function()
        it("gives k, {v1, v2, ...} once per key", function()
          local results = run1(cfg, function(s) return s:group_by_key(n) end)
          for i, b in ipairs(LEFT) do
            assert.are.same(K.sort_values(K.group_by_key(b)), K.sort_values(unique_map(results[i])))
          end
          assert.are.same({}, results[2])
          assert.are.same({}, results[4])
        end)

        it("gives n partitions, each key in exactly one", function()
          local results = run1(cfg, function(s) return s:group_by_key(n):glom() end)
          for i, b in ipairs(LEFT) do
            assert.are.equal(n, #results[i])
            local all = H.concat(results[i])
            assert.are.same(K.sort_values(K.group_by_key(b)), K.sort_values(unique_map(all)))
          end
        end)

        it("works on a batch (rdd)", function()
          local got = on_batch(cfg, LEFT[1], function(r) return r:group_by_key(n):collect() end)
          assert.are.same(K.sort_values(K.group_by_key(LEFT[1])), K.sort_values(unique_map(got)))
        end)
      end)

      describe("combine_by_key", function()
        local create = function(v) return { n = 1, sum = v, min = v, max = v } end
        local merge_value = function(c, v)
          return { n = c.n + 1, sum = c.sum + v, min = math.min(c.min, v), max = math.max(c.max, v) }
        end
        local merge_combiners = function(a, b)
          return { n = a.n + b.n, sum = a.sum + b.sum, min = math.min(a.min, b.min), max = math.max(a.max, b.max) }
        end

        it("combines each key's values into one combiner", function()
          local results = run1(cfg, function(s)
            return s:combine_by_key(create, merge_value, merge_combiners, n)
          end)
          for i, b in ipairs(LEFT) do
            assert.are.same(K.combine_by_key(b, create, merge_value), unique_map(results[i]))
          end
        end)

        it("builds per-key lists (create wraps, merges concatenate)", function()
          local results = run1(cfg, function(s)
            return s:combine_by_key(function(v) return { v } end,
              function(c, v) c[#c + 1] = v; return c end,
              function(a, b2) for _, x in ipairs(b2) do a[#a + 1] = x end; return a end, n)
          end)
          for i, b in ipairs(LEFT) do
            assert.are.same(K.sort_values(K.group_by_key(b)), K.sort_values(unique_map(results[i])))
          end
        end)

        it("gives n partitions", function()
          local results = run1(cfg, function(s)
            return s:combine_by_key(create, merge_value, merge_combiners, n):glom()
          end)
          assert.are.equal(n, #results[1])
          assert.are.same(K.combine_by_key(LEFT[1], create, merge_value), unique_map(H.concat(results[1])))
        end)

        it("works on a batch (rdd)", function()
          local got = on_batch(cfg, LEFT[1], function(r)
            return r:combine_by_key(create, merge_value, merge_combiners, n):collect()
          end)
          assert.are.same(K.combine_by_key(LEFT[1], create, merge_value), unique_map(got))
        end)
      end)

      describe("map_values", function()
        -- f must see only the value; its second result is ignored.
        local f = function(v, extra)
          if extra ~= nil then error("map_values passed a second argument") end
          return { v * 2 }, "ignored"
        end

        it("applies f to each value and keeps the key", function()
          local results = run1(cfg, function(s) return s:map_values(f) end)
          for i, b in ipairs(LEFT) do
            assert.are.same(K.multiset(K.map_values(b, f)), K.multiset(results[i]))
          end
        end)

        it("keeps the key and partitioning after reduce_by_key(n)", function()
          local results = run1(cfg, function(s)
            return s:reduce_by_key(add, n):map_values(function(v) return -v end):glom()
          end)
          for i, b in ipairs(LEFT) do
            assert.are.equal(n, #results[i])
            local expected = {}
            for k, v in pairs(H.ref.reduce_by_key(b, add)) do expected[k] = -v end
            assert.are.same(expected, unique_map(H.concat(results[i])))
          end
        end)

        it("works on a batch (rdd)", function()
          local got = on_batch(cfg, LEFT[1], function(r) return r:map_values(f):collect() end)
          assert.are.same(K.multiset(K.map_values(LEFT[1], f)), K.multiset(got))
        end)
      end)

      describe("flat_map_values", function()
        local arr = function(v, extra)
          if extra ~= nil then error("flat_map_values passed a second argument") end
          local t = {}
          for j = 1, v % 4 do t[j] = v * 10 + j end -- 0 to 3 values, some empty
          return t
        end
        local iter = function(v)
          return (tostring(v) .. "-x-y"):gmatch("[^-]+")
        end

        it("pairs every element of a returned array with the key", function()
          local results = run1(cfg, function(s) return s:flat_map_values(arr) end)
          for i, b in ipairs(LEFT) do
            assert.are.same(K.multiset(K.flat_map_values(b, arr)), K.multiset(results[i]))
          end
        end)

        it("pairs every value of a returned iterator with the key", function()
          local results = run1(cfg, function(s) return s:flat_map_values(iter) end)
          for i, b in ipairs(LEFT) do
            assert.are.same(K.multiset(K.flat_map_values(b, iter)), K.multiset(results[i]))
          end
          assert.are.equal(3 * #LEFT[1], #results[1])
        end)

        it("feeds a keyed operator with n partitions", function()
          local results = run1(cfg, function(s) return s:flat_map_values(arr):group_by_key(n) end)
          for i, b in ipairs(LEFT) do
            assert.are.same(K.sort_values(K.group_by_key(K.flat_map_values(b, arr))),
              K.sort_values(unique_map(results[i])))
          end
        end)

        it("works on a batch (rdd)", function()
          local got = on_batch(cfg, LEFT[1], function(r) return r:flat_map_values(arr):collect() end)
          assert.are.same(K.multiset(K.flat_map_values(LEFT[1], arr)), K.multiset(got))
        end)
      end)

      for _, mode in ipairs(JOIN_MODES) do
        describe(mode, function()
          it("gives k, {left, right} for every pair (nil on a missing side) in n partitions", function()
            local parts = run2(cfg, function(a, b) return a[mode](a, b, n):glom() end)
            assert.are.equal(NBATCHES, #parts)
            for i = 1, NBATCHES do
              assert.are.equal(n, #parts[i])
              local got, expected = H.concat(parts[i]), K.join(LEFT[i], RIGHT[i], mode)
              assert.are.equal(#expected, #got)
              assert.are.same(K.multiset(expected), K.multiset(got))
            end
            assert.are.same({}, H.concat(parts[4]))
          end)

          it("works on batches (rdds)", function()
            local got = H.with_context(cfg, function(ctx)
              local l = ctx:parallelize(H.deep_copy(LEFT[5]), 3, { pairs = true })
              local r = ctx:parallelize(H.deep_copy(RIGHT[5]), 2, { pairs = true })
              return l[mode](l, r, n):collect()
            end)
            assert.are.same(K.multiset(K.join(LEFT[5], RIGHT[5], mode)), K.multiset(got))
          end)
        end)
      end

      describe("cogroup", function()
        it("gives k, {left_values, right_values} once per key of either side", function()
          local results = run2(cfg, function(a, b) return a:cogroup(b, n) end)
          for i = 1, NBATCHES do
            local got = unique_map(results[i])
            for k, v in pairs(got) do got[k] = { H.sorted(v[1]), H.sorted(v[2]) } end
            assert.are.same(K.cogroup(LEFT[i], RIGHT[i]), got)
          end
        end)

        it("gives empty arrays (not nil) for a side without values", function()
          local results = run2(cfg, function(a, b) return a:cogroup(b, n) end)
          -- batch 2: only the right side; batch 3: only the left side
          for _, kv in ipairs(results[2]) do
            assert.are.same({}, kv[2][1])
            assert.is_true(#kv[2][2] > 0)
          end
          for _, kv in ipairs(results[3]) do
            assert.is_true(#kv[2][1] > 0)
            assert.are.same({}, kv[2][2])
          end
          assert.is_true(#results[2] > 0 and #results[3] > 0)
          assert.are.same({}, results[4])
        end)

        it("gives n partitions", function()
          local results = run2(cfg, function(a, b) return a:cogroup(b, n):glom() end)
          for i = 1, NBATCHES do assert.are.equal(n, #results[i]) end
        end)

        it("works on batches (rdds)", function()
          local got = H.with_context(cfg, function(ctx)
            local l = ctx:parallelize(H.deep_copy(LEFT[5]), 2, { pairs = true })
            local r = ctx:parallelize(H.deep_copy(RIGHT[5]), 3, { pairs = true })
            return l:cogroup(r, n):collect()
          end)
          local m = unique_map(got)
          for k, v in pairs(m) do m[k] = { H.sorted(v[1]), H.sorted(v[2]) } end
          assert.are.same(K.cogroup(LEFT[5], RIGHT[5]), m)
        end)
      end)

      describe("count_by_key", function()
        it("on a stream gives (key, count) pairs", function()
          local results = run1(cfg, function(s) return s:count_by_key(n) end)
          for i, b in ipairs(LEFT) do
            assert.are.same(K.count_by_key(b), unique_map(results[i]))
          end
          assert.are.same({}, results[2])
        end)

        it("on a stream gives n partitions", function()
          local results = run1(cfg, function(s) return s:count_by_key(n):glom() end)
          assert.are.equal(n, #results[1])
          assert.are.same(K.count_by_key(LEFT[1]), unique_map(H.concat(results[1])))
        end)

        it("on a batch is an action returning key -> count", function()
          local got = on_batch(cfg, LEFT[1], function(r) return r:count_by_key() end)
          assert.are.same(K.count_by_key(LEFT[1]), got)
          local empty = on_batch(cfg, {}, function(r) return r:count_by_key() end)
          assert.are.same({}, empty)
        end)

        it("inside foreach_rdd, on every batch", function()
          local got = H.with_context(cfg, function(ctx)
            local res = {}
            ctx:queue_stream(H.deep_copy(LEFT), { pairs = true }):foreach_rdd(function(rdd)
              res[#res + 1] = rdd:count_by_key()
            end)
            ctx:start()
            ctx:advance(NBATCHES)
            return res
          end)
          assert.are.same(H.ref.per_batch(LEFT, K.count_by_key), got)
        end)
      end)
    end)
  end
end

describe("keyed operators, whole-graph checks", function()
  it("group_by_key keeps arrival order within a key with one input partition", function()
    for _, workers in ipairs({ 1, 4 }) do
      for _, n in ipairs({ 1, 3, 16 }) do
        local results = H.run({ workers = workers, partitions = 1 }, LEFT,
          function(s) return s:group_by_key(n) end, PAIRS_Q)
        for i, b in ipairs(LEFT) do
          assert.are.same(K.group_by_key(b), unique_map(results[i]))
        end
      end
    end
  end)

  it("chains keyed operators (word count, join of the counts, cogroup)", function()
    local lines = H.random_lines(400, 7)
    for _, workers in ipairs({ 1, 4 }) do
      local results = H.run({ workers = workers, partitions = 3 }, { lines, {} }, function(s)
        local counts = s:flat_map(function(l) return l:gmatch("%S+") end)
          :map(function(w) return w, 1 end):reduce_by_key(add, 5)
        local lengths = counts:map(function(w) return w, #w end)
        return counts:join(lengths, 3):map_values(function(v) return v[1] * v[2] end)
      end)
      local words = H.ref.flat_map(lines, function(l) return l:gmatch("%S+") end)
      local expected = {}
      for w, c in pairs(H.ref.count_by_value(words)) do expected[w] = c * #w end
      assert.are.same(expected, unique_map(results[1]))
      assert.are.same({}, results[2])
    end
  end)

  it("mixed key types stay distinct (1 and 1.0 are one key, \"1\" and true are others)", function()
    local input = { { { 1, 1 }, { 1.0, 2 }, { "1", 4 }, { true, 8 }, { 1.5, 16 }, { false, 32 } } }
    for _, workers in ipairs({ 1, 4 }) do
      local results = H.run({ workers = workers, partitions = 3 }, input,
        function(s) return s:reduce_by_key(add, 16) end, PAIRS_Q)
      assert.are.same({ [1] = 3, ["1"] = 4, [true] = 8, [1.5] = 16, [false] = 32 }, unique_map(results[1]))
    end
  end)

  -- key -> partition index of group_by_key(n), observed with glom().
  local KEYS = {}
  for _, k in ipairs(K.MIXED_KEYS) do KEYS[#KEYS + 1] = k end
  for i = 1, 200 do KEYS[#KEYS + 1] = "key" .. i end
  for i = 1, 100 do KEYS[#KEYS + 1] = i * 37 - 1000 end
  for i = 1, 50 do KEYS[#KEYS + 1] = i / 8 + 1000 end
  do -- distinct keys only
    local seen, uniq = {}, {}
    for _, k in ipairs(KEYS) do
      if not seen[k] then seen[k] = true; uniq[#uniq + 1] = k end
    end
    KEYS = uniq
  end

  local function placement(workers, in_parts, n, op)
    local list = {}
    for i, k in ipairs(KEYS) do list[i] = { k, i } end
    local gl = H.with_context({ workers = workers, partitions = in_parts }, function(ctx)
      local r = ctx:parallelize(list, in_parts, { pairs = true })
      if op == "reduce_by_key" then
        return r:reduce_by_key(add, n):glom():collect()
      end
      return r:group_by_key(n):glom():collect()
    end)
    assert.are.equal(n, #gl)
    local where = {}
    for p, part in ipairs(gl) do
      for _, kv in ipairs(part) do
        assert.is_nil(where[kv[1]], "key in two partitions: " .. H.repr(kv[1]))
        where[kv[1]] = p - 1
      end
    end
    assert.are.equal(#KEYS, H.size(where))
    return where
  end

  it("places the same keys in the same partition with 1 and 4 workers, any input split", function()
    for _, n in ipairs({ 3, 16 }) do
      local ref = placement(1, 1, n)
      assert.are.same(ref, placement(4, 1, n))
      assert.are.same(ref, placement(4, 3, n))
      assert.are.same(ref, placement(1, 5, n))
      assert.are.same(ref, placement(4, 5, n, "reduce_by_key"))
      -- several keys per partition: the partitioning is not degenerate
      local used = {}
      for _, p in pairs(ref) do used[p] = true end
      assert.are.equal(n, H.size(used))
    end
  end)

  it("places keys the same way in another process (every run)", function()
    local here = placement(4, 3, 16)
    -- the keys travel as a Lua literal to keep floats and booleans exact
    local parts = {}
    for i, k in ipairs(KEYS) do
      local lit = type(k) == "string" and ("%q"):format(k) or type(k) == "number" and ("%.17g"):format(k) or tostring(k)
      parts[i] = "{" .. lit .. "," .. i .. "}"
    end
    local code = [[
      local dstream = require("dstream")
      local ctx = dstream.context{ batch = "1s", clock = "manual", workers = 2, partitions = 2 }
      local list = {]] .. table.concat(parts, ",") .. [[}
      local gl = ctx:parallelize(list, 2, { pairs = true }):group_by_key(16):glom():collect()
      for p, part in ipairs(gl) do
        for _, kv in ipairs(part) do
          io.write(("%.17g"):format(kv[2][1]), " ", p - 1, "\n")
        end
      end
      ctx:stop()
    ]]
    local out = H.run_script(code)
    local there = {}
    for idx, p in out:gmatch("(%d+) (%d+)\n") do there[KEYS[tonumber(idx)]] = tonumber(p) end
    assert.are.equal(#KEYS, H.size(there), out)
    assert.are.same(here, there)
  end)
end)

describe("keyed operators reject keys of other types", function()
  local NEEDLE = "keys must be strings, numbers or booleans"

  -- Runs build(pair stream with a table key) and returns the error of ctx:advance.
  local function advance_error(build)
    local err
    H.with_context({ workers = 2, partitions = 2 }, function(ctx)
      local s = ctx:queue_stream({ { 1, 2, 3 } }):map(function(x)
        if x == 2 then return { n = x }, x end -- (a table with fields: arrays are composite keys)
        return x, x
      end)
      local other = ctx:queue_stream({ { { 1, 1 } } }, { pairs = true })
      build(s, other):foreach_rdd(function(rdd) rdd:collect() end)
      ctx:start()
      local ok, e = pcall(ctx.advance, ctx, 1)
      if not ok then err = tostring(e) end
    end)
    return err
  end

  local cases = {
    { "reduce_by_key", function(s) return s:reduce_by_key(add) end },
    { "group_by_key", function(s) return s:group_by_key(3) end },
    { "combine_by_key", function(s)
      return s:combine_by_key(function(v) return v end, add, add)
    end },
    { "join", function(s, o) return s:join(o) end },
    { "left_outer_join", function(s, o) return s:left_outer_join(o) end },
    { "right_outer_join", function(s, o) return s:right_outer_join(o) end },
    { "full_outer_join", function(s, o) return s:full_outer_join(o) end },
    { "cogroup", function(s, o) return s:cogroup(o) end },
    { "count_by_key", function(s) return s:count_by_key() end },
  }
  for _, c in ipairs(cases) do
    local name, build = c[1], c[2]
    it(name .. " on a stream raises from ctx:advance() naming the operator", function()
      local err = advance_error(build)
      assert.is_truthy(err, "no error raised")
      assert.is_truthy(err:find(name, 1, true), ("%q not named in: %s"):format(name, err))
      assert.is_truthy(err:find(NEEDLE, 1, true), err)
    end)
  end

  local rdd_cases = {
    { "reduce_by_key", function(r) return r:reduce_by_key(add):collect() end },
    { "group_by_key", function(r) return r:group_by_key():collect() end },
    { "join", function(r, o) return r:join(o):collect() end },
    { "cogroup", function(r, o) return r:cogroup(o, 4):collect() end },
    { "count_by_key", function(r) return r:count_by_key() end },
  }
  for _, c in ipairs(rdd_cases) do
    local name, action = c[1], c[2]
    it(name .. " on a batch raises from the action naming the operator", function()
      local ok, err = pcall(H.with_context, { workers = 2, partitions = 2 }, function(ctx)
        local r = ctx:parallelize({ { "a", 1 }, { { t = 1 }, 2 }, { 3, 3 } }, 2, { pairs = true })
        local o = ctx:parallelize({ { "a", 1 } }, 1, { pairs = true })
        return action(r, o)
      end)
      assert.is_false(ok)
      err = tostring(err)
      assert.is_truthy(err:find(name, 1, true), ("%q not named in: %s"):format(name, err))
      assert.is_truthy(err:find(NEEDLE, 1, true), err)
    end)
  end
end)

-- Issue 14: a nil key (`return l:match(p), 1` on a line that does not match) was dropped by
-- map before any keyed operator saw it (3 of 5 records counted, no error). Every keyed
-- operator must refuse it, naming itself and the record; a single value stays "not a pair".
for _, workers in ipairs({ 1, 4 }) do
  describe(("keyed operators refuse a nil key (workers=%d)"):format(workers), function()
    local NEEDLE = "a key is nil"
    local LINES = { "abc 1", "123", "def", "abc", "!!" } -- "123" and "!!" have no letters
    local cfg = { workers = workers, partitions = 2 }
    local word_one = function(l) return l:match("^(%a+)"), 1 end

    local function assert_names(err, name)
      assert.is_truthy(err, "no error raised: the nil key was dropped")
      assert.is_truthy(err:find(name, 1, true), ("%q not named in: %s"):format(name, err))
      assert.is_truthy(err:find(NEEDLE, 1, true), err)
      assert.is_truthy(err:find('record "123"', 1, true) or err:find('record "!!"', 1, true),
        "the input record is named: " .. err)
      assert.is_truthy(err:find("(nil, 1)", 1, true), "the pair is shown: " .. err)
    end

    -- Runs build(keyed stream with nil keys, other pair stream, events) for one batch and
    -- returns the error of ctx:advance.
    local function advance_error(build)
      local err
      H.with_context(cfg, function(ctx)
        local lines = ctx:queue_stream({ H.deep_copy(LINES) })
        local other = ctx:queue_stream({ { { "abc", 7 } } }, { pairs = true })
        local events = ctx:queue_stream({ H.deep_copy(LINES) })
          :event_time(function() return 500 end, { watermark = "1s" })
        build(lines:map(word_one), other, events:map(word_one))
          :foreach_rdd(function(rdd) rdd:collect() end)
        ctx:start()
        local ok, e = pcall(ctx.advance, ctx, 1)
        if not ok then err = tostring(e) end
      end)
      return err
    end

    local cases = {
      { "reduce_by_key", function(s) return s:reduce_by_key(add) end },
      { "group_by_key", function(s) return s:group_by_key(3) end },
      { "combine_by_key", function(s)
        return s:combine_by_key(function(v) return v end, add, add)
      end },
      { "count_by_key", function(s) return s:count_by_key() end },
      { "join", function(s, o) return s:join(o) end },
      { "left_outer_join", function(s, o) return s:left_outer_join(o) end },
      { "right_outer_join", function(s, o) return s:right_outer_join(o) end },
      { "full_outer_join", function(s, o) return s:full_outer_join(o) end },
      { "cogroup", function(s, o) return s:cogroup(o) end },
      { "update_state_by_key", function(s)
        return s:update_state_by_key(function(vs, st) return (st or 0) + #vs end)
      end },
      { "map_with_state", function(s)
        return s:map_with_state { fn = function(k, v) return k, v end }
      end },
      { "reduce_by_key_and_window", function(s) return s:reduce_by_key_and_window(add, "2s") end },
      { "reduce_by_key_and_window", function(s)
        return s:reduce_by_key_and_window(add, "2s", "1s", { inverse = function(a, b) return a - b end })
      end, " (with an inverse)" },
      { "group_by_key", function(s) return s:group_by_key_and_window("2s") end, " (group_by_key_and_window)" },
      { "repartition", function(s) return s:repartition(3) end },
      { "reduce_by_key_and_window", function(_, _, e) return e:reduce_by_key_and_window(add, "2s", "1s") end,
        " (event time)" },
      { "session_window", function(_, _, e) return e:session_window("1s") end },
    }
    for _, c in ipairs(cases) do
      local name, build, note = c[1], c[2], c[3] or ""
      it(name .. note .. " raises from ctx:advance() naming itself and the record", function()
        assert_names(advance_error(build), name)
      end)
    end

    local rdd_cases = {
      { "reduce_by_key", function(r) return r:reduce_by_key(add):collect() end },
      { "group_by_key", function(r) return r:group_by_key():collect() end },
      { "combine_by_key", function(r) return r:combine_by_key(function(v) return v end, add, add):collect() end },
      { "count_by_key", function(r) return r:count_by_key() end },
      { "join", function(r, o) return r:join(o):collect() end },
      { "cogroup", function(r, o) return r:cogroup(o, 4):collect() end },
    }
    for _, c in ipairs(rdd_cases) do
      local name, action = c[1], c[2]
      it(name .. " on a batch raises from the action naming itself and the record", function()
        local ok, err = pcall(H.with_context, cfg, function(ctx)
          local r = ctx:parallelize(H.deep_copy(LINES), 2):map(word_one)
          local o = ctx:parallelize({ { "abc", 1 } }, 1, { pairs = true })
          return action(r, o)
        end)
        assert.is_false(ok, "no error raised: the nil key was dropped")
        assert_names(tostring(err), name)
      end)
    end

    it("a {nil, v} element of a pair dataset is refused, and does not end its partition", function()
      local ok, err = pcall(H.with_context, cfg, function(ctx)
        return ctx:parallelize({ { "a", 1 }, { nil, 2 }, { "b", 3 } }, 1, { pairs = true })
          :reduce_by_key(add):collect()
      end)
      assert.is_false(ok, "no error raised: the nil key was dropped")
      err = tostring(err)
      assert.is_truthy(err:find("reduce_by_key", 1, true), err)
      assert.is_truthy(err:find(NEEDLE, 1, true), err)
      assert.is_truthy(err:find("record (nil, 2)", 1, true), err)
      -- Without a keyed operator the records after it are all there (they were cut off).
      local got = H.with_context(cfg, function(ctx)
        return ctx:parallelize({ { "a", 1 }, { nil, 2 }, { "b", 3 } }, 1, { pairs = true }):collect()
      end)
      assert.are.same({ { "a", 1 }, { "b", 3 } }, got)
    end)

    it("single values still say they are not pairs, and keys that match still count", function()
      local ok, err = pcall(H.with_context, cfg, function(ctx)
        return ctx:parallelize(H.deep_copy(LINES), 2):reduce_by_key(add):collect()
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("a record is a single value, not a key/value pair", 1, true), err)
      local counts = H.with_context(cfg, function(ctx)
        return ctx:parallelize(H.deep_copy(LINES), 2):map(word_one)
          :filter(function(k) return k ~= nil end):reduce_by_key(add):collect_as_map()
      end)
      assert.are.same({ abc = 2, def = 1 }, counts)
    end)
  end)
end

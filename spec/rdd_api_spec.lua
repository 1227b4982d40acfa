-- The batch (rdd) API a Spark user reaches for (issue 17 item 3): sort_by, sort_by_key, top,
-- take_ordered, distinct, is_empty, keys, values, sample, fold, aggregate, max, min, sum,
-- mean, stats, subtract, intersection, cartesian, lookup, zip_with_index, cache/persist and
-- count_by_value as an action; and the stream versions. Expectations are computed in plain
-- Lua here (sorts against table.sort, stats against their formulas).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local R = H.ref

local INTS = H.random_ints(3000, -1000, 1000, 171)
local WORDS = H.random_words(1500, 172)
local PAIRS = H.random_pairs(1500, 173)
local add = function(a, b) return a + b end

-- A stable sort of list by key(x) (ties keep their order): the order a sort must give.
local function stable_sort(list, key, descending)
  local idx = {}
  for i = 1, #list do idx[i] = i end
  table.sort(idx, function(i, j)
    local a, b = key(list[i]), key(list[j])
    if a ~= b then
      if descending then return a > b end
      return a < b
    end
    return i < j
  end)
  local out = {}
  for i, j in ipairs(idx) do out[i] = list[j] end
  return out
end

local function identity(x) return x end
local function first(p) return p[1] end
local function second(p) return p[2] end

-- The distinct elements of a list of scalars, sorted.
local function distinct_sorted(list)
  local seen, out = {}, {}
  for _, v in ipairs(list) do
    if not seen[v] then
      seen[v] = true
      out[#out + 1] = v
    end
  end
  return H.sorted(out)
end

local function as_pairs(ctx, list, n)
  return ctx:parallelize(H.deep_copy(list), n, { pairs = true })
end

for _, cfg in ipairs(H.configs({ 1, 4 }, { 1, 3, 4 })) do
  local P = cfg.partitions
  local function with(fn) return H.with_context(cfg, fn) end

  describe("batch API (" .. cfg.name .. ")", function()
    describe("sort_by", function()
      it("sorts numbers as table.sort does, ascending and descending", function()
        local got = with(function(ctx)
          local r = ctx:parallelize(H.deep_copy(INTS))
          return { r:sort_by(identity):collect(), r:sort_by(identity, false):collect(),
            r:sort_by(function(x) return -x end, { ascending = false, partitions = 2 }):collect() }
        end)
        local asc = H.deep_copy(INTS)
        table.sort(asc)
        local desc = H.deep_copy(INTS)
        table.sort(desc, function(a, b) return a > b end)
        assert.are.same(asc, got[1])
        assert.are.same(desc, got[2])
        assert.are.same(asc, got[3])
      end)

      it("is a range-partitioned shuffle: every partition a sorted range, in order", function()
        local parts = with(function(ctx)
          return ctx:parallelize(H.deep_copy(INTS), 3):sort_by(identity, true, 4):glom():collect()
        end)
        assert.are.equal(4, #parts)
        local all = {}
        for i, part in ipairs(parts) do
          -- sampled bounds spread 3000 keys over the 4 partitions: none holds everything
          assert.is_true(#part > 200 and #part < 2000, "partition " .. i .. " has " .. #part)
          for _, x in ipairs(part) do all[#all + 1] = x end
        end
        local asc = H.deep_copy(INTS)
        table.sort(asc)
        assert.are.same(asc, all)
      end)

      it("sorts strings and pairs by a key function, stably (ties in input order)", function()
        local got = with(function(ctx)
          return { ctx:parallelize(H.deep_copy(WORDS)):sort_by(identity, false):collect(),
            as_pairs(ctx, PAIRS):sort_by(function(_, v) return v end):collect() }
        end)
        local words = H.deep_copy(WORDS)
        table.sort(words, function(a, b) return a > b end)
        assert.are.same(words, got[1])
        assert.are.same(stable_sort(PAIRS, second), got[2])
      end)

      it("sorts by array keys element by element (count descending, then word)", function()
        local got = with(function(ctx)
          return ctx:parallelize(H.deep_copy(WORDS)):map(function(w) return w, 1 end)
            :reduce_by_key(add):sort_by(function(w, n) return { -n, w } end):collect()
        end)
        local expected = {}
        for w, n in pairs(R.count_by_value(WORDS)) do expected[#expected + 1] = { w, n } end
        table.sort(expected, function(a, b)
          if a[2] ~= b[2] then return a[2] > b[2] end
          return a[1] < b[1]
        end)
        assert.are.same(expected, got)
      end)

      it("sorts sorted, reversed and all-equal inputs (equal keys keep their order)", function()
        local up = H.range(1, 5000)
        local got = with(function(ctx)
          local r = ctx:parallelize(H.deep_copy(up))
          return { r:sort_by(identity, false):collect(), r:sort_by(function(x) return -x end, false):collect(),
            r:sort_by(function() return 0 end):collect() }
        end)
        local down = {}
        for i = 1, 5000 do down[i] = 5001 - i end
        assert.are.same({ down, up, up }, got)
      end)

      it("gives an empty batch for an empty one", function()
        assert.are.same({}, with(function(ctx) return ctx:parallelize({}):sort_by(identity):collect() end))
      end)

      it("refuses mixed and unorderable keys, naming the operator", function()
        for _, bad in ipairs({ { 1, "a", 2, "b" }, { 1, 2, true } }) do
          local ok, err = pcall(with, function(ctx)
            return ctx:parallelize(bad):sort_by(identity, true, 2):collect()
          end)
          assert.is_false(ok)
          assert.matches("sort_by: sort keys m", tostring(err))
        end
        -- Array keys whose elements mix kinds (SQL's ORDER BY over a column holding both): found
        -- while the partition sorts on its worker, which fails once (the same records again
        -- would meet the same keys).
        local ok, err = pcall(with, function(ctx)
          return ctx:parallelize({ { 1, "a" }, { 1, 2 } }, 1):sort_by(identity, true, 1):collect()
        end)
        assert.is_false(ok)
        assert.matches("task failed, not retried", tostring(err), 1, true)
        assert.matches("sort_by: elements 2 of two array sort keys are a", tostring(err), 1, true)
      end)

      it("raises on bad arguments at the caller's line", function()
        with(function(ctx)
          local r = ctx:parallelize({ 1 })
          local ok, err = pcall(function() return r:sort_by(42) end)
          assert.is_false(ok)
          assert.matches("rdd_api_spec%.lua:%d+: sort_by: expected a function", err)
          ok, err = pcall(function() return r:sort_by(identity, { descending = true }) end)
          assert.matches("rdd_api_spec%.lua:%d+: sort_by: unknown option 'descending'", err)
          ok, err = pcall(function() return r:sort_by(identity, "no") end)
          assert.matches("rdd_api_spec%.lua:%d+: sort_by: ascending must be true or false", err)
        end)
      end)
    end)

    describe("sort_by_key", function()
      it("sorts pairs by key, with a keyfunc and descending", function()
        local got = with(function(ctx)
          local r = as_pairs(ctx, PAIRS)
          return { r:sort_by_key():collect(), r:sort_by_key(false, 2):collect(),
            r:sort_by_key({ keyfunc = string.upper, partitions = 3 }):collect(),
            r:map(function(k, v) return v, k end):sort_by_key():collect() }
        end)
        assert.are.same(stable_sort(PAIRS, first), got[1])
        assert.are.same(stable_sort(PAIRS, first, true), got[2])
        assert.are.same(stable_sort(PAIRS, first), got[3])
        local swapped = {}
        for i, p in ipairs(PAIRS) do swapped[i] = { p[2], p[1] } end
        assert.are.same(stable_sort(swapped, first), got[4])
      end)

      it("refuses single values", function()
        local ok, err = pcall(with, function(ctx) return ctx:parallelize({ 3, 1 }):sort_by_key():collect() end)
        assert.is_false(ok)
        assert.matches("sort_by_key: a record is a single value", tostring(err))
      end)
    end)

    describe("top, take_ordered, max, min", function()
      it("match the ends of a sorted copy", function()
        local got = with(function(ctx)
          local r = ctx:parallelize(H.deep_copy(INTS))
          return { r:top(25), r:take_ordered(25), r:top(5, function(x) return -x end),
            r:take_ordered(7, { key = function(x) return x % 100 end }), r:top(5000), r:top(0),
            r:max(), r:min(), r:max(function(x) return -x end) }
        end)
        local asc = H.deep_copy(INTS)
        table.sort(asc)
        local desc = H.deep_copy(INTS)
        table.sort(desc, function(a, b) return a > b end)
        assert.are.same(R.take(desc, 25), got[1])
        assert.are.same(R.take(asc, 25), got[2])
        assert.are.same(R.take(asc, 5), got[3])
        assert.are.same(R.take(stable_sort(INTS, function(x) return x % 100 end), 7), got[4])
        assert.are.same(desc, got[5])
        assert.are.same({}, got[6])
        assert.are.same({ desc[1], asc[1], asc[1] }, { got[7], got[8], got[9] })
      end)

      it("order pairs by key, or by a key of (k, v)", function()
        local got = with(function(ctx)
          local r = as_pairs(ctx, PAIRS)
          return { r:top(10, function(_, v) return v end), r:take_ordered(10) }
        end)
        assert.are.same(R.take(stable_sort(PAIRS, second, true), 10), got[1])
        assert.are.same(R.take(stable_sort(PAIRS, first), 10), got[2])
      end)

      it("give nothing for an empty batch, and raise on a bad n", function()
        with(function(ctx)
          local r = ctx:parallelize({})
          assert.are.same({}, r:top(3))
          assert.is_nil(r:max())
          assert.is_nil(r:min())
          local ok, err = pcall(function() return r:top(-1) end)
          assert.is_false(ok)
          assert.matches("rdd_api_spec%.lua:%d+: top: n must be a whole number", err)
        end)
      end)
    end)

    describe("distinct, subtract, intersection", function()
      it("distinct keeps each record once", function()
        local got = with(function(ctx)
          return { ctx:parallelize(H.deep_copy(WORDS)):distinct():collect(),
            ctx:parallelize(H.deep_copy(INTS)):distinct(2):collect(),
            as_pairs(ctx, { { "a", 1 }, { "a", 1 }, { "a", 2 }, { "b", 1 } }):distinct():collect() }
        end)
        assert.are.same(distinct_sorted(WORDS), H.sorted(got[1]))
        assert.are.same(distinct_sorted(INTS), H.sorted(got[2]))
        assert.are.same({ { "a", 1 }, { "a", 2 }, { "b", 1 } }, H.sorted(got[3]))
      end)

      it("subtract keeps this side's records absent from the other, repeats included", function()
        local other = H.random_ints(500, -1000, 1000, 174)
        local got = with(function(ctx)
          return ctx:parallelize(H.deep_copy(INTS)):subtract(ctx:parallelize(H.deep_copy(other), 2)):collect()
        end)
        local gone = {}
        for _, v in ipairs(other) do gone[v] = true end
        assert.are.same(H.sorted(R.filter(INTS, function(x) return not gone[x] end)), H.sorted(got))
      end)

      it("intersection gives the records on both sides, once", function()
        local other = H.random_ints(500, -1000, 1000, 175)
        local got = with(function(ctx)
          return ctx:parallelize(H.deep_copy(INTS)):intersection(ctx:parallelize(H.deep_copy(other), 2)):collect()
        end)
        local mine = {}
        for _, v in ipairs(INTS) do mine[v] = true end
        assert.are.same(distinct_sorted(R.filter(other, function(x) return mine[x] end)), H.sorted(got))
      end)

      it("compare arrays by value, as composite keys, and refuse other tables", function()
        local got = with(function(ctx)
          local r = ctx:parallelize({ { 1, "a" }, { 1, "a" }, { 2, "b" }, { 1, "a" } })
          local p = as_pairs(ctx, { { "k", { 1, 2 } }, { "k", { 1, 2 } }, { "k", { 1, 3 } } })
          return { r:distinct():collect(), p:distinct():collect(),
            r:subtract(ctx:parallelize({ { 2, "b" } })):collect(),
            r:intersection(ctx:parallelize({ { 2, "b" }, { 3, "c" } })):collect() }
        end)
        assert.are.same({ { 1, "a" }, { 2, "b" } }, H.sorted(got[1]))
        assert.are.same({ { "k", { 1, 2 } }, { "k", { 1, 3 } } }, H.sorted(got[2]))
        assert.are.same({ { 1, "a" }, { 1, "a" }, { 1, "a" } }, got[3])
        assert.are.same({ { 2, "b" } }, got[4])
        assert.are.same({ 10, 30 }, with(function(ctx)
          return as_pairs(ctx, { { { 1, "a" }, 10 }, { { 2, "a" }, 20 }, { { 1, "a" }, 30 } }):lookup({ 1, "a" })
        end))
        local ok, err = pcall(with, function(ctx) return ctx:parallelize({ { x = 1 } }):distinct():collect() end)
        assert.is_false(ok)
        assert.matches("distinct: keys must be", tostring(err))
      end)

      it("subtract and intersection compare pairs by key and value", function()
        local got = with(function(ctx)
          local a = as_pairs(ctx, { { "a", 1 }, { "a", 2 }, { "b", 1 }, { "a", 1 } })
          local b = as_pairs(ctx, { { "a", 1 }, { "b", 2 } })
          return { a:subtract(b):collect(), a:intersection(b):collect() }
        end)
        assert.are.same({ { "a", 2 }, { "b", 1 } }, H.sorted(got[1]))
        assert.are.same({ { "a", 1 } }, got[2])
      end)
    end)

    describe("cartesian", function()
      it("pairs every record with every record of the other batch", function()
        local left, right = R.take(INTS, 40), { "x", "y", "z" }
        local got = with(function(ctx)
          local c = ctx:parallelize(H.deep_copy(left)):cartesian(ctx:parallelize(right, 2))
          return { c:collect(), c:num_partitions() }
        end)
        local expected = {}
        for _, a in ipairs(left) do
          for _, b in ipairs(right) do expected[#expected + 1] = { a, b } end
        end
        assert.are.same(H.sorted(expected), H.sorted(got[1]))
        assert.are.equal(P * 2, got[2])
      end)
    end)

    describe("keys, values, lookup, is_empty, count_by_value", function()
      it("match their plain-Lua forms", function()
        local got = with(function(ctx)
          local r = as_pairs(ctx, PAIRS)
          return { r:keys():collect(), r:values():collect(), r:lookup("kiwi"), r:lookup("none"),
            r:is_empty(), ctx:parallelize({}):is_empty(), r:filter(function() return false end):is_empty(),
            ctx:parallelize(H.deep_copy(WORDS)):count_by_value() }
        end)
        local keys, values, kiwi = {}, {}, {}
        for i, p in ipairs(PAIRS) do
          keys[i], values[i] = p[1], p[2]
          if p[1] == "kiwi" then kiwi[#kiwi + 1] = p[2] end
        end
        assert.are.same({ keys, values, kiwi, {} }, { got[1], got[2], got[3], got[4] })
        assert.are.same({ false, true, true }, { got[5], got[6], got[7] })
        assert.are.same(R.count_by_value(WORDS), got[8])
      end)
    end)

    describe("zip_with_index", function()
      it("numbers the records in order across partitions", function()
        local got = with(function(ctx)
          return { ctx:parallelize(H.deep_copy(WORDS)):filter(function(w) return #w > 4 end)
            :zip_with_index():collect(), as_pairs(ctx, R.take(PAIRS, 5)):zip_with_index():collect() }
        end)
        local expected = {}
        for i, w in ipairs(R.filter(WORDS, function(w) return #w > 4 end)) do expected[i] = { w, i - 1 } end
        assert.are.same(expected, got[1])
        for i = 1, 5 do assert.are.same({ PAIRS[i], i - 1 }, got[2][i]) end
      end)
    end)

    describe("sample", function()
      it("takes a fraction of the records, the same for the same seed", function()
        local got = with(function(ctx)
          local r = ctx:parallelize(H.range(1, 4000))
          return { r:sample(false, 0.25, 7):collect(), r:sample(false, 0.25, 7):collect(),
            r:sample(false, 0.25, 8):collect(), r:sample(false, 0):count(), r:sample(false, 1):count(),
            r:sample(true, 2, 3):collect() }
        end)
        assert.are.same(got[1], got[2])
        assert.are_not.same(got[1], got[3])
        assert.is_true(#got[1] > 850 and #got[1] < 1150, "sampled " .. #got[1])
        local last = 0
        for _, x in ipairs(got[1]) do -- a subset, in order, no repeats
          assert.is_true(x > last)
          last = x
        end
        assert.are.same({ 0, 4000 }, { got[4], got[5] })
        assert.is_true(#got[6] > 7600 and #got[6] < 8400, "sampled with replacement " .. #got[6])
        local counts = {}
        for _, x in ipairs(got[6]) do counts[x] = (counts[x] or 0) + 1 end
        local max = 0
        for _, c in pairs(counts) do max = math.max(max, c) end
        assert.is_true(max > 1)
      end)

      it("raises on bad arguments at the caller's line", function()
        with(function(ctx)
          local r = ctx:parallelize({ 1 })
          local ok, err = pcall(function() return r:sample(0.5) end)
          assert.is_false(ok)
          assert.matches("rdd_api_spec%.lua:%d+: sample: with_replacement must be true or false", err)
          ok, err = pcall(function() return r:sample(false, 1.5) end)
          assert.matches("rdd_api_spec%.lua:%d+: sample: fraction must be a number from 0 to 1", err)
        end)
      end)
    end)

    describe("fold, aggregate", function()
      it("fold folds each partition from zero, then the results from zero", function()
        local got = with(function(ctx)
          local r = ctx:parallelize(H.deep_copy(INTS))
          return { r:fold(0, add), r:fold(10, add), ctx:parallelize({}):fold(0, add),
            r:fold(-math.huge, math.max) }
        end)
        local sum = R.reduce(INTS, add)
        -- Spark's semantics: zero once per partition and once on the driver
        assert.are.same({ sum, sum + 10 * (P + 1), 0, math.max(unpack(INTS)) }, got)
      end)

      it("aggregate starts every partition from its own copy of a table zero", function()
        local got = with(function(ctx)
          return as_pairs(ctx, PAIRS):aggregate({ n = 0, sum = 0 }, function(acc, _, v)
            acc.n, acc.sum = acc.n + 1, acc.sum + v
            return acc
          end, function(a, b) return { n = a.n + b.n, sum = a.sum + b.sum } end)
        end)
        assert.are.same({ n = #PAIRS, sum = R.reduce(R.map(PAIRS, second), add) }, got)
      end)

      it("fold refuses pairs", function()
        local ok, err = pcall(with, function(ctx) return as_pairs(ctx, PAIRS):fold(0, add) end)
        assert.is_false(ok)
        assert.matches("fold: the records are key/value pairs", tostring(err))
      end)
    end)

    describe("sum, mean, stats", function()
      it("match the formulas", function()
        local xs = {}
        for i, x in ipairs(INTS) do xs[i] = x / 7 end
        local got = with(function(ctx)
          local r = ctx:parallelize(H.deep_copy(xs))
          return { r:stats(), r:sum(), r:mean(), ctx:parallelize(H.deep_copy(INTS)):sum(),
            r:variance(), r:sample_stdev() }
        end)
        local n, sum, max, min = #xs, 0, -math.huge, math.huge
        for _, x in ipairs(xs) do
          sum, max, min = sum + x, math.max(max, x), math.min(min, x)
        end
        local mean, ss = sum / n, 0
        for _, x in ipairs(xs) do ss = ss + (x - mean) ^ 2 end
        local s = got[1]
        assert.are.equal(n, s.count)
        assert.near(mean, s.mean, 1e-9)
        assert.near(sum, s.sum, 1e-6)
        assert.are.same({ max, min }, { s.max, s.min })
        assert.near(ss / n, s.variance, 1e-6)
        assert.near(math.sqrt(ss / n), s.stdev, 1e-9)
        assert.near(ss / (n - 1), s.sample_variance, 1e-6)
        assert.near(sum, got[2], 1e-6)
        assert.near(mean, got[3], 1e-9)
        assert.are.equal(R.reduce(INTS, add), got[4]) -- integers stay exact
        assert.near(ss / n, got[5], 1e-6)
        assert.near(math.sqrt(ss / (n - 1)), got[6], 1e-9)
        assert.matches("^%(count: 3000, mean: ", tostring(s))
      end)

      it("are 0 and NaN for an empty batch, and refuse non-numbers", function()
        local got = with(function(ctx)
          local r = ctx:parallelize({})
          return { r:sum(), r:stats() }
        end)
        assert.are.equal(0, got[1])
        assert.are.equal(0, got[2].count)
        assert.is_true(got[2].mean ~= got[2].mean)
        local ok, err = pcall(with, function(ctx) return ctx:parallelize({ 1, "x" }):sum() end)
        assert.is_false(ok)
        assert.matches("sum: the records must be numbers, got a string", tostring(err))
        assert.matches("not retried", tostring(err)) -- the records would fail it again
      end)
    end)

    describe("cache, persist", function()
      it("computes a cached batch once for several actions", function()
        local got = with(function(ctx)
          local seen, seen_plain = ctx:accumulator(0), ctx:accumulator(0)
          local cached = ctx:parallelize(H.deep_copy(INTS)):map(function(x)
            seen:add(1)
            return x * 2
          end):cache()
          local plain = ctx:parallelize(H.deep_copy(INTS)):map(function(x)
            seen_plain:add(1)
            return x * 2
          end)
          local out = { cached:count(), cached:sum(), cached:collect(), seen.value, plain:count(),
            plain:sum(), seen_plain.value, cached:is_cached() }
          cached:unpersist()
          out[#out + 1] = cached:count()
          out[#out + 1] = seen.value
          out[#out + 1] = cached:is_cached()
          return out
        end)
        local doubled = R.map(INTS, function(x) return x * 2 end)
        local n = #INTS
        assert.are.same({ n, R.reduce(doubled, add), doubled, n, n, R.reduce(doubled, add), 2 * n, true,
          n, 2 * n, false }, got)
      end)

      it("persist takes MEMORY_ONLY only, and a cached shuffle's result is read again", function()
        with(function(ctx)
          local r = ctx:parallelize(H.deep_copy(WORDS)):map(function(w) return w, 1 end)
            :reduce_by_key(add):persist("MEMORY_ONLY")
          assert.are.same(R.count_by_value(WORDS), r:collect_as_map())
          assert.are.same(R.count_by_value(WORDS), r:collect_as_map())
          local ok, err = pcall(function() return r:persist("DISK_ONLY") end)
          assert.is_false(ok)
          assert.matches("rdd_api_spec%.lua:%d+: persist: the only storage level", err)
        end)
      end)
    end)

    describe("argument checks", function()
      it("raise at the caller's line, naming the method", function()
        with(function(ctx)
          local r = ctx:parallelize({ 1, 2 })
          for _, case in ipairs({
            { function() return r:fold(0, 42) end, "fold: expected a function" },
            { function() return r:aggregate(0, add) end, "aggregate: expected a function" },
            { function() return r:aggregate(function() end, add, add) end, "aggregate: the zero value cannot travel" },
            { function() return r:subtract(42) end, "subtract: expected a batch" },
            { function() return r:intersection({}) end, "intersection: expected a batch" },
            { function() return r:cartesian(nil) end, "cartesian: expected a batch" },
            { function() return r:distinct({ partitons = 2 }) end, "distinct: unknown option 'partitons'" },
            { function() return r:lookup(nil) end, "lookup: expected a key" },
            { function() return r:take_ordered(1.5) end, "take_ordered: n must be a whole number" },
            { function() return r:top(1, 42) end, "top: key: expected a function" },
            { function() return r:sort_by_key(true, 0) end, "sort_by_key: the number of partitions must be" },
            { function() return r:sort_by_key({ keyfunc = 1 }) end, "sort_by_key: keyfunc: expected a function" },
            { function() return r:sample(true, -1) end, "sample: fraction must be a number of at least 0" },
          }) do
            local ok, err = pcall(case[1])
            assert.is_false(ok)
            assert.matches("rdd_api_spec%.lua:%d+: " .. case[2]:gsub("%p", "%%%0"), err)
          end
        end)
      end)
    end)

    describe("on streams", function()
      local batches = { R.take(WORDS, 400), {}, R.take(WORDS, 150) }
      local function counted(list)
        local out = {}
        for w, n in pairs(R.count_by_value(list)) do out[#out + 1] = { w, n } end
        table.sort(out, function(a, b)
          if a[2] ~= b[2] then return a[2] > b[2] end
          return a[1] < b[1]
        end)
        return out
      end

      it("transform(function(rdd) return rdd:sort_by(...) end) sorts every batch", function()
        local got = H.run(cfg, batches, function(src)
          return src:map(function(w) return w, 1 end):reduce_by_key(add):transform(function(rdd)
            return rdd:sort_by(function(w, n) return { -n, w } end)
          end)
        end)
        assert.are.same(R.per_batch(batches, counted), got)
      end)

      it("sort_by, sort_by_key, distinct, keys, values are stream operators", function()
        local got = {}
        for i, build in ipairs({
          function(s) return s:map(function(w) return w, 1 end):reduce_by_key(add)
            :sort_by(function(w, n) return { -n, w } end) end,
          function(s) return s:map(function(w) return w, #w end):sort_by_key(false):values() end,
          function(s) return s:distinct():sort_by(identity) end,
          function(s) return s:map(function(w) return w, 1 end):keys() end,
        }) do
          got[i] = H.run(cfg, batches, build)
        end
        assert.are.same(R.per_batch(batches, counted), got[1])
        assert.are.same(R.per_batch(batches, function(list)
          return R.map(stable_sort(list, identity, true), function(w) return #w end)
        end), got[2])
        assert.are.same(R.per_batch(batches, distinct_sorted), got[3])
        assert.are.same(batches, got[4])
      end)

      it("cache() computes each batch once for several outputs", function()
        local got = H.with_context(cfg, function(ctx)
          local seen = ctx:accumulator(0)
          local words = ctx:queue_stream(H.deep_copy(batches)):map(function(w)
            seen:add(1)
            return w
          end):cache()
          local counts = {}
          words:foreach_rdd(function(rdd) counts[#counts + 1] = rdd:count() end)
          words:foreach_rdd(function(rdd) counts[#counts + 1] = #rdd:distinct():collect() end)
          ctx:start()
          ctx:advance(3)
          return { counts, seen.value }
        end)
        local expected = {}
        for _, b in ipairs(batches) do
          expected[#expected + 1] = #b
          expected[#expected + 1] = #distinct_sorted(b)
        end
        assert.are.same({ expected, 550 }, got)
      end)
    end)
  end)
end

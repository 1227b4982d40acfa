-- Stream transformations of the foundation (map, flat_map, filter, map_partitions, glom,
-- repartition, union, count, reduce, count_by_value, reduce_by_key, transform) and the test
-- sources (queue_stream, rate_stream), on a manual clock, checked against plain-Lua references.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local R = H.ref

-- Inputs shared by all configurations (computed once, seeded).
local BIG = H.random_ints(3000, -1000, 1000, 42)
local BIG2 = H.random_ints(2500, 0, 99, 43)
local LINES = H.random_lines(1500, 44)
local WORDS = H.random_words(4000, 45)
local PAIRS = H.random_pairs(3000, 46)

-- batches: small, empty, single, big
local function int_batches()
  return { { 1, 2, 3, 4, 5, 6, 7 }, {}, { 42 }, BIG }
end

for _, cfg in ipairs(H.configs({ 1, 4 }, { 1, 3 })) do
  describe("stream operators (" .. cfg.name .. ")", function()
    describe("queue_stream", function()
      it("emits one list per batch in order, then empty batches", function()
        local input = { { "a", "b" }, { "c" }, BIG }
        local results, times = H.run(cfg, input, nil, { batches = 5 })
        assert.are.same({ { "a", "b" }, { "c" }, BIG, {}, {} }, results)
        assert.are.same(H.times(5), times)
      end)

      it("accepts one_at_a_time = true", function()
        local input = { { 1 }, { 2, 3 } }
        local results = H.run(cfg, input, nil, { queue = { one_at_a_time = true }, batches = 3 })
        assert.are.same({ { 1 }, { 2, 3 }, {} }, results)
      end)

      it("uses default once the queue is empty", function()
        local input = { { 1, 2 } }
        local results = H.run(cfg, input, nil, { queue = { default = { 9, 8 } }, batches = 3 })
        assert.are.same({ { 1, 2 }, { 9, 8 }, { 9, 8 } }, results)
      end)

      it("turns {k, v} elements into pairs with pairs = true", function()
        local input = { { { "a", 1 }, { "b", 2 } }, {}, PAIRS }
        local results = H.run(cfg, input, function(s)
          return s:map(function(k, v) return v, k end)
        end, { queue = { pairs = true } })
        local expected = R.per_batch(input, R.map, function(k, v) return v, k end, true)
        assert.are.same(expected, results)
      end)

      it("keeps table records intact", function()
        local input = { { { name = "x", tags = { "a", "b" } }, { 1, 2, { 3 } } } }
        local results = H.run(cfg, input)
        assert.are.same(input, results)
      end)
    end)

    describe("rate_stream", function()
      it("gives rows_per_second consecutive integers per 1s batch", function()
        local results = H.with_context(cfg, function(ctx)
          local res = {}
          ctx:rate_stream { rows_per_second = 5 }:foreach_rdd(function(rdd)
            res[#res + 1] = rdd:collect()
          end)
          ctx:start()
          ctx:advance(3)
          return res
        end)
        assert.are.equal(3, #results)
        for i = 1, 3 do
          assert.are.same(H.range((i - 1) * 5, i * 5 - 1), H.sorted(results[i]))
        end
      end)

      it("scales with the batch interval", function()
        local c = { workers = cfg.workers, partitions = cfg.partitions, batch = "500ms" }
        local got = H.with_context(c, function(ctx)
          local res, ts = {}, {}
          ctx:rate_stream { rows_per_second = 1000 }:count():foreach_rdd(function(rdd, t)
            res[#res + 1] = rdd:collect()
            ts[#ts + 1] = t
          end)
          ctx:start()
          ctx:advance(4)
          return { counts = res, times = ts }
        end)
        assert.are.same({ { 500 }, { 500 }, { 500 }, { 500 } }, got.counts)
        assert.are.same(H.times(4, 500), got.times)
      end)

      it("continues the sequence across batches", function()
        local all = H.with_context(cfg, function(ctx)
          local res = {}
          ctx:rate_stream { rows_per_second = 700 }:foreach_rdd(function(rdd)
            for _, v in ipairs(rdd:collect()) do res[#res + 1] = v end
          end)
          ctx:start()
          ctx:advance(3)
          return res
        end)
        assert.are.same(H.range(0, 2099), H.sorted(all))
      end)
    end)

    describe("map", function()
      it("applies f to every record and keeps order", function()
        local f = function(x) return x * 2 + 1 end
        local input = int_batches()
        local results = H.run(cfg, input, function(s) return s:map(f) end)
        assert.are.same(R.per_batch(input, R.map, f), results)
      end)

      it("makes pairs when f returns two values", function()
        local f = function(x) return x % 7, x end
        local input = int_batches()
        local results = H.run(cfg, input, function(s) return s:map(f) end)
        assert.are.same(R.per_batch(input, R.map, f), results)
        assert.are.same({ 1, 1 }, results[1][1])
      end)

      it("receives (k, v) on a pair stream and can return one value", function()
        local f = function(k, v) return k .. "=" .. tostring(v) end
        local input = { { { "a", 1 }, { "b", 2 } }, {}, PAIRS }
        local results = H.run(cfg, input, function(s) return s:map(f) end, { queue = { pairs = true } })
        assert.are.same(R.per_batch(input, R.map, f, true), results)
        assert.are.same({ "a=1", "b=2" }, results[1])
      end)

      it("chains several maps", function()
        local f1 = function(x) return x + 1 end
        local f2 = function(x) return tostring(x) end
        local f3 = function(s) return s .. "!" end
        local input = int_batches()
        local results = H.run(cfg, input, function(s) return s:map(f1):map(f2):map(f3) end)
        local expected = {}
        for i, b in ipairs(input) do expected[i] = R.map(R.map(R.map(b, f1), f2), f3) end
        assert.are.same(expected, results)
      end)

      it("returns table records", function()
        local f = function(x) return { v = x, sq = x * x } end
        local input = { { 1, 2, 3 }, {} }
        local results = H.run(cfg, input, function(s) return s:map(f) end)
        assert.are.same(R.per_batch(input, R.map, f), results)
      end)
    end)

    describe("filter", function()
      it("keeps records for which f is true, in order", function()
        local f = function(x) return x % 2 == 0 end
        local input = int_batches()
        local results = H.run(cfg, input, function(s) return s:filter(f) end)
        assert.are.same(R.per_batch(input, R.filter, f), results)
      end)

      it("can drop everything", function()
        local input = int_batches()
        local results = H.run(cfg, input, function(s)
          return s:filter(function() return false end)
        end)
        assert.are.same({ {}, {}, {}, {} }, results)
      end)

      it("receives (k, v) on a pair stream and keeps the pair", function()
        local f = function(k, v) return k < "f" and v > 0 end
        local input = { PAIRS, {} }
        local results = H.run(cfg, input, function(s) return s:filter(f) end, { queue = { pairs = true } })
        assert.are.same(R.per_batch(input, R.filter, f, true), results)
      end)

      it("treats nil as false and any other value as true", function()
        local f = function(x) if x % 3 == 0 then return nil elseif x % 3 == 1 then return 0 end return "" end
        local input = { BIG2 }
        local results = H.run(cfg, input, function(s) return s:filter(f) end)
        assert.are.same(R.per_batch(input, R.filter, f), results)
      end)
    end)

    describe("flat_map", function()
      it("flattens returned arrays (including empty ones)", function()
        local f = function(x)
          local t = {}
          for i = 1, x % 4 do t[i] = x * 10 + i end
          return t
        end
        local input = { BIG2, {}, { 1, 2, 3, 4 } }
        local results = H.run(cfg, input, function(s) return s:flat_map(f) end)
        assert.are.same(R.per_batch(input, R.flat_map, f), results)
      end)

      it("iterates a generic-for iterator such as gmatch", function()
        local f = function(line) return line:gmatch("%S+") end
        local input = { LINES, {}, { "one", "", "two three" } }
        local results = H.run(cfg, input, function(s) return s:flat_map(f) end)
        assert.are.same(R.per_batch(input, R.flat_map, f), results)
        assert.are.same({ "one", "two", "three" }, results[3])
      end)

      it("makes pairs from an iterator yielding two values", function()
        local f = function(line) return line:gmatch("(%a+)=(%d+)") end
        local input = { { "a=1 b=2", "nothing", "c=33" }, {} }
        local results = H.run(cfg, input, function(s) return s:flat_map(f) end)
        assert.are.same({ { { "a", "1" }, { "b", "2" }, { "c", "33" } }, {} }, results)
        assert.are.same(R.per_batch(input, R.flat_map, f), results)
      end)

      it("feeds pairs from an iterator into a pair operator", function()
        local f = function(line) return line:gmatch("(%a+)=(%d+)") end
        local input = { { "a=1 b=2", "a=5", "b=1 c=3" } }
        local results = H.run(cfg, input, function(s)
          return s:flat_map(f):map(function(k, v) return k, tonumber(v) end)
            :reduce_by_key(function(a, b) return a + b end)
        end)
        assert.are.same({ a = 6, b = 3, c = 3 }, H.to_map(results[1]))
      end)

      it("iterates a stateful closure iterator", function()
        local f = function(x)
          local i = 0
          return function()
            i = i + 1
            if i <= x % 3 then return x + i end
          end
        end
        local input = { BIG2, {} }
        local results = H.run(cfg, input, function(s) return s:flat_map(f) end)
        assert.are.same(R.per_batch(input, R.flat_map, f), results)
      end)

      it("receives (k, v) on a pair stream", function()
        local f = function(k, v) return { k, v } end
        local input = { { { "a", 1 }, { "b", 2 } } }
        local results = H.run(cfg, input, function(s) return s:flat_map(f) end, { queue = { pairs = true } })
        assert.are.same({ { "a", 1, "b", 2 } }, results)
      end)
    end)

    describe("map_partitions", function()
      it("maps a whole partition through an iterator and returns an array", function()
        local input = int_batches()
        local results = H.run(cfg, input, function(s)
          return s:map_partitions(function(it)
            local out = {}
            for x in it do out[#out + 1] = x * 3 end
            return out
          end)
        end)
        assert.are.same(R.per_batch(input, R.map, function(x) return x * 3 end), results)
      end)

      it("may return an iterator", function()
        local input = int_batches()
        local results = H.run(cfg, input, function(s)
          return s:map_partitions(function(it)
            return function()
              local x = it()
              if x ~= nil then return x - 1 end
            end
          end)
        end)
        assert.are.same(R.per_batch(input, R.map, function(x) return x - 1 end), results)
      end)

      it("is called once per partition", function()
        local input = { BIG }
        local results = H.run(cfg, input, function(s)
          return s:map_partitions(function(it)
            local n, sum = 0, 0
            for x in it do n, sum = n + 1, sum + x end
            return { { n = n, sum = sum } }
          end)
        end)
        local n, sum = 0, 0
        for _, part in ipairs(results[1]) do n, sum = n + part.n, sum + part.sum end
        assert.are.equal(cfg.partitions, #results[1])
        assert.are.equal(#BIG, n)
        assert.are.equal(R.reduce(BIG, function(a, b) return a + b end), sum)
      end)

      it("iterates k, v on a pair stream", function()
        local input = { PAIRS, {} }
        local results = H.run(cfg, input, function(s)
          return s:map_partitions(function(it)
            local out = {}
            for k, v in it do out[#out + 1] = k .. ":" .. v end
            return out
          end)
        end, { queue = { pairs = true } })
        assert.are.same(R.per_batch(input, R.map, function(k, v) return k .. ":" .. v end, true), results)
      end)
    end)

    describe("glom", function()
      it("gives one array per partition, consecutive slices of the batch", function()
        local input = { BIG, { 5, 6, 7 }, {} }
        local results = H.run(cfg, input, function(s) return s:glom() end)
        assert.are.equal(3, #results)
        assert.are.equal(cfg.partitions, #results[1])
        for i, b in ipairs(input) do
          for _, part in ipairs(results[i]) do assert.are.equal("table", type(part)) end
          assert.are.same(b, H.concat(results[i]))
        end
      end)
    end)

    describe("repartition", function()
      for _, n in ipairs({ 1, 2, 5 }) do
        it("redistributes records into " .. n .. " partitions", function()
          local input = { BIG, {}, { 1, 2, 3 } }
          local results = H.run(cfg, input, function(s) return s:repartition(n) end)
          for i, b in ipairs(input) do assert.are.same(H.sorted(b), H.sorted(results[i])) end
          local gloms = H.run(cfg, { BIG }, function(s) return s:repartition(n):glom() end)
          assert.are.equal(n, #gloms[1])
          assert.are.same(H.sorted(BIG), H.sorted(H.concat(gloms[1])))
        end)
      end

      it("keeps pairs as pairs", function()
        local input = { PAIRS }
        local results = H.run(cfg, input, function(s)
          return s:repartition(2):reduce_by_key(function(a, b) return a + b end)
        end, { queue = { pairs = true } })
        assert.are.same(R.reduce_by_key(PAIRS, function(a, b) return a + b end), H.to_map(results[1]))
      end)
    end)

    describe("union", function()
      it("puts the left stream's records first", function()
        local left = { { 1, 2 }, {}, { 3 }, BIG }
        local right = { { 10 }, { 11, 12 }, {}, BIG2 }
        local results = H.run(cfg, left, function(s, ctx)
          return s:union(ctx:queue_stream(H.deep_copy(right)))
        end)
        local expected = {}
        for i = 1, #left do expected[i] = R.union(left[i], right[i]) end
        assert.are.same(expected, results)
      end)

      it("unions transformed streams and pair streams", function()
        local left = { { 1, 2, 3 } }
        local right = { { 4, 5 } }
        local results = H.run(cfg, left, function(s, ctx)
          local l = s:map(function(x) return "l", x end)
          local r = ctx:queue_stream(H.deep_copy(right)):map(function(x) return "r", x end)
          return l:union(r)
        end)
        assert.are.same({ { { "l", 1 }, { "l", 2 }, { "l", 3 }, { "r", 4 }, { "r", 5 } } }, results)
      end)

      it("unions a stream with itself", function()
        local input = { { 1, 2 }, {} }
        local results = H.run(cfg, input, function(s) return s:union(s) end)
        assert.are.same({ { 1, 2, 1, 2 }, {} }, results)
      end)
    end)

    describe("count", function()
      it("gives one number per batch, 0 for an empty batch", function()
        local input = int_batches()
        local results = H.run(cfg, input, function(s) return s:count() end, { batches = 6 })
        assert.are.same({ { 7 }, { 0 }, { 1 }, { #BIG }, { 0 }, { 0 } }, results)
      end)

      it("counts pairs", function()
        local input = { PAIRS, {} }
        local results = H.run(cfg, input, function(s) return s:count() end, { queue = { pairs = true } })
        assert.are.same({ { #PAIRS }, { 0 } }, results)
      end)
    end)

    describe("reduce", function()
      it("gives one record per batch and none for an empty batch", function()
        local add = function(a, b) return a + b end
        local input = int_batches()
        local results = H.run(cfg, input, function(s) return s:reduce(add) end)
        local expected = {}
        for i, b in ipairs(input) do
          expected[i] = #b > 0 and { R.reduce(b, add) } or {}
        end
        assert.are.same(expected, results)
      end)

      it("reduces with max", function()
        local input = { BIG, BIG2 }
        local results = H.run(cfg, input, function(s) return s:reduce(math.max) end)
        assert.are.same({ { R.reduce(BIG, math.max) }, { R.reduce(BIG2, math.max) } }, results)
      end)

      it("reduces tables", function()
        local input = { BIG2 }
        local results = H.run(cfg, input, function(s)
          return s:map(function(x) return { n = 1, s = x } end)
            :reduce(function(a, b) return { n = a.n + b.n, s = a.s + b.s } end)
        end)
        local sum = R.reduce(BIG2, function(a, b) return a + b end)
        assert.are.same({ { { n = #BIG2, s = sum } } }, results)
      end)
    end)

    describe("count_by_value", function()
      it("counts each distinct value as a pair (value, count)", function()
        local input = { WORDS, {}, { "x", "y", "x" } }
        local results = H.run(cfg, input, function(s) return s:count_by_value() end)
        assert.are.equal(3, #results)
        for i, b in ipairs(input) do
          assert.are.same(R.count_by_value(b), H.to_map(results[i]))
          assert.are.equal(H.size(R.count_by_value(b)), #results[i])
        end
      end)

      it("counts numbers", function()
        local input = { BIG2 }
        local results = H.run(cfg, input, function(s) return s:count_by_value() end)
        assert.are.same(R.count_by_value(BIG2), H.to_map(results[1]))
      end)
    end)

    describe("reduce_by_key", function()
      local add = function(a, b) return a + b end

      it("reduces the values of each key", function()
        local input = { PAIRS, {}, { { "a", 1 }, { "b", 2 }, { "a", 3 } } }
        local results = H.run(cfg, input, function(s) return s:reduce_by_key(add) end,
          { queue = { pairs = true } })
        for i, b in ipairs(input) do
          local expected = R.reduce_by_key(b, add)
          assert.are.same(expected, H.to_map(results[i]))
          assert.are.equal(H.size(expected), #results[i])
        end
      end)

      it("honours the number of output partitions", function()
        for _, n in ipairs({ 1, 2, 4 }) do
          local results = H.run(cfg, { PAIRS }, function(s)
            return s:reduce_by_key(add, n):map_partitions(function(it)
              local c = 0
              for _ in it do c = c + 1 end
              return { c }
            end)
          end, { queue = { pairs = true } })
          assert.are.equal(n, #results[1])
          assert.are.equal(H.size(R.reduce_by_key(PAIRS, add)),
            R.reduce(results[1], add))
        end
      end)

      it("counts words (flat_map, map, reduce_by_key)", function()
        local input = { LINES, {}, { "a b a", " b  c " } }
        local results = H.run(cfg, input, function(s)
          return s:flat_map(function(l) return l:gmatch("%S+") end)
            :map(function(w) return w, 1 end)
            :reduce_by_key(add)
        end)
        for i, b in ipairs(input) do
          local words = R.flat_map(b, function(l) return l:gmatch("%S+") end)
          assert.are.same(R.count_by_value(words), H.to_map(results[i]))
        end
        assert.are.same({ a = 2, b = 2, c = 1 }, H.to_map(results[3]))
      end)

      it("reduces table values", function()
        local input = { PAIRS }
        local results = H.run(cfg, input, function(s)
          return s:map(function(k, v) return k, { v } end)
            :reduce_by_key(function(a, b)
              local t = {}
              for _, x in ipairs(a) do t[#t + 1] = x end
              for _, x in ipairs(b) do t[#t + 1] = x end
              return t
            end)
        end, { queue = { pairs = true } })
        local expected = {}
        for _, kv in ipairs(PAIRS) do
          expected[kv[1]] = expected[kv[1]] or {}
          table.insert(expected[kv[1]], kv[2])
        end
        local got = H.to_map(results[1])
        for k, vs in pairs(expected) do table.sort(vs); table.sort(got[k]) end
        assert.are.same(expected, got)
      end)
    end)

    describe("transform", function()
      it("applies an rdd function with the batch time", function()
        local input = { { 1, 2, 3 }, {}, { 4 } }
        local seen = {}
        local results = H.run(cfg, input, function(s)
          return s:transform(function(rdd, time)
            seen[#seen + 1] = time
            return rdd:map(function(x) return x + time end)
          end)
        end)
        assert.are.same({ { 1001, 1002, 1003 }, {}, { 3004 } }, results)
        assert.are.same({ 1000, 2000, 3000 }, seen)
      end)

      it("can use several rdd operators including shuffles", function()
        local input = { WORDS }
        local results = H.run(cfg, input, function(s)
          return s:transform(function(rdd)
            return rdd:filter(function(w) return #w > 4 end):map(function(w) return w, 1 end)
              :reduce_by_key(function(a, b) return a + b end)
          end)
        end)
        local expected = R.count_by_value(R.filter(WORDS, function(w) return #w > 4 end))
        assert.are.same(expected, H.to_map(results[1]))
      end)

      it("chains after and before stream operators", function()
        local input = int_batches()
        local results = H.run(cfg, input, function(s)
          return s:map(function(x) return x * 2 end)
            :transform(function(rdd) return rdd:filter(function(x) return x > 0 end) end)
            :map(function(x) return x + 1 end)
        end)
        local expected = {}
        for i, b in ipairs(input) do
          expected[i] = R.map(R.filter(R.map(b, function(x) return x * 2 end),
            function(x) return x > 0 end), function(x) return x + 1 end)
        end
        assert.are.same(expected, results)
      end)
    end)

    describe("several outputs", function()
      it("runs every output operation of a shared stream", function()
        local input = { BIG2, {} }
        local a, b = {}, {}
        H.with_context(cfg, function(ctx)
          local s = ctx:queue_stream(H.deep_copy(input)):map(function(x) return x + 1 end)
          s:filter(function(x) return x % 2 == 0 end):foreach_rdd(function(rdd) a[#a + 1] = rdd:collect() end)
          s:count():foreach_rdd(function(rdd) b[#b + 1] = rdd:collect() end)
          ctx:start()
          ctx:advance(2)
        end)
        local mapped = R.map(BIG2, function(x) return x + 1 end)
        assert.are.same({ R.filter(mapped, function(x) return x % 2 == 0 end), {} }, a)
        assert.are.same({ { #BIG2 }, { 0 } }, b)
      end)

      it("advances batch by batch", function()
        local got = {}
        H.with_context(cfg, function(ctx)
          ctx:queue_stream({ { 1 }, { 2 }, { 3 } }):foreach_rdd(function(rdd, t)
            got[#got + 1] = { t, rdd:collect() }
          end)
          ctx:start()
          ctx:advance(1)
          assert.are.same({ { 1000, { 1 } } }, got)
          ctx:advance(2)
        end)
        assert.are.same({ { 1000, { 1 } }, { 2000, { 2 } }, { 3000, { 3 } } }, got)
      end)
    end)
  end)
end

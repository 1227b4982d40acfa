-- Batch (rdd) actions and transformations: collect, collect_as_map, count, take, first, reduce,
-- foreach, foreach_partition, on ctx:parallelize(list, nparts) batches and on the batches that
-- foreach_rdd hands to the driver. Expectations come from plain-Lua references.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local R = H.ref

local BIG = H.random_ints(3000, -1000, 1000, 52)
local WORDS = H.random_words(2000, 53)
local PAIRS = H.random_pairs(2000, 54)
local SMALL = { 1, 2, 3, 4, 5, 6, 7 }
local add = function(a, b) return a + b end

-- Runs fn(rdd, ctx) on a batch holding `list` in `nparts` partitions and returns fn's result.
-- kind "parallelize": ctx:parallelize(list, nparts) outside any stream (context not started).
-- kind "foreach_rdd": the first batch of a queue_stream with partitions = nparts, on the driver
-- inside foreach_rdd.
local function with_rdd(kind, cfg, list, fn)
  if kind == "parallelize" then
    return H.with_context(cfg, function(ctx)
      return { fn(ctx:parallelize(H.deep_copy(list), cfg.partitions), ctx) }
    end)[1]
  end
  return H.with_context(cfg, function(ctx)
    local res, calls = nil, 0
    ctx:queue_stream({ H.deep_copy(list) }):foreach_rdd(function(rdd)
      calls = calls + 1
      if calls == 1 then res = { fn(rdd, ctx) } end
    end)
    ctx:start()
    ctx:advance(1)
    assert(calls == 1, "foreach_rdd was called " .. calls .. " times for one batch")
    return res
  end)[1]
end

local function tmpfile()
  local path = os.tmpname()
  os.remove(path)
  return path
end

for _, kind in ipairs({ "parallelize", "foreach_rdd" }) do
  for _, cfg in ipairs(H.configs({ 1, 4 }, { 1, 3 })) do
    describe("rdd actions on " .. kind .. " (" .. cfg.name .. ")", function()
      describe("collect", function()
        it("returns the records in order", function()
          assert.are.same(BIG, with_rdd(kind, cfg, BIG, function(rdd) return rdd:collect() end))
          assert.are.same(SMALL, with_rdd(kind, cfg, SMALL, function(rdd) return rdd:collect() end))
        end)

        it("returns an empty array for an empty batch", function()
          assert.are.same({}, with_rdd(kind, cfg, {}, function(rdd) return rdd:collect() end))
        end)

        it("returns table records", function()
          local list = { { a = 1 }, { 1, 2, 3 }, { nested = { deep = { "x" } } } }
          assert.are.same(list, with_rdd(kind, cfg, list, function(rdd) return rdd:collect() end))
        end)

        it("returns pairs as {k, v}", function()
          local got = with_rdd(kind, cfg, PAIRS, function(rdd)
            return rdd:map(function(t) return t[1], t[2] end):collect()
          end)
          assert.are.same(PAIRS, got)
        end)

        it("can be called twice on the same batch", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd)
            local m = rdd:map(function(x) return -x end)
            return { m:collect(), m:count(), m:collect() }
          end)
          local expected = R.map(BIG, function(x) return -x end)
          assert.are.same({ expected, #BIG, expected }, got)
        end)
      end)

      describe("collect_as_map", function()
        it("returns a table from key to value", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd)
            return rdd:map(function(x) return "k" .. x, x * x end):collect_as_map()
          end)
          local expected = {}
          for _, x in ipairs(BIG) do expected["k" .. x] = x * x end
          assert.are.same(expected, got)
        end)

        it("returns an empty table for an empty batch", function()
          local got = with_rdd(kind, cfg, {}, function(rdd)
            return rdd:map(function(x) return x, x end):collect_as_map()
          end)
          assert.are.same({}, got)
        end)

        it("works after reduce_by_key", function()
          local got = with_rdd(kind, cfg, PAIRS, function(rdd)
            return rdd:map(function(t) return t[1], t[2] end):reduce_by_key(add):collect_as_map()
          end)
          assert.are.same(R.reduce_by_key(PAIRS, add), got)
        end)
      end)

      describe("count", function()
        it("counts records", function()
          assert.are.equal(#BIG, with_rdd(kind, cfg, BIG, function(rdd) return rdd:count() end))
          assert.are.equal(7, with_rdd(kind, cfg, SMALL, function(rdd) return rdd:count() end))
        end)

        it("is 0 for an empty batch", function()
          assert.are.equal(0, with_rdd(kind, cfg, {}, function(rdd) return rdd:count() end))
        end)

        it("counts after filter and flat_map", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd)
            return {
              rdd:filter(function(x) return x > 0 end):count(),
              rdd:flat_map(function(x) return { x, x } end):count(),
            }
          end)
          assert.are.same({ #R.filter(BIG, function(x) return x > 0 end), 2 * #BIG }, got)
        end)
      end)

      describe("take", function()
        it("returns the first n records in order", function()
          for _, n in ipairs({ 1, 2, 3, 5, 7, 20 }) do
            local got = with_rdd(kind, cfg, SMALL, function(rdd) return rdd:take(n) end)
            assert.are.same(R.take(SMALL, n), got)
          end
        end)

        it("take(0) returns an empty array", function()
          assert.are.same({}, with_rdd(kind, cfg, SMALL, function(rdd) return rdd:take(0) end))
        end)

        it("takes across partitions of a big batch", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd)
            return { rdd:take(1500), rdd:take(2999), rdd:take(3000), rdd:take(5000) }
          end)
          assert.are.same({ R.take(BIG, 1500), R.take(BIG, 2999), BIG, BIG }, got)
        end)

        it("returns an empty array for an empty batch", function()
          assert.are.same({}, with_rdd(kind, cfg, {}, function(rdd) return rdd:take(3) end))
        end)

        it("returns pairs as {k, v}", function()
          local got = with_rdd(kind, cfg, PAIRS, function(rdd)
            return rdd:map(function(t) return t[1], t[2] end):take(4)
          end)
          assert.are.same(R.take(PAIRS, 4), got)
        end)

        it("takes after a filter", function()
          local f = function(x) return x % 5 == 0 end
          local got = with_rdd(kind, cfg, BIG, function(rdd) return rdd:filter(f):take(10) end)
          assert.are.same(R.take(R.filter(BIG, f), 10), got)
        end)
      end)

      describe("first", function()
        it("returns the first record", function()
          assert.are.equal(BIG[1], with_rdd(kind, cfg, BIG, function(rdd) return rdd:first() end))
          assert.are.equal("b", with_rdd(kind, cfg, { "b", "a" }, function(rdd) return rdd:first() end))
        end)

        it("returns nil for an empty batch", function()
          assert.is_nil(with_rdd(kind, cfg, {}, function(rdd) return rdd:first() end))
        end)

        it("returns the first record surviving a filter", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd)
            return rdd:filter(function(x) return x > 900 end):first()
          end)
          assert.are.equal(R.filter(BIG, function(x) return x > 900 end)[1], got)
        end)
      end)

      describe("reduce", function()
        it("reduces all records", function()
          assert.are.equal(R.reduce(BIG, add), with_rdd(kind, cfg, BIG, function(rdd) return rdd:reduce(add) end))
          assert.are.equal(R.reduce(BIG, math.min), with_rdd(kind, cfg, BIG, function(rdd)
            return rdd:reduce(function(a, b) return math.min(a, b) end)
          end))
        end)

        it("returns the only record of a one-record batch", function()
          assert.are.equal(17, with_rdd(kind, cfg, { 17 }, function(rdd) return rdd:reduce(add) end))
        end)

        it("returns nil for an empty batch", function()
          assert.is_nil(with_rdd(kind, cfg, {}, function(rdd) return rdd:reduce(add) end))
        end)

        it("returns nil when a filter leaves nothing", function()
          assert.is_nil(with_rdd(kind, cfg, BIG, function(rdd)
            return rdd:filter(function() return false end):reduce(add)
          end))
        end)
      end)

      describe("foreach", function()
        it("runs f for each record and returns nothing", function()
          local path = tmpfile()
          local ret = with_rdd(kind, cfg, BIG, function(rdd)
            return { n = select("#", rdd:foreach(function(x)
              local f = io.open(path, "a")
              f:write(tostring(x), "\n")
              f:close()
            end)) }
          end)
          local lines = H.lines(H.read_file(path) or "")
          os.remove(path)
          assert.are.equal(0, ret.n)
          local expected = {}
          for i, x in ipairs(BIG) do expected[i] = tostring(x) end
          assert.are.same(H.sorted(expected), H.sorted(lines))
        end)

        it("runs nothing for an empty batch", function()
          local path = tmpfile()
          with_rdd(kind, cfg, {}, function(rdd)
            rdd:foreach(function(x)
              local f = io.open(path, "a")
              f:write(tostring(x), "\n")
              f:close()
            end)
          end)
          local content = H.read_file(path)
          os.remove(path)
          assert.is_true(content == nil or content == "")
        end)

        it("receives (k, v) on pairs", function()
          local path = tmpfile()
          with_rdd(kind, cfg, PAIRS, function(rdd)
            rdd:map(function(t) return t[1], t[2] end):foreach(function(k, v)
              local f = io.open(path, "a")
              f:write(k, "=", tostring(v), "\n")
              f:close()
            end)
          end)
          local lines = H.lines(H.read_file(path) or "")
          os.remove(path)
          local expected = R.map(PAIRS, function(k, v) return k .. "=" .. v end, true)
          assert.are.same(H.sorted(expected), H.sorted(lines))
        end)
      end)

      describe("foreach_partition", function()
        it("calls f once per partition with an iterator over its records", function()
          local path = tmpfile()
          local ret = with_rdd(kind, cfg, BIG, function(rdd)
            return select("#", rdd:foreach_partition(function(it)
              local n, sum = 0, 0
              for x in it do n, sum = n + 1, sum + x end
              local f = io.open(path, "a")
              f:write(n, " ", sum, "\n")
              f:close()
            end))
          end)
          local lines = H.lines(H.read_file(path) or "")
          os.remove(path)
          assert.are.equal(0, ret)
          assert.are.equal(cfg.partitions, #lines)
          local n, sum = 0, 0
          for _, line in ipairs(lines) do
            local a, b = line:match("^(%-?%d+) (%-?%d+)$")
            n, sum = n + tonumber(a), sum + tonumber(b)
          end
          assert.are.equal(#BIG, n)
          assert.are.equal(R.reduce(BIG, add), sum)
        end)
      end)

      describe("transformations on a batch", function()
        it("map, filter and flat_map keep order", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd)
            return rdd:map(function(x) return x * 2 end)
              :filter(function(x) return x % 3 ~= 0 end)
              :flat_map(function(x) return { x, -x } end)
              :collect()
          end)
          local expected = R.flat_map(R.filter(R.map(BIG, function(x) return x * 2 end),
            function(x) return x % 3 ~= 0 end), function(x) return { x, -x } end)
          assert.are.same(expected, got)
        end)

        it("flat_map iterates gmatch", function()
          local lines = H.random_lines(500, 55)
          local got = with_rdd(kind, cfg, lines, function(rdd)
            return rdd:flat_map(function(l) return l:gmatch("%S+") end):collect()
          end)
          assert.are.same(R.flat_map(lines, function(l) return l:gmatch("%S+") end), got)
        end)

        it("glom gives consecutive slices, one per partition", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd) return rdd:glom():collect() end)
          assert.are.equal(cfg.partitions, #got)
          assert.are.same(BIG, H.concat(got))
        end)

        it("repartition changes the number of partitions", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd)
            local r = rdd:repartition(5)
            return { r:glom():collect(), r:count() }
          end)
          assert.are.equal(5, #got[1])
          assert.are.same(H.sorted(BIG), H.sorted(H.concat(got[1])))
          assert.are.equal(#BIG, got[2])
        end)

        it("union puts the left batch first", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd, ctx)
            return rdd:union(ctx:parallelize({ "x", "y", "z" }, 2)):collect()
          end)
          assert.are.same(R.union(BIG, { "x", "y", "z" }), got)
        end)

        it("map_partitions sees every record once", function()
          local got = with_rdd(kind, cfg, BIG, function(rdd)
            return rdd:map_partitions(function(it)
              local out = {}
              for x in it do out[#out + 1] = x + 1 end
              return out
            end):collect()
          end)
          assert.are.same(R.map(BIG, function(x) return x + 1 end), got)
        end)

        it("reduce_by_key reduces per key", function()
          local got = with_rdd(kind, cfg, WORDS, function(rdd)
            return rdd:map(function(w) return w, 1 end):reduce_by_key(add, 2):collect()
          end)
          assert.are.same(R.count_by_value(WORDS), H.to_map(got))
          assert.are.equal(H.size(R.count_by_value(WORDS)), #got)
        end)
      end)
    end)
  end
end

describe("parallelize", function()
  it("uses the context's partitions by default", function()
    for _, p in ipairs({ 1, 3 }) do
      local got = H.with_context({ workers = 2, partitions = p }, function(ctx)
        return ctx:parallelize(H.deep_copy(BIG)):glom():collect()
      end)
      assert.are.equal(p, #got)
      assert.are.same(BIG, H.concat(got))
    end
  end)

  it("honours an explicit number of partitions", function()
    for _, n in ipairs({ 1, 2, 7 }) do
      local got = H.with_context({ workers = 4, partitions = 3 }, function(ctx)
        return ctx:parallelize(H.deep_copy(BIG), n):glom():collect()
      end)
      assert.are.equal(n, #got)
      assert.are.same(BIG, H.concat(got))
    end
  end)

  it("does not change the driver's list", function()
    local list = H.deep_copy(SMALL)
    H.with_context({ workers = 2 }, function(ctx)
      return ctx:parallelize(list, 3):map(function(x) return x * 100 end):collect()
    end)
    assert.are.same(SMALL, list)
  end)
end)

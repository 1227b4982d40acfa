-- Static datasets: ctx:parallelize(list[, n][, {pairs = true}]) and ctx:text_file(path[, n])
-- give batches with the same transformations and actions as a stream's batches, run on the
-- same workers; stream:transform joins a stream with a static dataset and
-- stream:transform_with combines two streams' batches. Checked against plain-Lua references.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local K = require("keyed_reference")
local R = H.ref

local BIG = H.random_ints(2500, -1000, 1000, 71)
local LINES = H.random_lines(800, 72)
local WORDS = H.random_words(1500, 73)
local PAIRS = K.random_pairs(700, 74)
local add = function(a, b) return a + b end

-- A temporary file holding `lines` (joined by "\n", with a final newline unless told).
local function lines_file(lines, no_final_newline)
  local dir = H.tmpdir()
  local path = dir .. "/input.txt"
  local text = table.concat(lines, "\n")
  if #lines > 0 and not no_final_newline then text = text .. "\n" end
  H.write_file(path, text)
  return path, dir
end

for _, workers in ipairs({ 1, 4 }) do
  for _, n in ipairs({ 1, 3, 16 }) do
    local cfg = { workers = workers, partitions = 2 }
    local function with(fn) return H.with_context(cfg, fn) end

    describe(("static datasets (workers=%d, n=%d)"):format(workers, n), function()
      describe("parallelize", function()
        it("collect, count, take and first keep the list's order", function()
          local got = with(function(ctx)
            local r = ctx:parallelize(H.deep_copy(BIG), n)
            return { r:collect(), r:count(), r:take(7), r:first(), r:take(0), r:num_partitions() }
          end)
          assert.are.same({ BIG, #BIG, R.take(BIG, 7), BIG[1], {}, n }, got)
        end)

        it("splits the list into n consecutive slices", function()
          local parts = with(function(ctx) return ctx:parallelize(H.deep_copy(BIG), n):glom():collect() end)
          assert.are.equal(n, #parts)
          assert.are.same(BIG, H.concat(parts))
          for _, p in ipairs(parts) do
            assert.is_true(math.abs(#p - #BIG / n) <= 1)
          end
        end)

        it("has the stream operators (map, filter, flat_map, reduce, count_by_value)", function()
          local got = with(function(ctx)
            local r = ctx:parallelize(H.deep_copy(BIG), n)
            return {
              r:map(function(x) return x * 2 end):filter(function(x) return x > 0 end):collect(),
              r:flat_map(function(x) return { x, -x } end):count(),
              r:reduce(add),
              r:map(function(x) return x % 10 end):count_by_value(n), -- an action on a batch, as Spark
            }
          end)
          assert.are.same(R.filter(R.map(BIG, function(x) return x * 2 end), function(x) return x > 0 end), got[1])
          assert.are.equal(2 * #BIG, got[2])
          assert.are.equal(R.reduce(BIG, add), got[3])
          assert.are.same(R.count_by_value(R.map(BIG, function(x) return x % 10 end)), got[4])
        end)

        it("turns {k, v} elements into pairs with {pairs = true}", function()
          local got = with(function(ctx)
            local r = ctx:parallelize(H.deep_copy(PAIRS), n, { pairs = true })
            return {
              r:collect(),
              r:map(function(k, v) return v, k end):take(3),
              r:count(),
              r:count_by_key(),
              r:reduce_by_key(add, n):collect_as_map(),
            }
          end)
          assert.are.same(PAIRS, got[1])
          assert.are.same(R.map(R.take(PAIRS, 3), function(k, v) return v, k end, true), got[2])
          assert.are.equal(#PAIRS, got[3])
          assert.are.same(K.count_by_key(PAIRS), got[4])
          assert.are.same(R.reduce_by_key(PAIRS, add), got[5])
        end)

        it("takes {pairs = true} without a partition count", function()
          local got = with(function(ctx)
            return ctx:parallelize({ { "a", 1 }, { "b", 2 }, { "a", 3 } }, nil, { pairs = true })
              :reduce_by_key(add):collect_as_map()
          end)
          assert.are.same({ a = 4, b = 2 }, got)
        end)

        it("collect_as_map keeps one value per key", function()
          local got = with(function(ctx)
            return ctx:parallelize({ { 1, "x" }, { true, "y" }, { 2.5, "z" } }, n, { pairs = true }):collect_as_map()
          end)
          assert.are.same({ [1] = "x", [true] = "y", [2.5] = "z" }, got)
        end)

        it("handles an empty list", function()
          local got = with(function(ctx)
            local r = ctx:parallelize({}, n)
            local p = ctx:parallelize({}, n, { pairs = true })
            return { r:collect(), r:count(), r:take(3), p:count_by_key(), p:group_by_key(n):collect(),
              r:reduce(add) }
          end)
          assert.are.same({ {}, 0, {}, {}, {} }, got)
        end)

        it("joins two static datasets", function()
          local other = K.random_pairs(90, 75)
          local got = with(function(ctx)
            local a = ctx:parallelize(H.deep_copy(PAIRS), n, { pairs = true })
            local b = ctx:parallelize(H.deep_copy(other), 2, { pairs = true })
            return { a:join(b, n):collect(), a:full_outer_join(b):count() }
          end)
          assert.are.same(K.multiset(K.join(PAIRS, other, "join")), K.multiset(got[1]))
          assert.are.equal(#K.join(PAIRS, other, "full_outer_join"), got[2])
        end)

        it("saves text files: one part per partition, pairs as k<TAB>v", function()
          local dir = H.tmpdir()
          with(function(ctx)
            ctx:parallelize(H.deep_copy(BIG), n):save_as_text_file(dir .. "/ints")
            ctx:parallelize({ { "a", 1 }, { "b", 2 }, { 3, "c" } }, n, { pairs = true })
              :save_as_text_file(dir .. "/pairs")
          end)
          assert.are.equal(n, #H.part_files(dir .. "/ints"))
          assert.are.same(R.map(BIG, tostring), H.read_text_parts(dir .. "/ints"))
          assert.are.same({ "a\t1", "b\t2", "3\tc" }, H.read_text_parts(dir .. "/pairs"))
          H.rmdir(dir)
        end)
      end)

      describe("text_file", function()
        it("reads the lines of a file into n partitions", function()
          local path, dir = lines_file(LINES)
          local got = with(function(ctx)
            local r = ctx:text_file(path, n)
            return { r:collect(), r:count(), r:take(4), r:glom():count() }
          end)
          H.rmdir(dir)
          assert.are.same({ LINES, #LINES, R.take(LINES, 4), n }, got)
        end)

        it("counts words (flat_map, map, reduce_by_key, count_by_key)", function()
          local path, dir = lines_file(LINES, true)
          local got = with(function(ctx)
            local words = ctx:text_file(path, n):flat_map(function(l) return l:gmatch("%S+") end)
            return {
              words:map(function(w) return w, 1 end):reduce_by_key(add, n):collect_as_map(),
              words:map(function(w) return w, 1 end):count_by_key(),
            }
          end)
          H.rmdir(dir)
          local expected = R.count_by_value(R.flat_map(LINES, function(l) return l:gmatch("%S+") end))
          assert.are.same(expected, got[1])
          assert.are.same(expected, got[2])
        end)

        it("reads an empty file as no records", function()
          local path, dir = lines_file({})
          local got = with(function(ctx)
            local r = ctx:text_file(path, n)
            return { r:collect(), r:count() }
          end)
          H.rmdir(dir)
          assert.are.same({ {}, 0 }, got)
        end)

        it("reads back what save_as_text_file wrote", function()
          local dir = H.tmpdir()
          local got = with(function(ctx)
            ctx:parallelize(H.deep_copy(WORDS), n):save_as_text_file(dir .. "/out")
            local back = {}
            for i, name in ipairs(H.part_files(dir .. "/out")) do
              back[i] = ctx:text_file(dir .. "/out/" .. name):collect()
            end
            return H.concat(back)
          end)
          H.rmdir(dir)
          assert.are.same(WORDS, got)
        end)
      end)

      describe("transform with a static dataset", function()
        local NAMES = {}
        for i, k in ipairs(K.MIXED_KEYS) do
          if i % 3 ~= 0 then NAMES[#NAMES + 1] = { k, "name" .. i } end
        end
        local EVENTS = { K.random_pairs(300, 81), {}, K.random_pairs(40, 82), { { "zzz", 1 } } }

        it("joins every batch with the same static pairs", function()
          local results = H.run(cfg, EVENTS, function(s, ctx)
            local names = ctx:parallelize(H.deep_copy(NAMES), 3, { pairs = true })
            return s:transform(function(rdd) return rdd:join(names, n) end)
          end, { queue = { pairs = true } })
          assert.are.equal(#EVENTS, #results)
          for i, b in ipairs(EVENTS) do
            assert.are.same(K.multiset(K.join(b, NAMES, "join")), K.multiset(results[i]))
          end
        end)

        it("left-outer-joins and receives the batch time", function()
          local times = {}
          local results = H.run(cfg, EVENTS, function(s, ctx)
            local names = ctx:parallelize(H.deep_copy(NAMES), n, { pairs = true })
            return s:transform(function(rdd, time)
              times[#times + 1] = time
              return rdd:left_outer_join(names, n)
            end)
          end, { queue = { pairs = true } })
          for i, b in ipairs(EVENTS) do
            assert.are.same(K.multiset(K.join(b, NAMES, "left_outer_join")), K.multiset(results[i]))
          end
          assert.are.same(H.times(#EVENTS), times)
        end)

        it("filters a stream by a static text file (stop words)", function()
          local stop = { "apple", "fig", "kiwi", "olive" }
          local path, dir = lines_file(stop)
          local input = { WORDS, {}, { "apple", "banana", "fig", "grape" } }
          local results = H.run(cfg, input, function(s, ctx)
            local stops = ctx:text_file(path, n):map(function(w) return w, true end)
            return s:map(function(w) return w, 1 end)
              :transform(function(rdd)
                return rdd:left_outer_join(stops, n)
                  :filter(function(_, v) return v[2] == nil end)
                  :map(function(w) return w end)
              end)
          end)
          H.rmdir(dir)
          local is_stop = {}
          for _, w in ipairs(stop) do is_stop[w] = true end
          for i, b in ipairs(input) do
            assert.are.same(H.sorted(R.filter(b, function(w) return not is_stop[w] end)), H.sorted(results[i]))
          end
        end)
      end)

      describe("transform_with", function()
        local A = { { 1, 2, 3 }, {}, BIG, { 9 } }
        local B = { { 10, 20 }, { 30 }, {}, { 40, 50 } }

        it("combines two streams' batches (union, left first) with the batch time", function()
          local times = {}
          local results = H.run(cfg, A, function(s, ctx)
            return s:transform_with(ctx:queue_stream(H.deep_copy(B)), function(a, b, time)
              times[#times + 1] = time
              return a:union(b)
            end)
          end)
          local expected = {}
          for i = 1, #A do expected[i] = R.union(A[i], B[i]) end
          assert.are.same(expected, results)
          assert.are.same(H.times(#A), times)
        end)

        it("joins two pair streams", function()
          local left = { K.random_pairs(200, 91), {}, K.random_pairs(30, 92) }
          local right = { K.random_pairs(50, 93), K.random_pairs(5, 94), {} }
          local results = H.run(cfg, left, function(s, ctx)
            return s:transform_with(ctx:queue_stream(H.deep_copy(right), { pairs = true }),
              function(a, b) return a:full_outer_join(b, n) end)
          end, { queue = { pairs = true } })
          for i = 1, #left do
            assert.are.same(K.multiset(K.join(left[i], right[i], "full_outer_join")), K.multiset(results[i]))
          end
        end)
      end)

      describe("actions inside a running context", function()
        it("a static dataset's actions work in foreach_rdd, every batch", function()
          local got = with(function(ctx)
            local static = ctx:parallelize(H.deep_copy(PAIRS), n, { pairs = true })
            local res = {}
            ctx:queue_stream({ { 1 }, {}, { 2 } }):foreach_rdd(function(rdd)
              res[#res + 1] = { rdd:count(), static:count(), static:count_by_key() }
            end)
            ctx:start()
            ctx:advance(3)
            res[#res + 1] = static:reduce_by_key(add):collect_as_map()
            return res
          end)
          local cbk = K.count_by_key(PAIRS)
          assert.are.same({ 1, #PAIRS, cbk }, got[1])
          assert.are.same({ 0, #PAIRS, cbk }, got[2])
          assert.are.same({ 1, #PAIRS, cbk }, got[3])
          assert.are.same(R.reduce_by_key(PAIRS, add), got[4])
        end)
      end)
    end)
  end
end

describe("static datasets run on the context's workers", function()
  it("see what a stream's closure left in the worker VM (workers = 1)", function()
    local name = "__static_spec_mark_" .. os.time()
    local got = H.with_context({ workers = 1, partitions = 2 }, function(ctx)
      ctx:queue_stream({ { 1, 2, 3 } })
        :map(function(x) rawset(_G, name, (rawget(_G, name) or 0) + x); return x end)
        :foreach_rdd(function(rdd) rdd:count() end)
      ctx:start()
      ctx:advance(1)
      local mark = ctx:parallelize({ 1, 2 }, 2):map(function() return rawget(_G, name) end):collect()
      local from_file
      local path, dir = lines_file({ "x" })
      from_file = ctx:text_file(path, 1):map(function() return rawget(_G, name) end):collect()
      H.rmdir(dir)
      return { mark, from_file }
    end)
    assert.are.same({ { 6, 6 }, { 6 } }, got)
  end)
end)

-- Shared variables: broadcast values read by closures on the workers, and accumulators whose
-- adds on the workers reach acc.value on the driver after the action or batch, exactly once
-- per successful task (a failed, retried task does not double its adds).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local R = H.ref

local BIG = H.random_ints(3000, -1000, 1000, 61)
local WORDS = H.random_words(2000, 62)
local add = function(a, b) return a + b end
local SUM_BIG = R.reduce(BIG, add)

-- A global name no other test uses (the flag of a closure that fails once).
local flag_count = 0
local function fresh_flag()
  flag_count = flag_count + 1
  return ("__shared_spec_failed_%d_%d"):format(flag_count, os.time())
end

for _, cfg in ipairs(H.configs({ 1, 4 }, { 1, 3 })) do
  describe("shared variables (" .. cfg.name .. ")", function()
    describe("broadcast", function()
      it("gives the value on the driver as b.value", function()
        local v = { a = 1, list = { 1, 2, 3 }, nested = { x = "y" } }
        H.with_context(cfg, function(ctx)
          local b = ctx:broadcast(v)
          assert.are.same({ a = 1, list = { 1, 2, 3 }, nested = { x = "y" } }, b.value)
        end)
      end)

      it("gives closures on the workers b.value (a lookup table in a stream's map)", function()
        local ids = {}
        for i, w in ipairs(H.VOCAB) do ids[w] = i * 100 end
        local input = { WORDS, {}, { "kiwi", "nope" } }
        local results = H.run(cfg, input, function(s, ctx)
          local b = ctx:broadcast(ids)
          return s:map(function(w) return w, b.value[w] or -1 end)
        end)
        local expected = R.per_batch(input, R.map, function(w) return w, ids[w] or -1 end)
        assert.are.same(expected, results)
      end)

      it("is read by several closures and operators, batch after batch", function()
        local input = { BIG, { 1, 2, 3 }, {} }
        local results = H.run(cfg, input, function(s, ctx)
          local limits = ctx:broadcast({ lo = -100, hi = 500, mod = 7 })
          return s:filter(function(x) return x >= limits.value.lo and x <= limits.value.hi end)
            :map(function(x) return x % limits.value.mod, x end)
            :reduce_by_key(function(a, b) return a + b end)
        end)
        for i, b in ipairs(input) do
          local kept = R.filter(b, function(x) return x >= -100 and x <= 500 end)
          local pairs_list = R.map(kept, function(x) return x % 7, x end)
          assert.are.same(R.reduce_by_key(pairs_list, add), H.to_map(results[i]))
        end
      end)

      it("works in the operators of a static dataset, for strings and numbers too", function()
        local got = H.with_context(cfg, function(ctx)
          local prefix, factor = ctx:broadcast("n="), ctx:broadcast(3)
          assert.are.equal("n=", prefix.value)
          assert.are.equal(3, factor.value)
          return ctx:parallelize(H.deep_copy(BIG), cfg.partitions)
            :map(function(x) return prefix.value .. (x * factor.value) end):collect()
        end)
        assert.are.same(R.map(BIG, function(x) return "n=" .. (x * 3) end), got)
      end)

      it("carries a large table (30,000 entries) to every task", function()
        local big = {}
        for i = 1, 30000 do big[i] = i * 2 end
        local got = H.with_context(cfg, function(ctx)
          local b = ctx:broadcast(big)
          return ctx:parallelize(H.range(1, 1500), 8)
            :map(function(i) return b.value[i * 20] + #b.value end):collect()
        end)
        assert.are.same(R.map(H.range(1, 1500), function(i) return i * 40 + 30000 end), got)
      end)

      it("leaves the driver's value as it was after the batches", function()
        local v = { n = 1 }
        H.with_context(cfg, function(ctx)
          local b = ctx:broadcast(v)
          ctx:queue_stream({ { 1, 2 } }):map(function(x) return x + b.value.n end)
            :foreach_rdd(function(rdd) rdd:collect() end)
          ctx:start()
          ctx:advance(1)
          assert.are.same({ n = 1 }, b.value)
        end)
      end)
    end)

    describe("accumulator", function()
      it("sums adds made on the workers; acc.value after the action", function()
        local value = H.with_context(cfg, function(ctx)
          local acc = ctx:accumulator(0)
          assert.are.equal(0, acc.value)
          ctx:parallelize(H.deep_copy(BIG), cfg.partitions):foreach(function(x) acc:add(x) end)
          return acc.value
        end)
        assert.are.equal(SUM_BIG, value)
      end)

      it("starts from the initial value and takes driver-side adds", function()
        local value = H.with_context(cfg, function(ctx)
          local acc = ctx:accumulator(1000)
          acc:add(5)
          ctx:parallelize(H.range(1, 100), 4):foreach(function(x) acc:add(x) end)
          acc:add(-5)
          return acc.value
        end)
        assert.are.equal(1000 + 5050, value)
      end)

      it("counts records in a stream's map, visible on the driver after each batch", function()
        local input = { BIG, {}, { 1, 2, 3 }, WORDS }
        local seen = H.with_context(cfg, function(ctx)
          local acc = ctx:accumulator(0)
          local values = {}
          ctx:queue_stream(H.deep_copy(input))
            :map(function(x) acc:add(1); return x end)
            :foreach_rdd(function(rdd)
              rdd:count()
              values[#values + 1] = acc.value
            end)
          ctx:start()
          ctx:advance(#input)
          return values
        end)
        local n1 = #BIG
        assert.are.same({ n1, n1, n1 + 3, n1 + 3 + #WORDS }, seen)
      end)

      it("adds floats", function()
        local value = H.with_context(cfg, function(ctx)
          local acc = ctx:accumulator(0.5)
          ctx:parallelize(H.range(1, 1000), 5):foreach(function(x) acc:add(x * 0.25) end)
          return acc.value
        end)
        assert.are.equal(0.5 + 500500 * 0.25, value)
      end)

      it("merges with a custom function (max, and a table union)", function()
        local got = H.with_context(cfg, function(ctx)
          local mx = ctx:accumulator(-math.huge, math.max)
          local set = ctx:accumulator({}, function(a, b)
            local t = {}
            for k in pairs(a) do t[k] = true end
            for k in pairs(b) do t[k] = true end
            return t
          end)
          ctx:parallelize(H.deep_copy(BIG), 6):foreach(function(x)
            mx:add(x)
            set:add({ [x % 10] = true })
          end)
          ctx:parallelize(H.deep_copy(WORDS), 3):foreach(function(w) set:add({ [w] = true }) end)
          return { max = mx.value, set = set.value }
        end)
        assert.are.equal(R.reduce(BIG, math.max), got.max)
        local expected = {}
        for _, x in ipairs(BIG) do expected[x % 10] = true end
        for _, w in ipairs(WORDS) do expected[w] = true end
        assert.are.same(expected, got.set)
      end)

      it("keeps several accumulators apart in one closure", function()
        local got = H.with_context(cfg, function(ctx)
          local pos, neg, n = ctx:accumulator(0), ctx:accumulator(0), ctx:accumulator(0)
          ctx:parallelize(H.deep_copy(BIG), cfg.partitions):foreach(function(x)
            n:add(1)
            if x > 0 then pos:add(x) elseif x < 0 then neg:add(x) end
          end)
          return { pos.value, neg.value, n.value }
        end)
        local pos, neg = 0, 0
        for _, x in ipairs(BIG) do
          if x > 0 then pos = pos + x elseif x < 0 then neg = neg + x end
        end
        assert.are.same({ pos, neg, #BIG }, got)
      end)

      it("counts adds from the map side of a shuffle once per batch", function()
        local got = H.with_context(cfg, function(ctx)
          local acc = ctx:accumulator(0)
          local values = {}
          ctx:queue_stream({ H.deep_copy(WORDS), {} })
            :map(function(w) acc:add(1); return w, 1 end)
            :reduce_by_key(add, 5)
            :foreach_rdd(function(rdd)
              rdd:collect()
              values[#values + 1] = acc.value
            end)
          ctx:start()
          ctx:advance(2)
          return values
        end)
        assert.are.same({ #WORDS, #WORDS }, got)
      end)
    end)
  end)
end

describe("accumulators and retried tasks (workers = 1)", function()
  -- The closure adds, then raises the first time it sees `target` (a flag in the worker's
  -- _G, which the retry on the same VM sees): the failed attempt's adds must not count.
  local function failing_once(acc, flag, target)
    return function(x)
      acc:add(x)
      if x == target and not rawget(_G, flag) then
        rawset(_G, flag, true)
        error("failing once on " .. tostring(x))
      end
    end
  end

  -- Whether the flag was set in the (single) worker VM: proves the failure happened.
  local function flag_set(ctx, flag)
    return ctx:parallelize({ 1 }, 1):map(function() return rawget(_G, flag) == true end):collect()[1]
  end

  for _, parts in ipairs({ 1, 3 }) do
    it(("counts a batch action's adds once (%d partitions)"):format(parts), function()
      local flag = fresh_flag()
      local got = H.with_context({ workers = 1, partitions = parts }, function(ctx)
        local acc = ctx:accumulator(0)
        ctx:parallelize(H.deep_copy(BIG), parts):foreach(failing_once(acc, flag, BIG[#BIG - 10]))
        return { acc.value, flag_set(ctx, flag) }
      end)
      assert.are.same({ SUM_BIG, true }, got)
    end)
  end

  it("counts a stream batch's adds once, batch after batch", function()
    local flag = fresh_flag()
    local input = { H.range(1, 100), BIG, {}, H.range(1, 10) }
    local got = H.with_context({ workers = 1, partitions = 3 }, function(ctx)
      local acc = ctx:accumulator(0)
      local values = {}
      local f = failing_once(acc, flag, BIG[1500])
      ctx:queue_stream(H.deep_copy(input))
        :map(function(x) f(x); return x end)
        :foreach_rdd(function(rdd)
          rdd:count()
          values[#values + 1] = acc.value
        end)
      ctx:start()
      ctx:advance(#input)
      values[#values + 1] = flag_set(ctx, flag)
      return values
    end)
    assert.are.same({ 5050, 5050 + SUM_BIG, 5050 + SUM_BIG, 5050 + SUM_BIG + 55, true }, got)
  end)

  it("counts adds once when the map side of a shuffle is retried", function()
    local flag = fresh_flag()
    local got = H.with_context({ workers = 1, partitions = 3 }, function(ctx)
      local acc = ctx:accumulator(0)
      local f = failing_once(acc, flag, BIG[100])
      local counts = ctx:parallelize(H.deep_copy(BIG), 3)
        :map(function(x) f(x); return x % 5, 1 end)
        :reduce_by_key(add, 4):collect_as_map()
      return { acc.value, counts, flag_set(ctx, flag) }
    end)
    assert.are.equal(SUM_BIG, got[1])
    assert.are.same(R.reduce_by_key(R.map(BIG, function(x) return x % 5, 1 end), add), got[2])
    assert.is_true(got[3])
  end)
end)

-- Spark's Broadcast.unpersist and destroy: the refreshed broadcast of a long job (a new one
-- per batch, the old one destroyed) holds one value, not one per batch.
describe("broadcast unpersist and destroy", function()
  local dstream = require("dstream")

  it("unpersist drops the workers' copies; the next use decodes the value again", function()
    H.with_context({ workers = 2, partitions = 2 }, function(ctx)
      local b = ctx:broadcast({ 10, 20, 30 })
      local data = ctx:parallelize({ 1, 2, 3, 1 }, 2)
      local function look(rdd) return rdd:map(function(i) return b.value[i] end):collect() end
      assert.are.same({ 10, 20, 30, 10 }, look(data))
      b:unpersist()
      assert.are.same({ 10, 20, 30, 10 }, look(data))
      assert.are.same({ 10, 20, 30 }, b.value)
    end)
  end)

  it("destroy: a later use is an error on the driver, in a closure made after, and in a task", function()
    H.with_context({ workers = 2, partitions = 2 }, function(ctx)
      local b = ctx:broadcast({ "x" })
      local data = ctx:parallelize({ 1, 1 }, 2)
      local mapped = data:map(function(i) return b.value[i] end) -- made before destroy
      assert.are.same({ "x", "x" }, mapped:collect())
      b:destroy()
      b:destroy() -- a second destroy does nothing
      local ok, err = pcall(function() return b.value end)
      assert.is_false(ok)
      assert.matches("broadcast #%d+ was destroyed %(.*shared_vars_spec.lua:%d+%): it cannot be used again", err)
      ok, err = pcall(function() return data:map(function(i) return b.value[i] end) end)
      assert.is_false(ok)
      assert.matches("shared_vars_spec.lua:%d+: broadcast #%d+ was destroyed", err)
      ok, err = pcall(mapped.collect, mapped) -- its closure still holds b: the task says so
      assert.is_false(ok)
      assert.matches("broadcast #%d+ was destroyed %(b:destroy%(%)%) while a task still used it", err)
      ok = pcall(b.unpersist, b)
      assert.is_false(ok)
    end)
  end)

  it("a broadcast refreshed every batch and destroyed after use holds the workers' memory flat", function()
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 2 }
    local big = string.rep("v", 200000) -- 200 kB per value
    local of_batch, seen = {}, {}
    ctx:queue_stream({}, { default = { 1, 2, 3, 4 } })
      :transform(function(rdd, time)
        local b = ctx:broadcast({ text = big, time = time })
        of_batch[time] = b
        return rdd:map(function() return b.value.time end)
      end)
      :foreach_rdd(function(rdd, time) seen[#seen + 1] = rdd:first() == time end)
    ctx:on_batch_completed(function(info) -- the batch that read it is done
      of_batch[info.time]:destroy()
      of_batch[info.time] = nil
    end)
    ctx:start()
    ctx:advance(60)
    local text = ctx:metrics():render()
    ctx:stop()
    assert.are.equal(60, #seen)
    for i = 1, 60 do assert.is_true(seen[i], "batch " .. i .. " read its own broadcast") end
    local bytes = tonumber(text:match("\ndstream_shipped_bytes (%d+)"))
    -- No value of a completed batch (sixty without destroy: 12 MB); the closures remain.
    assert.is_true(bytes < 200000, "shipped bytes " .. tostring(bytes))
  end)
end)

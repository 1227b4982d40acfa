-- spec/queue_stream_spec.lua: queue_stream as Spark's queueStream (issue 17 item 2): rdds in
-- the queue are their records, push() while the job runs, one_at_a_time = false takes
-- everything queued at each batch, default (a list or an rdd) when the queue is empty.
-- Expected values are written out or computed in plain Lua.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

-- Runs `n` batches of the stream build(ctx) returns, with before(ctx, k, stream) called before
-- batch k; returns each batch's collected records.
local function run(cfg, build, n, before)
  return H.with_context(cfg, function(ctx)
    local s = build(ctx)
    local got = {}
    s:foreach_rdd(function(rdd) got[#got + 1] = rdd:collect() end)
    ctx:start()
    for k = 1, n do
      if before then before(ctx, k, s) end
      ctx:advance(1)
    end
    return got
  end)
end

for _, cfg in ipairs(H.configs({ 1, 4 }, { 1, 3 })) do
  describe("queue_stream (" .. cfg.name .. ")", function()
    it("takes an rdd in the queue as its records, and an rdd of pairs stays pairs", function()
      local got = run(cfg, function(ctx)
        local pairs_rdd = ctx:parallelize({ "a", "b", "a" }, 2):map(function(w) return w, 1 end)
          :reduce_by_key(function(a, b) return a + b end)
        return ctx:queue_stream({ ctx:parallelize(H.range(1, 50), 3), { "x" }, pairs_rdd })
      end, 4)
      assert.are.same(H.range(1, 50), got[1])
      assert.are.same({ "x" }, got[2])
      table.sort(got[3], function(p, q) return p[1] < q[1] end)
      assert.are.same({ { "a", 2 }, { "b", 1 } }, got[3])
      assert.are.same({}, got[4])
    end)

    it("one_at_a_time = false takes everything queued, lists and rdds in queue order", function()
      local got = run(cfg, function(ctx)
        return ctx:queue_stream({ { 1, 2 }, { 3 }, ctx:parallelize({ 4, 5 }, 2), { 6 } },
          { one_at_a_time = false })
      end, 3, function(ctx, k, s)
        if k == 2 then s:push({ 7 }); s:push(ctx:parallelize({ 8, 9 })); s:push({ 10 }) end
      end)
      assert.are.same({ { 1, 2, 3, 4, 5, 6 }, { 7, 8, 9, 10 }, {} }, got)
    end)

    it("push() queues lists and rdds while the job runs, also from an output", function()
      local got = run(cfg, function(ctx)
        local q = ctx:queue_stream({ { "first" } })
        -- From inside the job: each batch queues the next one, up to four.
        local n = 0
        q:foreach_rdd(function()
          n = n + 1
          if n < 4 then q:push(ctx:parallelize({ "from batch " .. n })) end
        end)
        return q
      end, 5, function(_, k, s)
        if k == 3 then s:push({ "pushed before batch 3" }) end
      end)
      assert.are.same({ { "first" }, { "from batch 1" }, { "from batch 2" },
        { "pushed before batch 3" }, { "from batch 3" } }, got)
    end)

    it("uses default, a list or an rdd, once the queue is empty", function()
      local got = run(cfg, function(ctx)
        local d = ctx:parallelize({ { "k", 1 } }):map(function(p) return p[1], p[2] end)
        local a = ctx:queue_stream({ { { "a", 1 } } }, { default = d, pairs = true })
        local b = ctx:queue_stream({}, { default = { { "z", 0 } }, pairs = true })
        return a:union(b)
      end, 3)
      assert.are.same({ { { "a", 1 }, { "z", 0 } }, { { "k", 1 }, { "z", 0 } }, { { "k", 1 }, { "z", 0 } } }, got)
    end)
  end)
end

describe("queue_stream arguments", function()
  it("refuses what is neither a list nor an rdd, at the caller's line", function()
    H.with_context({ workers = 1 }, function(ctx)
      local q = ctx:queue_stream()
      local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() q:push(42) end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(":" .. line .. ": queue_stream: push: the item must be a list or an rdd, got number", 1, true), err)
      ok, err = pcall(function() ctx:queue_stream({ { 1 }, "two" }) end)
      assert.truthy(tostring(err):find("queue_stream: item 2 must be a list or an rdd, got string", 1, true), err)
      ok, err = pcall(function() ctx:queue_stream({}, { defualt = {} }) end)
      assert.truthy(tostring(err):find("unknown option 'defualt'", 1, true), err)
      local other = H.context({ workers = 1 })
      ok, err = pcall(function() q:push(other:parallelize({ 1 })) end)
      other:stop()
      assert.truthy(tostring(err):find("is an rdd of another context", 1, true), err)
      q:foreach_rdd(function() end)
    end)
  end)
end)

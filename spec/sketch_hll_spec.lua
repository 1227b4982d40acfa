-- dstream.sketch.hll and rdd/stream approx_count_distinct against exact distinct counts of
-- Zipf data (spec/helpers/zipf.lua) at several sizes and precisions: each estimate within 3
-- standard errors (1.04 / sqrt(2^p), the bound the guide states, which Spark's choice of p
-- keeps under rel_sd); merging partitions' sketches gives the very registers of one sketch;
-- serialize/deserialize round trips; the per-batch and per-window stream forms, and a window
-- of sketches restored from a checkpoint.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local Z = require("zipf")
local dstream = require("dstream")
local hll = require("dstream.sketch.hll")

local ckpt_dir = H.scratch_dirs(after_each)

local function within(est, exact, se, what)
  assert.is_true(math.abs(est - exact) <= 3 * se * exact + 1,
    string.format("%s: estimate %d, exact %d (%.2f%%; 3 standard errors: %.2f%%)", what, est, exact,
      100 * (est - exact) / exact, 300 * se))
end

describe("hll", function()
  it("counts distinct Zipf words within 3 standard errors at several sizes and precisions", function()
    for _, n in ipairs { 1000, 10000, 100000 } do
      local words = Z.words(n, 200000, 1.0, n)
      local exact = Z.distinct(words)
      for _, rel_sd in ipairs { 0.05, 0.01 } do
        local s = hll.new(rel_sd)
        for _, w in ipairs(words) do s:add(w) end
        assert.is_true(s:rel_sd() <= rel_sd)
        within(s:count(), exact, s:rel_sd(), ("n = %d, rel_sd %g"):format(n, rel_sd))
      end
    end
  end)

  it("counts numbers and tells 1 from \"1\"; small counts are exact enough", function()
    local s = hll.new(0.01)
    for i = 1, 50 do s:add(i) s:add(tostring(i)) s:add(i) end
    assert.are.equal(100, s:count())
    assert.are.equal(0, hll.new():count())
    local ok, why = hll.new():add({})
    assert.is_nil(ok)
    assert.truthy(why:find("sketches take strings, numbers and booleans", 1, true))
  end)

  it("is sparse while it holds few registers, with the counts of the dense form", function()
    for _, n in ipairs { 10, 300, 2000 } do
      local words = Z.words(n, 5000, 1.0, 40 + n)
      local s, dense = hll.new(0.01), hll.new(0.01)
      for _, w in ipairs(words) do s:add(w) dense:add(w) end
      -- A dense twin: merging a sketch turned dense by a register of its own.
      local forced = hll.new(0.01)
      for i = 1, 500 do forced:add(-i) end
      assert.is_false(forced:is_sparse())
      assert.are.equal(Z.distinct(words) <= 409, s:is_sparse(), "n = " .. n)
      if s:is_sparse() then assert.is_true(#s:serialize() < 16384 / 2, "a sparse sketch serializes small") end
      local sparse_count = s:count()
      within(sparse_count, Z.distinct(words), s:rel_sd(), "n = " .. n)
      -- The registers are the same whichever the form: adding the same values to a dense
      -- sketch gives the same estimate.
      local d = assert(hll.deserialize(dense:serialize()))
      d:merge(hll.new(0.01))
      local plus = hll.new(0.01):merge(forced)
      plus:merge(s)
      local twin = hll.new(0.01):merge(forced)
      for _, w in ipairs(words) do twin:add(w) end
      assert.are.equal(twin:serialize(), plus:serialize(), "sparse merged into dense")
      assert.are.equal(sparse_count, d:count())
    end
  end)

  it("merges sparse sketches into one that turns dense past its limit", function()
    local a, b, whole = hll.new(0.01), hll.new(0.01), hll.new(0.01)
    for i = 1, 300 do a:add(i) whole:add(i) end
    for i = 200, 500 do b:add(i) whole:add(i) end
    assert.is_true(a:is_sparse() and b:is_sparse())
    local merged = assert(hll.deserialize(a:serialize())):merge(assert(hll.deserialize(b:serialize())))
    assert.is_false(merged:is_sparse())
    assert.are.equal(whole:serialize(), merged:serialize())
    assert.is_nil(hll.deserialize("HLS1" .. string.char(14) .. "abc"))
  end)

  it("Spark's precision: p = ceil(2 log2(1.106 / rel_sd)), refused past 18", function()
    assert.are.equal(9, hll.precision(0.05))  -- Spark's default rel_sd
    assert.are.equal(14, hll.precision(0.01))
    assert.are.equal(4, hll.precision(0.3))
    assert.has_error(function() hll.new(0.001) end)
    assert.has_error(function() hll.new(0.5) end)
  end)

  it("merges: the union of two sketches is the sketch of the union; serialize round-trips", function()
    local words = Z.words(20000, 50000, 1.1, 7)
    local whole, a, b = hll.new(0.02), hll.new(0.02), hll.new(0.02)
    for i, w in ipairs(words) do
      whole:add(w)
      if i % 2 == 0 then a:add(w) else b:add(w) end
    end
    local merged = assert(hll.deserialize(a:serialize())):merge(b)
    assert.are.equal(whole:serialize(), merged:serialize())
    assert.has_error(function() a:merge(hll.new(0.05)) end)
    assert.is_nil(hll.deserialize("HLL1" .. string.char(9) .. "short"))
    assert.is_nil(hll.deserialize(42))
  end)
end)

describe("rdd:approx_count_distinct and the stream forms", function()
  it("merges the partitions' sketches into the sketch of the batch", function()
    local words = Z.words(30000, 200000, 1.0, 3)
    local single = hll.new(0.02)
    for _, w in ipairs(words) do single:add(w) end
    H.with_context({ workers = 2 }, function(ctx)
      for _, parts in ipairs { 1, 5 } do
        assert.are.equal(single:count(), ctx:parallelize(words, parts):approx_count_distinct(0.02))
      end
      within(ctx:parallelize(words, 3):approx_count_distinct(), Z.distinct(words), 1.04 / 2 ^ 4.5, "default rel_sd 0.05")
      local ok, err = pcall(function() ctx:parallelize({ { 1 } }, 1):approx_count_distinct() end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("approx_count_distinct: record a table is", 1, true), tostring(err))
    end)
  end)

  it("per batch and per window (a window merges its batches' sketches)", function()
    local batches = {}
    for b = 1, 6 do batches[b] = Z.words(b == 4 and 0 or 3000, 20000, 1.0, b) end
    local per_batch, per_window = {}, {}
    H.with_context({ workers = 2, partitions = 3 }, function(ctx)
      local q = ctx:queue_stream(H.deep_copy(batches))
      q:approx_count_distinct(0.01):foreach_rdd(function(r) per_batch[#per_batch + 1] = r:collect()[1] end)
      q:approx_count_distinct(0.01, { window = 3 }):foreach_rdd(function(r) per_window[#per_window + 1] = r:collect()[1] end)
      ctx:start()
      ctx:advance(6)
    end)
    for b = 1, 6 do
      within(per_batch[b], Z.distinct(batches[b]), 1.04 / 128, "batch " .. b)
      local union = {}
      for i = math.max(1, b - 2), b do for _, w in ipairs(batches[i]) do union[#union + 1] = w end end
      local exact_window = Z.distinct(union)
      -- The window's merged sketch is the sketch of its records.
      local s = hll.new(0.01)
      for _, w in ipairs(union) do s:add(w) end
      assert.are.equal(s:count(), per_window[b], "window ending at batch " .. b)
      within(per_window[b], exact_window, 1.04 / 128, "window ending at batch " .. b)
    end
    assert.are.equal(0, per_batch[4])
  end)

  it("a sketch per key in update_state_by_key, kept as its string: a restart gives the same counts", function()
    local batches = {}
    for b = 1, 6 do
      local batch = {}
      for i, w in ipairs(Z.words(400, 3000, 1.0, 20 + b)) do batch[i] = { "page" .. i % 3, w } end
      batches[b] = batch
    end
    local function job(dir, n)
      local out = {}
      local ctx = dstream.get_or_create(dir, function()
        return dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 2 }
      end)
      ctx:queue_stream(H.deep_copy(batches), { pairs = true })
        :update_state_by_key(function(users, state)
          local sketch = require("dstream.sketch.hll")
          local s = state and assert(sketch.deserialize(state)) or sketch.new(0.02)
          for _, u in ipairs(users) do s:add(u) end
          return s:serialize()
        end):name("visitors")
        :map_values(function(state) return require("dstream.sketch.hll").deserialize(state):count() end)
        :foreach_rdd(function(r) out[#out + 1] = H.sorted(r:collect()) end)
      ctx:start()
      ctx:advance(n)
      ctx:stop { graceful = true }
      return out
    end
    local whole = job(ckpt_dir(), 6)
    local dir = ckpt_dir()
    local first = job(dir, 2)
    local second = job(dir, 4)
    assert.are.same(whole, { first[1], first[2], second[1], second[2], second[3], second[4] })
    -- Each page's count is its distinct users so far, within 3 standard errors.
    for _, kv in ipairs(whole[6]) do
      local users = {}
      for b = 1, 6 do for _, r in ipairs(batches[b]) do if r[1] == kv[1] then users[#users + 1] = r[2] end end end
      within(kv[2], Z.distinct(users), 1.04 / 2 ^ 6, kv[1])
    end
  end)

  it("a window's sketches live in its checkpointed panes: a restart gives the same counts", function()
    local batches = {}
    for b = 1, 6 do batches[b] = Z.words(500, 5000, 1.0, 10 + b) end
    local function job(dir, n)
      local out = {}
      local ctx = dstream.get_or_create(dir, function()
        return dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 2 }
      end)
      ctx:queue_stream(H.deep_copy(batches)):approx_count_distinct(0.02, { window = 4 })
        :foreach_rdd(function(r) out[#out + 1] = r:collect()[1] end)
      ctx:start()
      ctx:advance(n)
      ctx:stop { graceful = true }
      return out
    end
    local whole = job(ckpt_dir(), 6)
    local dir = ckpt_dir()
    local first = job(dir, 3)
    local second = job(dir, 3)
    assert.are.same(whole, { first[1], first[2], first[3], second[1], second[2], second[3] })
  end)
end)

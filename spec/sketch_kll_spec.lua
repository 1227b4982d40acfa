-- dstream.sketch.kll and rdd/stream approx_quantile against exact quantiles of Zipf ranks
-- (heavy ties) and of skewed uniform numbers at several sizes: each answer's rank within
-- rel_err * n of q * n (the guide's bound); memory stays O(k); merge, serialize.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local Z = require("zipf")
local kll = require("dstream.sketch.kll")

local QS = { 0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1 }

local function check(values, answers, rel_err, what)
  local sorted = {}
  for i, v in ipairs(values) do sorted[i] = v end
  table.sort(sorted)
  for i, q in ipairs(QS) do
    local err = Z.rank_error(sorted, answers[i], q)
    assert.is_true(err <= rel_err * #sorted, string.format("%s: q = %g: answer %g is %g ranks away (bound %g)",
      what, q, answers[i], err, rel_err * #sorted))
  end
  assert.are.equal(sorted[1], answers[1], what .. ": q = 0 is the minimum")
  assert.are.equal(sorted[#sorted], answers[#QS], what .. ": q = 1 is the maximum")
end

local function skewed(n, seed)
  local state, out = seed, {}
  for i = 1, n do
    state = (state * 48271) % 2147483647
    out[i] = (state / 2147483647) ^ 4 * 1000
  end
  return out
end

describe("kll", function()
  it("quantiles of Zipf ranks and of skewed numbers within rel_err * n, at several sizes", function()
    for _, n in ipairs { 1000, 20000, 100000 } do
      for _, rel_err in ipairs { 0.05, 0.01 } do
        for kind, values in pairs { zipf = Z.ranks(n, 10000, 1.1, n), skewed = skewed(n, n + 3) } do
          local s = kll.new(rel_err)
          for _, x in ipairs(values) do s:add(x) end
          check(values, s:quantiles(QS), rel_err, ("%s n = %d rel_err %g"):format(kind, n, rel_err))
          assert.is_true(s.size <= 3 * s.k, "kept " .. s.size .. " numbers for k = " .. s.k)
        end
      end
    end
  end)

  it("merges (the union's quantiles within the bound); serialize round-trips; refuses NaN", function()
    local values = skewed(30000, 11)
    local parts = {}
    for p = 1, 5 do parts[p] = kll.new(0.01) end
    for i, x in ipairs(values) do parts[i % 5 + 1]:add(x) end
    local merged = assert(kll.deserialize(parts[1]:serialize()))
    for p = 2, 5 do merged:merge(assert(kll.deserialize(parts[p]:serialize()))) end
    assert.are.equal(30000, merged.n)
    check(values, merged:quantiles(QS), 0.01, "merged")
    assert.is_true(math.abs(merged:rank(merged:quantile(0.3)) - 0.3) < 0.02)
    assert.is_nil((kll.new():add(0 / 0)))
    assert.is_nil(kll.new():quantile(0.5))
    assert.has_error(function() parts[1]:merge(kll.new(0.1)) end)
    assert.is_nil(kll.deserialize("KLL1garbage"))
  end)
end)

describe("rdd:approx_quantile and the stream forms", function()
  it("over partitions, as Spark's approxQuantile(probabilities, relativeError)", function()
    local values = Z.ranks(50000, 20000, 1.0, 77)
    H.with_context({ workers = 2 }, function(ctx)
      check(values, ctx:parallelize(values, 6):approx_quantile(QS, 0.01), 0.01, "rdd")
      assert.is_nil(ctx:parallelize({}, 2):approx_quantile({ 0.5 }))
      assert.are.equal(1, #ctx:parallelize(values, 2):approx_quantile(0.5))
      assert.has_error(function() ctx:parallelize(values, 2):approx_quantile({ 1.5 }) end)
    end)
  end)

  it("per batch and per window", function()
    local batches = {}
    for b = 1, 4 do batches[b] = skewed(4000, b) end
    local per_batch, per_window = {}, {}
    H.with_context({ workers = 2, partitions = 3 }, function(ctx)
      local q = ctx:queue_stream(H.deep_copy(batches))
      q:approx_quantile(QS, 0.01):foreach_rdd(function(r) per_batch[#per_batch + 1] = r:collect()[1] end)
      q:approx_quantile(QS, 0.01, { window = 2 }):foreach_rdd(function(r) per_window[#per_window + 1] = r:collect()[1] end)
      ctx:start()
      ctx:advance(4)
    end)
    for b = 1, 4 do
      check(batches[b], per_batch[b], 0.01, "batch " .. b)
      local union = {}
      for i = math.max(1, b - 1), b do for _, x in ipairs(batches[i]) do union[#union + 1] = x end end
      check(union, per_window[b], 0.01, "window ending at batch " .. b)
    end
  end)
end)

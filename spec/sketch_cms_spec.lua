-- dstream.sketch.cms against exact counts of Zipf words at several sizes: never below the
-- true count, and above it by more than eps * total for at most 1 - confidence of the words
-- (the bound the guide states); merge and serialize are exact.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local Z = require("zipf")
local cms = require("dstream.sketch.cms")

describe("cms", function()
  it("sizes itself as Spark's CountMinSketch (width ceil(2 / eps), depth ceil(-log2(1 - confidence)))", function()
    local s = cms.new { eps = 0.001, confidence = 0.99 }
    assert.are.equal(2000, s.width)
    assert.are.equal(7, s.depth)
    assert.is_true(s:confidence() >= 0.99)
    assert.has_error(function() cms.new { eps = 0 } end)
    assert.has_error(function() cms.new { eps = 0.1, width = 10, depth = 2 } end)
  end)

  it("estimates Zipf word counts within eps * total, never below, at several sizes", function()
    for _, case in ipairs { { n = 2000, eps = 0.01 }, { n = 20000, eps = 0.002 }, { n = 100000, eps = 0.001 } } do
      local words = Z.words(case.n, 50000, 1.05, case.n + 1)
      local s = cms.new { eps = case.eps, confidence = 0.99 }
      for _, w in ipairs(words) do s:add(w) end
      assert.are.equal(case.n, s.total)
      local exact, words_seen, over = Z.counts(words), 0, 0
      for w, c in pairs(exact) do
        words_seen = words_seen + 1
        local e = s:estimate(w)
        assert.is_true(e >= c, w .. ": estimate " .. e .. " below its count " .. c)
        if e > c + case.eps * case.n then over = over + 1 end
      end
      assert.is_true(over <= 0.01 * words_seen, string.format("n = %d: %d of %d words over the bound", case.n, over, words_seen))
      -- A word never added: at most eps * total too (with the same probability).
      assert.is_true(s:estimate("never added") <= case.eps * case.n)
    end
  end)

  it("adds weights; merges exactly; serialize round-trips", function()
    local words = Z.words(5000, 1000, 1.0, 5)
    local whole, a, b = cms.new { eps = 0.01 }, cms.new { eps = 0.01 }, cms.new { eps = 0.01 }
    for i, w in ipairs(words) do
      whole:add(w, 2)
      if i % 3 == 0 then a:add(w, 2) else b:add(w, 2) end
    end
    local merged = assert(cms.deserialize(a:serialize())):merge(b)
    assert.are.equal(whole:serialize(), merged:serialize())
    assert.are.equal(10000, merged.total)
    assert.has_error(function() a:merge(cms.new { eps = 0.1 }) end)
    assert.is_nil(cms.deserialize(a:serialize():sub(1, 100)))
    assert.is_nil((cms.new { eps = 0.1 }:add("x", -1)))
  end)

  it("a sketch built per partition on the workers and merged on the driver", function()
    local words = Z.words(20000, 5000, 1.0, 9)
    local local_sketch = cms.new { eps = 0.005 }
    for _, w in ipairs(words) do local_sketch:add(w) end
    H.with_context({ workers = 2 }, function(ctx)
      local parts = ctx:parallelize(words, 4):map_partitions(function(next_word)
        local s = require("dstream.sketch.cms").new { eps = 0.005 }
        for w in next_word do s:add(w) end
        return { s:serialize() }
      end):collect()
      local merged = cms.new { eps = 0.005 }
      for _, p in ipairs(parts) do merged:merge(assert(cms.deserialize(p))) end
      assert.are.equal(local_sketch:serialize(), merged:serialize())
    end)
  end)
end)

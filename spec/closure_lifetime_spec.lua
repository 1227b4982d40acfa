-- Closures shipped by a batch's operators and actions leave the workers once nothing holds
-- them (Context:_ship): a long job that makes new closures in every batch keeps its memory flat.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local function shipped(ctx)
  local text = ctx:metrics():render()
  return tonumber(text:match("\ndstream_shipped_blobs (%d+)")), tonumber(text:match("\ndstream_shipped_bytes (%d+)"))
end

describe("closures made in every batch", function()
  local dstream = require("dstream")

  it("are freed once their batch is done: 300 batches hold a few, not 900", function()
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 2 }
    local right, peak = 0, 0
    ctx:queue_stream({}, { default = { 1, 2, 3, 4 } })
      :foreach_rdd(function(rdd, time)
        -- Three closures a batch, each capturing the batch's time: new bytes every batch.
        local sums = rdd:map(function(x) return x % 2, x + time end)
          :reduce_by_key(function(a, b) return a + b + 0 * time end):collect_as_map()
        local seen = 0
        rdd:foreach(function() if time < 0 then error("never") end end)
        if sums[0] == 6 + 2 * time and sums[1] == 4 + 2 * time then right = right + 1 end
        seen = seen + 1
      end)
    ctx:on_batch_completed(function() peak = math.max(peak, (shipped(ctx))) end)
    ctx:start()
    ctx:advance(300)
    local blobs = shipped(ctx)
    ctx:stop()
    assert.are.equal(300, right)
    -- Three new closures a batch would be 900 without freeing; the garbage collector's pace
    -- leaves some batches' worth waiting at any moment.
    assert.is_true(peak < 150, "closures held at most " .. peak)
    assert.is_true(blobs < 150, "closures held at the end " .. blobs)
  end)

  it("a dataset kept across batches keeps its closures, whatever the collector does", function()
    H.with_context({ workers = 2, partitions = 2 }, function(ctx)
      local pause = collectgarbage("setpause", 0) -- a collection after every step: the worst case
      local mul = collectgarbage("setstepmul", 1000)
      local data = ctx:parallelize({ 1, 2, 3, 4, 5, 6 }, 2)
      local ok, err = pcall(function()
        local k = 10
        local kept = data:map(function(x) return x * k end)
        for round = 1, 20 do
          collectgarbage("collect")
          -- An action's own closures are held through its shuffle and its tasks.
          local total = 0
          for _, v in pairs(data:map(function(x) return x % 3, x + round end)
            :reduce_by_key(function(a, b) return a + b end):collect_as_map()) do
            total = total + v
          end
          assert.are.equal(21 + 6 * round, total)
          assert.are.equal(21, data:fold(0, function(a, x) return a + x + 0 * round end))
          assert.are.same({ 10, 20, 30, 40, 50, 60 }, kept:collect())
        end
      end)
      collectgarbage("setpause", pause)
      collectgarbage("setstepmul", mul)
      assert(ok, err)
      collectgarbage("collect")
      data:count() -- the next job frees what nothing holds
      local blobs = shipped(ctx)
      -- kept's closure and the last round's, not sixty.
      assert.is_true(blobs < 10, "closures held " .. blobs)
    end)
  end)
end)

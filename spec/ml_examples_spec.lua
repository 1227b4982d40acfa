-- The examples of issue 21 run as a user runs them (the interpreter, a process each), and
-- what they print is checked against the numbers that generated their data.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local function run(example)
  local p = io.popen(H.interpreter() .. " examples/" .. example .. " 2>&1")
  local out = p:read("*a")
  local ok = p:close()
  assert.is_truthy(ok, example .. " failed:\n" .. out)
  return out
end

describe("examples", function()
  it("streaming_kmeans.lua: the centres follow the moved cluster, every point in its own cluster", function()
    local out = run("streaming_kmeans.lua")
    local last = out:match("batch 10: ([^\n]*)")
    assert.truthy(last, out)
    local far = tonumber(last:match("farthest from a true centre ([%d.]+)"))
    assert.is_true(far < 0.2, last)
    assert.truthy(last:find("100% of points", 1, true), last)
    assert.truthy(last:find("(7.9", 1, true), "a centre near (8, 2): " .. last)
  end)

  it("streaming_regression.lua: weights near 3, -2, +1 and the bid's near 2, -1", function()
    local out = run("streaming_regression.lua")
    local a, b, c, err, w, i = out:match("batch 8: price = ([%d.-]+) rooms ([%d.+-]+) age ([%d.+-]+) %(mean error ([%d.]+)%); bid: weight ([%d.-]+), intercept ([%d.+-]+)")
    assert.truthy(a, out)
    assert.is_true(math.abs(a - 3) < 0.05 and math.abs(b + 2) < 0.05 and math.abs(c - 1) < 0.05, out)
    assert.is_true(tonumber(err) < 0.1, out)
    assert.is_true(math.abs(w - 2) < 0.4 and math.abs(i + 1) < 0.4, out)
  end)

  it("distinct_users.lua: every window's estimate within 3 standard errors of the exact count", function()
    local out = run("distinct_users.lua")
    local windows = 0
    for est, exact in out:gmatch("about (%d+) distinct users %(exact (%d+)") do
      windows = windows + 1
      assert.is_true(math.abs(est - exact) <= 3 * 1.04 / 128 * exact, est .. " vs " .. exact)
    end
    assert.are.equal(8, windows)
    assert.truthy(out:find("largest error: ", 1, true))
  end)
end)

describe("latest_model() at the prompt", function()
  it("reads the model trained so far between batches (dstream -i, lines from a pipe)", function()
    local script = os.tmpname()
    H.write_file(script, [[
local dstream = require("dstream")
local kmeans = require("dstream.ml.kmeans")
ctx = dstream.context { clock = "manual", workers = 1 }
km = kmeans.streaming { k = 1 }:set_initial_centers({ { 0 } }, { 0 })
km:train_on(ctx:queue_stream({ { { 2 }, { 4 } }, { { 6 } } }))
ctx:start()
]])
    local p = io.popen("printf 'ctx:advance(1)\\nprint(km:latest_model())\\nctx:advance(1)\\nprint(km:latest_model().centers[1][1])\\n' | "
      .. H.interpreter() .. " -i " .. script .. " 2>&1")
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.truthy(out:find("kmeans model: {3} weight 2", 1, true), out)
    assert.truthy(out:find("\n4\n", 1, true) or out:find("\n4$"), out)
  end)
end)

-- ctx:driver_state(name, save, restore): a value the driver keeps (here a running total that
-- foreach_rdd updates) is checkpointed with the job and given back by a restart, graceful or
-- abrupt (then the batch log's batches run again and update it as they did the first time).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local dstream = require("dstream")

local ckpt_dir = H.scratch_dirs(after_each)

local input = { { 1, 2 }, { 3 }, {}, { 4, 5, 6 }, { 7 }, { 8, 9 } }

-- Runs n batches of a job summing its records on the driver; returns the total, restored.
local function job(dir, n, graceful)
  local state = { total = 0, batches = 0 }
  local restored
  local ctx = dstream.get_or_create(dir, function()
    return dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 2 }
  end)
  local ok, err = pcall(function()
    ctx:driver_state("running total", function() return state end, function(saved)
      restored = saved.total
      state = saved
    end)
    ctx:queue_stream(H.deep_copy(input)):foreach_rdd(function(rdd)
      for _, v in ipairs(rdd:collect()) do state.total = state.total + v end
      state.batches = state.batches + 1
    end)
    ctx:start()
    ctx:advance(n)
    ctx:stop(graceful and { graceful = true } or nil)
  end)
  if not ok then pcall(ctx.stop, ctx) error(err, 0) end
  return state, restored
end

describe("ctx:driver_state", function()
  it("gives the value back after a graceful stop and after an abrupt one", function()
    local dir = ckpt_dir()
    local first = job(dir, 2, true)
    assert.are.same({ total = 6, batches = 2 }, first)
    local second, restored = job(dir, 2, false) -- abrupt: only the first checkpoint of this run
    assert.are.equal(6, restored)
    assert.are.same({ total = 21, batches = 4 }, second)
    local third, restored3 = job(dir, 2, true)
    assert.are.equal(6, restored3, "the abrupt run's batches came back through the batch log")
    assert.are.same({ total = 45, batches = 6 }, third)
  end)

  it("refuses bad arguments at the caller's line", function()
    H.with_context({}, function(ctx)
      local save, restore = function() return 1 end, function() end
      local line = debug.getinfo(1, "l").currentline
      local ok, err = pcall(ctx.driver_state, ctx, "", save, restore)
      assert.truthy(not ok and err:find("driver_state_spec.lua:" .. (line + 1) .. ": driver_state: the name must be", 1, true), err)
      assert.has_error(function() ctx:driver_state("x", save) end)
      ctx:driver_state("x", save, restore)
      assert.has_error(function() ctx:driver_state("x", save, restore) end, "driver_state: the name 'x' is taken")
    end)
  end)

  it("a value that cannot be checkpointed is an error naming the value's name", function()
    local dir = ckpt_dir()
    local ctx = dstream.context { batch = "1s", clock = "manual", checkpoint = dir }
    ctx:driver_state("handle", function() return { f = io.stdout } end, function() end)
    ctx:queue_stream({ { 1 } }):foreach_rdd(function() end)
    local ok, err = pcall(ctx.start, ctx)
    pcall(ctx.stop, ctx)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("driver_state 'handle': save() returned a value that cannot be checkpointed", 1, true), err)
  end)
end)

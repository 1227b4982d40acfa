-- A worker whose collector is in a cycle when its task ends finishes that cycle while it
-- waits for the next task and the driver's loop waits too (runtime/ds_pool.c,
-- worker_idle_gc), instead of in the next task's allocations: what a user sees is the
-- worker's Lua memory (/api/workers' lua_memory, the dstream_worker_lua_memory_bytes metric)
-- falling back to its live data while the job idles, where it used to stay up until the
-- worker's next task. The results of what runs after are the same.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

-- A task that leaves about 20 MB of garbage, its collector started on a cycle (one step:
-- the garbage is white in it), and returns the worker's Lua KB at its end.
local function garbage_then_step()
  local t = {}
  for i = 1, 300000 do t[i] = { i, i + 1 } end
  t = nil
  collectgarbage("step", 0)
  return collectgarbage("count")
end

describe("a worker idle between tasks", function()
  it("finishes its collector's cycle while the driver waits: its Lua memory falls back", function()
    H.with_context({ workers = 1, partitions = 1 }, function(ctx)
      ctx:queue_stream({}):foreach_rdd(function() end)
      ctx:start()
      local pool = ctx.sched.pool
      local at_end = ctx:parallelize({ 1 }, 1):map(garbage_then_step):collect()[1] * 1024
      assert.is_true(at_end > 15e6, "the task's garbage: " .. at_end)
      -- The driver's loop waits (a streaming job between batches): only the idle worker's
      -- own steps can free the garbage, no task runs meanwhile.
      for _ = 1, 10 do
        if pool:worker_memory(0) < at_end - 10e6 then break end
        ctx:await_termination(0.5)
      end
      assert.is_true(pool:worker_memory(0) < at_end - 10e6, string.format(
        "Lua memory after 5 s idle %.1f MB, at the task's end %.1f MB", pool:worker_memory(0) / 1e6, at_end / 1e6))
    end)
  end)

  it("takes the next task while a cycle is under way, and its results are the same", function()
    -- Two workers, tasks submitted while each worker's collector has a cycle to finish: a
    -- word count over 40 batches of a queue, every batch leaving garbage on both workers.
    local batches, expected = {}, {}
    for b = 1, 40 do
      local lines = {}
      for i = 1, 500 do
        local w = "w" .. ((b * 7 + i) % 97)
        lines[i] = w .. " " .. w .. "x"
        expected[w] = (expected[w] or 0) + 1
        expected[w .. "x"] = (expected[w .. "x"] or 0) + 1
      end
      batches[b] = lines
    end
    local got = H.with_context({ workers = 2, partitions = 2, clock = "manual", batch = "1s" }, function(ctx)
      local counts = {}
      ctx:queue_stream(batches)
        :flat_map(function(line)
          local junk = {}
          for i = 1, 2000 do junk[i] = { i } end -- garbage for the collector
          return line:gmatch("%S+")
        end)
        :map(function(w) return w, 1 end)
        :reduce_by_key(function(a, b) return a + b end)
        :foreach_rdd(function(rdd)
          for _, p in ipairs(rdd:collect()) do counts[p[1]] = (counts[p[1]] or 0) + p[2] end
        end)
      ctx:start()
      ctx:advance(40)
      return counts
    end)
    assert.same(expected, got)
  end)
end)

-- What a user sees of a job that cannot keep up (issue 18 item 2): a warning at the default log
-- level once batches wait longer than the batch interval, another once it has caught up; a
-- hard stop names the queued batches it drops; log lines carry the time of day.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local STAMP = "dstream: %d%d:%d%d:%d%d%.%d%d%d warn: "

describe("a job falling behind", function()
  it("is warned about at the default log level, and so is its catching up", function()
    -- 20 rows a second, 500 ms batches, one worker: 90 ms per row for the first 60 rows
    -- (900 ms per batch, over the interval), then 1 ms.
    local out = H.run_script([[
      local dstream = require("dstream")
      local ctx = dstream.context { batch = "500ms", workers = 1, partitions = 1, name = "slowjob" }
      ctx:rate_stream { rows_per_second = 20 }
        :map(function(x) local t = os.clock() + (x < 60 and 0.09 or 0.001) while os.clock() < t do end return x end)
        :foreach_rdd(function(r) r:count() end)
      -- Runs until it has caught up (four batches in time after the late ones), at most 60 s:
      -- a loaded machine stretches the slow rows.
      local late, in_time = false, 0
      ctx:on_batch_completed(function(info)
        if info.scheduling_delay_ms > 500 then late, in_time = true, 0
        elseif late then in_time = in_time + 1 end
      end)
      ctx:start()
      local waited = 0
      while not (late and in_time >= 4) and waited < 60 do
        ctx:await_termination(0.5)
        waited = waited + 0.5
      end
      ctx:stop()
      print("SCRIPT-OK")
    ]])
    assert.truthy(out:find("SCRIPT-OK", 1, true), out)
    local behind = out:match(STAMP .. "(slowjob is falling behind: [^\n]*)")
    assert.truthy(behind, out)
    assert.truthy(behind:find("more than the 500 ms batch interval", 1, true), behind)
    assert.truthy(behind:find("batch(es) queued", 1, true), behind)
    local caught = out:match(STAMP .. "(slowjob has caught up: [^\n]*)")
    assert.truthy(caught, out)
    assert.truthy(out:find("falling behind", 1, true) < out:find("caught up", 1, true))
  end)

  it("is warned about when a foreach_rdd holds the driver up: the delays count from the batch time", function()
    -- foreach_rdd blocks the driver's loop 300 ms per batch of 100 ms for 4 batches: the next
    -- batches are made late, in a burst, and must not show a scheduling delay of 0.
    local out = H.run_script([[
      local dstream = require("dstream")
      local ctx = dstream.context { batch = "100ms", workers = 1, name = "blockingjob" }
      local n, worst = 0, 0
      ctx:rate_stream { rows_per_second = 10 }:foreach_rdd(function()
        n = n + 1
        if n <= 4 then os.execute("sleep 0.3") end
      end)
      ctx:on_batch_completed(function(info)
        worst = math.max(worst, info.scheduling_delay_ms)
        assert(info.total_delay_ms >= info.scheduling_delay_ms)
      end)
      ctx:start()
      ctx:await_termination(1.6)
      ctx:stop()
      print("WORST " .. worst)
    ]])
    local worst = tonumber(out:match("WORST ([%d.]+)"))
    assert.truthy(worst and worst >= 500, out) -- the 4th batch starts 600 ms after its time
    assert.truthy(out:match(STAMP .. "blockingjob is falling behind: "), out)
  end)

  it("says nothing when batches keep up", function()
    local out = H.run_script([[
      local dstream = require("dstream")
      local ctx = dstream.context { batch = "200ms", workers = 1 }
      ctx:rate_stream { rows_per_second = 50 }:foreach_rdd(function(r) r:count() end)
      ctx:start()
      ctx:await_termination(1.5)
      ctx:stop { graceful = true }
      print("SCRIPT-OK")
    ]])
    assert.truthy(out:find("SCRIPT-OK", 1, true), out)
    assert.falsy(out:find("falling behind", 1, true), out)
  end)

  it("--log-level debug adds a line per task; the default shows none", function()
    local code = "local c = require('dstream').context { workers = 2 }; print(c:parallelize({ 1, 2, 3 }, 2):count())"
    local function run(flags)
      local p = io.popen(H.interpreter() .. " " .. flags .. " -e \"" .. code .. "\" 2>&1")
      local out = p:read("*a")
      p:close()
      return out
    end
    local debug = run("--log-level debug")
    assert.truthy(debug:match("dstream: %d%d:%d%d:%d%d%.%d%d%d debug: task count, partition 0: done on worker %d+ in [%d.]+ ms, %d+ records in"), debug)
    assert.truthy(debug:find("partition 1: done", 1, true), debug)
    local plain = run("")
    assert.falsy(plain:find("debug:", 1, true), plain)
    assert.truthy(plain:find("3", 1, true), plain)
  end)

  it("a hard stop names the queued batches it drops", function()
    local out = H.run_script([[
      local dstream = require("dstream")
      local ctx = dstream.context { batch = "100ms", workers = 1, partitions = 1 }
      ctx:rate_stream { rows_per_second = 20 }
        :map(function(x) local t = os.clock() + 0.12 while os.clock() < t do end return x end)
        :foreach_rdd(function(r) r:count() end)
      ctx:start()
      ctx:await_termination(1.5)
      ctx:stop()
      print("SCRIPT-OK")
    ]])
    assert.truthy(out:find("SCRIPT-OK", 1, true), out)
    assert.truthy(out:match(STAMP .. "stop: %d+ queued batch%(es%) dropped without running %(%d+"), out)
  end)
end)

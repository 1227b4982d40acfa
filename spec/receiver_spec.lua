-- spec/receiver_spec.lua: sources written in Lua (ctx:receiver_stream, issue 17 item 1): a
-- receiver table shipped to a thread of its own, store / store_many / store_pairs, restarts
-- with backoff after a raise or restart(), report_error, stops that always finish, the
-- write-ahead log, and the CustomReceiver example against a TCP server the test starts.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local core = require("dstream.core")
local figures = require("dstream.monitor.figures")

-- Runs the loop until pred() holds (the receiver runs on its own thread meanwhile).
local function wait_until(pred, what, secs)
  local deadline = core.hrtime_ms() + (secs or 20) * 1000
  local t = core.timer(function() end)
  while not pred() do
    if core.hrtime_ms() > deadline then
      t:close()
      error("timed out waiting for " .. what, 2)
    end
    t:start(5)
    core.run("once")
  end
  t:close()
end

local function stats(input) return input.source:stats() end

-- A manual-clock context with one receiver whose batches are collected into `got`.
local function receiver_job(cfg, receiver, opts)
  local ctx = H.context(cfg)
  local input = ctx:receiver_stream(receiver, opts)
  local got = {}
  input:foreach_rdd(function(rdd) got[#got + 1] = rdd:collect() end)
  return ctx, input, got
end

for _, cfg in ipairs(H.configs({ 1, 4 }, { 1, 3 })) do
  describe("receiver_stream (" .. cfg.name .. ")", function()
    it("stores records from a counter with store(), in order, in the next batch", function()
      local ctx, input, got = receiver_job(cfg, {
        limit = 2500, -- more than one chunk (1024 records)
        on_start = function(self)
          for i = 1, self.limit do self:store(i) end
        end,
      })
      ctx:start()
      wait_until(function() return stats(input).state == "finished" end, "on_start to return")
      ctx:advance(2)
      ctx:stop()
      assert.are.same({ H.range(1, 2500), {} }, got)
      local st = stats(input)
      assert.are.equal(2500, st.records)
      assert.are.equal(0, st.pending)
      assert.are.equal(0, st.errors)
    end)

    it("hands over store_many lists, store_pairs and store(k, v) pairs", function()
      local ctx = H.context(cfg)
      local words = ctx:receiver_stream({
        on_start = function(self)
          self:store_many({ "to", "be", "or" })
          self:store_many({ "not", "to", "be" })
        end,
      })
      local counts = ctx:receiver_stream({
        on_start = function(self)
          self:store_pairs({ "a", "b" }, { 1, 2 })
          self:store_pairs({ { "a", 10 }, { "c", 3 } })
          self:store("b", 20)
          self:store("d", false) -- a pair whose value is false
        end,
      })
      local got_words, got_counts = {}, {}
      words:foreach_rdd(function(rdd) got_words[#got_words + 1] = rdd:collect() end)
      counts:reduce_by_key(function(a, b) return (a or 0) + (b or 0) end)
        :foreach_rdd(function(rdd) got_counts[#got_counts + 1] = H.to_map(rdd:collect()) end)
      ctx:start()
      wait_until(function() return stats(words).state == "finished" and stats(counts).state == "finished" end,
        "both receivers to finish")
      ctx:advance(1)
      ctx:stop()
      assert.are.same({ { "to", "be", "or", "not", "to", "be" } }, got_words)
      assert.are.same({ { a = 11, b = 22, c = 3, d = false } }, got_counts)
    end)
  end)
end

describe("receiver_stream errors and restarts", function()
  it("restarts a receiver that raises, with backoff, and counts it where the monitor reads", function()
    local ctx, input, got = receiver_job({ workers = 2 }, {
      on_start = function(self)
        if self.first then self:store("received") end
        self.first = false
        error("the device is not ready")
      end,
      first = true,
    })
    ctx:start()
    wait_until(function() return stats(input).restarts >= 2 end, "a second restart", 10)
    local st = stats(input)
    assert.are.equal("waiting", st.state)
    assert.are.equal(2000, st.backoff_ms) -- 1 s after the first raise, then twice as long
    assert.truthy(st.last_error:find("receiver_spec.lua:%d+: the device is not ready$"), st.last_error)
    local info = figures.input_info(input) -- what /api/streams and the page show
    assert.are.equal(2, info.errors)
    assert.are.equal(st.last_error, info.last_error)
    local _, _, metrics = ctx.monitor:handle("GET", "/metrics", "", "localhost:4040")
    assert.truthy(metrics:find('\ndstream_source_errors_total{stream="' .. input.id
      .. '",name="receiver_stream #1",source="receiver_stream #1"} 2\n', 1, true), metrics)
    assert.are.equal(2, st.errors)
    ctx:advance(1)
    ctx:stop()
    assert.are.same({ { "received" } }, got)
  end)

  it("restart(reason, delay) calls on_stop and on_start again; report_error only counts", function()
    local ctx, input, got = receiver_job({ workers = 2 }, {
      runs = 0,
      on_start = function(self)
        self.runs = self.runs + 1
        self:store("run " .. self.runs)
        if self.runs == 1 then self:report_error("slow device") end
        if self.runs < 3 then self:restart("reconnect", 0.01) end
      end,
      on_stop = function(self) self:store("stop " .. self.runs) end,
    })
    ctx:start()
    wait_until(function() return stats(input).state == "finished" end, "the third run")
    local st = stats(input)
    assert.are.equal(2, st.restarts)
    assert.are.equal(3, st.errors) -- one report_error, two restarts
    assert.truthy(st.last_error:find("receiver_spec.lua:%d+: reconnect$"), st.last_error)
    ctx:stop { graceful = true } -- on_stop of the last run stores into the last batch
    local all = {}
    for _, b in ipairs(got) do for _, r in ipairs(b) do all[#all + 1] = r end end
    assert.are.same({ "run 1", "stop 1", "run 2", "stop 2", "run 3", "stop 3" }, all)
  end)

  it("keeps the driver's API off the receiver's thread", function()
    local ctx, input = receiver_job({ workers = 1 }, {
      on_start = function(self)
        local ok, err = pcall(function() require("dstream.core").run("nowait") end)
        self:store(tostring(err))
        require("dstream").context {}
      end,
    })
    ctx:start()
    wait_until(function() return stats(input).errors >= 1 end, "the raise")
    assert.truthy(stats(input).last_error:find("contexts and actions run on the driver", 1, true))
    ctx:advance(1)
    ctx:stop()
  end)

  it("refuses a receiver without on_start, or one that cannot travel, at the caller's line", function()
    H.with_context({ workers = 1 }, function(ctx)
      local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() ctx:receiver_stream({}) end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(":" .. line .. ": receiver_stream: the receiver needs an on_start(self) function", 1, true), err)
      local handle = io.stdout
      ok, err = pcall(function() ctx:receiver_stream({ on_start = function() return handle end }) end)
      assert.truthy(tostring(err):find("upvalue 'handle'", 1, true), err)
      ok, err = pcall(function() ctx:receiver_stream({ on_start = function() end }, { max_rat = 1 }) end)
      assert.truthy(tostring(err):find("unknown option 'max_rat'", 1, true), err)
      ctx:queue_stream({}):foreach_rdd(function() end)
    end)
  end)
end)

describe("receiver_stream with max_rate", function()
  it("holds store() in the receiver's thread instead of dropping records", function()
    local ctx, input, got = receiver_job({ workers = 2 }, {
      on_start = function(self) for i = 1, 600 do self:store(i) end end,
    }, { max_rate = 2000 })
    ctx:start()
    wait_until(function() return stats(input).state == "finished" end, "600 records at 2000 a second")
    local st = stats(input)
    assert.are.equal(2000, st.max_rate)
    assert.are.equal(2000, st.rate_limit)
    assert.is_true(st.pauses >= 1) -- 600 records are more than the bucket's tenth of a second
    ctx:advance(1)
    ctx:stop()
    assert.are.same({ H.range(1, 600) }, got)
  end)
end)

describe("stopping a receiver", function()
  it("ends a receiver that polls is_stopped(), and keeps what on_stop stores", function()
    local ctx, input, got = receiver_job({ workers = 2 }, {
      on_start = function(self)
        self:store("started")
        while not self:is_stopped() do self:sleep(0.01) end
      end,
      on_stop = function(self) self:store("stopped") end,
    })
    ctx:start()
    wait_until(function() return stats(input).records >= 1 end, "the first record")
    assert.are.equal("running", stats(input).state)
    ctx:stop { graceful = true }
    assert.are.equal("stopped", stats(input).state)
    assert.are.same({ { "started", "stopped" } }, got)
  end)

  it("finishes even when on_start never returns: the receiver is abandoned", function()
    local ctx, input = receiver_job({ workers = 1 }, {
      on_start = function()
        local ffi = require("ffi")
        pcall(ffi.cdef, "unsigned int sleep(unsigned int seconds);")
        ffi.C.sleep(4) -- blocked in C, not polling is_stopped()
      end,
    })
    ctx:start()
    wait_until(function() return stats(input).state == "running" end, "on_start")
    ctx:stop() -- waits 2 s (the default stop_timeout), then gives the thread up
    assert.are.equal("abandoned", stats(input).state)
  end)
end)

describe("receiver_stream with the write-ahead log", function()
  local dirs = H.scratch_dirs(after_each)

  it("re-runs a batch from the log after a crash: records that cannot be received again", function()
    local dir = dirs()
    local function job(receiver, out, fail)
      local ctx = H.dstream().context { clock = "manual", workers = 2, checkpoint = dir, wal = true }
      ctx:receiver_stream(receiver):foreach_rdd(function(rdd, time)
        out[#out + 1] = { time, rdd:collect() }
        if fail then error("crash in the middle of the batch") end
      end)
      return ctx
    end
    local first = {}
    local ctx = job({ on_start = function(self) self:store_many(H.range(1, 100)) end }, first, true)
    ctx:start()
    wait_until(function() return ctx.inputs[1].source:stats().state == "finished" end, "the records")
    assert.has_error(function() ctx:advance(1) end)
    assert.are.same({ { 1000, H.range(1, 100) } }, first)
    -- The second run's source has nothing left to send: the batch comes from the log.
    local second = {}
    local ctx2 = job({ on_start = function() end }, second, false)
    ctx2:start()
    ctx2:stop { graceful = true }
    assert.are.same({ { 1000, H.range(1, 100) } }, second)
  end)
end)

describe("the CustomReceiver example (examples/custom_receiver.lua)", function()
  it("reads every line of a TCP server the test starts, in a job of its own", function()
    -- The server: 2000 lines of three words to one connection, then it closes and exits.
    local server = io.popen([[python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); s.settimeout(20)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.sendall(b"".join(b"line %d x\n" % i for i in range(2000))); c.close()
']])
    local port = server:read("*l")
    assert.truthy(tonumber(port), "the server's port")
    local job = io.popen(H.quote(H.interpreter()) .. " examples/custom_receiver.lua 127.0.0.1 " .. port .. " 2 2>&1")
    local out = job:read("*a")
    job:close()
    server:close()
    assert.truthy(out:find("\ntotal: 6000 words\n", 1, true), out)
    assert.truthy(out:find("\nTime: %d+ ms\n"), out) -- the batches' word counts, printed
    -- The server went away: the receiver asked for a restart, which the log names.
    assert.truthy(out:find("receiver_stream lines: restart asked: examples/custom_receiver.lua:%d+: Trying to connect again"), out)
  end)
end)

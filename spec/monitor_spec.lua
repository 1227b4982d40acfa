-- Watching a job from Lua: ctx:on_batch_started/on_batch_completed listeners and their figures,
-- the metrics registry (ctx:metrics(), Prometheus text), the endpoint's routes and JSON, the
-- ui/backpressure/progress settings, rate_stream's max_rate, and the PID rate estimator.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local dstream = require("dstream")
local monitor = require("dstream.monitor")
local backpressure = require("dstream.monitor.backpressure")

local THIS_FILE = "monitor_spec%.lua"

local function blames_this_file(err)
  return type(err) == "string" and err:match("^[^\n]-" .. THIS_FILE .. ":%d+:") ~= nil
end

local function manual(opts)
  opts = opts or {}
  opts.clock, opts.batch = "manual", opts.batch or "1s"
  opts.workers, opts.partitions = opts.workers or 2, opts.partitions or 2
  return dstream.context(opts)
end

describe("listeners", function()
  it("get the figures of every batch, started before completed", function()
    local ctx = manual()
    local events = {}
    ctx:rate_stream { rows_per_second = 10 }
      :map(function(x) return x % 3, x end)
      :reduce_by_key(function(a, b) return a + b end)
      :foreach_rdd(function(rdd) rdd:collect() end)
    ctx:on_batch_started(function(info) events[#events + 1] = { "started", info } end)
    ctx:on_batch_completed(function(info) events[#events + 1] = { "completed", info } end)
    ctx:start()
    ctx:advance(3)
    ctx:stop()
    assert.are.equal(6, #events)
    for i = 1, 3 do
      local started, completed = events[2 * i - 1], events[2 * i]
      assert.are.equal("started", started[1])
      assert.are.equal("completed", completed[1])
      local s, c = started[2], completed[2]
      assert.are.equal(i * 1000, s.time)
      assert.are.equal("running", s.status)
      assert.are.equal(i * 1000, c.time)
      assert.are.equal("completed", c.status)
      assert.are.equal(10, c.records)
      assert.are.same({ { id = 1, name = "rate_stream", records = 10 } }, c.sources)
      assert.is_true(c.started_at >= c.generated_at and c.finished_at >= c.started_at)
      assert.is_true(c.scheduling_delay_ms >= 0 and c.processing_ms >= 0)
      assert.is_true(math.abs(c.total_delay_ms - (c.scheduling_delay_ms + c.processing_ms)) < 0.01)
      -- The shuffle's map side and the collect: one task per partition each.
      assert.are.equal(2, #c.stages)
      assert.truthy(c.stages[1].name:find("reduce_by_key", 1, true))
      assert.are.equal(2, c.stages[1].tasks)
      assert.are.equal(10, c.stages[1].records_in)
      assert.are.equal(0, c.stages[1].failed)
      assert.is_true(c.stages[2].task_ms >= 0)
    end
  end)

  it("see the same figures as /api/batches", function()
    local ctx = manual()
    local seen = {}
    ctx:rate_stream { rows_per_second = 5 }:foreach_rdd(function(rdd) rdd:count() end)
    ctx:on_batch_completed(function(info) seen[#seen + 1] = info end)
    ctx:start()
    ctx:advance(2)
    local status, ctype, body = ctx.monitor:handle("GET", "/api/batches", "", "127.0.0.1:4040")
    ctx:stop()
    assert.are.equal(200, status)
    assert.truthy(ctype:find("application/json", 1, true))
    local list = require("cjson").decode(body)
    assert.are.equal(2, #list)
    assert.are.same(seen[2], list[1]) -- newest first
    assert.are.same(seen[1], list[2])
  end)

  it("get a copy: changing it changes nothing the context keeps", function()
    local ctx = manual()
    ctx:rate_stream { rows_per_second = 5 }:foreach_rdd(function(rdd) rdd:count() end)
    ctx:on_batch_completed(function(info) info.records = -1; info.stages[1] = nil end)
    ctx:start()
    ctx:advance(1)
    assert.are.equal(5, ctx.batches[1].records)
    ctx:stop()
  end)

  it("that raise are logged and the job goes on", function()
    local out = H.run_script([[
      local ctx = require("dstream").context { batch = "1s", clock = "manual", workers = 1 }
      ctx:rate_stream { rows_per_second = 3 }:foreach_rdd(function(rdd) rdd:count() end)
      local n = 0
      ctx:on_batch_completed(function(info) error("listener broke at " .. info.time) end)
      ctx:on_batch_completed(function(info) n = n + 1 end)
      ctx:start()
      ctx:advance(2)
      ctx:stop()
      print("batches", n)
    ]])
    assert.truthy(out:find("batches\t2", 1, true), out)
    assert.truthy(out:find("batch_completed listener failed: ", 1, true), out)
    assert.truthy(out:find("listener broke at 1000", 1, true), out)
  end)

  it("must be functions (the error names the caller's line)", function()
    local ctx = manual()
    local ok, err = pcall(function() ctx:on_batch_completed("nope") end)
    assert.is_false(ok)
    assert.is_true(blames_this_file(err), err)
    assert.truthy(err:find("on_batch_completed: expected a function, got string", 1, true), err)
    ok, err = pcall(function() ctx:on_batch_started() end)
    assert.is_false(ok)
    assert.truthy(err:find("on_batch_started: expected a function", 1, true), err)
    ctx:stop()
  end)
end)

describe("the metrics registry", function()
  it("renders counters, gauges and histograms in Prometheus text", function()
    local r = monitor.registry()
    local c = r:counter("jobs_done_total", "Jobs done", { "kind" })
    c:inc(nil, { kind = "a" })
    c:inc(2, { kind = "a" })
    c:inc(1, { kind = 'q"u\\o\nte' })
    r:gauge("queue_depth", "Depth\nof the queue"):set(2.5)
    local h = r:histogram("wait_seconds", "Waits", { 0.1, 1 })
    h:observe(0.05)
    h:observe(0.5)
    h:observe(3)
    assert.are.equal(3, c:value({ kind = "a" }))
    assert.are.same({ count = 3, sum = 3.55, buckets = { [0.1] = 1, [1] = 2 } }, h:value())
    assert.are.equal(table.concat({
      "# HELP jobs_done_total Jobs done",
      "# TYPE jobs_done_total counter",
      'jobs_done_total{kind="a"} 3',
      'jobs_done_total{kind="q\\"u\\\\o\\nte"} 1',
      "# HELP queue_depth Depth\\nof the queue",
      "# TYPE queue_depth gauge",
      "queue_depth 2.5",
      "# HELP wait_seconds Waits",
      "# TYPE wait_seconds histogram",
      'wait_seconds_bucket{le="0.1"} 1',
      'wait_seconds_bucket{le="1"} 2',
      'wait_seconds_bucket{le="+Inf"} 3',
      "wait_seconds_sum 3.55",
      "wait_seconds_count 3",
    }, "\n") .. "\n", r:render())
  end)

  it("refuses bad names, labels and uses", function()
    local r = monitor.registry()
    local function refuses(pattern, fn)
      local ok, err = pcall(fn)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(pattern, 1, true), tostring(err))
    end
    refuses("not a valid Prometheus name", function() r:counter("1bad") end)
    refuses("not a valid Prometheus name", function() r:gauge("ok_name", "h", { "bad-label" }) end)
    refuses("cannot have a label 'le'", function() r:histogram("h_seconds", "h", nil, { "le" }) end)
    local c = r:counter("things_total", "Things", { "kind" })
    refuses("cannot go down", function() c:inc(-1, { kind = "x" }) end)
    refuses("label 'kind' is missing", function() c:inc(1, { other = "x" }) end)
    refuses("takes the labels {kind} only", function() c:inc(1, { kind = "x", more = "y" }) end)
    refuses("needs labels {kind}", function() c:inc(1) end)
    refuses("only gauges are set", function() c:set(3, { kind = "x" }) end)
    refuses("already a counter", function() r:gauge("things_total") end)
    refuses("expects a number", function() c:inc("lots", { kind = "x" }) end)
    -- The same family asked for twice is the same object.
    assert.are.equal(c, r:counter("things_total", "Things", { "kind" }))
  end)

  it("has the families other modules fill: state keys and late records", function()
    local ctx = manual()
    local m = ctx:metrics()
    m:get("dstream_state_keys"):set(42, { operator = "counts" })
    m:get("dstream_late_records_dropped_total"):inc(7, { operator = "events" })
    m:gauge("my_job_lag_seconds", "How far behind the job is"):set(1.5)
    ctx:rate_stream { rows_per_second = 4 }:foreach_rdd(function(rdd) rdd:count() end)
    ctx:start()
    ctx:advance(2)
    local text = m:render()
    ctx:stop()
    for _, line in ipairs({
      'dstream_state_keys{operator="counts"} 42',
      'dstream_late_records_dropped_total{operator="events"} 7',
      "my_job_lag_seconds 1.5",
      'dstream_source_records_total{stream="1",name="rate_stream",source="rate_stream"} 8',
      "dstream_batches_completed_total 2",
      "dstream_batches_failed_total 0",
      "dstream_scheduling_delay_seconds_count 2",
      'dstream_processing_time_seconds_bucket{le="+Inf"} 2',
      "dstream_total_delay_seconds_count 2",
      "dstream_workers 2",
      "dstream_batch_interval_seconds 1",
      "dstream_backpressure_enabled 0",
    }) do
      assert.truthy(text:find("\n" .. line .. "\n", 1, true), line .. " not in:\n" .. text)
    end
    assert.truthy(text:find('\ndstream_worker_lua_memory_bytes{worker="0"} %d+\n'), text)
    assert.truthy(text:find('\ndstream_worker_lua_memory_bytes{worker="1"} %d+\n'), text)
    assert.truthy(text:find("\ndstream_workers_busy [0-2]\n"), text)
  end)

  it("counts the records an event-time stream dropped behind its watermark", function()
    local ctx = manual({ workers = 1, partitions = 1 })
    -- Records are { key, event time in ms }; the third batch's are far behind the watermark.
    local events = ctx:queue_stream({ { { "a", 1000 }, { "b", 1500 } }, { { "a", 60000 } },
      { { "a", 2000 }, { "b", 3000 }, { "c", 59000 } } })
      :event_time(function(r) return r[2] end, { watermark = "10s" })
    events:map(function(r) return r[1], 1 end)
      :reduce_by_key_and_window(function(a, b) return a + b end, "2s", "1s")
      :foreach_rdd(function(rdd) rdd:collect() end)
    ctx:start()
    ctx:advance(3)
    local counter = ctx:metrics():get("dstream_late_records_dropped_total")
    local text = ctx:metrics():render()
    ctx:stop()
    assert.are.equal(2, events:late_count())
    local labels = { operator = "event_time#" .. events.id }
    assert.are.equal(2, counter:value(labels))
    assert.truthy(text:find('\ndstream_late_records_dropped_total{operator="event_time#' .. events.id .. '"} 2\n', 1, true), text)
  end)

  it("counts a failed batch", function()
    local ctx = manual({ workers = 1, partitions = 1 })
    ctx:rate_stream { rows_per_second = 2 }
      :map(function(x) if x == 1 then error("bad record") end return x end)
      :foreach_rdd(function(rdd) rdd:count() end)
    local failed
    ctx:_listen("batch_failed", function(b) failed = b end)
    ctx:start()
    assert.has_error(function() ctx:advance(1) end)
    assert.are.equal(1, ctx:metrics():get("dstream_batches_failed_total"):value())
    assert.are.equal(0, ctx:metrics():get("dstream_batches_completed_total"):value())
    assert.truthy(failed and failed.error:find("bad record", 1, true))
  end)
end)

describe("the endpoint's routes", function()
  local ctx
  before_each(function()
    ctx = manual({ name = "routes" })
    ctx:rate_stream { rows_per_second = 3 }:map(function(x) return x end):foreach_rdd(function(rdd) rdd:count() end)
    ctx:start()
    ctx:advance(1)
  end)
  after_each(function() ctx:stop() end)

  it("serves the metrics, the JSON and the page", function()
    local status, ctype, body = ctx.monitor:handle("GET", "/metrics", "", "localhost:4040")
    assert.are.equal(200, status)
    assert.are.equal("text/plain; version=0.0.4; charset=utf-8", ctype)
    assert.truthy(body:find("dstream_batches_completed_total 1", 1, true))
    status, ctype, body = ctx.monitor:handle("GET", "/api/streams", "", "[::1]:4040")
    assert.are.equal(200, status)
    local s = require("cjson").decode(body)
    assert.are.equal("routes", s.name)
    assert.are.equal(1, #s.inputs)
    assert.are.equal(3, s.inputs[1].records)
    assert.are.same({ { id = 1, name = "rate_stream", parents = {}, output = false, input = true, state = false },
      { id = 2, name = "map", parents = { 1 }, output = true, input = false, state = false } }, s.streams)
    status, ctype, body = ctx.monitor:handle("GET", "/", "", "127.0.0.1:4040")
    assert.are.equal(200, status)
    assert.are.equal("text/html; charset=utf-8", ctype)
    assert.truthy(body:find('<svg id="chart-rate"', 1, true))
    assert.truthy(body:find("api/batches", 1, true))
  end)

  it("answers ?n= with at most n batches, and [] for none", function()
    ctx:advance(2)
    local _, _, body = ctx.monitor:handle("GET", "/api/batches", "n=2", "")
    assert.are.equal(2, #require("cjson").decode(body))
    _, _, body = ctx.monitor:handle("GET", "/api/batches", "n=0", "")
    assert.are.equal("[]", body)
  end)

  it("answers 400 to an n that is not a whole number from 0, saying what n takes", function()
    for _, bad in ipairs({ "abc", "-1", "2.5", "" }) do
      local status, _, body = ctx.monitor:handle("GET", "/api/batches", "n=" .. bad, "")
      assert.are.equal(400, status, bad)
      assert.are.equal("/api/batches: n is how many of the last batches to list, a whole number from 0"
        .. " (the last 100 are kept), as /api/batches?n=10; got n=" .. bad .. "\n", body)
    end
    assert.are.equal(200, (ctx.monitor:handle("GET", "/api/batches", "", "")))
  end)

  it("refuses other host names and unknown paths", function()
    assert.are.equal(403, (ctx.monitor:handle("GET", "/metrics", "", "evil.example")))
    assert.are.equal(403, (ctx.monitor:handle("GET", "/metrics", "", "127.0.0.1.evil.example:4040")))
    assert.are.equal(404, (ctx.monitor:handle("GET", "/nope", "", "127.0.0.1")))
  end)
end)

describe("the batch page, workers and state (issue 18)", function()
  local cjson = require("cjson")
  local function get(ctx, path)
    local status, _, body = ctx.monitor:handle("GET", path, "", "127.0.0.1")
    return status, status == 200 and cjson.decode(body) or body
  end

  it("keeps each task's figures for the last batches only, a bounded number per stage", function()
    local keep, max = monitor.KEEP_TASK_BATCHES, monitor.MAX_STAGE_TASKS
    monitor.KEEP_TASK_BATCHES, monitor.MAX_STAGE_TASKS = 3, 3
    local ok, err = pcall(function()
      local ctx = manual({ partitions = 4 })
      ctx:rate_stream { rows_per_second = 40 }
        :map(function(x) return x % 5, 1 end)
        :reduce_by_key(function(a, b) return a + b end, 2)
        :foreach_rdd(function(rdd) rdd:collect() end)
      ctx:start()
      ctx:advance(6)
      local kept = {}
      for _, b in ipairs(ctx.batches) do
        local _, j = get(ctx, string.format("/api/batches/%d", b.time))
        kept[#kept + 1] = j.stages[1].task_list and #j.stages[1].task_list or 0
      end
      -- The 4 map-side tasks of each batch: 3 rows kept, 1 counted as not kept; none for old batches.
      assert.are.same({ 0, 0, 0, 3, 3, 3 }, kept)
      local _, j = get(ctx, string.format("/api/batches/%d", ctx.batches[6].time))
      local st = j.stages[1]
      assert.are.equal("reduce_by_key (map side)", st.name)
      assert.are.equal(4, st.tasks)
      assert.are.equal(1, st.tasks_not_kept)
      for _, t in ipairs(st.task_list) do
        assert.are.equal("succeeded", t.status)
        assert.are.equal(10, t.records_in) -- 40 rows over 4 partitions
        assert.are.equal(5, t.records_out) -- combined map-side: one record per key
        assert.truthy(t.worker == 0 or t.worker == 1)
        assert.truthy(t.run_ms >= 0)
      end
      assert.are.same({ 10, 10, 10, 10, 10 }, st.summary.records_in)
      assert.are.equal(5, #st.summary.run_ms)
      assert.are.equal(2, #j.stages[2].task_list) -- the reduce side's 2 partitions
      assert.are.equal(404, (ctx.monitor:handle("GET", "/api/batches/5", "", "")))
      ctx:stop()
    end)
    monitor.KEEP_TASK_BATCHES, monitor.MAX_STAGE_TASKS = keep, max
    assert(ok, err)
  end)

  it("summarizes a stage's tasks: quantiles and skew", function()
    assert.are.same({ 1, 2, 3, 4, 5 }, monitor.quantiles({ 5, 1, 4, 2, 3 }))
    assert.are.same({ 1, 1.75, 2.5, 3.25, 4 }, monitor.quantiles({ 4, 1, 3, 2 }))
    assert.is_nil(monitor.quantiles({}))
  end)

  it("shows a failed batch with its tasks' errors and tracebacks, and counts them per worker", function()
    local ctx = manual({ workers = 1, partitions = 2, max_task_attempts = 2 })
    ctx:rate_stream { rows_per_second = 4 }
      :map(function(x) if x == 5 then error("record five") end return x end)
      :foreach_rdd(function(rdd) rdd:count() end)
    ctx:start()
    ctx:advance(1)
    assert.has_error(function() ctx:advance(1) end)
    local _, s = get(ctx, "/api/streams")
    assert.truthy(s.error:find("record five", 1, true))
    assert.are.equal(1, #s.failed_batches)
    local status, b = get(ctx, string.format("/api/batches/%d", s.failed_batches[1].time))
    assert.are.equal(200, status)
    assert.are.equal("failed", b.status)
    assert.truthy(b.error:find("record five", 1, true))
    local failed = {}
    for _, t in ipairs(b.stages[1].task_list) do
      if t.status == "failed" then failed[#failed + 1] = t end
    end
    assert.are.equal(2, #failed) -- both attempts of the partition holding record 5
    assert.truthy(failed[1].error:find("monitor_spec.lua:%d+: record five"), failed[1].error)
    assert.truthy(failed[1].error:find("stack traceback", 1, true), failed[1].error)
    assert.is_nil(failed[1].records_out)
    local _, w = get(ctx, "/api/workers")
    assert.are.equal(1, #w.workers)
    assert.are.equal(2, w.workers[1].failed)
    assert.are.equal(2 + 3, w.workers[1].tasks) -- batch 1: 2 tasks; batch 2: 1 + 2 attempts
    assert.truthy(w.workers[1].lua_memory > 0)
  end)

  it("keeps a failed context's page up until the process ends, and only then", function()
    local ctx = manual({ workers = 1, partitions = 1, ui = "127.0.0.1:0" })
    ctx:rate_stream { rows_per_second = 2 }
      :map(function(x) if x == 1 then error("bad record") end return x end)
      :foreach_rdd(function(rdd) rdd:count() end)
    ctx:start()
    assert.has_error(function() ctx:advance(1) end)
    assert.are.equal("stopped", ctx.state)
    local still = ctx.monitor.http ~= nil
    monitor.close_lingering() -- what a signal does in monitor.linger at the process's end
    assert.is_true(still)
    assert.is_nil(ctx.monitor.http)
    monitor.linger() -- nothing left: returns at once
    -- Without a failure, the page goes with the context.
    local ok_ctx = manual({ ui = "127.0.0.1:0" })
    ok_ctx:rate_stream { rows_per_second = 2 }:foreach_rdd(function(rdd) rdd:count() end)
    ok_ctx:start()
    ok_ctx:stop()
    assert.is_nil(ok_ctx.monitor.http)
  end)

  it("a new context's page takes the port of a failed one", function()
    local a = manual({ workers = 1, partitions = 1, ui = "127.0.0.1:0" })
    a:rate_stream { rows_per_second = 2 }:foreach_rdd(function() error("always") end)
    a:start()
    assert.has_error(function() a:advance(1) end)
    local b = manual({ workers = 1, ui = a.monitor.url:match("//(.-)/") })
    b:rate_stream { rows_per_second = 2 }:foreach_rdd(function() end)
    b:start()
    assert.is_nil(a.monitor.http)
    assert.truthy(b.monitor.http)
    b:stop()
  end)

  it("reports keyed state per operator and the last checkpoint's duration and size", function()
    local dir = os.tmpname()
    os.remove(dir)
    local ctx = manual({ workers = 1, partitions = 2, checkpoint = dir, checkpoint_interval = "1s" })
    ctx:rate_stream { rows_per_second = 6 }
      :map(function(x) return x % 3, 1 end)
      :update_state_by_key(function(vals, old)
        local s = old or 0
        for _, v in ipairs(vals) do s = s + v end
        return s
      end)
      :name("counts")
      :foreach_rdd(function(rdd) rdd:count() end)
    ctx:start()
    ctx:advance(2)
    local _, st = get(ctx, "/api/state")
    ctx:stop()
    os.execute("rm -rf '" .. dir .. "'")
    assert.are.equal(1, #st.operators)
    local op = st.operators[1]
    assert.are.same({ "counts", "update_state_by_key", "update_state_by_key", 2, 3 },
      { op.operator, op.kind, op.name, op.partitions, op.keys })
    assert.are.equal(dir, st.checkpoint_dir)
    assert.truthy(st.last_checkpoint.bytes > 0)
    assert.truthy(st.last_checkpoint.duration_ms >= 0)
    assert.are.equal(ctx.batches[2].time, st.last_checkpoint.time)
  end)
end)

describe("JSON", function()
  it("keeps empty arrays as [] and encodes plain values", function()
    assert.are.equal('{"a":[],"b":{"c":1.5},"d":"x\\"y","e":true,"n":1795276575500}',
      monitor.json({ a = monitor.array(), b = { c = 1.5 }, d = 'x"y', e = true, n = 1795276575500 }))
    assert.are.equal("[1,null]", monitor.json(monitor.array({ 1, 0 / 0 })))
  end)
end)

describe("settings", function()
  local function context_error(opts)
    local ok, err = pcall(function() return dstream.context(opts) end)
    assert.is_false(ok)
    assert.is_true(blames_this_file(err), err)
    return err
  end

  it("refuses a UI on an address other machines can reach, unless ui_public", function()
    local err = context_error({ clock = "manual", workers = 1, ui = "0.0.0.0:4040" })
    assert.truthy(err:find("refusing to serve the UI on 0.0.0.0", 1, true), err)
    assert.truthy(err:find("ui_public = true", 1, true), err)
    err = context_error({ clock = "manual", workers = 1, ui = "192.0.2.7:4040" })
    assert.truthy(err:find("refusing", 1, true), err)
    -- Asked for explicitly: accepted (nothing listens before ctx:start()).
    local ctx = dstream.context({ clock = "manual", workers = 1, ui = "0.0.0.0:4040", ui_public = true })
    ctx:stop()
  end)

  it("checks ui, backpressure and progress", function()
    assert.truthy(context_error({ clock = "manual", workers = 1, ui = "nonsense" }):find("host:port", 1, true))
    assert.truthy(context_error({ clock = "manual", workers = 1, ui = {} }):find("expected an address", 1, true))
    assert.truthy(context_error({ clock = "manual", workers = 1, backpressure = "yes" }):find("backpressure must be", 1, true))
    assert.truthy(context_error({ clock = "manual", workers = 1, backpressure = { min_rate = -1 } }):find("min_rate", 1, true))
    assert.truthy(context_error({ clock = "manual", workers = 1, progress = 1 }):find("progress must be", 1, true))
  end)

  it("parses UI addresses", function()
    assert.are.same({ "127.0.0.1", 4040 }, { monitor.parse_address("127.0.0.1:4040") })
    assert.are.same({ "127.0.0.1", 8080 }, { monitor.parse_address(8080) })
    assert.are.same({ "127.0.0.1", 0 }, { monitor.parse_address(":0") })
    assert.are.same({ "::1", 4040 }, { monitor.parse_address("[::1]:4040") })
    assert.are.same({ "127.0.0.1", 4040 }, { monitor.parse_address(true) })
    assert.is_nil((monitor.parse_address("host")))
    assert.is_nil((monitor.parse_address("127.0.0.1:70000")))
  end)

  it("serves the UI on a loopback port while the context runs, and closes it at stop", function()
    local ctx = manual({ ui = "127.0.0.1:0" })
    ctx:rate_stream { rows_per_second = 1 }:foreach_rdd(function(rdd) rdd:count() end)
    ctx:start()
    local url = ctx.monitor.url
    assert.truthy(url and url:match("^http://127%.0%.0%.1:%d+/$"), url)
    assert.truthy(ctx.monitor.http)
    ctx:stop()
    assert.is_nil(ctx.monitor.http)
  end)

  it("says why the UI cannot start (port in use) on the caller's line", function()
    local a = manual({ ui = "127.0.0.1:0" })
    a:rate_stream { rows_per_second = 1 }:foreach_rdd(function() end)
    a:start()
    local b
    local ok, err = pcall(function() -- (the UI may start with the context or at its start)
      b = manual({ ui = a.monitor.url:match("//(.-)/") })
      b:rate_stream { rows_per_second = 1 }:foreach_rdd(function() end)
      b:start()
    end)
    a:stop()
    if b then b:stop() end
    assert.is_false(ok)
    assert.is_true(blames_this_file(err), err)
    assert.truthy(err:find("cannot serve the UI", 1, true), err)
    assert.truthy(err:find("address already in use", 1, true), err)
  end)
end)

describe("rate_stream with max_rate", function()
  it("takes at most max_rate rows per second and skips none", function()
    local ctx = manual({ workers = 1, partitions = 1 })
    local got = {}
    local src = ctx:rate_stream { rows_per_second = 100, max_rate = 40 }
    src:foreach_rdd(function(rdd) got[#got + 1] = rdd:collect() end)
    ctx:start()
    ctx:advance(3)
    local st = src:rate_stats()
    ctx:stop()
    assert.are.same({ 40, 40, 40 }, { #got[1], #got[2], #got[3] })
    assert.are.same(H.range(0, 119), H.concat(got))
    assert.are.same({ max_rate = 40, rate_limit = 40, backlog = 180 }, st)
  end)

  it("follows a rate set by backpressure, the lower of both holding", function()
    local ctx = manual({ workers = 1, partitions = 1, batch = "500ms" })
    local counts = {}
    local src = ctx:rate_stream { rows_per_second = 1000, max_rate = 600 }
    src:foreach_rdd(function(rdd) counts[#counts + 1] = rdd:count() end)
    ctx:start()
    ctx:advance(1)
    assert.are.equal(600, src:set_rate(2000))
    ctx:advance(1)
    assert.are.equal(200, src:set_rate(200))
    ctx:advance(1)
    assert.are.equal(600, src:set_rate(nil))
    ctx:advance(1)
    ctx:stop()
    assert.are.same({ 300, 300, 100, 300 }, counts)
  end)

  it("backpressure limits the job's inputs, not a cluster stage's internal input", function()
    local ctx = dstream.context { batch = "500ms", clock = "manual", workers = 1, partitions = 1,
      backpressure = true }
    local own = ctx:rate_stream { rows_per_second = 1000 }
    local internal = ctx:rate_stream { rows_per_second = 1000 }
    ctx.inputs[#ctx.inputs].internal = true -- as cluster/keyed.lua marks its repartition input
    own:union(internal):foreach_rdd(function(rdd) rdd:count() end)
    ctx:start()
    ctx:advance(4)
    local own_limit, internal_limit = own:rate_stats().rate_limit, internal:rate_stats().rate_limit
    ctx:stop()
    assert.is_true(type(own_limit) == "number" and own_limit > 0, tostring(own_limit))
    assert.is_true(not internal_limit or internal_limit == 0, tostring(internal_limit)) -- no limit
  end)

  it("refuses a max_rate that is not a positive number", function()
    local ctx = manual()
    local ok, err = pcall(function() ctx:rate_stream { rows_per_second = 10, max_rate = 0 } end)
    assert.is_false(ok)
    assert.is_true(blames_this_file(err), err)
    assert.truthy(err:find("max_rate must be a positive number", 1, true), err)
    ctx:stop()
  end)
end)

describe("socket and directory sources take max_rate", function()
  it("as an option, shown in their stats, and refuse a bad one", function()
    local core = require("dstream.core")
    local dir = H.tmpdir()
    local src = core.file_source(dir, { max_rate = 250 })
    local st = src:stats()
    assert.are.equal(250, st.max_rate)
    assert.are.equal(250, st.rate_limit)
    assert.are.equal(100, src:set_rate(100))
    assert.are.equal(250, src:set_rate(0))
    src:stop()
    assert.has_error(function() core.file_source(dir, { max_rate = -3 }) end,
      "option 'max_rate' must be a positive number of records per second")
    assert.has_error(function() core.socket_source("127.0.0.1", 9, { max_rate = "fast" }) end,
      "option 'max_rate' must be a positive number of records per second")
    H.rmdir(dir)
  end)
end)

describe("the PID rate estimator", function()
  it("measures on the first batch and estimates from the second", function()
    local pid = backpressure.pid(1000)
    assert.is_nil(pid:compute(1000, 1000, 500, 0)) -- processes 2000/s
    -- Let in 2000/s, processed at 2000/s, no delay: the rate holds.
    assert.are.equal(2000, pid:compute(2000, 2000, 1000, 0))
    -- Slower now (1000/s) with a 1 s delay: the rate goes down to drain the queue.
    local r = pid:compute(3000, 1000, 1000, 1000)
    assert.is_true(r < 1000, tostring(r))
    assert.are.equal(800, r) -- 2000 - 1 * (2000 - 1000) - 0.2 * (1000 * 1000 / 1000)
  end)

  it("ignores empty and instant batches, and stays at or above min_rate", function()
    local pid = backpressure.pid(1000, { min_rate = 50 })
    assert.is_nil(pid:compute(1000, 0, 10, 0))
    assert.is_nil(pid:compute(1000, 10, 0, 0))
    assert.is_nil(pid:compute(2000, 100, 1000, 0))
    assert.are.equal(50, pid:compute(3000, 10, 1000, 60000))
  end)

  it("checks its settings", function()
    assert.has_error(function() backpressure.pid(1000, { integral = -1 }) end)
    assert.has_error(function() backpressure.pid(1000, { initial_rate = 10 }) end,
      "backpressure: unknown setting 'initial_rate' (settings: proportional, integral, derivative, min_rate)")
  end)
end)

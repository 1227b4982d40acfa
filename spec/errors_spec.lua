-- Errors a user sees: wrong arguments at graph-building time (blaming the caller's file:line),
-- closures that raise at run time (batch time, partition, record, message, traceback), values
-- that cannot travel to a worker (refused when the operator is called, naming the variable),
-- and a closure that runs out of memory (the task fails, the process and later contexts live).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local THIS_FILE = "errors_spec%.lua"

-- Asserts that err starts with "<...>errors_spec.lua:<line>:" and contains every plain string
-- of `needles`.
local function assert_blames(err, line, needles)
  assert.are.equal("string", type(err), tostring(err))
  local l = err:match("^[^\n]-" .. THIS_FILE .. ":(%d+):")
  assert.is_truthy(l, "error does not start with this file's name and a line: " .. err)
  assert.are.equal(line, tonumber(l), err)
  for _, s in ipairs(needles or {}) do
    assert.is_truthy(err:find(s, 1, true), ("%q not found in: %s"):format(s, err))
  end
end

-- Runs `batches` (list of lists) through build(source) on a fresh context, and returns the
-- error raised by ctx:advance (nil if none).
local function advance_error(cfg, input, build, nbatches)
  local err
  H.with_context(cfg, function(ctx)
    local out = build(ctx:queue_stream(H.deep_copy(input)))
    out:foreach_rdd(function(rdd) rdd:count() end)
    ctx:start()
    local ok, e = pcall(ctx.advance, ctx, nbatches or #input)
    if not ok then err = e end
  end)
  return err
end

describe("graph-building argument errors", function()
  local ctx, src
  before_each(function()
    ctx = H.context({ workers = 1, partitions = 1 })
    src = ctx:queue_stream({ { 1 } })
  end)
  after_each(function() pcall(ctx.stop, ctx) end)

  it("map(42) blames the caller's line", function()
    local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() src:map(42) end)
    assert.is_false(ok)
    assert_blames(err, line, { "map: expected a function" })
  end)

  -- (no `return` in these functions: a tail call would hide the caller's line)
  local ops = {
    { "filter", function(s) s:filter("x") end },
    { "flat_map", function(s) s:flat_map({}) end },
    { "map_partitions", function(s) s:map_partitions(true) end },
    { "reduce", function(s) s:reduce(nil) end },
    { "transform", function(s) s:transform(1) end },
    { "foreach_rdd", function(s) s:foreach_rdd("print") end },
  }
  for _, op in ipairs(ops) do
    local name, call = op[1], op[2]
    it(name .. " with a non-function blames the caller", function()
      local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() call(src) end)
      assert.is_false(ok)
      -- the caller is the `call` function defined in the ops table above
      assert.is_truthy(err:match(THIS_FILE .. ":%d+: " .. name .. ": expected a function"), err)
      assert.is_true(tonumber(err:match(THIS_FILE .. ":(%d+):")) < line, err)
    end)
  end

  it("reduce_by_key with a non-function blames the caller", function()
    local pairs_src = src:map(function(x) return x, x end)
    local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() pairs_src:reduce_by_key(5) end)
    assert.is_false(ok)
    assert_blames(err, line, { "reduce_by_key: expected a function" })
  end)

  it("a batch operator with a non-function blames the caller", function()
    local rdd = ctx:parallelize({ 1, 2, 3 })
    local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() rdd:map("nope") end)
    assert.is_false(ok)
    assert_blames(err, line, { "map: expected a function" })
  end)

  it("queue_stream with a non-table blames the caller", function()
    local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() ctx:queue_stream(42) end)
    assert.is_false(ok)
    assert_blames(err, line, { "queue_stream" })
  end)

  it("repartition with a bad count blames the caller", function()
    local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() src:repartition("many") end)
    assert.is_false(ok)
    assert_blames(err, line, { "repartition" })
  end)
end)

for _, cfg in ipairs(H.configs({ 1, 4 }, { 1, 3 })) do
  describe("run-time errors (" .. cfg.name .. ")", function()
    it("a raising closure fails ctx:advance with batch, partition, record, message and traceback", function()
      local fail_line
      local err = advance_error(cfg, { { "ok-1", "ok-2" }, { "ok-3", "ok-4", "the-bad-record", "ok-5" } }, function(s)
        fail_line = debug.getinfo(1, "l").currentline + 2
        return s:map(function(x)
          if x == "the-bad-record" then error("kaboom on " .. x) end
          return x
        end)
      end)
      assert.is_not_nil(err, "ctx:advance did not raise")
      err = tostring(err)
      assert.is_truthy(err:find("batch 2000 ms", 1, true), err)
      assert.is_truthy(err:match("partition %d+"), err)
      assert.is_truthy(err:find("the-bad-record", 1, true), err)
      assert.is_truthy(err:find("errors_spec.lua:" .. fail_line .. ": kaboom on the-bad-record", 1, true), err)
      assert.is_truthy(err:find("stack traceback", 1, true), err)
    end)

    it("reports Lua run-time errors such as indexing nil", function()
      local err = advance_error(cfg, { { 1, 2, 3 } }, function(s)
        return s:filter(function(x) return x.missing.field end)
      end)
      assert.is_not_nil(err, "ctx:advance did not raise")
      err = tostring(err)
      assert.is_truthy(err:find("attempt to index", 1, true), err)
      assert.is_truthy(err:find("batch 1000 ms", 1, true), err)
      assert.is_truthy(err:find("errors_spec.lua:", 1, true), err)
    end)

    it("truncates a long record in the message", function()
      local long = "LONGRECORD" .. ("z"):rep(100000)
      local err = advance_error(cfg, { { long } }, function(s)
        return s:map(function(x) error("too long") end)
      end)
      assert.is_not_nil(err, "ctx:advance did not raise")
      err = tostring(err)
      assert.is_truthy(err:find("LONGRECORD", 1, true), err:sub(1, 2000))
      assert.is_truthy(err:find("too long", 1, true), err:sub(1, 2000))
      assert.is_true(#err < 20000, "message is " .. #err .. " bytes long")
    end)

    it("reports errors in reduce_by_key's function", function()
      local err = advance_error(cfg, { { "a", "b", "a", "a" } }, function(s)
        return s:map(function(w) return w, 1 end):reduce_by_key(function(a, b) error("bad reducer") end)
      end)
      assert.is_not_nil(err, "ctx:advance did not raise")
      err = tostring(err)
      assert.is_truthy(err:find("bad reducer", 1, true), err)
      assert.is_truthy(err:find("batch 1000 ms", 1, true), err)
    end)

    it("retries a failing task before failing the batch", function()
      local path = os.tmpname()
      local err = advance_error({ workers = cfg.workers, partitions = 1 }, { { "only" } }, function(s)
        return s:map(function(x)
          local f = io.open(path, "a")
          f:write("attempt\n")
          f:close()
          error("always fails")
        end)
      end)
      local attempts = #H.lines(H.read_file(path) or "")
      os.remove(path)
      assert.is_not_nil(err, "ctx:advance did not raise")
      assert.is_truthy(tostring(err):find("always fails", 1, true), tostring(err))
      assert.is_true(attempts >= 2, "the task ran " .. attempts .. " time(s)")
    end)

    it("an error in a batch action inside foreach_rdd reaches ctx:advance", function()
      local err
      H.with_context(cfg, function(ctx)
        ctx:queue_stream({ { 1, 2, 3 } }):foreach_rdd(function(rdd)
          rdd:map(function(x) if x == 2 then error("action failed") end return x end):collect()
        end)
        ctx:start()
        local ok, e = pcall(ctx.advance, ctx, 1)
        if not ok then err = e end
      end)
      assert.is_not_nil(err, "ctx:advance did not raise")
      assert.is_truthy(tostring(err):find("action failed", 1, true), tostring(err))
    end)

    it("a later context works after a failed batch", function()
      local err = advance_error(cfg, { { 1 } }, function(s)
        return s:map(function() error("first context fails") end)
      end)
      assert.is_not_nil(err)
      local results = H.run(cfg, { { 1, 2, 3 } }, function(s) return s:map(function(x) return x + 1 end) end)
      assert.are.same({ { 2, 3, 4 } }, results)
    end)
  end)
end

describe("values that cannot travel to a worker", function()
  local ctx, src
  before_each(function()
    ctx = H.context({ workers = 2, partitions = 2 })
    src = ctx:queue_stream({ { 1 } })
  end)
  after_each(function() pcall(ctx.stop, ctx) end)

  it("a captured coroutine is refused when map is called, naming the variable", function()
    local my_coroutine = coroutine.create(function() end)
    local ok, err = pcall(function()
      src:map(function(x) return coroutine.status(my_coroutine) end)
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("my_coroutine", 1, true), tostring(err))
  end)

  it("captured userdata (io.stdout) is refused by filter, naming the variable", function()
    local my_stdout = io.stdout
    local ok, err = pcall(function()
      src:filter(function(x) my_stdout:write(x) return true end)
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("my_stdout", 1, true), tostring(err))
  end)

  it("captured ffi cdata is refused by flat_map, naming the variable", function()
    local ffi = require("ffi")
    local my_cdata = ffi.new("int[4]")
    local ok, err = pcall(function()
      src:flat_map(function(x) return { my_cdata[0] } end)
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("my_cdata", 1, true), tostring(err))
  end)

  it("a coroutine inside a captured table is refused, naming the variable", function()
    local my_holder = { inner = { co = coroutine.create(function() end) } }
    local ok, err = pcall(function()
      src:map(function(x) return my_holder.inner.co end)
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("my_holder", 1, true), tostring(err))
  end)

  it("the refusal names the line of the operator call", function()
    local my_file = io.stderr
    local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() src:map(function() return my_file end) end)
    assert.is_false(ok)
    err = tostring(err)
    assert.is_truthy(err:find("my_file", 1, true), err)
    assert.is_truthy(err:find("errors_spec.lua:" .. line, 1, true), err)
  end)

  it("a batch operator refuses the capture too, naming the variable", function()
    local my_co = coroutine.create(function() end)
    local rdd = ctx:parallelize({ 1 })
    local ok, err = pcall(function() rdd:map(function() return my_co end) end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("my_co", 1, true), tostring(err))
  end)
end)

describe("out of memory in a closure", function()
  it("fails the batch with 'out of memory' and the process and a new context survive #oom", function()
    local err
    H.with_context({ workers = 2, partitions = 2, worker_memory = "64m" }, function(ctx)
      ctx:queue_stream({ { 1, 2 } }):map(function(x)
        local hog = {}
        while true do hog[#hog + 1] = ("x"):rep(1024) .. #hog end
      end):foreach_rdd(function(rdd) rdd:count() end)
      ctx:start()
      local ok, e = pcall(ctx.advance, ctx, 1)
      if not ok then err = e end
    end)
    assert.is_not_nil(err, "ctx:advance did not raise")

    local results = H.run({ workers = 2, partitions = 2, worker_memory = "64m" }, { { 1, 2, 3 }, {} },
      function(s) return s:map(function(x) return x * 10 end) end)
    assert.are.same({ { 10, 20, 30 }, {} }, results)

    assert.is_truthy(tostring(err):find("out of memory", 1, true), tostring(err))
  end)
end)

describe("a record that cannot be sent on (issue 15)", function()
  local cfg = { workers = 1, partitions = 1, max_task_attempts = 1 }
  -- The error of a batch that collects build(stream)'s records (count() encodes none).
  local function collect_error(input, build)
    local err
    H.with_context(cfg, function(ctx)
      build(ctx:queue_stream(H.deep_copy(input))):foreach_rdd(function(rdd) rdd:collect() end)
      ctx:start()
      local ok, e = pcall(ctx.advance, ctx, #input)
      if not ok then err = e end
    end)
    return err
  end

  it("names the operator, its line, what is wrong and the record, not worker.lua", function()
    local line = debug.getinfo(1, "l").currentline + 2
    local err = collect_error({ { "alpha", "bravo" } }, function(s)
      return s:map(function(x)
        if x == "bravo" then return { name = x, on_done = function() end } end
        return { name = x }
      end)
    end)
    assert.is_not_nil(err, "ctx:advance did not raise")
    err = tostring(err)
    for _, needle in ipairs({ "map (the function at ", "errors_spec.lua:" .. line .. ")",
      "cannot be sent on", "it holds a function at .on_done", 'name = "bravo"', "<function>",
      "return data, not functions" }) do
      assert.is_truthy(err:find(needle, 1, true), ("%q not found in: %s"):format(needle, err))
    end
    assert.is_falsy(err:find("worker.lua", 1, true), err)
  end)

  it("says which side of a pair, for a shuffle's input too", function()
    local line = debug.getinfo(1, "l").currentline + 2
    local err = collect_error({ { "a" } }, function(s)
      return s:map(function(x) return x, coroutine.create(print) end)
        :reduce_by_key(function(a) return a end)
    end)
    err = tostring(err)
    for _, needle in ipairs({ "map (the function at ", "errors_spec.lua:" .. line .. ")",
      "its value is a thread", '("a", <thread>)' }) do
      assert.is_truthy(err:find(needle, 1, true), ("%q not found in: %s"):format(needle, err))
    end
  end)
end)

describe("out of memory restoring a checkpoint's state (issue 15)", function()
  local tmp = H.scratch_dirs(after_each)

  it("advises --worker-memory, not more partitions (which would not restore)", function()
    local dir = tmp()
    local function job(mem)
      local ctx = H.dstream().context { batch = "1s", clock = "manual", workers = 1,
        partitions = 1, worker_memory = mem, checkpoint = dir, checkpoint_interval = "1s" }
      local batch = {}
      for i = 1, 40 do batch[i] = "k" .. i end
      ctx:queue_stream({ batch }):map(function(k) return k, 1 end)
        :update_state_by_key(function(_, s) return (s or "") .. ("x"):rep(500000) end)
        :foreach_rdd(function(rdd) rdd:count() end)
      return ctx
    end
    local ctx = job("256m") -- 20 MB of state, checkpointed at the graceful stop
    ctx:start()
    ctx:advance(1)
    ctx:stop { graceful = true }
    local again = job("12m") -- boots, but cannot hold the state partition
    local ok, err = pcall(again.start, again)
    pcall(again.stop, again)
    assert.is_false(ok)
    err = tostring(err)
    for _, needle in ipairs({ "out of memory", "restore (update_state_by_key)",
      "raise context{ worker_memory = ... } or --worker-memory", "Keep the partition count" }) do
      assert.is_truthy(err:find(needle, 1, true), ("%q not found in: %s"):format(needle, err))
    end
    assert.is_falsy(err:find("more partitions", 1, true), err)
  end)
end)

describe("--ui on a loopback address written another way (issue 15)", function()
  local monitor = require("dstream.monitor")

  it("serves on 127.1 (127.0.0.1), and still refuses other machines' addresses", function()
    local ctx = H.dstream().context { batch = "1s", clock = "manual", workers = 1, ui = "127.1:0" }
    ctx:rate_stream { rows_per_second = 1 }:foreach_rdd(function(rdd) rdd:count() end)
    ctx:start()
    local url = ctx.monitor.url
    ctx:stop()
    assert.truthy(url and url:match("^http://127%.0%.0%.1:%d+/$"), url)
    local ok, err = pcall(H.dstream().context, { batch = "1s", clock = "manual", ui = "128.1:0" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("refusing to serve the UI on 128.1", 1, true), err)
  end)

  it("takes every form of 127.0.0.0/8 and ::1 as loopback, and nothing else", function()
    for _, h in ipairs({ "127.1", "127.0.1", "127.255.255.254", "0x7f.1", "0177.0.0.1",
      "2130706433", "::1", "0:0:0:0:0:0:0:1", "0::1", "::ffff:127.0.0.1", "localhost" }) do
      assert.is_true(monitor.is_loopback(h), h)
    end
    for _, h in ipairs({ "0.0.0.0", "128.1", "10.0.0.1", "1.2.3.4", "::", "::2", "1::1",
      "::ffff:10.0.0.1", "127.0.0.1.5", "127.08", "x127.1", "example.com" }) do
      assert.is_false(monitor.is_loopback(h), h)
    end
  end)
end)

describe("os.exit in a closure (issue 15)", function()
  local cfg = { workers = 2, partitions = 2 }

  it("fails the task with an error naming the closure, instead of ending the job", function()
    local line = debug.getinfo(1, "l").currentline + 3
    local err = advance_error(cfg, { { "a", "b", "quit", "c" } }, function(s)
      return s:map(function(x)
        if x == "quit" then os.exit(3) end
        return x
      end)
    end)
    -- Reaching this line at all means the process is still there.
    assert.is_not_nil(err, "ctx:advance did not raise")
    err = tostring(err)
    assert.is_truthy(err:find("os.exit called in a closure running on a worker (", 1, true), err)
    assert.is_truthy(err:find("errors_spec.lua:" .. line .. ")", 1, true), err)
    assert.is_truthy(err:find('record "quit"', 1, true), err)
    assert.is_truthy(err:find("task failed after 4 attempts", 1, true), err) -- retried like any error
    assert.is_truthy(err:find("errors_spec.lua:" .. line .. ": in function", 1, true), err)
  end)

  it("also when captured as a local, and from a static dataset's action", function()
    local exit = os.exit
    local ctx = H.context(cfg)
    local ok, err = pcall(function()
      return ctx:parallelize({ 1, 2, 3 }):map(function(x) if x == 2 then exit(true) end return x end):collect()
    end)
    ctx:stop()
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("os.exit called in a closure running on a worker", 1, true), err)
  end)
end)

describe("dstream's driver API inside a worker closure (issue 15)", function()
  local cfg = { workers = 2, partitions = 2 }

  it("dstream.context raises a clear error on the closure's line, which pcall can catch", function()
    local line = debug.getinfo(1, "l").currentline + 5
    local ctx = H.context(cfg)
    local got = ctx:parallelize({ 1, 2, 3, 4 }):map(function(x)
      local ok, e = pcall(function()
        local dstream = require("dstream")
        local c = dstream.context { workers = 1 }
        return c:parallelize({ 1, 2 }):count()
      end)
      return { x = x, ok = ok, e = tostring(e) }
    end):collect()
    -- The driver's context goes on (before: it stopped as if by a signal, or crashed).
    assert.are_not.equal("stopped", ctx:status().state)
    assert.are.equal(3, ctx:parallelize({ 1, 2, 3 }):count())
    ctx:stop()
    assert.are.equal(4, #got)
    for _, r in ipairs(got) do
      assert.is_false(r.ok)
      assert.is_truthy(r.e:find("contexts and actions run on the driver; this closure runs on a worker", 1, true), r.e)
      assert.is_truthy(r.e:find("errors_spec.lua:" .. line .. ":", 1, true), r.e)
    end
  end)

  it("get_or_create and dstream.context.new refuse too; uncaught, the task fails naming the record", function()
    local ctx = H.context(cfg)
    local ok, err = pcall(function()
      return ctx:parallelize({ "a", "b" }):map(function(x)
        if x == "b" then require("dstream").get_or_create("/tmp/nowhere", function() end) end
        return x
      end):collect()
    end)
    local ok2, err2 = pcall(function()
      return ctx:parallelize({ "c" }):map(function(x)
        require("dstream.context").new { workers = 1 }
        return x
      end):collect()
    end)
    ctx:stop()
    assert.is_false(ok)
    err = tostring(err)
    assert.is_truthy(err:find("get_or_create: contexts and actions run on the driver; this closure runs on a worker", 1, true), err)
    assert.is_truthy(err:find('record "b"', 1, true), err)
    assert.is_false(ok2)
    assert.is_truthy(tostring(err2):find("contexts and actions run on the driver", 1, true), err2)
  end)
end)

describe("what the interpreter prints for an error that escapes the script (issue 18)", function()
  local cli = require("dstream.cli")

  -- The text dstream prints for fn's error (the handler of the script's top-level call).
  local function printed(fn)
    local ok, text = xpcall(fn, cli.error_handler)
    assert.is_false(ok)
    return text
  end

  it("an argument check's error: the user's line, then a traceback of the user's frames only", function()
    local ctx = H.context({ workers = 1, partitions = 1 })
    local function build(s)
      local mapped = s:map(42)
      return mapped
    end
    local text = printed(function() build(ctx:queue_stream({ { 1 } })) end)
    ctx:stop()
    assert_blames(text, 478, { "map: expected a function, got number" })
    local first = text:match("stack traceback:\n([^\n]*)")
    assert.is_truthy(first and first:find(THIS_FILE .. ":478: in function 'build'"), text)
    assert.is_falsy(text:find("lua/dstream/", 1, true), text)
  end)

  it("a run-time error gets the traceback from its own frame", function()
    local function parse(record) return record.fields.n + 1 end
    local text = printed(function() local n = parse({}) return n end)
    assert_blames(text, 490, { "attempt to index field 'fields'" })
    assert.is_truthy(text:match("stack traceback:\n[^\n]*" .. THIS_FILE .. ":490: in function 'parse'"), text)
  end)

  it("a failed job's report keeps the worker's traceback and gets no second one", function()
    local text = cli.error_handler("job.lua:9: task failed ...: job.lua:5: boom\nstack traceback:\n\tjob.lua:5: in function 'f'")
    assert.are.equal("job.lua:9: task failed ...: job.lua:5: boom\nstack traceback:\n\tjob.lua:5: in function 'f'", text)
  end)

  it("await_termination() on a context never started is an error on the caller's line", function()
    local ctx = H.context({ workers = 1, partitions = 1 })
    ctx:queue_stream({ { 1 } }):print()
    local ok, err = pcall(ctx.await_termination, ctx, 1)
    ctx:stop()
    assert.is_false(ok)
    assert_blames(err, 504, { "await_termination: the context was never started: call ctx:start() first" })
  end)

  it("the command line's option values are checked in the words the context uses", function()
    assert.are.same({ nil, "expected a whole number of at least 1, got abc" }, { cli.check_option("workers", "abc", {}) })
    assert.are.same({ nil, "expected a whole number of at least 1, got 0" }, { cli.check_option("partitions", "0", {}) })
    assert.is_nil((cli.check_option("checkpoint", "/no/such/dir/ck", {})))
    assert.is_true((cli.check_option("checkpoint", os.tmpname() .. ".d", {})))
    assert.is_nil((cli.check_option("ui", "0.0.0.0:4040", {})))
    assert.is_true((cli.check_option("ui", "0.0.0.0:4040", { ["ui-public"] = "true" })))
    assert.is_true((cli.check_option("ui", "localhost:4040", {})))
    assert.is_true((cli.check_option("cluster", "word-count_1.v2", {})))
    assert.is_nil((cli.check_option("cluster", "a b", {})))
  end)
end)

describe("a failed action on a static dataset", function()
  local ctx
  before_each(function() ctx = H.context({ workers = 2, partitions = 2 }) end)
  after_each(function() pcall(ctx.stop, ctx) end)

  -- (no `return` in the pcall'd functions: a tail call would hide the action's line)
  it("names the action's line first, then attempts, stage, partition, record and the closure's line", function()
    local rdd = ctx:parallelize({ 1, 2, "x" })
    local map_line = debug.getinfo(1, "l").currentline + 1
    local mapped = rdd:map(function(x) return x + 1 end)
    local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() local r = mapped:collect(); return r end)
    assert.is_false(ok)
    assert_blames(err, line, { "task failed after 4 attempts (static dataset, collect, partition ",
      'record "x"', "errors_spec.lua:" .. map_line .. ": attempt to perform arithmetic" })
  end)

  it("an error in reduce's function and one not retried (SQL over a static table) name it too", function()
    local rdd = ctx:parallelize({ 1, 2, 3, 4 })
    local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() local r = rdd:reduce(function() error("bad fold") end); return r end)
    assert.is_false(ok)
    assert_blames(err, line, { "(static dataset, reduce, partition ", "bad fold" })
    ctx:parallelize({ { "bo", "old" } }):to_table("bad", { "name", "age" })
    line = debug.getinfo(1, "l").currentline; ok, err = pcall(function() local r = ctx:sql("SELECT age * 2 AS twice FROM bad"):collect(); return r end)
    assert.is_false(ok)
    assert_blames(err, line, { "task failed, not retried", 'record ["bo","old"]', '"old" is not a number' })
  end)
end)

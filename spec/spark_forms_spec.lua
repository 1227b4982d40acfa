-- What a Spark user types (issue 17 item 7): Spark's positional stop(stop_context, graceful),
-- camelCase names answered with dstream's, print() formatting pairs as Spark's (k,v).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

describe("Spark's forms", function()
  -- A socket sends 200 lines at once; the job stops 1.5 s into a 1 h batch (no boundary falls
  -- in that time, as one of a 10 s clock could). A graceful stop
  -- runs a last batch with what was received; a hard one (stop(true, false)) drops it.
  local function stop_after_lines(stop_call)
    local port = 20000 + math.random(0, 20000)
    local dir = H.tmpdir()
    os.execute(string.format("python3 spec/e2e/lib/numbered_server.py %d 200 %s/server.log >/dev/null 2>&1 & echo $! > %s/pid",
      port, dir, dir))
    os.execute("sleep 0.3")
    local out = H.run_script(string.format([[
      local dstream = require("dstream")
      local ctx = dstream.context { batch = "1h", workers = 1 }
      local seen = 0
      ctx:socket_text_stream("127.0.0.1", %d):foreach_rdd(function(r) seen = seen + r:count() end)
      ctx:start()
      local timer = require("dstream.core").timer(function() %s end)
      timer:start(1500)
      ctx:await_termination()
      print("records: " .. seen)
    ]], port, stop_call))
    os.execute("kill $(cat " .. dir .. "/pid) 2>/dev/null")
    H.rmdir(dir)
    return out
  end

  it("ctx:stop(true, true) is a graceful stop: what was received still runs", function()
    math.randomseed(os.time())
    local out = stop_after_lines("ctx:stop(true, true)")
    assert.truthy(out:find("records: 200", 1, true), out)
    out = stop_after_lines("ctx:stop(true, false)")
    assert.truthy(out:find("records: 0", 1, true), out)
  end)

  it("ctx:stop(true, false) and ctx:stop(true) stop at once; bad arguments are refused", function()
    H.with_context({ workers = 1 }, function(ctx)
      ctx:queue_stream({ { 1 } }):foreach_rdd(function() end)
      ctx:start()
      local ok, err = pcall(ctx.stop, ctx, true, "yes")
      assert.is_false(ok)
      assert.matches("spark_forms_spec.lua:%d+: stop: graceful", tostring(err))
      ok, err = pcall(ctx.stop, ctx, { gracefull = true })
      assert.is_false(ok)
      assert.matches("stop: unknown option 'gracefull'", tostring(err), 1, true)
      ctx:stop(true, false)
      assert.equal("stopped", ctx:status().state)
    end)
  end)

  it("a camelCase name says which name dstream uses, at the user's line", function()
    H.with_context({ workers = 1 }, function(ctx)
      local s = ctx:queue_stream({ { 1 } })
      local cases = {
        { function() return s:reduceByKey(function(a, b) return a + b end) end, "no method reduceByKey; did you mean reduce_by_key?" },
        { function() return s:updateStateByKey(function() end) end, "no method updateStateByKey; did you mean update_state_by_key?" },
        { function() return s:foreachRDD(print) end, "no method foreachRDD; did you mean foreach_rdd?" },
        { function() return s:pprint() end, "no method pprint" },
        { function() return ctx:socketTextStream("localhost", 9999) end, "no method socketTextStream; did you mean socket_text_stream?" },
        { function() return ctx:awaitTermination() end, "no method awaitTermination; did you mean await_termination?" },
        { function() return ctx:parallelize({ 1 }):saveAsTextFile("x") end, "no method saveAsTextFile; did you mean save_as_text_file?" },
        { function() return s:fooBar() end, "no method fooBar on a stream" },
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(c[1])
        assert.is_false(ok)
        assert.matches("spark_forms_spec.lua:%d+: ", tostring(err))
        assert.truthy(tostring(err):find(c[2], 1, true), tostring(err))
      end
      assert.is_nil(s.some_field) -- snake_case names that do not exist stay nil
    end)
  end)

  it("pprint's hint names print", function()
    H.with_context({ workers = 1 }, function(ctx)
      local s = ctx:queue_stream({ { 1 } })
      local ok, err = pcall(function() return s:pprint() end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("did you mean print?", 1, true), tostring(err))
    end)
  end)

  it("a source given an argument it does not take names the function and the argument", function()
    H.with_context({ workers = 1 }, function(ctx)
      local ok, err = pcall(function() return ctx:socket_text_stream("localhost", 9999, "MEMORY_ONLY") end)
      assert.is_false(ok)
      assert.matches("spark_forms_spec.lua:%d+: socket_text_stream", tostring(err))
      assert.truthy(tostring(err):find('argument 3 (opts) must be a table of options, got string "MEMORY_ONLY"', 1, true), tostring(err))
      ok, err = pcall(function() return ctx:socket_text_stream("localhost", 9999, {}, "extra") end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("socket_text_stream(host, port [, opts]) takes no argument 4", 1, true), tostring(err))
      ok, err = pcall(function() return ctx:rate_stream({ rows_per_second = 1 }, 5) end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("rate_stream(opts) takes no argument 2", 1, true), tostring(err))
      ok, err = pcall(function() return ctx:text_file_stream(".", "MEMORY_ONLY") end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("text_file_stream", 1, true) and tostring(err):find("argument 2 (opts)", 1, true), tostring(err))
    end)
  end)
end)

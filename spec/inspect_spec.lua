-- Looking into a job from the prompt or a script: stream:peek([n]) (the newest batch of any
-- stream), ctx:status() (batches, delays, rates, with a readable tostring), and the REPL's
-- value display and completion (dstream.repl's show and complete).
local dstream = require("dstream")

local function manual_context()
  return dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 2 }
end

describe("stream:peek", function()
  it("gives the first n records of the newest batch of any stream in the graph", function()
    local ctx = manual_context()
    local src = ctx:queue_stream({ { 1, 2, 3 }, { 4, 5, 6, 7 } })
    local squares = src:map(function(x) return x * x end)
    squares:foreach_rdd(function() end)
    ctx:start()
    ctx:advance(1)
    assert.are.same({ 1, 4 }, { unpack(squares:peek(2)) })
    ctx:advance(1)
    local p = squares:peek(3)
    assert.are.same({ 16, 25, 36 }, { unpack(p) })
    assert.are.equal(2000, p.time)
    assert.are.same({ 4, 5, 6, 7 }, { unpack(src:peek()) }) -- a parent stream too
    local text = tostring(p)
    assert.truthy(text:find("Time: 2000 ms", 1, true))
    assert.truthy(text:find("\n25\n", 1, true))
    ctx:stop()
    assert.has_error(function() squares:peek(1) end) -- a stopped context has no workers
  end)

  it("shows pairs as (k,v) and says when a stream has no batch yet", function()
    local ctx = manual_context()
    local s = ctx:queue_stream({ { "a", "b", "a" } }):map(function(w) return w, 1 end)
      :reduce_by_key(function(a, b) return a + b end)
    s:foreach_rdd(function() end)
    local err = select(2, pcall(s.peek, s))
    assert.truthy(tostring(err):find("has produced no batch yet", 1, true))
    ctx:start()
    ctx:advance(1)
    local p = s:peek()
    local map = {}
    for _, kv in ipairs(p) do map[kv[1]] = kv[2] end
    assert.are.same({ a = 2, b = 1 }, map)
    assert.truthy(tostring(p):find("(a,2)", 1, true))
    ctx:stop()
  end)
end)

describe("ctx:status", function()
  it("counts batches, averages delays and measures rates, and reads as a report", function()
    local ctx = manual_context()
    ctx:rate_stream { rows_per_second = 10 }:foreach_rdd(function(r) r:count() end)
    local st = ctx:status()
    assert.are.equal("initialized", st.state)
    assert.are.equal(0, st.completed)
    ctx:start()
    ctx:advance(3)
    st = ctx:status()
    assert.are.equal("active", st.state)
    assert.are.equal(3, st.completed)
    assert.are.equal(3000, st.last_batch.time)
    assert.are.equal(3, st.recent.batches)
    assert.are.equal(30, st.recent.records)
    assert.are.equal(10, st.recent.input_rate)
    assert.is_number(st.recent.processing_ms)
    local text = tostring(st)
    assert.truthy(text:find("batches: 3 completed", 1, true))
    assert.truthy(text:find("input 10.0 records/s", 1, true))
    ctx:stop()
    assert.are.equal("stopped", ctx:status().state)
  end)
end)

describe("the prompt's display and completion", function()
  local repl = require("dstream.repl")

  it("pretty-prints tables with sorted keys, a depth limit and cycles", function()
    assert.are.equal("{ 1, 2, a = \"x\", b = true }", repl.show({ 1, 2, b = true, a = "x" }))
    assert.are.equal("{ a = { b = { c = { d = {...} } } } }", repl.show({ a = { b = { c = { d = { e = 1 } } } } }))
    local t = {}
    t.self = t
    assert.are.equal("{ self = <cycle> }", repl.show(t))
    assert.are.equal("plain", repl.show("plain"))
    assert.are.equal("{ [\"two words\"] = 1 }", repl.show({ ["two words"] = 1 }))
    local long = {}
    for i = 1, 30 do long[i] = i * 1000 end
    assert.truthy(repl.show(long, 40):find("\n", 1, true)) -- too wide for one line
  end)

  it("summarises streams and batches", function()
    local ctx = manual_context()
    local s = ctx:queue_stream({ { 1 } }):map(function(x) return x end)
    assert.truthy(repl.show(s):match("^stream%(map #%d+%), from stream%(queue_stream #%d+%), no batch yet$"))
    assert.truthy(repl.show(ctx:parallelize({ 1, 2 }, 2)):find("rdd(source, 2 partitions)", 1, true))
    ctx:stop()
  end)

  it("completes globals, fields and methods found through metatables", function()
    local ctx = manual_context()
    rawset(_G, "spec_ctx", ctx)
    finally(function() rawset(_G, "spec_ctx", nil) ctx:stop() end)
    assert.are.same({ "spec_ctx:queue_stream" }, repl.complete("spec_ctx:que"))
    assert.are.same({ "string.format" }, repl.complete("string.form"))
    assert.truthy(#repl.complete("spec_ctx:") > 5)
    for _, c in ipairs(repl.complete("spec_ctx:")) do
      assert.is_nil(c:find(":_", 1, true)) -- private names only when asked for
    end
    assert.are.same({}, repl.complete("no_such_global.x"))
    assert.are.same({ "spec_ctx" }, repl.complete("spec_c"))
  end)
end)

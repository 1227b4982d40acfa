-- The API's conventions (issue 16): a bad argument raises at the user's line whichever of
-- dstream's functions finds it, naming the function the user called; operators take their
-- options in one trailing table, and the positional forms keep working; an option an operator
-- does not take is an error, never ignored.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local add = function(a, b) return a + b end
local sub = function(a, b) return a - b end
local THIS = "conventions_spec.lua:"

-- The error of fn() and the line of this file it should name (the line after the call to
-- `raises`, where fn's body is).
local function raises(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- The line number of the caller's next line: where the failing call sits.
local function next_line()
  return debug.getinfo(2, "l").currentline + 1
end

describe("errors name the user's line", function()
  it("reduce_by_window with a bad inverse names reduce_by_window and this file", function()
    H.with_context({ workers = 1 }, function(ctx)
      local s = ctx:queue_stream({ { 1 } })
      local line = next_line()
      local err = raises(function() s:reduce_by_window(add, 1, nil, 42) end)
      assert.matches(THIS .. line .. ": reduce_by_window:", err, 1, true)
      assert.not_matches("window.lua", err, 1, true)
      assert.not_matches("reduce_by_key_and_window", err, 1, true)
    end)
  end)

  it("a closure that cannot be shipped, given to a window operator, names the user's line", function()
    H.with_context({ workers = 1 }, function(ctx)
      local s = ctx:queue_stream({ { 1 } })
      local co = coroutine.create(function() end)
      local line = next_line()
      local err = raises(function() s:map(function(x) return x, 1 end):reduce_by_key_and_window(function(a, b) return co and a + b end, 2, 1) end)
      assert.matches(THIS .. line .. ": reduce_by_key_and_window", err, 1, true)
    end)
  end)

  it("an action on a stopped context names the user's line, not rdd.lua", function()
    local ctx = H.context({ workers = 1 })
    local r = ctx:parallelize({ 1, 2, 3 })
    ctx:stop()
    local line = next_line()
    local err = raises(function() return r:map(function(x) return x end):count() end)
    assert.matches(THIS .. line .. ": this context is stopped", err, 1, true)
  end)

  it("dstream.context with an unknown setting names the user's line", function()
    local dstream = H.dstream()
    local line = next_line()
    local err = raises(function() local c = dstream.context { workers = 1, bogus = true }; return c end)
    assert.matches(THIS .. line .. ": dstream.context: unknown setting 'bogus'", err, 1, true)
  end)

  it("a source created after start names the user's line", function()
    H.with_context({ workers = 1 }, function(ctx)
      ctx:queue_stream({ { 1 } }):foreach_rdd(function() end)
      ctx:start()
      local line = next_line()
      local err = raises(function() ctx:rate_stream { rows_per_second = 1 } end)
      assert.matches(THIS .. line .. ": rate_stream: sources must be created before ctx:start()", err, 1, true)
    end)
  end)
end)

describe("operator options in one trailing table", function()
  local input = { { "a", "b", "a" }, { "b" }, {}, { "a", "c" } }
  local pairs_of = function(s) return s:map(function(w) return w, 1 end) end

  it("reduce_by_key(f, n) and reduce_by_key(f, { partitions = n }) agree", function()
    local positional = H.run({ workers = 2 }, input, function(s) return pairs_of(s):reduce_by_key(add, 3) end)
    local named = H.run({ workers = 2 }, input, function(s) return pairs_of(s):reduce_by_key(add, { partitions = 3 }) end)
    for i = 1, #input do
      local counts, want = {}, {}
      for _, w in ipairs(input[i]) do counts[w] = (counts[w] or 0) + 1 end
      for w, n in pairs(counts) do want[#want + 1] = { w, n } end
      assert.same(H.sorted(want), H.sorted(named[i]))
      assert.same(H.sorted(positional[i]), H.sorted(named[i]))
    end
  end)

  it("reduce_by_window(f, len, slide, inverse) and (f, len, slide, { inverse = }) agree", function()
    local ints = { { 1, 2 }, { 3 }, {}, { 4, 5, 6 }, { 7 } }
    local positional = H.run({ workers = 1 }, ints, function(s) return s:reduce_by_window(add, 2, 1, sub) end)
    local named = H.run({ workers = 1 }, ints, function(s) return s:reduce_by_window(add, 2, 1, { inverse = sub }) end)
    -- Windows of two 1 s batches, sums computed here.
    local expect, prev = {}, 0
    for i, b in ipairs(ints) do
      local sum = 0
      for _, v in ipairs(b) do sum = sum + v end
      expect[i] = { sum + prev }
      prev = sum
    end
    assert.same(expect, named)
    assert.same(positional, named)
  end)

  it("an option an operator does not take is an error naming it and what it takes", function()
    H.with_context({ workers = 1 }, function(ctx)
      local s = ctx:queue_stream({ { 1 } }):map(function(x) return x, 1 end)
      local line = next_line()
      local err = raises(function() s:reduce_by_key(add, { partitons = 2 }) end)
      assert.matches(THIS .. line .. ": reduce_by_key: unknown option 'partitons' (it takes partitions)", err, 1, true)
      err = raises(function() s:update_state_by_key(function(v, st) return st end, { timeout = "1s" }) end)
      assert.matches("update_state_by_key: unknown option 'timeout' (it takes initial, partitions, with_key)", err, 1, true)
      err = raises(function() s:reduce_by_key_and_window(add, 2, 1, { inverse = sub, invrse = sub }) end)
      assert.matches("reduce_by_key_and_window: unknown option 'invrse'", err, 1, true)
      -- A misspelt timeout would otherwise keep every key for ever.
      err = raises(function() s:map_with_state { fn = function() end, timout = "2s" } end)
      assert.matches("map_with_state: unknown option 'timout' (it takes fn, initial, partitions, timeout)", err, 1, true)
      -- A misspelt watermark would leave it at 0 and drop every record out of order as late.
      line = next_line()
      err = raises(function() s:event_time(function() return 0 end, { watermak = "5s" }) end)
      assert.matches(THIS .. line .. ": event_time: unknown option 'watermak' (it takes emit, late, watermark)", err, 1, true)
      -- Sources too, where they are made (their values are checked when they open, in start()).
      line = next_line()
      err = raises(function() ctx:socket_text_stream("127.0.0.1", 9, { idle_timout = "30s" }) end)
      assert.matches(THIS .. line .. ": socket_text_stream: unknown option 'idle_timout' (it takes backoff_max_ms,"
        .. " idle_timeout, max_line, max_rate)", err, 1, true)
      err = raises(function() ctx:rate_stream { rows_per_second = 10, maxrate = 5 } end)
      assert.matches("rate_stream: unknown option 'maxrate' (it takes max_rate, rows_per_second)", err, 1, true)
      err = raises(function() ctx:parallelize({ { "a", 1 } }, 1, { pair = true }) end)
      assert.matches("parallelize: unknown option 'pair' (it takes pairs)", err, 1, true)
      local kafka = require("dstream.kafka")
      err = raises(function() kafka.mock_cluster { broker = 3 } end)
      assert.matches("mock_cluster: unknown option 'broker' (options: brokers, topics)", err, 1, true)
      err = raises(function() kafka.producer { brokers = "127.0.0.1:9", transactionalid = "t" } end)
      assert.matches("producer: unknown option 'transactionalid'", err, 1, true)
      err = raises(function() kafka.committed { brokers = "127.0.0.1:9", topic = "t", groupid = "g" } end)
      assert.matches("committed: unknown option 'groupid'", err, 1, true)
      err = raises(function() ctx:text_file_stream(".", { remeber = "2m" }) end)
      assert.matches("text_file_stream: unknown option 'remeber' (it takes max_line, max_rate, new_files_only,"
        .. " remember)", err, 1, true)
      line = next_line()
      err = raises(function() s:save_as_text_files("out", { suffix = "txt" }) end)
      assert.matches(THIS .. line .. ": save_as_text_files: the suffix must be a string", err, 1, true)
    end)
  end)
end)

describe("update_state_by_key's options", function()
  local input = { { "a", "b", "a" }, { "b" }, {}, { "a", "c" } }
  local counts = function(values, state)
    local n = state or 0
    for _, v in ipairs(values) do n = n + v end
    return n
  end
  -- Running counts per key after each batch, computed here.
  local function expected(initial)
    local out, state = {}, {}
    for k, v in pairs(initial or {}) do state[k] = v end
    for i, b in ipairs(input) do
      for _, w in ipairs(b) do state[w] = (state[w] or 0) + 1 end
      local list = {}
      for k, v in pairs(state) do list[#list + 1] = { k, v } end
      out[i] = H.sorted(list)
    end
    return out
  end

  for _, cfg in ipairs(H.configs({ 1, 4 }, { 1 })) do
    it("starts from initial and passes the key with with_key (" .. cfg.name .. ")", function()
      local results = H.run(cfg, input, function(s, ctx)
        local initial = ctx:parallelize({ { "a", 10 }, { "z", 5 } }, 2, { pairs = true })
        return s:map(function(w) return w, 1 end):update_state_by_key(function(key, values, state)
          assert(type(key) == "string", "the key comes first")
          return counts(values, state)
        end, { partitions = 3, initial = initial, with_key = true })
      end)
      local want = expected({ a = 10, z = 5 })
      for i = 1, #input do assert.same(want[i], H.sorted(results[i])) end
    end)
  end

  it("the positional form still takes a number of partitions", function()
    local results = H.run({ workers = 2 }, input, function(s)
      return s:map(function(w) return w, 1 end):update_state_by_key(counts, 3)
    end)
    local want = expected()
    for i = 1, #input do assert.same(want[i], H.sorted(results[i])) end
  end)
end)

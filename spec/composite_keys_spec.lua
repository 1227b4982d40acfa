-- Composite keys (issue 17 item 4): a key may be an array of strings, numbers and booleans.
-- Every keyed operator, keyed state and window groups such keys by value, returns them as
-- arrays, places equal arrays in the same partition in every worker and every process, and
-- keeps them across a checkpoint. {1} and {"1"} are different keys. A key that cannot be a
-- key (a function, a table with fields, a nested table, NaN, an array with a hole) fails its
-- task once (no retry) with a message naming the operator and the record.
-- Expected values are computed in plain Lua, with keys compared by their text (H.repr).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local dstream = require("dstream")

local add = function(a, b) return a + b end
local sub = function(a, b) return a - b end
local repr = H.repr

-- Seeded batches of records { key, value }: keys are arrays of strings, numbers, booleans and
-- mixes, with the look-alikes that must stay apart ({1} and {"1"}, {true} and {"true"},
-- {"a", "b"} and {"a:b"} ...) and -0, which is 0.
local KEYS = {
  { "10115", "open" }, { "10115", "closed" }, { "75001", "open" },
  { 1, 2 }, { 2, 1 }, { 1.5, -3 },
  { true, "x" }, { false, "x" }, { "x", true },
  { "10115", 3, false }, { "10115", 3, true },
  { 1 }, { "1" }, { true }, { "true" },
  { "a", "b" }, { "a:b" }, { "ab" }, { "s1:a" }, { "a" },
  { 0 }, { 0.1 }, { "i0;" },
}
local function batches(n, seed)
  math.randomseed(seed)
  local out = {}
  for b = 1, n do
    local batch = {}
    if b % 4 ~= 3 then -- some batches are empty
      for i = 1, math.random(5, 25) do
        local k = KEYS[math.random(#KEYS)]
        local copy = {}
        for j = 1, #k do copy[j] = k[j] end
        if copy[1] == 0 and math.random(2) == 1 then copy[1] = -0 end -- -0 is the key {0}
        batch[i] = { copy, math.random(1, 9) }
      end
    end
    out[b] = batch
  end
  return out
end
local INPUT = batches(8, 1717)

-- The key of a record in the expectations: its text; -0 and 0 are one key.
local function key_text(k)
  local c = {}
  for i = 1, #k do c[i] = k[i] == 0 and 0 or k[i] end
  return repr(c)
end

-- One batch's result as key text -> value, checking that every key is an array (a plain
-- table with elements 1..n only) and appears once.
local function by_key(records, what)
  local out = {}
  for _, kv in ipairs(records) do
    local k = kv[1]
    assert.are.equal("table", type(k), what .. ": a key is not an array: " .. repr(k))
    local fields = 0
    for _ in pairs(k) do fields = fields + 1 end
    assert.are.equal(#k, fields, what .. ": a key is not a plain array: " .. repr(k))
    local t = key_text(k)
    assert.is_nil(out[t], what .. ": key " .. t .. " came out twice")
    out[t] = kv[2]
  end
  return out
end

-- Reference: per batch, key text -> list of values in arrival order.
local function groups(batch)
  local out = {}
  for _, kv in ipairs(batch) do
    local t = key_text(kv[1])
    out[t] = out[t] or {}
    table.insert(out[t], kv[2])
  end
  return out
end
local function fold(list, f)
  local acc = list[1]
  for i = 2, #list do acc = f(acc, list[i]) end
  return acc
end

local function run(cfg, build, input, opts)
  return H.run(cfg, input or INPUT, build, { queue = { pairs = true }, batches = opts and opts.batches })
end

for _, cfg in ipairs(H.configs({ 1, 4 }, { 3 })) do
  describe("composite keys (" .. cfg.name .. ")", function()
    for _, op in ipairs({ "reduce_by_key", "group_by_key", "count_by_key", "combine_by_key" }) do
      it(op .. " groups array keys by value and returns them as arrays", function()
        local results = run(cfg, function(s)
          if op == "reduce_by_key" then return s:reduce_by_key(add, 4) end
          if op == "group_by_key" then return s:group_by_key(5) end
          if op == "count_by_key" then return s:count_by_key() end
          return s:combine_by_key(function(v) return { v } end,
            function(c, v) c[#c + 1] = v return c end,
            function(a, b) for i = 1, #b do a[#a + 1] = b[i] end return a end)
        end)
        assert.are.equal(#INPUT, #results)
        for b, batch in ipairs(INPUT) do
          local want = {}
          for t, list in pairs(groups(batch)) do
            if op == "reduce_by_key" then want[t] = fold(list, add)
            elseif op == "count_by_key" then want[t] = #list
            else table.sort(list) want[t] = list end
          end
          local got = by_key(results[b], op .. " batch " .. b)
          if op == "group_by_key" or op == "combine_by_key" then
            for _, list in pairs(got) do table.sort(list) end
          end
          assert.are.same(want, got, op .. " batch " .. b)
        end
      end)
    end

    it("long keys, and a key table the user's function reuses and changes for every record", function()
      local input = { {} }
      for i = 1, 40 do input[1][i] = i end
      local results = H.run(cfg, input, function(s)
        local key = {} -- one table, changed for every record: keys are copied, not kept
        local long = s:map(function(i) return { "a", i % 3, i % 2 == 0, "b", i % 5, "c" }, 1 end)
          :reduce_by_key(add)
        local reused = s:map(function(i)
          key[1], key[2] = "k", i % 4
          return key, i
        end):reduce_by_key(add)
        return long:union(reused)
      end)
      local want = {}
      for i = 1, 40 do
        local k1 = key_text({ "a", i % 3, i % 2 == 0, "b", i % 5, "c" })
        want[k1] = (want[k1] or 0) + 1
        local k2 = key_text({ "k", i % 4 })
        want[k2] = (want[k2] or 0) + i
      end
      assert.are.same(want, by_key(results[1], "long and reused keys"))
    end)

    it("join, left_outer_join and cogroup match array keys of both sides by value", function()
      -- the other side: a running number per record, keys rebuilt (other tables, same values)
      local other = {}
      for b, batch in ipairs(INPUT) do
        other[b] = {}
        for i, kv in ipairs(batch) do
          if i % 2 == 0 then other[b][#other[b] + 1] = { { unpack(kv[1]) }, 100 * b + i } end
        end
      end
      for _, mode in ipairs({ "join", "left_outer_join", "cogroup" }) do
        local results = H.with_context(cfg, function(ctx)
          local left = ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
          local right = ctx:queue_stream(H.deep_copy(other), { pairs = true })
          local res = {}
          left[mode](left, right, 4):foreach_rdd(function(rdd) res[#res + 1] = rdd:collect() end)
          ctx:start()
          ctx:advance(#INPUT)
          return res
        end)
        for b = 1, #INPUT do
          local l, r = groups(INPUT[b]), groups(other[b])
          local want, got = {}, {}
          for t, lv in pairs(l) do
            local rv = r[t] or {}
            if mode == "cogroup" then
              want[#want + 1] = t .. " " .. repr({ H.sorted(lv), H.sorted(rv) })
            else
              for _, x in ipairs(lv) do
                for _, y in ipairs(rv) do want[#want + 1] = t .. " " .. repr({ x, y }) end
                if #rv == 0 and mode == "left_outer_join" then want[#want + 1] = t .. " " .. repr({ x }) end
              end
            end
          end
          if mode == "cogroup" then
            for t, rv in pairs(r) do
              if not l[t] then want[#want + 1] = t .. " " .. repr({ {}, H.sorted(rv) }) end
            end
          end
          for _, kv in ipairs(results[b]) do
            assert.are.equal("table", type(kv[1]))
            local v = kv[2]
            if mode == "cogroup" then v = { H.sorted(v[1]), H.sorted(v[2]) } end
            got[#got + 1] = key_text(kv[1]) .. " " .. repr(v)
          end
          assert.are.same(H.sorted(want), H.sorted(got), mode .. " batch " .. b)
        end
      end
    end)

    it("update_state_by_key keeps one state per array key across batches", function()
      local results = run(cfg, function(s)
        return s:update_state_by_key(function(values, total)
          total = total or 0
          for i = 1, #values do total = total + values[i] end
          return total
        end, 4)
      end)
      local totals = {}
      for b, batch in ipairs(INPUT) do
        for t, list in pairs(groups(batch)) do totals[t] = (totals[t] or 0) + fold(list, add) end
        assert.are.same(totals, by_key(results[b], "update_state_by_key batch " .. b), "batch " .. b)
      end
    end)

    it("map_with_state counts per array key, record by record", function()
      local results = run(cfg, function(s)
        return s:map_with_state { partitions = 4, fn = function(k, v, state)
          local n = (state:get() or 0) + 1
          state:set(n)
          return k, n
        end }
      end)
      local counts = {}
      for b, batch in ipairs(INPUT) do
        local want, got = {}, {}
        for _, kv in ipairs(batch) do
          local t = key_text(kv[1])
          counts[t] = (counts[t] or 0) + 1
          want[#want + 1] = t .. "=" .. counts[t]
        end
        for _, kv in ipairs(results[b]) do
          assert.are.equal("table", type(kv[1]))
          got[#got + 1] = key_text(kv[1]) .. "=" .. kv[2]
        end
        assert.are.same(H.sorted(want), H.sorted(got), "batch " .. b)
      end
    end)

    for _, inverse in ipairs({ false, true }) do
      it("reduce_by_key_and_window " .. (inverse and "with" or "without") .. " an inverse", function()
        local results = run(cfg, function(s)
          return s:reduce_by_key_and_window(add, "3s", "1s",
            { inverse = inverse and sub or nil, filter = inverse and function(_, n) return n ~= 0 end or nil })
        end, nil, { batches = #INPUT + 3 })
        for b = 1, #INPUT + 3 do
          local want = {}
          for i = math.max(1, b - 2), math.min(b, #INPUT) do
            for t, list in pairs(groups(INPUT[i])) do want[t] = (want[t] or 0) + fold(list, add) end
          end
          assert.are.same(want, by_key(results[b], "window at batch " .. b), "window at batch " .. b)
        end
      end)
    end

    it("event-time reduce_by_key_and_window and group_by_key_and_window", function()
      -- records { key, ts }: tumbling 2 s windows, watermark 0: each window closes once a later
      -- window's record came
      local ev = {
        { { { "a", 1 }, 100 }, { { "a", 1 }, 900 }, { { "1" }, 1200 }, { { 1 }, 1500 } },
        { { { "a", 1 }, 1900 }, { { "a", "1" }, 2100 } },
        { { { "a", 1 }, 4500 }, { { 1 }, 2500 } },
      }
      local res = H.with_context(cfg, function(ctx)
        local s = ctx:queue_stream(H.deep_copy(ev), { pairs = true })
          :event_time(function(_, ts) return ts end)
        local r = {}
        s:reduce_by_key_and_window(add, "2s", "2s"):foreach_rdd(function(rdd, time)
          for _, kv in ipairs(rdd:collect()) do
            r[#r + 1] = time .. " sum " .. key_text(kv[1]) .. " " .. kv[2].start .. " " .. kv[2].value
          end
        end)
        s:group_by_key_and_window("2s", "2s"):foreach_rdd(function(rdd, time)
          for _, kv in ipairs(rdd:collect()) do
            r[#r + 1] = time .. " group " .. key_text(kv[1]) .. " " .. kv[2].start .. " "
              .. table.concat(H.sorted(kv[2].values), ",")
          end
        end)
        ctx:start()
        ctx:advance(3)
        return r
      end)
      -- Batch 1's watermark is 1500: nothing closes. Batch 2 (max 2100): [0, 2000) closes,
      -- with 100, 900 and 1900 for {"a", 1}. Batch 3 (max 4500): [2000, 4000) closes.
      local want = {
        "2000 sum " .. repr({ "a", 1 }) .. " 0 2900", "2000 sum " .. repr({ "1" }) .. " 0 1200",
        "2000 sum " .. repr({ 1 }) .. " 0 1500",
        "2000 group " .. repr({ "a", 1 }) .. " 0 100,900,1900", "2000 group " .. repr({ "1" }) .. " 0 1200",
        "2000 group " .. repr({ 1 }) .. " 0 1500",
        "3000 sum " .. repr({ "a", "1" }) .. " 2000 2100", "3000 sum " .. repr({ 1 }) .. " 2000 2500",
        "3000 group " .. repr({ "a", "1" }) .. " 2000 2100", "3000 group " .. repr({ 1 }) .. " 2000 2500",
      }
      assert.are.same(H.sorted(want), H.sorted(res))
    end)
  end)
end

describe("composite keys across processes and checkpoints", function()
  it("an array key goes to the same partition with 1 and 4 workers and in another process", function()
    local list = {}
    for i, k in ipairs(KEYS) do list[i] = { k, i } end
    for i = 1, 60 do list[#list + 1] = { { "zip" .. i, i % 3 == 0, i }, #list + 1 } end
    local function placement(workers)
      local gl = H.with_context({ workers = workers, partitions = 3 }, function(ctx)
        return ctx:parallelize(H.deep_copy(list), 3, { pairs = true }):group_by_key(8):glom():collect()
      end)
      local where = {}
      for p, part in ipairs(gl) do
        for _, kv in ipairs(part) do where[kv[2][1]] = p - 1 end
      end
      return where
    end
    local here = placement(4)
    assert.are.equal(#list, H.size(here))
    assert.are.same(here, placement(1))
    local lits = {}
    for i, kv in ipairs(list) do
      local parts = {}
      for j, x in ipairs(kv[1]) do
        parts[j] = type(x) == "string" and ("%q"):format(x) or type(x) == "number" and ("%.17g"):format(x) or tostring(x)
      end
      lits[i] = "{{" .. table.concat(parts, ",") .. "}," .. kv[2] .. "}"
    end
    local out = H.run_script([[
      local dstream = require("dstream")
      local ctx = dstream.context{ batch = "1s", clock = "manual", workers = 2, partitions = 2 }
      local gl = ctx:parallelize({]] .. table.concat(lits, ",") .. [[}, 2, { pairs = true })
        :group_by_key(8):glom():collect()
      for p, part in ipairs(gl) do
        for _, kv in ipairs(part) do io.write(kv[2][1], " ", p - 1, "\n") end
      end
      ctx:stop()
    ]])
    local there = {}
    for idx, p in out:gmatch("(%d+) (%d+)\n") do there[tonumber(idx)] = tonumber(p) end
    assert.are.same(here, there, out)
    local used = {}
    for _, p in pairs(here) do used[p] = true end
    assert.is_true(H.size(used) > 4, "array keys spread over the partitions")
  end)

  local ckpt_dir = H.scratch_dirs(after_each)

  -- Runs n batches of build(ctx) with checkpoint dir, then stops gracefully; returns the
  -- outputs (per batch, text lines sorted).
  local function job(dir, n, build)
    return H.run_checkpointed(dir, n, function()
      return dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 3 }
    end, function(ctx, out)
      build(ctx:queue_stream(H.deep_copy(INPUT), { pairs = true }), out)
    end)
  end

  local function lines_of(records)
    local out = {}
    for i, kv in ipairs(records) do
      assert.are.equal("table", type(kv[1]), "a key is not an array after the restart")
      out[i] = key_text(kv[1]) .. "=" .. repr(kv[2])
    end
    return H.sorted(out)
  end

  it("keyed state and window panes with array keys are restored from a checkpoint", function()
    local function build(s, out)
      local function keep(name)
        return function(rdd, time) out[#out + 1] = { time, name, lines_of(rdd:collect()) } end
      end
      s:update_state_by_key(function(values, total)
        total = total or 0
        for i = 1, #values do total = total + values[i] end
        return total
      end):foreach_rdd(keep("state"))
      local m = s:map_with_state { fn = function(k, v, state)
        state:set((state:get() or 0) + v)
        return k, state:get()
      end }
      m:foreach_rdd(keep("map_with_state"))
      m:state_snapshots():foreach_rdd(keep("snapshots"))
      s:reduce_by_key_and_window(add, "3s", "1s"):foreach_rdd(keep("window"))
      s:reduce_by_key_and_window(add, "3s", "1s", { inverse = sub }):foreach_rdd(keep("inverse"))
    end
    local whole = job(ckpt_dir(), #INPUT, build)
    local dir = ckpt_dir()
    local joined = job(dir, 4, build)
    for _, b in ipairs(job(dir, #INPUT - 4, build)) do joined[#joined + 1] = b end
    assert.are.equal(#INPUT * 5, #whole)
    assert.are.same(whole, joined)
  end)
end)

describe("keys that cannot be keys", function()
  -- Each case: the operator, a bad key, and what the message says about it.
  local BAD = {
    { "a function", function() return print end, "got a function" },
    { "a table with fields", function() return { zip = "10115" } end, "has other fields" },
    { "an array with a field", function() return { "10115", status = "open" } end, "has other fields" },
    { "a nested table", function() return { "10115", { "open" } } end, "holds a table at [2]" },
    { "NaN", function() return 0 / 0 end, "got NaN" },
    { "an array holding NaN", function() return { "x", 0 / 0 } end, "holds NaN" },
    { "an array with a hole", function() return { "x", nil, 3 } end, "has a hole" },
  }
  local OPS = {
    { "reduce_by_key", function(s) return s:reduce_by_key(add) end },
    { "group_by_key", function(s) return s:group_by_key() end },
    { "join", function(s, o) return s:join(o) end },
    { "update_state_by_key", function(s) return s:update_state_by_key(function(v, st) return #v end) end },
    { "reduce_by_key_and_window", function(s) return s:reduce_by_key_and_window(add, 2) end },
  }

  -- Runs op over records 1..4 whose record 3 has the bad key; every attempt at the record
  -- appends a line to a file. Returns the error and the number of attempts.
  local function attempts(workers, make_key, op)
    local path = os.tmpname()
    local err
    H.with_context({ workers = workers, partitions = 2 }, function(ctx)
      local s = ctx:queue_stream({ { 1, 2, 3, 4 } }):map(function(x)
        if x == 3 then
          local f = assert(io.open(path, "a"))
          f:write("attempt\n")
          f:close()
          return make_key(), "the value"
        end
        return { "k", x }, x
      end)
      local o = ctx:queue_stream({ { { { "k", 1 }, 1 } } }, { pairs = true })
      op(s, o):foreach_rdd(function(rdd) rdd:collect() end)
      ctx:start()
      local ok, e = pcall(ctx.advance, ctx, 1)
      if not ok then err = tostring(e) end
    end)
    local n = #H.lines(H.read_file(path) or "")
    os.remove(path)
    return err, n
  end

  for _, workers in ipairs({ 1, 4 }) do
    for _, case in ipairs(BAD) do
      for _, op in ipairs(OPS) do
        it(("%s: %s fails once, naming the operator and the record (workers=%d)"):format(op[1], case[1], workers), function()
          local err, n = attempts(workers, case[2], op[2])
          assert.is_truthy(err, "no error raised")
          assert.are.equal(1, n, "the record was tried " .. n .. " times: " .. err)
          assert.is_truthy(err:find("not retried", 1, true), err)
          assert.is_truthy(err:find(op[1] .. ": keys must be strings, numbers or booleans, or arrays of them", 1, true), err)
          assert.is_truthy(err:find(case[3], 1, true), err)
          assert.is_truthy(err:find('"the value"', 1, true), "the record's value is not named: " .. err)
        end)
      end
    end
  end

  it("a nil key is not retried either", function()
    local err, n = attempts(2, function() return nil end, OPS[1][2])
    assert.are.equal(1, n)
    assert.is_truthy(err:find("a key is nil", 1, true), err)
  end)

  it("other errors are still retried (max_task_attempts)", function()
    local err, n = attempts(2, function() error("boom") end, OPS[1][2])
    assert.are.equal(4, n)
    assert.is_truthy(err:find("task failed after 4 attempts", 1, true), err)
  end)
end)

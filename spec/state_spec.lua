-- Per-key state kept on the workers between batches: update_state_by_key and map_with_state
-- (timeouts, initial state, state_snapshots), with 1 and 4 workers and 1, 3 and 16 state
-- partitions, over 50 batches on a manual clock, checked against plain-Lua folds
-- (spec/helpers/keyed_reference.lua). A #slow test keeps a million distinct keys.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local K = require("keyed_reference")

local add = function(a, b) return a + b end

-- Keys for 50 batches: the mixed keys plus a wider pool, so keys come, go idle, time out or
-- get removed, and come back.
local KEYS50 = {}
for _, k in ipairs(K.MIXED_KEYS) do KEYS50[#KEYS50 + 1] = k end
for i = 1, 40 do KEYS50[#KEYS50 + 1] = "k" .. i end
local BATCHES50 = K.random_batches(50, 2024, { keys = KEYS50, max = 30, empty_every = 7, lo = -20, hi = 40 })

-- The state function of the 50-batch fold: every field checks something. `calls` counts the
-- calls (fn runs for every key in every batch), `seen` the values, `idle` the batches without
-- data; a key idle for 3 batches, or whose sum goes over 300, is removed.
local function fold_fn(values, s)
  if type(values) ~= "table" then error("values is not a table") end
  local sum, seen = s and s.sum or 0, s and s.seen or 0
  for i = 1, #values do sum, seen = sum + values[i], seen + 1 end
  local idle = #values == 0 and (s and s.idle or 0) + 1 or 0
  if idle >= 3 or sum > 300 then return nil end
  return { sum = sum, seen = seen, idle = idle, calls = (s and s.calls or 0) + 1 }
end

-- map_with_state's function for the 50-batch run (order-independent results): counts the
-- records of each key; the 6th record removes the state; a timing-out key reports its count.
local function count_fn(key, value, state)
  if state:is_timing_out() then
    if value ~= nil then error("a timing-out call got a value") end
    return key, "timeout:" .. state:get().n
  end
  local s = state:get()
  if (s ~= nil) ~= state:exists() then error("exists() disagrees with get()") end
  local n = (s and s.n or 0) + 1
  if n == 6 then
    state:remove()
    if state:exists() then error("exists() after remove()") end
    return key, "removed"
  end
  state:update({ n = n })
  if state:get().n ~= n then error("get() after update() does not see the new state") end
  return key, n
end

-- Runs a stream built on a pair queue_stream of `input` and returns each batch's records.
local function run(cfg, input, build, nbatches)
  return H.run(cfg, input, build, { queue = { pairs = true }, batches = nbatches })
end

local function unique_map(records)
  local m, err = K.unique_map(records)
  assert.is_truthy(m, err)
  return m
end

for _, workers in ipairs({ 1, 4 }) do
  for _, n in ipairs({ 1, 3, 16 }) do
    local cfg = { workers = workers, partitions = 2 }
    describe(("keyed state (workers=%d, n=%d)"):format(workers, n), function()
      describe("update_state_by_key", function()
        it("folds 50 batches like the reference (mixed keys, empty batches, removals)", function()
          local results = run(cfg, BATCHES50, function(s) return s:update_state_by_key(fold_fn, n) end)
          local expected = K.update_state_fold(BATCHES50, fold_fn)
          assert.are.equal(50, #results)
          for i = 1, 50 do
            assert.are.same(expected[i], unique_map(results[i]), "batch " .. i)
          end
        end)

        it("calls fn for every key in every batch, with {} when no data came", function()
          local input = { { { "a", 1 }, { "b", 2 }, { 7, 3 }, { true, 4 } }, {}, { { "a", 5 } }, {}, {} }
          local fn = function(values, s)
            s = s or { calls = 0, empty = 0, total = 0 }
            if #values == 0 then
              if next(values) ~= nil then error("an empty values array has entries") end
              s.empty = s.empty + 1
            end
            for _, v in ipairs(values) do s.total = s.total + v end
            s.calls = s.calls + 1
            return s
          end
          local results = run(cfg, input, function(s) return s:update_state_by_key(fn, n) end)
          assert.are.same(K.update_state_fold(input, fn)[5], unique_map(results[5]))
          assert.are.same({ calls = 5, empty = 3, total = 6 }, unique_map(results[5]).a)
          assert.are.same({ calls = 5, empty = 4, total = 4 }, unique_map(results[5])[true])
        end)

        it("gives the batch's values of a key as an array", function()
          local input = { K.random_pairs(300, 5), {}, K.random_pairs(200, 6) }
          local fn = function(values, s)
            local copy = {}
            for i, v in ipairs(values) do copy[i] = v end
            table.sort(copy)
            return { last = copy, batches = (s and s.batches or 0) + 1 }
          end
          local results = run(cfg, input, function(s) return s:update_state_by_key(fn, n) end)
          local expected = K.update_state_fold(input, fn)
          for i = 1, 3 do assert.are.same(expected[i], unique_map(results[i])) end
        end)

        it("removes a key when fn returns nil; new data starts it again from nil", function()
          local input = { { { "x", 1 }, { "y", 1 } }, { { "x", 1 } }, { { "x", 1 } }, { { "y", 1 } } }
          local fn = function(values, s)
            local c = (s or 0) + #values
            if #values == 0 then return nil end -- no data: forget the key
            return c
          end
          local results = run(cfg, input, function(s) return s:update_state_by_key(fn, n) end)
          assert.are.same({ x = 1, y = 1 }, unique_map(results[1]))
          assert.are.same({ x = 2 }, unique_map(results[2]))
          assert.are.same({ x = 3 }, unique_map(results[3]))
          assert.are.same({ y = 1 }, unique_map(results[4]))
        end)

        it("emits (key, state) pairs in n partitions and feeds other operators", function()
          local input = { K.random_pairs(200, 8), {}, {} }
          local sum_fn = function(values, s)
            local t = s or 0
            for _, v in ipairs(values) do t = t + v end
            return t
          end
          local gl = run(cfg, input, function(s) return s:update_state_by_key(sum_fn, n):glom() end)
          local totals = run(cfg, input, function(s)
            return s:update_state_by_key(sum_fn, n):filter(function(_, v) return v > 0 end):count()
          end)
          local expected = H.ref.reduce_by_key(input[1], add)
          local positive = 0
          for _, v in pairs(expected) do if v > 0 then positive = positive + 1 end end
          for i = 1, 3 do
            assert.are.equal(n, #gl[i])
            assert.are.same(expected, unique_map(H.concat(gl[i])))
            assert.are.same({ positive }, totals[i])
          end
        end)

        it("keeps separate state for two streams", function()
          local got = H.with_context(cfg, function(ctx)
            local s = ctx:queue_stream({ { { "a", 1 } }, { { "a", 2 } } }, { pairs = true })
            local sum = s:update_state_by_key(function(vs, st)
              local t = st or 0
              for _, v in ipairs(vs) do t = t + v end
              return t
            end, n)
            local cnt = s:update_state_by_key(function(vs, st) return (st or 0) + #vs end, n)
            local res = {}
            sum:join(cnt, n):foreach_rdd(function(rdd) res[#res + 1] = rdd:collect() end)
            ctx:start()
            ctx:advance(3)
            return res
          end)
          assert.are.same({ { { "a", { 1, 1 } } }, { { "a", { 3, 2 } } }, { { "a", { 3, 2 } } } }, got)
        end)
      end)

      describe("map_with_state", function()
        it("matches the reference over 50 batches (timeout 2500ms, removals, snapshots)", function()
          local got = H.with_context(cfg, function(ctx)
            local mapped = ctx:queue_stream(H.deep_copy(BATCHES50), { pairs = true })
              :map_with_state { fn = count_fn, timeout = "2500ms", partitions = n }
            local out, snaps = {}, {}
            mapped:foreach_rdd(function(rdd) out[#out + 1] = rdd:collect() end)
            mapped:state_snapshots():foreach_rdd(function(rdd) snaps[#snaps + 1] = rdd:collect() end)
            ctx:start()
            ctx:advance(50)
            return { out = out, snaps = snaps }
          end)
          local emitted, snapshots = K.map_with_state(BATCHES50, count_fn, { timeout_ms = 2500 })
          assert.are.equal(50, #got.out)
          assert.are.equal(50, #got.snaps)
          local timeouts = 0
          for i = 1, 50 do
            assert.are.same(K.multiset(emitted[i]), K.multiset(got.out[i]), "records of batch " .. i)
            assert.are.same(snapshots[i], unique_map(got.snaps[i]), "state after batch " .. i)
            for _, kv in ipairs(emitted[i]) do
              if tostring(kv[2]):match("^timeout") then timeouts = timeouts + 1 end
            end
          end
          assert.is_true(timeouts > 5, "the data should make keys time out")
        end)

        it("keeps sums with an initial state (no timeout)", function()
          local initial = { { "apple", { n = 10, sum = 100 } }, { 3, { n = 1, sum = -1 } }, { false, { n = 2, sum = 2 } } }
          local input = { K.random_pairs(150, 31), {}, K.random_pairs(100, 32) }
          local fn = function(key, value, state)
            local s = state:get() or { n = 0, sum = 0 }
            state:set({ n = s.n + 1, sum = s.sum + value })
            return key -- one value: a single record
          end
          local got = H.with_context(cfg, function(ctx)
            local init = ctx:parallelize(H.deep_copy(initial), 2, { pairs = true })
            local mapped = ctx:queue_stream(H.deep_copy(input), { pairs = true })
              :map_with_state { fn = fn, initial = init, partitions = n }
            local out, snaps = {}, {}
            mapped:foreach_rdd(function(rdd) out[#out + 1] = rdd:collect() end)
            mapped:state_snapshots():foreach_rdd(function(rdd) snaps[#snaps + 1] = rdd:collect() end)
            ctx:start()
            ctx:advance(3)
            return { out = out, snaps = snaps }
          end)
          local emitted, snapshots = K.map_with_state(input, fn, { initial = H.to_map(initial) })
          for i = 1, 3 do
            assert.are.same(K.multiset(emitted[i]), K.multiset(got.out[i]))
            assert.are.same(snapshots[i], unique_map(got.snaps[i]))
          end
          assert.are.same({}, got.out[2])
          assert.is_true(snapshots[1].apple.n > 10)
        end)

        it("touches only keys with new data", function()
          local input = { { { "a", 1 }, { "b", 1 }, { "c", 1 } }, { { "a", 1 } }, {}, { { "b", 1 } } }
          local fn = function(key, _, state)
            state:update((state:get() or 0) + 1)
            return key, state:get()
          end
          local got = H.with_context(cfg, function(ctx)
            local mapped = ctx:queue_stream(H.deep_copy(input), { pairs = true })
              :map_with_state { fn = fn, partitions = n }
            local out, snaps = {}, {}
            mapped:foreach_rdd(function(rdd) out[#out + 1] = rdd:collect() end)
            mapped:state_snapshots():foreach_rdd(function(rdd) snaps[#snaps + 1] = rdd:collect() end)
            ctx:start()
            ctx:advance(4)
            return { out = out, snaps = snaps }
          end)
          assert.are.same({ { "a", 2 } }, got.out[2])
          assert.are.same({}, got.out[3])
          assert.are.same({ { "b", 2 } }, got.out[4])
          assert.are.same({ a = 2, b = 2, c = 1 }, unique_map(got.snaps[4]))
          assert.are.same({ a = 2, b = 1, c = 1 }, unique_map(got.snaps[3]))
        end)

        it("times out a key idle for the timeout: one call with nil, then it is gone", function()
          -- batch 1 s, timeout 2 s: "a" last got data at 1000 ms, so at 3000 ms it has had none
          -- for 2 s; "b" gets data every other batch until 5000 ms, then times out at 7000 ms.
          local input = { { { "a", 1 }, { "b", 1 } }, {}, { { "b", 1 } }, {}, { { "b", 1 }, { "a", 5 } }, {}, {}, {} }
          local fn = function(key, value, state)
            if state:is_timing_out() then
              return key, { "timeout", value == nil, state:exists(), state:get() }
            end
            local was = state:get()
            state:update((was or 0) + value)
            return key, { "data", was == nil }
          end
          local got = H.with_context(cfg, function(ctx)
            local mapped = ctx:queue_stream(H.deep_copy(input), { pairs = true })
              :map_with_state { fn = fn, timeout = "2s", partitions = n }
            local out, snaps = {}, {}
            mapped:foreach_rdd(function(rdd) out[#out + 1] = rdd:collect() end)
            mapped:state_snapshots():foreach_rdd(function(rdd) snaps[#snaps + 1] = rdd:collect() end)
            ctx:start()
            ctx:advance(#input)
            return { out = out, snaps = snaps }
          end)
          local emitted, snapshots = K.map_with_state(input, fn, { timeout_ms = 2000 })
          for i = 1, #input do
            assert.are.same(K.multiset(emitted[i]), K.multiset(got.out[i]), "records of batch " .. i)
            assert.are.same(snapshots[i], unique_map(got.snaps[i]), "state after batch " .. i)
          end
          -- spelled out: "a" times out at 3000 ms, comes back fresh at 5000 ms, times out at 7000 ms
          assert.are.same({ { "a", { "timeout", true, true, 1 } } }, 
            H.ref.filter(got.out[3], function(kv) return kv[1] == "a" end))
          assert.are.same({ b = 2 }, unique_map(got.snaps[3]))
          assert.are.same({ { "a", { "data", true } } },
            H.ref.filter(got.out[5], function(kv) return kv[1] == "a" end))
          assert.are.same({ { "a", { "timeout", true, true, 5 } } },
            H.ref.filter(got.out[7], function(kv) return kv[1] == "a" end))
          assert.are.same({}, H.ref.filter(got.out[8], function(kv) return kv[1] == "a" end))
        end)

        it("state_snapshots gives a batch for every batch, empty ones included", function()
          local input = { {}, { { 1.5, 1 } }, {} }
          local got = H.with_context(cfg, function(ctx)
            local mapped = ctx:queue_stream(H.deep_copy(input), { pairs = true })
              :map_with_state { fn = function(k, v, st) st:set(v); return k, v end, partitions = n }
            local snaps, times = {}, {}
            mapped:state_snapshots():foreach_rdd(function(rdd, t)
              snaps[#snaps + 1] = rdd:collect()
              times[#times + 1] = t
            end)
            ctx:start()
            ctx:advance(3)
            return { snaps = snaps, times = times }
          end)
          assert.are.same({ {}, { { 1.5, 1 } }, { { 1.5, 1 } } }, got.snaps)
          assert.are.same(H.times(3), got.times)
        end)
      end)
    end)
  end
end

describe("keyed state errors", function()
  local NEEDLE = "keys must be strings, numbers or booleans"
  local function advance_error(build)
    local err
    H.with_context({ workers = 2, partitions = 2 }, function(ctx)
      local s = ctx:queue_stream({ { 1, 2, 3 } }):map(function(x)
        if x == 2 then return { n = x }, x end -- (a table with fields: arrays are composite keys)
        return x, x
      end)
      build(s):foreach_rdd(function(rdd) rdd:collect() end)
      ctx:start()
      local ok, e = pcall(ctx.advance, ctx, 1)
      if not ok then err = tostring(e) end
    end)
    return err
  end

  it("update_state_by_key rejects a table key naming the operator", function()
    local err = advance_error(function(s)
      return s:update_state_by_key(function(vs, st) return (st or 0) + #vs end)
    end)
    assert.is_truthy(err, "no error raised")
    assert.is_truthy(err:find("update_state_by_key", 1, true), err)
    assert.is_truthy(err:find(NEEDLE, 1, true), err)
  end)

  it("map_with_state rejects a table key naming the operator", function()
    local err = advance_error(function(s)
      return s:map_with_state { fn = function(k, v) return k, v end }
    end)
    assert.is_truthy(err, "no error raised")
    assert.is_truthy(err:find("map_with_state", 1, true), err)
    assert.is_truthy(err:find(NEEDLE, 1, true), err)
  end)
end)

describe("a million distinct keys #slow", function()
  it("keeps integer counts for 1,000,000 keys over 4 batches, then updates some", function()
    local N = 1000000
    local counts, sums, twos, samples, mem = {}, {}, {}, {}, {}
    local ctx = H.context({ workers = 4, partitions = 16, batch = "1s" })
    local ok, err = pcall(function()
      -- Lua memory of each worker VM, reported by tasks of the state's partitions (they run
      -- on the VM that keeps them); a full collection first. vm -> KiB.
      local vm_mem = ctx:accumulator({}, function(a, b)
        local t = {}
        for k, v in pairs(a) do t[k] = v end
        for k, v in pairs(b) do t[k] = v end
        return t
      end)
      local state = ctx:rate_stream { rows_per_second = 250000 }
        -- batches 1-4: keys 0..999999 once each; batches 5-6: every 100th key of 0..499999
        :filter(function(i) return i < N or i % 100 == 0 end)
        :map(function(i)
          if i < N then return i, 1 end
          return i - N, 1
        end)
        :update_state_by_key(function(values, c)
          c = c or 0
          for i = 1, #values do c = c + values[i] end
          return c
        end, 16)
      state:foreach_rdd(function(rdd, time)
        local b = time / 1000
        counts[b] = rdd:count()
        if b == 1 or b == 4 then
          vm_mem.value = {}
          rdd:filter(function() return false end):foreach_partition(function()
            collectgarbage("collect")
            local id = rawget(_G, "__state_spec_vm")
            if not id then
              id = tostring({})
              rawset(_G, "__state_spec_vm", id)
            end
            vm_mem:add({ [id] = collectgarbage("count") })
          end)
          local total = 0
          for _, kb in pairs(vm_mem.value) do total = total + kb end
          mem[b] = { total = total, vms = H.size(vm_mem.value) }
        end
        if b >= 4 then
          sums[b] = rdd:map(function(_, v) return v end):reduce(add)
          twos[b] = rdd:filter(function(_, v) return v == 2 end):count()
          samples[b] = H.to_map(rdd:filter(function(k) return k % 99991 == 0 end):collect())
        end
      end)
      ctx:start()
      ctx:advance(6)
    end)
    pcall(ctx.stop, ctx)
    if not ok then error(err, 0) end
    assert.are.same({ 250000, 500000, 750000, N, N, N }, counts)
    assert.are.equal(N, sums[4])
    assert.are.equal(N + 5000, sums[6])
    assert.are.equal(0, twos[4])
    assert.are.equal(2500, twos[5])
    assert.are.equal(5000, twos[6])
    local expected = {}
    for k = 0, N - 1, 99991 do expected[k] = 1 end
    assert.are.same(expected, samples[4])
    expected[0] = 2 -- 0 is the only sampled multiple of 100 below 500000
    assert.are.same(expected, samples[6])
    if mem[1] and mem[4] then
      print(("\n[state_spec] worker Lua memory: %.1f MiB with 250k keys, %.1f MiB with 1M keys "
        .. "(%d VMs seen) => %.0f bytes per key"):format(mem[1].total / 1024, mem[4].total / 1024,
        mem[4].vms, (mem[4].total - mem[1].total) * 1024 / (N - 250000)))
    end
  end)
end)

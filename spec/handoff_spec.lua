-- A map side's bucket handed to a reduce task of the same worker VM as Lua values
-- (lua/dstream/worker/handoff.lua): with one reduce partition the reduce task starts from the
-- table the map side kept; with several, a stateful stage or a plain shuffle's reduce task
-- reads the arrays of the buckets its worker's map tasks kept.
-- What a user can observe is that the results are the same as through the bytes: merges of
-- several map tasks, in-place changes of the values, a task that fails after changing or
-- reading what it took and is retried, running counts, composite keys, and windows.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

-- A plain Lua reference: key -> sorted list of the values.
local function grouped(pairs_list)
  local out = {}
  for _, p in ipairs(pairs_list) do
    local l = out[p[1]] or {}
    out[p[1]] = l
    l[#l + 1] = p[2]
  end
  for _, l in pairs(out) do table.sort(l) end
  return out
end

local function input(n)
  local list, words = {}, H.random_words(n, 7)
  for i = 1, n do list[i] = { words[i], i } end
  return list
end

local function as_sorted_map(collected)
  local out = {}
  for _, p in ipairs(collected) do
    local l = {}
    for i, v in ipairs(p[2]) do l[i] = v end
    table.sort(l)
    out[p[1]] = l
  end
  return out
end

-- rdd:combine_by_key into lists of the values in n partitions, the merge appending in place
-- (so a retry that started from a table an attempt had changed would count values twice);
-- with a `marker` file present, the first merge removes it and fails once.
local function combine_lists(rdd, n, marker)
  return rdd:combine_by_key(function(v) return { v } end,
    function(c, v) c[#c + 1] = v return c end,
    function(a, b)
      for _, v in ipairs(b) do a[#a + 1] = v end
      local fh = marker and io.open(marker)
      if fh then
        fh:close()
        os.remove(marker)
        error("injected failure")
      end
      return a
    end, n)
end

describe("a map side's table handed to the reduce task of its worker", function()
  for _, cfg in ipairs({ { workers = 1, maps = 1 }, { workers = 1, maps = 3 }, { workers = 2, maps = 3 } }) do
    it(("gives what the bytes give: lists merged in place (workers=%d, map tasks=%d)")
      :format(cfg.workers, cfg.maps), function()
      local list = input(3000)
      local got = H.with_context({ workers = cfg.workers }, function(ctx)
        return combine_lists(ctx:parallelize(list, cfg.maps, { pairs = true }), 1):collect()
      end)
      assert.are.same(grouped(list), as_sorted_map(got))
    end)
  end

  -- The reduce task changes the kept table in place (merge_combiners appends to it), then fails
  -- once: its retry must read the map side's bytes, not the table the failed attempt changed
  -- (each value would be counted twice).
  it("a reduce task retried after changing the table in place starts from the bytes", function()
    local list = input(2000)
    local marker = os.tmpname()
    local got = H.with_context({ workers = 1 }, function(ctx)
      return combine_lists(ctx:parallelize(list, 2, { pairs = true }), 1, marker):collect()
    end)
    assert.is_nil(io.open(marker), "the injected failure happened")
    assert.are.same(grouped(list), as_sorted_map(got))
  end)

  -- With several partitions, a stateful stage's map side keeps the buckets whose state lives
  -- on its own worker (partition p on worker p % workers); the state task reads those arrays.
  -- The update fails once after reading them: the retry reads the bytes.
  for _, cfg in ipairs({ { workers = 2, partitions = 2 }, { workers = 2, partitions = 5 } }) do
    it(("running counts read the kept buckets, also in a retried task (workers=%d, partitions=%d)")
      :format(cfg.workers, cfg.partitions), function()
      local batches, want = {}, {}
      for b = 1, 4 do
        local batch = {}
        for i = 1, 3000 do batch[i] = { "k" .. (i * b * 7919) % 1013, i % 5 } end
        batches[b] = batch
      end
      local running = {}
      for b = 1, #batches do
        for _, p in ipairs(batches[b]) do running[p[1]] = (running[p[1]] or 0) + p[2] end
        local copy = {}
        for k, v in pairs(running) do copy[k] = v end
        want[b] = copy
      end
      local marker = os.tmpname()
      local results = H.run(cfg, batches, function(s)
        return s:update_state_by_key(function(values, state)
          local n = state or 0
          for i = 1, #values do n = n + values[i] end
          local fh = io.open(marker)
          if fh then
            fh:close()
            os.remove(marker)
            error("injected failure")
          end
          return n
        end)
      end, { queue = { pairs = true } })
      assert.is_nil(io.open(marker), "the injected failure happened")
      for b = 1, #batches do assert.are.same(want[b], H.to_map(results[b]), "batch " .. b) end
    end)
  end

  -- A plain shuffle with several partitions: reduce partition r prefers worker r % workers,
  -- whose map tasks kept their buckets for it. The merge appends to the kept values in place
  -- and fails once: the retry reads the bytes. Results equal one worker's and plain Lua's.
  for _, cfg in ipairs({ { workers = 2, partitions = 2 }, { workers = 2, partitions = 5 } }) do
    it(("a plain shuffle's reduce reads its worker's kept buckets, also when retried (workers=%d, partitions=%d)")
      :format(cfg.workers, cfg.partitions), function()
      local list = input(4000)
      local function run(workers, fail)
        local marker = os.tmpname()
        if not fail then os.remove(marker) end
        local got = H.with_context({ workers = workers }, function(ctx)
          local rdd = ctx:parallelize(list, 4, { pairs = true })
          local combined = combine_lists(rdd, cfg.partitions, marker):collect()
          local groups = rdd:group_by_key(cfg.partitions):collect()
          return { combined = combined, groups = groups }
        end)
        assert.is_nil(io.open(marker), "the injected failure happened")
        return got
      end
      local two, one = run(cfg.workers, true), run(1, false)
      assert.are.same(grouped(list), as_sorted_map(two.combined))
      assert.are.same(grouped(list), as_sorted_map(two.groups))
      assert.are.same(as_sorted_map(one.combined), as_sorted_map(two.combined))
      assert.are.same(as_sorted_map(one.groups), as_sorted_map(two.groups))
    end)
  end

  -- Preferring a worker is not pinning to it: while one worker is stuck (a task that outran
  -- task_timeout in compiled code, given up on and still running), the reduce tasks that
  -- prefer it run on the other worker, and give what one worker gives.
  -- At max_task_attempts = 1 and at the default (4): a task whose worker is abandoned is not
  -- tried again either way (see the guide's "Tasks that never end"), and worker W stays stuck
  -- while the shuffle after it runs.
  for _, attempts in ipairs({ 1, "default" }) do
    it("a reduce task that prefers a stuck worker runs on the other one (max_task_attempts: "
      .. attempts .. ")", function()
      local list = input(3000)
      local marker = os.tmpname()
      os.remove(marker)
      local ctx = H.dstream().context({ workers = 2, task_timeout = "200ms", clock = "manual",
        batch = "1s", max_task_attempts = attempts ~= "default" and attempts or nil, progress = false })
      local ok, res = pcall(function()
        -- Worker W spins for 3 s in a compiled loop (no hook stops it), then leaves a marker.
        local stuck_ok, stuck_err = pcall(function()
          ctx:parallelize({ 1 }, 1):map(function(x)
            local ffi = require("ffi")
            pcall(ffi.cdef, "long time(void *);")
            local deadline = ffi.C.time(nil) + 3
            while ffi.C.time(nil) < deadline do end
            local fh = io.open(marker, "w")
            fh:close()
            return x
          end):collect()
        end)
        assert.is_false(stuck_ok)
        assert.matches("abandoned", tostring(stuck_err))
        local got = ctx:parallelize(list, 4, { pairs = true }):group_by_key(4):collect()
        return { got = got, back = io.open(marker) ~= nil }
      end)
      -- Before stopping: let W come back (its loop ends) so no thread spins on.
      for _ = 1, 100 do
        if io.open(marker) then break end
        os.execute("sleep 0.1")
      end
      os.remove(marker)
      pcall(ctx.stop, ctx)
      assert(ok, res)
      assert.is_false(res.back, "the reduce tasks waited for the stuck worker")
      assert.are.same(grouped(list), as_sorted_map(res.got))
    end)
  end

  it("counts composite keys and windows as the bytes do", function()
    local batches = {}
    for b = 1, 6 do
      local batch = {}
      for i = 1, 500 do batch[i] = { { "k", (i * b) % 37 }, 1 } end
      batches[b] = batch
    end
    local function run(workers, partitions)
      return H.run({ workers = workers, partitions = partitions }, batches, function(s)
        return s:reduce_by_key_and_window(function(a, b) return a + b end, "3s", "1s",
          { inverse = function(a, b) return a - b end, filter = function(_, n) return n > 0 end })
      end, { queue = { pairs = true } })
    end
    -- Reference: plain Lua sums over the last 3 batches, by "k:n".
    local want = {}
    for b = 1, #batches do
      local m = {}
      for w = math.max(1, b - 2), b do
        for _, p in ipairs(batches[w]) do
          local k = p[1][1] .. ":" .. p[1][2]
          m[k] = (m[k] or 0) + p[2]
        end
      end
      want[b] = m
    end
    -- { 2, 2 }: each worker's own partition starts from its map side's table
    for _, shape in ipairs({ { 1, 1 }, { 2, 3 }, { 2, 2 } }) do
      local results = run(shape[1], shape[2])
      for b = 1, #batches do
        local m = {}
        for _, p in ipairs(results[b]) do m[p[1][1] .. ":" .. p[1][2]] = p[2] end
        assert.are.same(want[b], m, ("batch %d, workers=%d"):format(b, shape[1]))
      end
    end
  end)
end)

-- A map side's bucket handed to a reduce task of the same worker VM as Lua values
-- (lua/dstream/worker/handoff.lua): with one reduce partition the reduce task starts from the
-- table the map side kept; a stateful stage reads the arrays of the buckets its worker owns.
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

describe("a map side's table handed to the reduce task of its worker", function()
  for _, cfg in ipairs({ { workers = 1, maps = 1 }, { workers = 1, maps = 3 }, { workers = 2, maps = 3 } }) do
    it(("gives what the bytes give: lists merged in place (workers=%d, map tasks=%d)")
      :format(cfg.workers, cfg.maps), function()
      local list = input(3000)
      local got = H.with_context({ workers = cfg.workers }, function(ctx)
        return ctx:parallelize(list, cfg.maps, { pairs = true })
          :combine_by_key(function(v) return { v } end,
            function(c, v) c[#c + 1] = v return c end,
            function(a, b) for _, v in ipairs(b) do a[#a + 1] = v end return a end, 1)
          :collect()
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
      return ctx:parallelize(list, 2, { pairs = true })
        :combine_by_key(function(v) return { v } end,
          function(c, v) c[#c + 1] = v return c end,
          function(a, b)
            for _, v in ipairs(b) do a[#a + 1] = v end
            local fh = io.open(marker)
            if fh then
              fh:close()
              os.remove(marker)
              error("injected failure")
            end
            return a
          end, 1)
        :collect()
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
    for _, shape in ipairs({ { 1, 1 }, { 2, 3 } }) do
      local results = run(shape[1], shape[2])
      for b = 1, #batches do
        local m = {}
        for _, p in ipairs(results[b]) do m[p[1][1] .. ":" .. p[1][2]] = p[2] end
        assert.are.same(want[b], m, ("batch %d, workers=%d"):format(b, shape[1]))
      end
    end
  end)
end)

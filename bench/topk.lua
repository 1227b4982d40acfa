-- bench/topk.lua: the 10 most frequent words of every batch. The corpus is cut into BATCHES
-- batches of consecutive lines (1 s batches on the manual clock, run as fast as they go);
-- each batch's words are counted (reduce_by_key), each partition keeps its top 10, and the
-- driver merges them.
--   dstream bench/topk.lua dstream CORPUS BATCHES WORKERS
--   luajit  bench/topk.lua bare    CORPUS BATCHES
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local mode, path, nbatches, workers = arg[1], arg[2], tonumber(arg[3] or 60), tonumber(arg[4] or 1)
if mode == "bare" then lib.use_stdlib() end
local text = require("dstream.text")
local K = 10

-- User code ---------------------------------------------------------------------------------
local function split(line) return text.words(line) end
local function pair(w) return w, 1 end
local function add(a, b) return a + b end
local function before(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end
-- The K largest (word, count) pairs of an iterator, largest first.
local function top_k(iter)
  local top, n = {}, 0
  for w, c in iter do
    if n < K or c >= top[n][2] then
      local e = { w, c }
      if n < K then n = n + 1 end
      local i = n
      while i > 1 and before(e, top[i - 1]) do
        top[i] = top[i - 1]
        i = i - 1
      end
      top[i] = e
    end
  end
  return top
end
-- The K largest of several partitions' lists.
local function merge(lists)
  local all = {}
  for _, l in ipairs(lists) do for _, e in ipairs(l) do all[#all + 1] = e end end
  table.sort(all, before)
  local top = {}
  for i = 1, math.min(K, #all) do top[i] = all[i] end
  return top
end
-----------------------------------------------------------------------------------------------

local lines, secs, cpu, driver_cpu, checksum = 0, nil, nil, nil, 0
local function check(top) -- a checksum of the winners: the sum of their counts
  for _, e in ipairs(top) do checksum = checksum + e[2] end
end

if mode == "bare" then
  local p, n = lib.corpus_records(path)
  local t0, c0
  lines = lib.word_batches(p, n, nbatches, split, pair, add, function(counts)
    local k
    check(merge { top_k(function()
      local v
      k, v = next(counts, k)
      return k, v
    end) })
  end, false, function()
    lib.start_together() -- bench/run's "2 copies" ceiling: the copies' clocks start together
    t0, c0 = lib.now(), lib.cpu()
  end)
  secs, cpu = lib.now() - t0, lib.cpu() - c0
else
  local dstream = require("dstream")
  local ctx = dstream.context { batch = "1s", workers = workers, partitions = workers, clock = "manual" }
  -- The batches as lines in C memory, read before the clock starts (lib.batch_rdds).
  local batches
  batches, lines = lib.batch_rdds(ctx, path, nbatches, workers)
  collectgarbage()
  ctx:queue_stream(batches)
    :flat_map(split):map(pair):reduce_by_key(add)
    :foreach_rdd(function(rdd)
      local lists = rdd:map_partitions(function(iter) return { top_k(iter) } end):collect()
      check(merge(lists))
    end)
  ctx:start()
  local t0, c0, d0 = lib.now(), lib.cpu(), lib.thread_cpu()
  ctx:advance(nbatches)
  secs, cpu, driver_cpu = lib.now() - t0, lib.cpu() - c0, lib.thread_cpu() - d0
  ctx:stop()
end

lib.result {
  { "workload", "topk" }, { "impl", lib.impl(mode, workers) },
  { "records", lines }, { "batches", nbatches }, { "checksum", checksum }, { "secs", secs }, { "cpu", cpu },
  { "driver_cpu", driver_cpu },
}

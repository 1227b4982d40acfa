-- bench/wordcount.lua: word count over the corpus, as a static dataset (ctx:text_file).
--   dstream bench/wordcount.lua dstream CORPUS gmatch|words WORKERS
--   luajit  bench/wordcount.lua bare    CORPUS gmatch|words
-- The user code (split, pair, add, summary) is the same in both; the result line gives the
-- lines, words and distinct words (checked against the C baseline by bench/run), the time of
-- the computation and the CPU time of the process during it. Loading the file is timed apart.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local mode, path, how, workers = arg[1], arg[2], arg[3] or "words", tonumber(arg[4] or 1)
if mode == "bare" then lib.use_stdlib() end

-- User code (bench/wordcount_user.lua) -------------------------------------------------------
local user = require("wordcount_user")(how)
local split, pair, add, summary = user.split, user.pair, user.add, user.summary
-----------------------------------------------------------------------------------------------

local lines, distinct, total, secs, cpu, load_secs, driver_cpu

if mode == "bare" then
  local t = lib.now()
  local p, n = lib.corpus_records(path)
  load_secs = lib.now() - t
  lib.start_together()
  local t0, c0 = lib.now(), lib.cpu()
  local counts, nlines = {}, 0
  lib.for_lines(p, n, function(line)
    nlines = nlines + 1
    for w in split(line) do
      local k, v = pair(w)
      local old = counts[k]
      if old == nil then counts[k] = v else counts[k] = add(old, v) end
    end
  end)
  local k
  local s = summary(function()
    local v
    k, v = next(counts, k)
    return k, v
  end)[1]
  secs, cpu = lib.now() - t0, lib.cpu() - c0
  lines, distinct, total = nlines, s[1], s[2]
else
  local ctx, data
  ctx, data, load_secs = lib.static_dataset(path, workers)
  local t0, c0, d0 = lib.now(), lib.cpu(), lib.thread_cpu()
  local parts = data:flat_map(split):map(pair):reduce_by_key(add):map_partitions(summary):collect()
  secs, cpu, driver_cpu = lib.now() - t0, lib.cpu() - c0, lib.thread_cpu() - d0
  distinct, total = 0, 0
  for _, s in ipairs(parts) do
    distinct, total = distinct + s[1], total + s[2]
  end
  lines = data:count()
  ctx:stop()
end

lib.result {
  { "workload", "wordcount" }, { "impl", lib.impl(mode, workers) },
  { "variant", how }, { "records", lines }, { "words", total }, { "distinct", distinct },
  { "secs", secs }, { "cpu", cpu }, { "load_secs", load_secs },
  { "driver_cpu", driver_cpu },
}

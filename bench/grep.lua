-- bench/grep.lua: grep over the corpus as a static dataset: the lines containing a string.
--   dstream bench/grep.lua dstream CORPUS NEEDLE WORKERS
--   luajit  bench/grep.lua bare    CORPUS NEEDLE
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local mode, path, needle, workers = arg[1], arg[2], arg[3] or "zyx", tonumber(arg[4] or 1)

-- User code ---------------------------------------------------------------------------------
local function matches(line) return line:find(needle, 1, true) ~= nil end
-----------------------------------------------------------------------------------------------

local lines, matched, secs, cpu, load_secs, driver_cpu
if mode == "bare" then
  local t = lib.now()
  local p, n = lib.corpus_records(path)
  load_secs = lib.now() - t
  lib.start_together()
  local t0, c0 = lib.now(), lib.cpu()
  local nlines, count = 0, 0
  lib.for_lines(p, n, function(line)
    nlines = nlines + 1
    if matches(line) then count = count + 1 end
  end)
  secs, cpu = lib.now() - t0, lib.cpu() - c0
  lines, matched = nlines, count
else
  local ctx, data
  ctx, data, load_secs = lib.static_dataset(path, workers)
  local t0, c0, d0 = lib.now(), lib.cpu(), lib.thread_cpu()
  matched = data:filter(matches):count()
  secs, cpu, driver_cpu = lib.now() - t0, lib.cpu() - c0, lib.thread_cpu() - d0
  lines = data:count()
  ctx:stop()
end

lib.result {
  { "workload", "grep" }, { "impl", lib.impl(mode, workers) },
  { "records", lines }, { "matched", matched }, { "secs", secs }, { "cpu", cpu }, { "load_secs", load_secs },
  { "driver_cpu", driver_cpu },
}

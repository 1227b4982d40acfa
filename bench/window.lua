-- bench/window.lua: windowed word count: counts over the last 30 s, every second (1 s batches),
-- incrementally from panes with an inverse function, as Spark's sliding word count. The
-- corpus is cut into BATCHES batches of consecutive lines, run on the manual clock as fast as
-- they go; every window's distinct words are counted on the driver.
--   dstream bench/window.lua dstream CORPUS BATCHES WORKERS
--   luajit  bench/window.lua bare    CORPUS BATCHES
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local mode, path, nbatches, workers = arg[1], arg[2], tonumber(arg[3] or 60), tonumber(arg[4] or 1)
if mode == "bare" then lib.use_stdlib() end
local text = require("dstream.text")
local WINDOW = 30 -- batches

-- User code ---------------------------------------------------------------------------------
local function split(line) return text.words(line) end
local function pair(w) return w, 1 end
local function add(a, b) return a + b end
local function sub(a, b) return a - b end
local function positive(_, n) return n > 0 end
-----------------------------------------------------------------------------------------------

local lines, secs, cpu, driver_cpu, checksum = 0, nil, nil, nil, 0

if mode == "bare" then
  local p, n = lib.corpus_records(path)
  local t0, c0
  local panes, running, b = {}, {}, 1
  lines = lib.word_batches(p, n, nbatches, split, pair, add, function(pane)
    panes[b] = pane
    for k, v in pairs(pane) do
      local old = running[k]
      if old == nil then running[k] = v else running[k] = add(old, v) end
    end
    local expired = panes[b - WINDOW]
    if expired then
      for k, v in pairs(expired) do running[k] = sub(running[k], v) end
      panes[b - WINDOW] = nil
    end
    local distinct = 0
    for k, v in pairs(running) do
      if positive(k, v) then distinct = distinct + 1 else running[k] = nil end
    end
    checksum = checksum + distinct
    b = b + 1
  end, true, function()
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
    :flat_map(split):map(pair)
    :reduce_by_key_and_window(add, WINDOW .. "s", "1s", { inverse = sub, filter = positive })
    :foreach_rdd(function(rdd) checksum = checksum + rdd:count() end)
  ctx:start()
  local t0, c0, d0 = lib.now(), lib.cpu(), lib.thread_cpu()
  ctx:advance(nbatches)
  secs, cpu, driver_cpu = lib.now() - t0, lib.cpu() - c0, lib.thread_cpu() - d0
  ctx:stop()
end

lib.result {
  { "workload", "window" }, { "impl", lib.impl(mode, workers) },
  { "records", lines }, { "batches", nbatches }, { "checksum", checksum }, { "secs", secs }, { "cpu", cpu },
  { "driver_cpu", driver_cpu },
}

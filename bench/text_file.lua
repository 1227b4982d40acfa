-- bench/text_file.lua: word count over the corpus read by ctx:text_file itself, lazily: each
-- task reads its blocks of the file (no load before the clock starts, unlike wordcount.lua's
-- static dataset). The RSS column of its row shows the memory this takes: blocks in flight,
-- not the file.
--   dstream bench/text_file.lua CORPUS WORKERS [VARIANT]
-- VARIANT labels the result (bench/run's memory row over a large corpus: "large").
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local path, workers, variant = arg[1], tonumber(arg[2] or 1), arg[3]
local user = require("wordcount_user")("words")
local split, pair, add, summary = user.split, user.pair, user.add, user.summary

local dstream = require("dstream")
local ctx = dstream.context { workers = workers, partitions = workers, clock = "manual" }
ctx:parallelize({ 1 }):count() -- the workers are up
local t0, c0, d0 = lib.now(), lib.cpu(), lib.thread_cpu()
local data = ctx:text_file(path)
local parts = data:flat_map(split):map(pair):reduce_by_key(add):map_partitions(summary):collect()
local secs, cpu, driver_cpu = lib.now() - t0, lib.cpu() - c0, lib.thread_cpu() - d0
local distinct, total = 0, 0
for _, s in ipairs(parts) do distinct, total = distinct + s[1], total + s[2] end
local lines = data:count()
ctx:stop()
lib.result {
  { "workload", "text_file" }, { "impl", lib.impl("dstream", workers) }, { "variant", variant },
  { "bytes", lib.file_size(path) }, { "records", lines },
  { "words", total }, { "distinct", distinct }, { "secs", secs }, { "cpu", cpu },
  { "driver_cpu", driver_cpu },
}

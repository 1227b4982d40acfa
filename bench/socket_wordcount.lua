-- bench/socket_wordcount.lua: word count of a text stream from a local TCP socket. bench/gen
-- serves the corpus on 127.0.0.1:PORT as fast as it is read; socket_text_stream reads it
-- into 250 ms batches; each batch's words are counted (reduce_by_key) and summed on the
-- driver. The time runs from ctx:start() until the batch holding the last line is done.
--   dstream bench/socket_wordcount.lua PORT LINES WORKERS
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local dstream = require("dstream")
local port, expected, workers = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3] or 2)

-- User code (bench/wordcount_user.lua, as bench/wordcount.lua) ------------------------------
local user = require("wordcount_user")("words")
local split, pair, add, summary = user.split, user.pair, user.add, user.summary
-----------------------------------------------------------------------------------------------

local ctx = dstream.context { batch = "250ms", workers = workers, partitions = workers }
local words, lines, t0, c0, d0, t_end, c_end, d_end, batches = 0, 0, nil, nil, nil, nil, nil, nil, 0
ctx:socket_text_stream("127.0.0.1", port)
  :flat_map(split):map(pair):reduce_by_key(add)
  :foreach_rdd(function(rdd)
    for _, s in ipairs(rdd:map_partitions(summary):collect()) do words = words + s[2] end
  end)
ctx:on_batch_completed(function(info)
  lines, batches = lines + (info.records or 0), batches + 1
  if lines >= expected and not t_end then
    t_end, c_end, d_end = lib.now(), lib.cpu(), lib.thread_cpu()
    ctx:stop()
  end
end)
t0, c0, d0 = lib.now(), lib.cpu(), lib.thread_cpu()
ctx:start()
ctx:await_termination(300)
if not t_end then error("timed out: " .. lines .. " of " .. expected .. " lines received") end

lib.result {
  { "workload", "socket_wordcount" }, { "impl", "dstream-" .. workers .. "w" },
  { "records", lines }, { "words", words }, { "batches", batches },
  { "secs", t_end - t0 }, { "cpu", c_end - c0 },
  { "driver_cpu", d_end - d0 },
}

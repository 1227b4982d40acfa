-- bench/latency.lua: end-to-end latency of a steady socket stream. `bench/gen paced` sends RATE
-- lines per second to 127.0.0.1:PORT, each starting with its send time (wall clock, us). The
-- job parses the time of every record, counts the records per 100 us of send time
-- (reduce_by_key), and collects the counts in foreach_rdd on the driver; when the collect
-- returns, each record's latency is now - its send time (record sent, and so received over
-- loopback, to its batch's output done). Records sent in the first WARMUP seconds are not
-- counted. Prints p50 and p99 (ms) and the rate reached.
--   dstream bench/latency.lua PORT BATCH TOTAL_RECORDS WARMUP_SECS WORKERS
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local dstream = require("dstream")
local port, batch, total, warmup, workers = tonumber(arg[1]), arg[2], tonumber(arg[3]),
  tonumber(arg[4] or 1), tonumber(arg[5] or 2)

-- User code ---------------------------------------------------------------------------------
local sub, floor, tonumber = string.sub, math.floor, tonumber
local function send_bucket(line) return floor(tonumber(sub(line, 1, 16)) / 100), 1 end
local function add(a, b) return a + b end
-----------------------------------------------------------------------------------------------

local ctx = dstream.context { batch = batch, workers = workers, partitions = workers }
local hist = {}            -- latency in units of 0.1 ms -> records
local seen, counted = 0, 0
local first_us, last_us, start_us
local t_end, c0, c_end
ctx:socket_text_stream("127.0.0.1", port)
  :map(send_bucket):reduce_by_key(add)
  :foreach_rdd(function(rdd)
    local buckets = rdd:collect()
    local done = lib.wall_us()
    for _, b in ipairs(buckets) do
      local sent_us, n = b[1] * 100 + 50, b[2]
      seen = seen + n
      first_us = math.min(first_us or sent_us, sent_us)
      last_us = math.max(last_us or sent_us, sent_us)
      start_us = start_us or first_us
      if sent_us >= first_us + warmup * 1e6 then
        local l = math.max(0, floor((done - sent_us) / 100))
        hist[l] = (hist[l] or 0) + n
        counted = counted + n
      end
    end
    if seen >= total and not t_end then
      t_end, c_end = lib.now(), lib.cpu()
      ctx:stop()
    end
  end)
c0 = lib.cpu()
local t0 = lib.now()
ctx:start()
ctx:await_termination(600)
if not t_end then error("timed out: " .. seen .. " of " .. total .. " records") end

local function percentile(p)
  local keys = {}
  for l in pairs(hist) do keys[#keys + 1] = l end
  table.sort(keys)
  local want, acc = p * counted, 0
  for _, l in ipairs(keys) do
    acc = acc + hist[l]
    if acc >= want then return l / 10 end
  end
  return 0 / 0
end

local span = (last_us - first_us) / 1e6
lib.result {
  { "workload", "latency" }, { "impl", "dstream-" .. workers .. "w" }, { "batch", batch },
  { "records", seen }, { "counted", counted }, { "rate", seen / span },
  { "p50_ms", percentile(0.50) }, { "p99_ms", percentile(0.99) },
  { "secs", t_end - t0 }, { "cpu", c_end - c0 },
}

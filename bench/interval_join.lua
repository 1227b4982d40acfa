-- bench/interval_join.lua: an event-time interval join whose state holds many keys (a long
-- `within`) while each batch brings few records: the per-batch cost of the keyed stage should
-- follow the batch's records and the entries expiring, not the keys held. BATCHES batches of
-- RECORDS records per side on the manual clock; each record a new key (a click and a view of
-- one id, 100 ms apart), so the state holds RECORDS keys per second of `within` (WITHIN s).
--   dstream bench/interval_join.lua [BATCHES] [RECORDS] [WITHIN] [WORKERS]
-- Prints the time of the first half and of the second half of the batches (the state grows
-- during the first WITHIN batches, then holds about WITHIN * RECORDS keys).
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local dstream = require("dstream")
local nbatches, nrec, within, workers = tonumber(arg[1] or 120), tonumber(arg[2] or 5000),
  tonumber(arg[3] or 60), tonumber(arg[4] or 1)

-- Batch b's records of one side: ids (b - 1) * nrec + 1 .. b * nrec, at time b s (+ 100 ms
-- on the right).
local function side(shift)
  local batches = {}
  for b = 1, nbatches do
    local t = {}
    for i = 1, nrec do t[i] = { (b - 1) * nrec + i, b * 1000 + shift } end
    batches[b] = t
  end
  return batches
end

local ctx = dstream.context { batch = "1s", clock = "manual", workers = workers }
local clicks = ctx:queue_stream(side(0)):map(function(r) return r[1], r[2] end)
  :event_time(function(_, ts) return ts end, { watermark = "1s" })
local views = ctx:queue_stream(side(100)):map(function(r) return r[1], r[2] end)
  :event_time(function(_, ts) return ts end, { watermark = "1s" })
local pairs_seen = 0
clicks:join(views, { within = within .. "s", partitions = workers })
  :foreach_rdd(function(rdd) pairs_seen = pairs_seen + rdd:count() end)
ctx:start()
local half = math.floor(nbatches / 2)
local t0, c0 = lib.now(), lib.cpu()
ctx:advance(half)
local t1, c1 = lib.now(), lib.cpu()
ctx:advance(nbatches - half)
local t2, c2 = lib.now(), lib.cpu()
ctx:stop()
assert(pairs_seen == nbatches * nrec, "pairs: " .. pairs_seen)
lib.result {
  { "workload", "interval_join" }, { "impl", "dstream-" .. workers .. "w" },
  { "records", 2 * nbatches * nrec }, { "within_s", within },
  { "first_half_secs", t1 - t0 }, { "second_half_secs", t2 - t1 },
  { "secs", t2 - t0 }, { "cpu", c2 - c0 },
}

-- bench/state.lua: running per-key counts over KEYS string keys with update_state_by_key.
-- Every batch has KEYS records (the integers of rate_stream, mapped to keys "u<n>" so that each
-- batch touches every key once, in an order of its own, as users or sessions come in another
-- order each batch: the same order every batch, the one the first batch made the strings in,
-- let one VM walk its heap in address order, see docs/performance.md); BATCHES batches run on
-- the manual clock as fast as they go.
-- Memory: the worker's Lua bytes (after full collections) per key, minus the key's own bytes
-- (a LuaJIT string: 24 bytes of header, the characters and a NUL).
--   dstream bench/state.lua dstream KEYS BATCHES WORKERS [VARIANT]
-- VARIANT labels the result (bench/run's memory row with more keys: "large").
--   luajit  bench/state.lua bare    KEYS BATCHES
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local lib = require("lib")
local mode, nkeys, nbatches, workers = arg[1], tonumber(arg[2] or 1000000), tonumber(arg[3] or 4),
  tonumber(arg[4] or 1)
local variant = arg[5]

-- User code ---------------------------------------------------------------------------------
local NKEYS = nkeys
-- Batch b's records (i from b * NKEYS) visit every key once, in the order of a stride of its
-- own: a prime, so a bijection of 0 .. NKEYS - 1 (KEYS has no other factors than 2 and 5).
local STRIDES = { 7919, 104729, 224737, 350377, 479909, 611953, 746773, 882377 }
local function key_of(i)
  return "u" .. (i * STRIDES[math.floor(i / NKEYS) % 8 + 1] % NKEYS), 1
end
local function update(values, state)
  local n = state or 0
  for i = 1, #values do n = n + values[i] end
  return n
end
-----------------------------------------------------------------------------------------------

local function key_bytes(n) -- the average size of the strings "u0" .. "u<n-1>" as LuaJIT strings
  local total, digits, lo = 0, 1, 0
  while lo < n do
    local hi = math.min(n, 10 ^ digits)
    total = total + (hi - lo) * (24 + 1 + digits + 1)
    lo, digits = hi, digits + 1
  end
  return total / n
end

local records, secs, cpu, driver_cpu, keys, sum, bytes_per_key
if mode == "bare" then
  collectgarbage()
  collectgarbage()
  local before = collectgarbage("count") * 1024
  lib.start_together()
  local t0, c0 = lib.now(), lib.cpu()
  local states = {}
  for b = 0, nbatches - 1 do
    -- The values of each key in this batch, then the update of every key (as dstream does).
    local values = {}
    for i = b * nkeys, (b + 1) * nkeys - 1 do
      local k, v = key_of(i)
      local list = values[k]
      if list == nil then values[k] = { v } else list[#list + 1] = v end
    end
    local new = {}
    for k, s in pairs(states) do
      local x = update(values[k] or {}, s)
      if x ~= nil then new[k] = x end
    end
    for k, list in pairs(values) do
      if states[k] == nil then
        local x = update(list, nil)
        if x ~= nil then new[k] = x end
      end
    end
    states = new
  end
  secs, cpu = lib.now() - t0, lib.cpu() - c0
  collectgarbage()
  collectgarbage()
  local after = collectgarbage("count") * 1024
  keys, sum = 0, 0
  for _, s in pairs(states) do keys, sum = keys + 1, sum + s end
  bytes_per_key = (after - before) / keys
else
  local dstream = require("dstream")
  local ctx = dstream.context { batch = "1s", workers = workers, partitions = workers, clock = "manual" }
  local last = nbatches * ctx.batch_ms
  ctx:rate_stream { rows_per_second = nkeys }
    :map(key_of)
    :update_state_by_key(update)
    :foreach_rdd(function(rdd, time)
      if time == last then
        local parts = rdd:map_partitions(function(iter)
          local n, total = 0, 0
          for _, s in iter do n, total = n + 1, total + s end
          return { { n, total } }
        end):collect()
        keys, sum = 0, 0
        for _, p in ipairs(parts) do keys, sum = keys + p[1], sum + p[2] end
      end
    end)
  local pool = ctx.sched.pool
  local function worker_bytes() -- Lua bytes of every worker after two full collections each
    for _ = 1, workers * 4 do -- tasks land on any worker: enough of them to reach every one
      ctx:parallelize({ 1 }, 1):foreach(function() collectgarbage() collectgarbage() end)
    end
    local total = 0
    for w = 0, workers - 1 do total = total + pool:worker_memory(w) end
    return total
  end
  ctx:start()
  local before = worker_bytes()
  local t0, c0, d0 = lib.now(), lib.cpu(), lib.thread_cpu()
  ctx:advance(nbatches)
  secs, cpu, driver_cpu = lib.now() - t0, lib.cpu() - c0, lib.thread_cpu() - d0
  bytes_per_key = (worker_bytes() - before) / keys
  ctx:stop()
end
records = nkeys * nbatches

lib.result {
  { "workload", "state" }, { "impl", lib.impl(mode, workers) }, { "variant", variant },
  { "records", records }, { "keys", keys }, { "sum", sum }, { "secs", secs }, { "cpu", cpu },
  { "driver_cpu", driver_cpu },
  { "bytes_per_key", bytes_per_key }, { "key_bytes", key_bytes(nkeys) },
}

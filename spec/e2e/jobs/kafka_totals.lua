-- spec/e2e/jobs/kafka_totals.lua: running word totals of a Kafka topic in keyed state, at the
-- settings a user gets (default checkpoint interval, default librdkafka consumer settings), for
-- the SIGKILL test (spec/e2e/kafka_crash.sh).
--   dstream --checkpoint DIR kafka_totals.lua BROKERS TOPIC GROUP OUT
-- Counts every word of every message, and the messages under the key "#messages", with
-- update_state_by_key. After every batch it writes OUT.progress (the messages in the state).
-- OUT.first gets the wall-clock time (ms since the epoch) of the end of the first batch that
-- read any record. Stopped gracefully (SIGINT), it writes the totals, "word count" lines
-- sorted, then "#messages M", to OUT.totals. Every message is also saved as it came, with
-- save_as_text_files, under saved/lines in OUT's directory (the same for every run: a batch
-- re-run after a restart replaces its directory).
local dstream = require("dstream")
local ffi = require("ffi")

pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } ds_job_timespec;
int clock_gettime(int clk, ds_job_timespec *ts);
int rename(const char *from, const char *to);
]])

local brokers, topic, group, out = arg[1], arg[2], arg[3], arg[4]

local function wall_ms()
  local ts = ffi.new("ds_job_timespec")
  ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME
  return tonumber(ts.tv_sec) * 1000 + math.floor(tonumber(ts.tv_nsec) / 1e6)
end

-- Written whole, then renamed: a reader never sees half a file.
local function write_file(path, text)
  local fh = assert(io.open(path .. ".tmp", "w"))
  fh:write(text)
  fh:close()
  assert(ffi.C.rename(path .. ".tmp", path) == 0)
end

local ctx = dstream.context { batch = "500ms", name = "e2e-kafka-crash" }
local lines = ctx:kafka_stream { brokers = brokers, topics = { topic }, group = group, start = "earliest" }

lines:save_as_text_files((out:match("^(.*)/") or ".") .. "/saved/lines")

local first_done = false
lines:foreach_rdd(function(rdd)
  if not first_done and rdd:count() > 0 then
    first_done = true
    write_file(out .. ".first", string.format("%d\n", wall_ms()))
  end
end)

local totals = lines
  :flat_map(function(line)
    local t = { "#messages" }
    for w in line:gmatch("%S+") do t[#t + 1] = w end
    return t
  end)
  :map(function(w) return w, 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :update_state_by_key(function(new, old)
    local n = old or 0
    for i = 1, #new do n = n + new[i] end
    return n
  end)
  :name("totals")

local latest = {}
totals:foreach_rdd(function(rdd)
  latest = rdd:collect()
  local m = 0
  for _, kv in ipairs(latest) do
    if kv[1] == "#messages" then m = kv[2] end
  end
  write_file(out .. ".progress", m .. "\n")
end)

ctx:start()
while not ctx:await_termination(1) do end

table.sort(latest, function(a, b) return a[1] < b[1] end)
local text = {}
for _, kv in ipairs(latest) do text[#text + 1] = kv[1] .. " " .. kv[2] .. "\n" end
write_file(out .. ".totals", table.concat(text))

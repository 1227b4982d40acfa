-- examples/cluster_sessions.lua: cluster mode with event time: sessions per word
-- (session_window) on three processes.
--
--   dstream examples/cluster_sessions.lua
--
-- Starts an embedded Kafka broker in this process with the topics the job needs: its input
-- "words" (6 partitions) and, for the session operator named "sessions" with 6 state
-- partitions, example-sessions-sessions-repartition and example-sessions-sessions-changelog (the
-- embedded broker has no admin API, so a job cannot make them itself). Then three processes of
-- the same job (this file again, run as `dstream --cluster example-sessions FILE --member ...`):
-- the group shares the input's partitions and the state partitions out, two each. Each line
-- carries an event time (" t=<ms>"): four bursts of ten lines, 100 ms apart, with 3 s between
-- bursts, so with a gap of 2 s a word has one session per burst it is in. Each member sends
-- every (word, time) to the state partition of the word; the member owning that partition keeps
-- the word's open sessions and emits each once the watermark (the largest time any member read,
-- less 5 s) passes its end; a last line far in the future closes them all. After ~16 s each
-- member prints the state partitions it owns, its sessions per word, and their records added
-- up, and stops: a word's sessions all come from one member, and the members' sums are what was
-- produced.
local dstream = require("dstream")
-- The broker, the members and the producer standing in for machines (examples/lib/).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/lib/?.lua;" .. package.path
local demo = require("cluster_demo")

local APP, N = "example-sessions", 6
local function stamp(i) return i * 100 + math.floor((i - 1) / 10) * 3000 end -- (line i's time)

if arg[1] == "--member" then
  -- One member (the command line gave --cluster APP): its context and its input, "words".
  local ctx, lines, name = demo.member(dstream)
  -- "kafka group t=4300" -> (kafka, 4300), (group, 4300); "~ t=..." only moves the watermark.
  local timed = lines:flat_map(function(line)
      local ts, out = tonumber(line:match("t=(%d+)")), {}
      for w in line:gmatch("%S+") do
        if not w:find("^t=") then out[#out + 1] = { w, ts } end
      end
      return out
    end)
    :map(function(r) return r[1], r[2] end)
    :event_time(function(_, ts) return ts end, { watermark = "5s" })
  local sessions = timed:filter(function(w) return w ~= "~" end)
    :session_window("2s", { partitions = N })
    :name("sessions")
  -- Every session this member emitted (its state partitions' words); printed once, 16 s after
  -- the start (the input and the last line were produced by then), then the member stops.
  local started, total, spans, printed = os.time(), {}, {}, false
  sessions:foreach_rdd(function(rdd)
    for _, kv in ipairs(rdd:collect()) do
      local w, s = kv[1], kv[2]
      total[w] = (total[w] or 0) + s.count
      spans[#spans + 1] = { w, s.start, string.format("%s[%.1f-%.1fs]=%d", w, s.start / 1000,
        s["end"] / 1000, s.count) }
    end
    if printed or os.time() - started < 16 then return end
    printed = true
    table.sort(spans, function(x, y) return x[1] < y[1] or x[1] == y[1] and x[2] < y[2] end)
    local shown = {}
    for i, span in ipairs(spans) do shown[i] = span[3] end
    demo.say_and_stop(ctx, string.format("%s owns state partitions %s: %d sessions %s; late %d; in all: %s", name,
      demo.owned(sessions), #spans, table.concat(shown, " "), timed:late_count(), demo.shown(total)))
  end)
  demo.serve(ctx)
  return
end

-- The driver of the example: a broker, three members, a producer (each line with its time).
demo.run { app = APP, operator = "sessions", partitions = N, done = "owns", stamp = stamp,
  flush = stamp(40) + 60000,
  words = { "kafka", "group", "member", "partition", "session", "gap", "watermark", "topic" },
  extra = "session" }

-- examples/sessions.lua: event-time sessions over a bundled click log.
--
-- data/clicks.log holds "time_ms user page" lines, a little out of order. The job reads them
-- in chunks of 8 lines a batch, gives each click its own time with event_time, and prints a
-- user's session (clicks less than 4 s apart) once the watermark (the newest click time minus
-- 2 s) has passed its end. Ends by itself after the log and a few empty batches.
local dstream = require("dstream")

local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local batches, chunk = {}, {}
for line in io.lines(dir .. "/data/clicks.log") do
  chunk[#chunk + 1] = line
  if #chunk == 8 then batches[#batches + 1], chunk = chunk, {} end
end
if #chunk > 0 then batches[#batches + 1] = chunk end
-- One far-future click at the end moves the watermark past every session.
batches[#batches + 1] = { "999999 nobody /end" }

local ctx = dstream.context { batch = "1s", clock = "manual", name = "sessions" }
local clicks = ctx:queue_stream(batches)
  :map(function(line)
    local ts, user, page = line:match("^(%d+) (%S+) (%S+)$")
    return user, { ts = tonumber(ts), page = page }
  end)
  :event_time(function(_, click) return click.ts end, { watermark = "2s" })

clicks:session_window("4s"):foreach_rdd(function(rdd)
  local sessions = rdd:collect()
  table.sort(sessions, function(a, b) return a[2].start < b[2].start end)
  for _, kv in ipairs(sessions) do
    local s, pages = kv[2], {}
    for i, click in ipairs(s.values) do pages[i] = click.page end
    print(string.format("%-6s %6d..%6d ms  %d clicks: %s", kv[1], s.start, s["end"], s.count,
      table.concat(pages, " ")))
  end
end)

ctx:start()
ctx:advance(#batches + 2)
print(string.format("late clicks dropped: %d", clicks:late_count()))

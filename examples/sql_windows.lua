-- examples/sql_windows.lua: event-time windows in SQL. Clicks "user time_ms page" arrive in
-- batches; the table's event time is their own timestamp with a 1 s watermark, and
-- GROUP BY TUMBLE(ts, '2 seconds') counts each user's clicks per 2-second window, emitted once,
-- when the watermark passes the window's end. The second batch brings a click 1.6 s older
-- than the newest one seen: it is late and left out (the plain-Lua count at the end says which).
--
--   dstream examples/sql_windows.lua
local dstream = require("dstream")

local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2 }
local batches = {
  { "ann 1000 /home", "bob 1500 /search", "ann 2500 /cart" },
  { "ann 3100 /pay", "bob 900 /home" }, -- bob 900: older than the watermark (2500 - 1000)
  { "cy 7000 /home" },                  -- moves the watermark past the window [2000, 4000)
}
ctx:queue_stream(batches)
  :map(function(line)
    local user, ts, page = line:match("^(%S+) (%d+) (%S+)$")
    return { user = user, ts = tonumber(ts), page = page }
  end)
  :to_table("clicks", { "user", "ts", "page" }, { event_time = "ts", watermark = "1s" })

ctx:sql([[
  SELECT user, window_start, window_end, COUNT(*) AS clicks, MAX(page) AS last_page
  FROM clicks
  GROUP BY TUMBLE(ts, '2 seconds'), user
  ORDER BY window_start, user
]]):foreach_rdd(function(rdd, time)
  if rdd:count() > 0 then
    print(("windows final at batch %d ms:"):format(time))
    rdd:show()
  end
end)

ctx:start()
ctx:advance(#batches)
ctx:stop()

-- The same windows counted in plain Lua, from every click (the late one included):
local counts = {}
for _, batch in ipairs(batches) do
  for _, line in ipairs(batch) do
    local user, ts = line:match("^(%S+) (%d+)")
    local key = ("%s [%d, %d)"):format(user, ts - ts % 2000, ts - ts % 2000 + 2000)
    counts[key] = (counts[key] or 0) + 1
  end
end
local keys = {}
for k in pairs(counts) do keys[#keys + 1] = k end
table.sort(keys)
for _, k in ipairs(keys) do print("all clicks: " .. k .. " " .. counts[k]) end

-- examples/interval_join.lua: ad views joined with their clicks within a time, in one process.
--
-- Two event-time streams of "user ms" lines, a batch a second, a little out of order: the ads
-- users viewed and those they clicked. views:left_outer_join(clicks, { within = "2s" }) pairs a
-- view with each click of the same user up to 2 s before or after it, however many batches
-- apart the two came, and gives a view no click came for as (user, { view, nil }) once the
-- watermark (the slower side's newest time minus 1 s) passed its time + 2 s. A click older
-- than the clicks' watermark when it arrives is late: dropped, counted by late_count(). At the
-- end the job compares what it printed with a nested-loop left outer join of the lines less
-- the late ones, in plain Lua, and prints OK. (Across processes: examples/cluster_join.lua.)
local dstream = require("dstream")

local views = {
  { "ann 300", "bob 900" },
  { "cy 1500", "ann 4200" },
  { "dee 3500", "bob 5100" },
  {},
  { "ann 8000" },
  { "end 20000" }, -- moves both watermarks past every view
}
local clicks = {
  { "bob 1200" },
  { "ann 2100", "bob 400" }, -- bob 400: within 2 s of his view at 900, one batch later
  { "ann 4500", "cy 700" }, -- cy 700 came when the clicks' watermark was 1100: late
  { "dee 6000" }, -- 2.5 s after dee's view: too late to pair
  {},
  { "end 20000" },
}

local ctx = dstream.context { batch = "1s", clock = "manual" }
local function parse(line)
  local user, ts = line:match("(%S+) (%d+)")
  return user, tonumber(ts)
end
local function timed(batches)
  return ctx:queue_stream(batches):map(parse)
    :event_time(function(_, ts) return ts end, { watermark = "1s" })
end
local view_stream, click_stream = timed(views), timed(clicks)

local got = {}
view_stream:left_outer_join(click_stream, { within = "2s" }):foreach_rdd(function(rdd, time)
  local rows = {}
  for _, kv in ipairs(rdd:collect()) do
    local user, view, click = kv[1], kv[2][1], kv[2][2]
    if user ~= "end" then
      rows[#rows + 1] = ("%s view %d: %s"):format(user, view, click and "click " .. click or "no click")
    end
  end
  table.sort(rows)
  for _, row in ipairs(rows) do
    print(("batch %d ms: %s"):format(time, row))
    got[#got + 1] = row
  end
end)

ctx:start()
ctx:advance(#views)
ctx:stop()

-- The same join by hand: a side's records older than its watermark when they came (its newest
-- time of the batches before, minus 1 s) are late; each view with every click of its user
-- within 2 s, or none.
local function in_time(batches)
  local out, newest = {}, nil
  for _, batch in ipairs(batches) do
    local most = newest
    for _, line in ipairs(batch) do
      local user, ts = parse(line)
      if newest == nil or ts >= newest - 1000 then
        out[#out + 1] = { user = user, ts = ts }
        if most == nil or ts > most then most = ts end
      end
    end
    newest = most
  end
  return out
end
local want = {}
local kept_clicks = in_time(clicks)
for _, v in ipairs(in_time(views)) do
  local found = false
  for _, c in ipairs(kept_clicks) do
    if c.user == v.user and math.abs(c.ts - v.ts) <= 2000 and v.user ~= "end" then
      want[#want + 1] = ("%s view %d: click %d"):format(v.user, v.ts, c.ts)
      found = true
    end
  end
  if not found and v.user ~= "end" then want[#want + 1] = ("%s view %d: no click"):format(v.user, v.ts) end
end
table.sort(want)
table.sort(got)
local n_clicks = 0
for _, batch in ipairs(clicks) do n_clicks = n_clicks + #batch end
print(("late clicks: %d (by hand: %d)"):format(click_stream:late_count(), n_clicks - #kept_clicks))
print(table.concat(want, "\n") == table.concat(got, "\n") and "OK: a nested-loop left outer join gives the same"
  or "MISMATCH: a nested-loop left outer join gives\n" .. table.concat(want, "\n"))

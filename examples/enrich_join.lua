-- examples/enrich_join.lua: a click stream joined with a static user table read from a file.
-- Each batch prints every click with the user's name and city, and clicks by unknown users.
--
--   dstream examples/enrich_join.lua
local dstream = require("dstream")

local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local ctx = dstream.context { batch = "1s", name = "enrich_join" }

-- The static side: user id -> { name, city }, a dataset on the workers like any batch.
local users = ctx:text_file(dir .. "/data/users.csv")
  :map(function(line)
    local id, name, city = line:match("^([^,]+),([^,]+),([^,]+)$")
    return id, { name = name, city = city }
  end)

-- The stream side: "user page" click records.
local clicks = ctx:queue_stream {
  { "u1 /home", "u2 /cart", "u9 /home" },
  { "u3 /search", "u1 /cart" },
}:map(function(line)
  local user, page = line:match("^(%S+)%s+(%S+)$")
  return user, page
end)

clicks
  :transform(function(batch) return batch:left_outer_join(users) end)
  :foreach_rdd(function(rdd, time)
    local rows = rdd:collect()
    table.sort(rows, function(a, b) return a[1] .. a[2][1] < b[1] .. b[2][1] end)
    for _, row in ipairs(rows) do
      local user, page, info = row[1], row[2][1], row[2][2]
      if info then
        print(string.format("batch %d: %s (%s, %s) visited %s", time, user, info.name, info.city, page))
      else
        print(string.format("batch %d: unknown user %s visited %s", time, user, page))
      end
    end
  end)

ctx:start()
ctx:await_termination(2.5)
ctx:stop { graceful = true }

-- examples/enrich_join.lua: a click stream joined with a static user table read from a file,
-- or from a database table (read_sql). Each batch prints every click with the user's name and
-- city, and clicks by unknown users.
--
--   dstream examples/enrich_join.lua                  (users from data/users.csv)
--   dstream examples/enrich_join.lua --sql [URL]      (users from a table: the CSV is loaded
--                                                      into table users of URL first, a SQLite
--                                                      file of its own without a URL)
local dstream = require("dstream")

local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local ctx = dstream.context { batch = "1s", name = "enrich_join" }

-- The static side: user id -> { name, city }, a dataset on the workers like any batch.
local users
if arg[1] == "--sql" then
  local db = require("dstream.db")
  local url = arg[2]
  if not url then
    local base = os.tmpname()
    os.remove(base)
    url = "sqlite:" .. base .. ".sqlite"
  end
  db.exec(url, "DROP TABLE IF EXISTS users")
  db.exec(url, "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT, city TEXT)")
  for line in io.lines(dir .. "/data/users.csv") do
    local id, name, city = line:match("^([^,]+),([^,]+),([^,]+)$")
    db.query(url, url:match("^sqlite") and "INSERT INTO users VALUES (?, ?, ?)"
      or "INSERT INTO users VALUES ($1, $2, $3)", { id, name, city })
  end
  -- key = "id": (id, row) pairs, row = { id =, name =, city = }, ready for the join.
  users = ctx:read_sql(url, "SELECT id, name, city FROM users", { key = "id" })
else
  users = ctx:text_file(dir .. "/data/users.csv")
    :map(function(line)
      local id, name, city = line:match("^([^,]+),([^,]+),([^,]+)$")
      return id, { name = name, city = city }
    end)
end

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

-- dstream/db/url.lua: what a database URL names. Both Lua states (the driver checks a URL at the
-- user's line; workers open connections from it).
--
--   postgresql://user[:password]@host[:port]/dbname[?param=value&...]  (also postgres://)
--     handed to libpq as it is (PQconnectdb takes URIs), so every libpq parameter works;
--   sqlite:path  sqlite://path  sqlite:///abs/path  sqlite::memory:
--     a file opened with libsqlite3 (created if missing).
--
-- parse(url) -> { kind = "postgres" | "sqlite", url =, name =, path = } or nil, err. `name` is
-- what messages show: the URL without its password.
local M = {}

local function redact(url)
  -- user:password@ -> user:***@ (libpq URIs only carry a password there or as ?password=)
  local s = url:gsub("^(%a+://[^:/@]*):[^@/]*@", "%1:***@")
  s = s:gsub("([?&]password=)[^&]*", "%1***")
  return s
end

function M.parse(url)
  if type(url) ~= "string" or url == "" then
    return nil, "expected a database URL (postgresql://user@host:port/db or sqlite:path), got "
      .. (type(url) == "string" and "an empty string" or type(url))
  end
  local scheme = url:match("^(%a[%w+.-]*):")
  scheme = scheme and scheme:lower()
  if scheme == "postgresql" or scheme == "postgres" then
    if not url:match("^%a+://") then
      return nil, "a PostgreSQL URL is postgresql://user@host:port/dbname, got " .. redact(url)
    end
    local rest = url:match("^%a+://(.*)$")
    local hostpart = rest:match("^[^/?]*")
    local host = hostpart:gsub("^.*@", "")
    local db = rest:match("^[^/?]*/([^?]*)")
    return { kind = "postgres", url = url, name = redact(url),
      host = host ~= "" and host or "localhost", database = db ~= "" and db or nil }
  elseif scheme == "sqlite" then
    local path = url:match("^sqlite:(.*)$")
    if path:sub(1, 2) == "//" then path = path:sub(3) end -- sqlite://rel, sqlite:///abs
    if path == "" then
      return nil, "a SQLite URL is sqlite:path/to/file.db (or sqlite::memory:), got " .. url
    end
    return { kind = "sqlite", url = url, name = "sqlite:" .. path, path = path }
  end
  return nil, "unknown database URL " .. redact(url)
    .. ": expected postgresql://user@host:port/dbname or sqlite:path"
end

M.redact = redact

-- A table or column name as an SQL identifier: "name" with inner quotes doubled. A dotted
-- name (schema.table) is quoted part by part.
function M.quote_ident(name)
  local parts = {}
  for part in (name .. "."):gmatch("([^.]*)%.") do
    parts[#parts + 1] = '"' .. part:gsub('"', '""') .. '"'
  end
  return table.concat(parts, ".")
end

return M

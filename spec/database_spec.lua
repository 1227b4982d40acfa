-- Databases (dstream.db, stream:to_sql, ctx:read_sql) on SQLite files, checked with the
-- sqlite3 command-line program (an independent reader): URLs, option errors at the user's
-- line, append and upsert, a batch run again that finds its markers and writes nothing, rows
-- the database refuses (the task fails with the row and SQLite's message, or they go to the
-- dead-letter file and the others are written), a missing table, a locked file waited for and
-- given up on, and read_sql (static, keyed for joins, refreshed between batches).
-- PostgreSQL is tested by spec/e2e/database_postgres.sh against a server it starts.
local dstream = require("dstream")
local url = require("dstream.db.url")
local ffi = require("ffi")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end
local function sqlite(db, sql) return sh("sqlite3 " .. db .. " \"" .. sql .. "\"") end

local n_db = 0
local function new_db(schema)
  n_db = n_db + 1
  local path = dir .. "/db" .. n_db .. ".sqlite"
  assert.equal("", sqlite(path, schema))
  return path
end

-- sqlite3 holds the write lock of db for `secs` seconds, in the background; returns once it
-- holds it (another writer is refused at once). Its .timeout lets its BEGIN wait while a probe
-- below holds the lock for an instant (without it, that BEGIN failed and no lock was taken).
local function hold_lock(db, secs)
  os.execute("(echo '.timeout 5000'; echo 'BEGIN EXCLUSIVE;'; sleep " .. secs .. "; echo 'COMMIT;') | sqlite3 "
    .. db .. " &")
  for _ = 1, 100 do
    if sh("sqlite3 " .. db .. " 'BEGIN IMMEDIATE; ROLLBACK;'"):find("locked", 1, true) then return end
    ffi.C.poll(nil, 0, 50)
  end
  error("sqlite3 did not take the lock of " .. db)
end

local function manual(opts)
  local o = { batch = "1s", clock = "manual", workers = 2, partitions = 2, progress = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  return dstream.context(o)
end

local function run(ctx, n)
  ctx:start()
  ctx:advance(n)
  ctx:stop()
end

local function words_job(db, input, opts)
  local ctx = manual()
  local lines = ctx:queue_stream(input)
  lines:to_sql { url = "sqlite:" .. db, table = "raw", columns = { "line" }, job = opts and opts.job }
  lines:flat_map(function(l) return l:gmatch("%S+") end):map(function(w) return w, 1 end)
    :update_state_by_key(function(vs, old)
      local s = old or 0
      for _, v in ipairs(vs) do s = s + v end
      return s
    end)
    :to_sql { url = "sqlite:" .. db, table = "words", columns = { "word", "n" }, mode = "upsert", key = "word",
      job = opts and opts.job }
  return ctx
end

describe("database URLs", function()
  it("parses PostgreSQL and SQLite URLs and hides passwords", function()
    local u = assert(url.parse("postgresql://app:secret@db.example:5433/shop?sslmode=disable"))
    assert.equal("postgres", u.kind)
    assert.equal("postgresql://app:***@db.example:5433/shop?sslmode=disable", u.name)
    assert.equal("shop", u.database)
    assert.equal("postgres", assert(url.parse("postgres://localhost/x")).kind)
    assert.equal("postgresql://u@h/d?password=***", url.parse("postgresql://u@h/d?password=pw").name)
    assert.equal("rel/x.db", url.parse("sqlite:rel/x.db").path)
    assert.equal("/abs/x.db", url.parse("sqlite:///abs/x.db").path)
    assert.equal(":memory:", url.parse("sqlite::memory:").path)
  end)

  it("refuses what is not a database URL, saying what one looks like", function()
    local _, err = url.parse("mysql://x/y")
    assert.matches("unknown database URL mysql://x/y: expected postgresql://", err, 1, true)
    _, err = url.parse("postgresql:x")
    assert.matches("postgresql://user@host:port/dbname", err, 1, true)
    _, err = url.parse("sqlite:")
    assert.matches("sqlite:path/to/file.db", err, 1, true)
    _, err = url.parse(nil)
    assert.matches("expected a database URL", err, 1, true)
  end)

  it("quotes identifiers", function()
    assert.equal('"public"."my ""t"""', url.quote_ident('public.my "t"'))
  end)
end)

describe("to_sql options", function()
  local ctx = manual()
  local s = ctx:queue_stream({})
  local function err_of(opts)
    local ok, err = pcall(s.to_sql, s, opts)
    assert.is_false(ok)
    return tostring(err)
  end
  it("are checked at the user's line", function()
    local e = err_of { url = "mysql://x", table = "t", columns = { "a" } }
    assert.matches("database_spec.lua:%d+: to_sql: url: unknown database URL", e)
    assert.matches("table must be a table name", err_of { url = "sqlite:x.db", columns = { "a" } }, 1, true)
    assert.matches("columns must be a list of column names", err_of { url = "sqlite:x.db", table = "t" }, 1, true)
    assert.matches('mode must be "append" or "upsert"', err_of { url = "sqlite:x.db", table = "t", columns = { "a" }, mode = "merge" }, 1, true)
    assert.matches("needs key = { columns }", err_of { url = "sqlite:x.db", table = "t", columns = { "a" }, mode = "upsert" }, 1, true)
    assert.matches("key column 'b' is not one of the columns",
      err_of { url = "sqlite:x.db", table = "t", columns = { "a" }, mode = "upsert", key = "b" }, 1, true)
    assert.matches("unknown option 'tabel'", err_of { url = "sqlite:x.db", tabel = "t", columns = { "a" } }, 1, true)
    assert.matches("needs dead_letter = path",
      err_of { url = "sqlite:x.db", table = "t", columns = { "a" }, on_error = "dead_letter" }, 1, true)
    assert.matches("retry_for: a duration", err_of { url = "sqlite:x.db", table = "t", columns = { "a" }, retry_for = "soon" }, 1, true)
  end)
  ctx:stop()
end)

describe("to_sql on SQLite", function()
  local input = { { "a b", "b c", "c c" }, { "d a", "a a" }, {}, { "e" } }

  it("appends raw records and upserts running totals, equal to a count of the input", function()
    local db = new_db("CREATE TABLE words(word TEXT PRIMARY KEY, n INTEGER); CREATE TABLE raw(line TEXT);")
    run(words_job(db, input), 5)
    assert.equal("a|4\nb|2\nc|3\nd|1\ne|1\n", sqlite(db, "SELECT word, n FROM words ORDER BY word"))
    assert.equal("a a\na b\nb c\nc c\nd a\ne\n", sqlite(db, "SELECT line FROM raw ORDER BY line"))
    -- One marker per (batch, partition) that had rows, in the same database.
    assert.equal("raw|1000|2\nraw|2000|2\nraw|4000|1\n",
      sqlite(db, "SELECT tbl, batch, count(*) FROM dstream_commits WHERE tbl = 'raw' GROUP BY tbl, batch ORDER BY batch"))
  end)

  it("writes nothing for a batch whose markers are there (a re-run after a restart)", function()
    local db = new_db("CREATE TABLE words(word TEXT PRIMARY KEY, n INTEGER); CREATE TABLE raw(line TEXT);")
    run(words_job(db, input, { job = "same-job" }), 5)
    -- The same job again: the same batch times, the same partitions, every one committed.
    local ctx = words_job(db, { { "x x x" }, { "y" } }, { job = "same-job" })
    run(ctx, 2)
    assert.equal("a|4\nb|2\nc|3\nd|1\ne|1\n", sqlite(db, "SELECT word, n FROM words ORDER BY word"))
    assert.equal("6\n", sqlite(db, "SELECT count(*) FROM raw"))
    local skipped = ctx:metrics():get("dstream_sql_tasks_skipped_total")
    assert.is_true(skipped:value({ database = "sqlite:" .. db, table = "raw" }) >= 1)
    -- A partition with no marker is written: delete one and run the first batch again.
    sqlite(db, "DELETE FROM dstream_commits WHERE tbl = 'raw' AND batch = 1000 AND part = 0")
    run(words_job(db, { { "a b", "b c", "c c" } }, { job = "same-job" }), 1)
    assert.equal("7\n", sqlite(db, "SELECT count(*) FROM raw"))
    -- Another job name is another job: its rows are written.
    run(words_job(db, { { "q" } }, { job = "other-job" }), 1)
    assert.equal("8\n", sqlite(db, "SELECT count(*) FROM raw"))
  end)

  it("deletes the markers of batches no restart can run again (older than the checkpoints kept)", function()
    local db = new_db("CREATE TABLE raw(line TEXT);")
    local input = {}
    for b = 1, 10 do input[b] = { "a" .. b, "b" .. b, "c" .. b, "d" .. b } end
    local ctx = manual { checkpoint = dir .. "/ck-prune", checkpoint_interval = "1s" }
    ctx:queue_stream(input):to_sql { url = "sqlite:" .. db, table = "raw", columns = { "line" } }
    run(ctx, 10)
    assert.equal("40\n", sqlite(db, "SELECT count(*) FROM raw"))
    -- Batch 10000 ms ran after the checkpoint of batch 9000 ms: markers before 9000 - 3 intervals went.
    assert.equal("6000|10000|10\n", sqlite(db, "SELECT min(batch), max(batch), count(*) FROM dstream_commits"))
  end)

  -- The twin at the default checkpoint_interval (10 s) of the test above.
  it("deletes the markers at the default checkpoint interval too (10 s: 45 batches of 1 s)", function()
    local db = new_db("CREATE TABLE raw(line TEXT);")
    local input = {}
    for b = 1, 45 do input[b] = { "a" .. b, "b" .. b } end
    local ctx = manual { checkpoint = dir .. "/ck-prune-defaults" }
    ctx:queue_stream(input):to_sql { url = "sqlite:" .. db, table = "raw", columns = { "line" } }
    run(ctx, 45)
    assert.equal("90\n", sqlite(db, "SELECT count(*) FROM raw"))
    -- Batches after the checkpoint of batch 40000 ms: markers before 40000 - 3 intervals went.
    assert.equal("10000|45000|72\n", sqlite(db, "SELECT min(batch), max(batch), count(*) FROM dstream_commits"))
  end)

  it("writes a static dataset with rdd:to_sql, without markers, and returns the rows written", function()
    local db = new_db("CREATE TABLE users(id TEXT PRIMARY KEY, name TEXT);")
    local ctx = manual()
    local n = ctx:parallelize({ { "u1", "Ann" }, { "u2", "Bo" }, { "u3", "Cy" } }, 2)
      :to_sql { url = "sqlite:" .. db, table = "users", columns = { "id", "name" } }
    assert.equal(3, n)
    n = ctx:parallelize({ { id = "u2", name = "Bob" } })
      :to_sql { url = "sqlite:" .. db, table = "users", columns = { "id", "name" }, mode = "upsert", key = "id" }
    assert.equal(1, n)
    assert.equal("u1|Ann\nu2|Bob\nu3|Cy\n", sqlite(db, "SELECT id, name FROM users ORDER BY id"))
    assert.equal("", sqlite(db, "SELECT name FROM sqlite_master WHERE name = 'dstream_commits'"))
    ctx:stop()
  end)

  it("maps tables by column name, arrays by position, and pairs to the first columns", function()
    local db = new_db("CREATE TABLE t(id INTEGER, name TEXT, score REAL, ok INTEGER, tags TEXT);")
    local ctx = manual()
    ctx:queue_stream { { { id = 1, name = "x", score = 1.5, ok = true, tags = { "a", "b" } }, { 2, "y", 2.25, false } } }
      :to_sql { url = "sqlite:" .. db, table = "t", columns = { "id", "name", "score", "ok", "tags" } }
    ctx:queue_stream { { { 3, { name = "z", score = 3 } } } }
      :map(function(p) return p[1], p[2] end)
      :to_sql { url = "sqlite:" .. db, table = "t", columns = { "id", "name", "score", "ok", "tags" } }
    run(ctx, 1)
    assert.equal('1|x|1.5|1|["a","b"]\n2|y|2.25|0|\n3|z|3.0||\n', sqlite(db, "SELECT * FROM t ORDER BY id"))
  end)

  it("fails the task with the refused row and SQLite's message, without retrying", function()
    local db = new_db("CREATE TABLE t(id INTEGER, n INTEGER CHECK (n >= 0));")
    local ctx = manual()
    ctx:queue_stream { { { id = 1, n = 1 }, { id = 2, n = -5 }, { id = 3, n = 3 } } }
      :repartition(1)
      :to_sql { url = "sqlite:" .. db, table = "t", columns = { "id", "n" } }
    local ok, err = pcall(run, ctx, 1)
    assert.is_false(ok)
    err = tostring(err)
    assert.matches("not retried", err, 1, true)
    assert.matches("sqlite:" .. db .. ", table t refused the row { id = 2, n = -5 }", err, 1, true)
    assert.matches("CHECK constraint failed", err, 1, true)
    assert.equal("0\n", sqlite(db, "SELECT count(*) FROM t")) -- the task's transaction was undone
  end)

  it("sends refused rows to the dead-letter file and writes the others with on_error", function()
    local db = new_db("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER CHECK (n >= 0));")
    local dl = dir .. "/dead.jsonl"
    local ctx = manual()
    ctx:queue_stream { { { id = 1, n = 1 }, { id = 2, n = -5 }, { id = 3, n = 3 }, { id = 1, n = 7 } } }
      :repartition(1)
      :to_sql { url = "sqlite:" .. db, table = "t", columns = { "id", "n" }, on_error = "dead_letter", dead_letter = dl }
    run(ctx, 1)
    assert.equal("1|1\n3|3\n", sqlite(db, "SELECT id, n FROM t ORDER BY id"))
    local text = io.open(dl):read("*a")
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(2, #lines)
    assert.matches('{"table":"t","batch":1000,"partition":0,"row":{"id":2,"n":-5},"error":"CHECK constraint failed', lines[1], 1, true)
    assert.matches('"row":{"id":1,"n":7},"error":"UNIQUE constraint failed', lines[2], 1, true)
    assert.equal(2, ctx:metrics():get("dstream_sql_bad_rows_total"):value({ database = "sqlite:" .. db, table = "t" }))
  end)

  it("refuses a value of the wrong type in a STRICT table, naming the row", function()
    local db = new_db("CREATE TABLE s(id INTEGER, n INTEGER) STRICT;")
    local ctx = manual()
    ctx:queue_stream { { { id = 1, n = 2 }, { id = 2, n = "many" } } }:repartition(1)
      :to_sql { url = "sqlite:" .. db, table = "s", columns = { "id", "n" } }
    local ok, err = pcall(run, ctx, 1)
    assert.is_false(ok)
    assert.matches('refused the row { id = 2, n = "many" }: cannot store TEXT value in INTEGER column s.n', tostring(err), 1, true)
  end)

  it("names the database and the table when the table is missing", function()
    local db = new_db("CREATE TABLE other(x);")
    local ctx = manual()
    ctx:queue_stream { { "a" } }:to_sql { url = "sqlite:" .. db, table = "nope", columns = { "x" } }
    local ok, err = pcall(run, ctx, 1)
    assert.is_false(ok)
    assert.matches("sqlite:" .. db .. ", table nope: no such table: nope", tostring(err), 1, true)
  end)

  it("waits for a locked database, then gives up after retry_for with the cause", function()
    local db = new_db("CREATE TABLE t(x);")
    -- Another process holds the write lock for 4 s: the batch waits and then writes.
    hold_lock(db, 4)
    local ctx = manual()
    ctx:queue_stream { { "a", "b" } }:repartition(1):to_sql { url = "sqlite:" .. db, table = "t", columns = { "x" } }
    run(ctx, 1)
    assert.equal("2\n", sqlite(db, "SELECT count(*) FROM t"))
    local labels = { database = "sqlite:" .. db, table = "t" }
    assert.is_true(ctx:metrics():get("dstream_sql_retries_total"):value(labels) >= 1)
    -- Held for 6 s, retry_for 1 s: the batch fails naming the database, the table and the cause.
    hold_lock(db, 6)
    ctx = manual()
    ctx:queue_stream { { "c" } }:to_sql { url = "sqlite:" .. db, table = "t", columns = { "x" }, retry_for = "1s" }
    local ok, err = pcall(run, ctx, 1)
    assert.is_false(ok)
    assert.matches("sqlite:" .. db .. ", table t: the database could not be reached for", tostring(err), 1, true)
    assert.matches("database is locked", tostring(err), 1, true)
    os.execute("sleep 5")
    assert.equal("2\n", sqlite(db, "SELECT count(*) FROM t"))
  end)
end)

describe("read_sql on SQLite", function()
  it("reads a table as a static dataset, rows by column name or (key, row) pairs", function()
    local db = new_db("CREATE TABLE users(id TEXT, name TEXT, age INTEGER); INSERT INTO users VALUES ('u1','Ann',31),('u2','Bo',NULL);")
    local ctx = manual()
    local rows = ctx:read_sql("sqlite:" .. db, "SELECT id, name, age FROM users ORDER BY id"):collect()
    assert.same({ { id = "u1", name = "Ann", age = 31 }, { id = "u2", name = "Bo" } }, rows)
    local users = ctx:read_sql("sqlite:" .. db, "SELECT * FROM users", { key = "id" })
    local clicks = ctx:queue_stream { { "u1 /home", "u9 /cart" } }
      :map(function(l) return l:match("^(%S+) (%S+)$") end)
    local seen = {}
    clicks:transform(function(r) return r:left_outer_join(users) end):foreach_rdd(function(r)
      for _, p in ipairs(r:collect()) do seen[p[1]] = p[2][2] and p[2][2].name or "unknown" end
    end)
    run(ctx, 1)
    assert.same({ u1 = "Ann", u9 = "unknown" }, seen)
  end)

  it("says what went wrong at the user's line", function()
    local db = new_db("CREATE TABLE users(id TEXT);")
    local ctx = manual()
    local ok, err = pcall(ctx.read_sql, ctx, "sqlite:" .. db, "SELECT * FROM nosuch")
    assert.is_false(ok)
    assert.matches("database_spec.lua:%d+: read_sql: .*sqlite:.*, read_sql: no such table: nosuch", tostring(err))
    ok, err = pcall(ctx.read_sql, ctx, "sqlite:" .. db, "SELECT * FROM users", { refresh = "often" })
    assert.matches("refresh: a duration", tostring(err), 1, true)
    ctx:stop()
  end)

  it("re-reads a refreshed table in the background and swaps it in between batches", function()
    local db = new_db("CREATE TABLE rates(cur TEXT, rate REAL); INSERT INTO rates VALUES ('EUR', 1.0);")
    local ctx = manual()
    local rates = ctx:read_sql("sqlite:" .. db, "SELECT cur, rate FROM rates", { key = "cur", refresh = "200ms" })
    local last
    ctx:queue_stream({}, { default = { "EUR" } }):map(function(c) return c, true end)
      :transform(function(r) return r:join(rates) end)
      :foreach_rdd(function(r)
        local got = r:collect()
        if got[1] then last = got[1][2][2].rate end
      end)
    ctx:start()
    ctx:advance(1)
    assert.equal(1.0, last)
    sqlite(db, "UPDATE rates SET rate = 2.5")
    local deadline = os.time() + 10
    while last ~= 2.5 and os.time() < deadline do
      ffi.C.poll(nil, 0, 100)
      ctx:advance(1)
    end
    ctx:stop()
    assert.equal(2.5, last)
  end)
end)

teardown(function() os.execute("rm -rf " .. dir) end)

describe("to_sql dead letters on a Kafka topic", function()
  it("sends each refused row as a message with the error in its headers, and commits the others", function()
    local kafka = require("dstream.kafka")
    local mock = kafka.mock_cluster { topics = { dlq = 1 } }
    local db = new_db("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER CHECK (n >= 0));")
    local ctx = manual()
    ctx:queue_stream { { { id = 1, n = 1 }, { id = 2, n = -5 } } }:repartition(1)
      :to_sql { url = "sqlite:" .. db, table = "t", columns = { "id", "n" }, on_error = "dead_letter",
        dead_letter = { topic = "dlq", brokers = mock } }
    run(ctx, 1)
    assert.equal("1|1\n", sqlite(db, "SELECT id, n FROM t"))
    -- Read the topic back with a kafka_stream.
    local reader = manual()
    local got = {}
    local s = reader:kafka_stream { brokers = mock, topic = "dlq", start = "earliest", with_meta = true }
    s:foreach_rdd(function(r) for _, m in ipairs(r:collect()) do got[#got + 1] = m end end)
    reader:start()
    local deadline = os.time() + 20
    while #got == 0 and os.time() < deadline do
      ffi.C.poll(nil, 0, 100)
      reader:advance(1)
    end
    reader:stop()
    mock:close()
    assert.equal(1, #got)
    assert.matches('"row":{"id":2,"n":-5},"error":"CHECK constraint failed', got[1].value, 1, true)
    assert.equal("t", got[1].key)
    local headers = {}
    for _, h in ipairs(got[1].headers or {}) do headers[h.key] = h.value end
    assert.matches("CHECK constraint failed", headers["dstream.error"], 1, true)
    assert.equal("1000", headers["dstream.batch"])
  end)
end)

describe("dstream.db", function()
  local db = require("dstream.db")
  it("runs statements and queries on the driver, with parameters", function()
    local path = new_db("CREATE TABLE kv(k TEXT, v INTEGER);")
    local u = "sqlite:" .. path
    assert.is_true(db.exec(u, "INSERT INTO kv VALUES ('a', 1); INSERT INTO kv VALUES ('b', 2)"))
    local rows, cols = db.query(u, "SELECT k, v FROM kv WHERE v >= ? ORDER BY k", { 2 })
    assert.same({ { k = "b", v = 2 } }, rows)
    assert.same({ "k", "v" }, cols)
    assert.equal("a|1\nb|2\n", sqlite(path, "SELECT * FROM kv ORDER BY k"))
  end)
  it("raises the database's message at the user's line", function()
    local path = new_db("CREATE TABLE kv(k TEXT);")
    local ok, err = pcall(db.query, "sqlite:" .. path, "SELECT nope FROM kv")
    assert.is_false(ok)
    assert.matches("database_spec.lua:%d+: db.query: sqlite:.*: no such column: nope", tostring(err))
    ok, err = pcall(db.exec, "mysql://x/y", "SELECT 1")
    assert.matches("database_spec.lua:%d+: db.exec: unknown database URL", tostring(err))
  end)
end)

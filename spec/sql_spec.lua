-- SQL beyond the SQLite corpus (spec/sql_oracle_spec.lua): errors a user sees (caret, close
-- names, type errors, misuse of GROUP BY), show() and explain() output, rows that Lua
-- operators take and give back, event-time windows (TUMBLE, HOP, SESSION) against a plain-Lua
-- reference, emit = "update", a late record, and running totals across batches.
local dstream = require("dstream")

local function sorted_rows(rows, cols)
  local out = {}
  for i, r in ipairs(rows) do
    local parts = {}
    for j, c in ipairs(cols) do parts[j] = tostring(r[c]) end
    out[i] = table.concat(parts, " ")
  end
  table.sort(out)
  return out
end

local function capture(fn)
  local saved = io.stdout
  local tmp = os.tmpname()
  local fh = assert(io.open(tmp, "w"))
  io.stdout = fh ---@diagnostic disable-line
  local ok, err = pcall(fn)
  io.stdout = saved
  fh:close()
  local text = assert(io.open(tmp)):read("*a")
  os.remove(tmp)
  assert(ok, err)
  return text
end

describe("SQL errors", function()
  local ctx
  setup(function()
    ctx = dstream.context { workers = 1 }
    ctx:parallelize({ { name = "ann", age = 3 } }):to_table("people", { "name", "age" })
    ctx:parallelize({ { "ann", "Oslo" } }):to_table("places", { "name", "city" })
  end)
  teardown(function() ctx:stop() end)

  local function err_of(q)
    local ok, err = pcall(ctx.sql, ctx, q)
    assert.is_false(ok)
    return err
  end

  it("shows a syntax error with the query and a caret at the line and column", function()
    local err = err_of("SELECT name,\n  age +\nFROM people")
    assert.matches("sql_spec.lua:%d+: sql: syntax error near 'FROM' at line 3, column 1:", err)
    assert.matches("\n  SELECT name,\n    age %+\n  FROM people\n  %^", err)
  end)

  it("names close tables and columns", function()
    assert.matches("unknown table 'peeple'; did you mean 'people'%?", err_of("SELECT name FROM peeple"))
    assert.matches("unknown column 'nmae'; did you mean 'name'%?", err_of("SELECT nmae FROM people"))
    assert.matches("unknown column 'zzz'; the columns are 'name', 'age'", err_of("SELECT zzz FROM people"))
    assert.matches("unknown function 'lowr'; did you mean 'floor', 'lower'%?", err_of("SELECT lowr(name) FROM people"))
    assert.matches("column 'name' is ambiguous: it is in 'people' and 'places'; write people.name",
      err_of("SELECT name FROM people JOIN places ON people.name = places.name"))
  end)

  it("refuses a JOIN of two stream tables batch by batch in cluster mode, in SQL's words", function()
    local cctx = dstream.context { batch = "1s", clock = "manual", cluster = "spec-sql-join" }
    cctx:queue_stream({}):to_table("a", { "k", "x" })
    cctx:queue_stream({}):to_table("b", { "k", "y" })
    cctx:parallelize({ { "k1", "one" } }):to_table("names", { "k", "name" })
    local ok, err = pcall(cctx.sql, cctx, "SELECT a.k, x, y FROM a JOIN b ON a.k = b.k")
    assert.is_false(ok)
    assert.matches("sql_spec.lua:%d+: sql: in cluster mode a JOIN of two stream tables batch by batch would join"
      .. " only the rows each process reads: join them within windows %(GROUP BY TUMBLE", err)
    assert.matches("or a static table in place of one of the stream tables in the JOIN at line 1, column 25:\n", err)
    -- A stream joined with a static table is the same across processes: allowed.
    assert.has_no.errors(function() cctx:sql("SELECT a.k, x, name FROM a JOIN names ON a.k = names.k") end)
  end)

  it("names the expression of a type error", function()
    assert.matches("type error: '%+' needs a number, and 'x' is a text at line 1, column 37",
      err_of("SELECT name FROM people WHERE age + 'x' > 1"))
    assert.matches("SUM%(%) needs a number", err_of("SELECT SUM('a') FROM people"))
    assert.matches("CAST to an unknown type 'blob'", err_of("SELECT CAST(age AS blob) FROM people"))
    assert.matches("lower%(%) takes 1 argument, got 2", err_of("SELECT lower(name, 1) FROM people"))
  end)

  it("names a value that is not a number when the query runs, with the expression", function()
    ctx:parallelize({ { name = "bo", age = "old" } }):to_table("bad", { "name", "age" })
    local ok, err = pcall(function() return ctx:sql("SELECT age * 2 AS d FROM bad"):collect() end)
    assert.is_false(ok)
    assert.matches('SQL type error in age %* 2: "old" is not a number', err)
  end)

  it("refuses columns outside GROUP BY and aggregates where they cannot be", function()
    assert.matches("column 'age' must be in GROUP BY or inside an aggregate",
      err_of("SELECT name, age FROM people GROUP BY name"))
    assert.matches("aggregate COUNT%(%) is not allowed in WHERE", err_of("SELECT name FROM people WHERE COUNT(*) > 1"))
    assert.matches("TUMBLE needs the table's event time", err_of("SELECT COUNT(*) FROM people GROUP BY TUMBLE(age, '1 second')"))
  end)

  it("says to install lua-lpeg when lpeg cannot be loaded", function()
    local saved_cpath, saved_lpeg, saved_grammar = package.cpath, package.loaded.lpeg, package.loaded["dstream.sql.grammar"]
    package.cpath, package.loaded.lpeg, package.loaded["dstream.sql.grammar"] = "", nil, nil
    local ok, err = pcall(ctx.sql, ctx, "SELECT name FROM people")
    package.cpath, package.loaded.lpeg, package.loaded["dstream.sql.grammar"] = saved_cpath, saved_lpeg, saved_grammar
    assert.is_false(ok)
    assert.matches("sql: dstream SQL needs LPeg: install Debian's lua%-lpeg %(apt%-get install lua%-lpeg%)", err)
  end)

  it("checks the arguments of to_table and sql at the user's line", function()
    local r = ctx:parallelize({ 1 })
    local line = debug.getinfo(1, "l").currentline; local ok, err = pcall(function() r:to_table("bad name", { "x" }) end)
    assert.is_false(ok)
    assert.are.equal("spec/sql_spec.lua:" .. line .. ": to_table: the table name must be an identifier (letters, digits, _), got bad name", err)
    line = debug.getinfo(1, "l").currentline; ok, err = pcall(function() ctx:sql("SELECT FROM people") end)
    assert.matches("^spec/sql_spec.lua:" .. line .. ": sql: syntax error", err)
    assert.matches("to_table: column 'X' is named twice", select(2, pcall(r.to_table, r, "t2", { "x", "X" })))
    assert.matches("sql: unknown option 'emitt'", select(2, pcall(ctx.sql, ctx, "SELECT name FROM people", { emitt = "update" })))
    assert.matches("sql: mode must be", select(2, pcall(ctx.sql, ctx, "SELECT name FROM people", { mode = "forever" })))
    assert.matches('mode = "running" is for GROUP BY queries', select(2, pcall(ctx.sql, ctx, "SELECT name FROM people", { mode = "running" })))
    assert.matches('mode = "running" keeps GROUP BY totals of a stream table across batches: not for windows or datasets',
      select(2, pcall(ctx.sql, ctx, "SELECT name, COUNT(*) FROM people GROUP BY name", { mode = "running" })))
  end)
end)

describe("SQL rows, show and explain", function()
  local ctx
  setup(function() ctx = dstream.context { workers = 2 } end)
  teardown(function() ctx:stop() end)

  it("show() prints a header and aligned cells, as Spark", function()
    ctx:parallelize({ { "to", 2 }, { "be", nil }, { "a-rather-long-word-here", 10 } }):to_table("wc", { "word", "n" })
    local text = capture(function() ctx:sql("SELECT word, n FROM wc ORDER BY word"):show(2) end)
    assert.are.equal(table.concat({
      "+--------------------+----+",
      "|                word|   n|",
      "+--------------------+----+",
      "|a-rather-long-wor...|  10|",
      "|                  be|null|",
      "+--------------------+----+",
      "only showing top 2 rows", "" }, "\n"), text)
    local plain = capture(function() ctx:parallelize({ 1, 22 }):show() end)
    assert.are.equal("+-----+\n|value|\n+-----+\n|    1|\n|   22|\n+-----+\n", plain)
  end)

  it("gives rows that Lua operators take, and takes Lua records back", function()
    local nums = ctx:parallelize({ 1, 2, 3, 4 }, 2):to_table("nums", { "n" })
    local doubled = ctx:sql("SELECT n, n * n AS sq FROM nums WHERE n > 1")
      :map(function(row) return row.sq - row.n end):collect()
    table.sort(doubled)
    assert.are.same({ 2, 6, 12 }, doubled)
    nums:map(function(n) return n % 2, n end):to_table("parity", { "odd", "n" })
    local rows = ctx:sql("SELECT odd, SUM(n) AS total FROM parity GROUP BY odd ORDER BY odd"):collect()
    assert.are.same({ { odd = 0, total = 6 }, { odd = 1, total = 4 } }, rows)
  end)

  it("reads columns named as Lua keywords or SQL keywords (quoted)", function()
    ctx:parallelize({ { ["repeat"] = 1, ["end"] = 2, ["select"] = "s" }, { 3, 4, "t" } }):to_table("kw", { "repeat", "end", "select" })
    local rows = ctx:sql('SELECT "repeat" + "end" AS total, "select" FROM kw ORDER BY total'):collect()
    assert.are.same({ { total = 3, select = "s" }, { total = 7, select = "t" } }, rows)
  end)

  it("runs upper() in a worker's hot loop many times (a LuaJIT fold of string.upper crashed there)", function()
    ctx:text_file("examples/data/clicks.log")
      :map(function(line)
        local ts, user, page = line:match("^(%d+) (%S+) (%S+)$")
        return { ts = tonumber(ts), user = user, page = page }
      end)
      :to_table("clicks", { "ts", "user", "page" })
    for _ = 1, 30 do
      local rows = ctx:sql([[SELECT DISTINCT upper(user) || ':' || lower(substr(page, 2)) AS tag FROM clicks
        WHERE page LIKE '/p%' OR (user IN ('chen', 'eve') AND page <> '/home') ORDER BY tag]]):collect()
      assert.are.same({ "ANN:pay", "BOB:pay", "CHEN:cart", "CHEN:item", "CHEN:pay", "CHEN:search", "DANA:pay" },
        (function() local out = {} for i, r in ipairs(rows) do out[i] = r.tag end return out end)())
    end
  end)

  it("explain prints the operators and the generated Lua", function()
    ctx:parallelize({ "a" }):to_table("words", { "word" })
    local text = capture(function()
      ctx:explain("SELECT word, COUNT(*) AS total FROM words WHERE length(word) > 1 GROUP BY word")
    end)
    assert.matches("== plan ==", text, 1, true)
    assert.matches("filter%s+WHERE length%(word%) > 1", text)
    assert.matches("reduce_by_key%s+merge states %(combined in each partition first%)", text)
    assert.matches("return a %+ b", text)
    assert.matches("return t1_1, 1", text)
  end)

  it("runs on workers that never load lpeg", function()
    ctx:parallelize({ "x" }):to_table("one", { "v" })
    local loaded = ctx:sql("SELECT v FROM one")
      :map(function() return package.loaded.lpeg ~= nil end):collect()
    assert.are.same({ false }, loaded)
  end)
end)

-- Event-time windows: the windows emitted over the whole run (final mode) equal the plain-Lua
-- grouping of the same records.
local function events(seed, n)
  math.randomseed(seed)
  local batches, all = {}, {}
  local t = 0
  for b = 1, 6 do
    batches[b] = {}
    for _ = 1, n do
      t = t + math.random(0, 120)
      local ev = { user = ({ "ann", "bob", "cy" })[math.random(3)], ts = t, amount = math.random(1, 9) }
      batches[b][#batches[b] + 1] = ev
      all[#all + 1] = ev
    end
  end
  batches[#batches + 1] = { { user = "zz", ts = t + 100000, amount = 0 } } -- moves the watermark past every window
  batches[#batches + 1] = {}
  return batches, all
end

local function run_windowed(query, batches, opts)
  local ctx = dstream.context { clock = "manual", workers = 2 }
  ctx:queue_stream(batches):to_table("ev", { "user", "ts", "amount" }, { event_time = "ts", watermark = "0.5s" })
  local got = {}
  ctx:sql(query, opts):foreach_rdd(function(rdd, time)
    for _, r in ipairs(rdd:collect()) do
      r.emitted = time
      got[#got + 1] = r
    end
  end)
  ctx:start()
  ctx:advance(#batches)
  ctx:stop()
  return got
end

local function drop_user(rows, user)
  local out = {}
  for _, r in ipairs(rows) do if r.user ~= user then out[#out + 1] = r end end
  return out
end

describe("SQL windows on event time", function()
  local COLS = { "user", "window_start", "window_end", "n", "total" }
  local batches, all = events(7, 25)

  it("TUMBLE matches a plain-Lua grouping", function()
    local got = run_windowed("SELECT user, window_start, window_end, COUNT(*) AS n, SUM(amount) AS total FROM ev "
      .. "GROUP BY TUMBLE(ts, '1 second'), user", batches)
    local want = {}
    for _, e in ipairs(all) do
      local s = e.ts - e.ts % 1000
      local k = e.user .. "|" .. s
      want[k] = want[k] or { user = e.user, window_start = s, window_end = s + 1000, n = 0, total = 0 }
      want[k].n, want[k].total = want[k].n + 1, want[k].total + e.amount
    end
    local list = {}
    for _, w in pairs(want) do list[#list + 1] = w end
    assert.is_true(#list > 5)
    assert.are.same(sorted_rows(list, COLS), sorted_rows(drop_user(got, "zz"), COLS))
  end)

  it("HOP matches a plain-Lua grouping (length 2 s, slide 1 s)", function()
    local got = run_windowed("SELECT user, window_start, window_end, COUNT(*) AS n, SUM(amount) AS total FROM ev "
      .. "GROUP BY HOP(ts, '2 seconds', '1 second'), user", batches)
    local want = {}
    for _, e in ipairs(all) do
      for s = e.ts - e.ts % 1000 - 1000, e.ts - e.ts % 1000, 1000 do
        if s >= 0 or true then
          local k = e.user .. "|" .. s
          want[k] = want[k] or { user = e.user, window_start = s, window_end = s + 2000, n = 0, total = 0 }
          want[k].n, want[k].total = want[k].n + 1, want[k].total + e.amount
        end
      end
    end
    local list = {}
    for _, w in pairs(want) do list[#list + 1] = w end
    assert.are.same(sorted_rows(list, COLS), sorted_rows(drop_user(got, "zz"), COLS))
  end)

  it("SESSION matches a plain-Lua sessionisation (gap 300 ms)", function()
    local got = run_windowed("SELECT user, window_start, window_end, COUNT(*) AS n, SUM(amount) AS total FROM ev "
      .. "GROUP BY SESSION(ts, '300 ms'), user", batches)
    local by_user, list = {}, {}
    for _, e in ipairs(all) do
      by_user[e.user] = by_user[e.user] or {}
      table.insert(by_user[e.user], e)
    end
    for user, evs in pairs(by_user) do
      table.sort(evs, function(a, b) return a.ts < b.ts end)
      local cur
      for _, e in ipairs(evs) do
        if cur and e.ts < cur.last + 300 then
          cur.last, cur.n, cur.total = e.ts, cur.n + 1, cur.total + e.amount
        else
          cur = { user = user, window_start = e.ts, last = e.ts, n = 1, total = e.amount }
          list[#list + 1] = cur
        end
      end
    end
    for _, s in ipairs(list) do s.window_end = s.last + 300 end
    assert.are.same(sorted_rows(list, COLS), sorted_rows(drop_user(got, "zz"), COLS))
  end)

  it("JOIN of two streams within the same window matches a plain-Lua pairing", function()
    -- The views run 1.5 s behind the clicks, more than either watermark: the join's watermark
    -- is the slower side's, so none of them is late.
    local clicks = events(11, 15)
    local views, all_views = events(12, 15)
    for _, v in ipairs(all_views) do if v.user ~= "zz" then v.ts = math.max(0, v.ts - 1500) end end
    local ctx = dstream.context { clock = "manual", workers = 2 }
    ctx:queue_stream(clicks):to_table("c", { "user", "ts", "amount" }, { event_time = "ts", watermark = "0.5s" })
    ctx:queue_stream(views):to_table("v", { "user", "ts", "amount" }, { event_time = "ts", watermark = "0.2s" })
    local got = {}
    ctx:sql("SELECT c.user, window_start, COUNT(*) AS n, SUM(v.amount) AS total FROM c JOIN v ON c.user = v.user "
      .. "GROUP BY TUMBLE(c.ts, '1 second'), c.user")
      :foreach_rdd(function(rdd) for _, r in ipairs(rdd:collect()) do got[#got + 1] = r end end)
    ctx:start()
    ctx:advance(#clicks)
    ctx:stop()
    local _, all_clicks = events(11, 15)
    local want = {}
    for _, c in ipairs(all_clicks) do
      for _, v in ipairs(all_views) do
        local s = c.ts - c.ts % 1000
        if c.user == v.user and v.ts >= s and v.ts < s + 1000 then
          local k = c.user .. "|" .. s
          want[k] = want[k] or { user = c.user, window_start = s, n = 0, total = 0 }
          want[k].n, want[k].total = want[k].n + 1, want[k].total + v.amount
        end
      end
    end
    local list = {}
    for _, w in pairs(want) do list[#list + 1] = w end
    assert.is_true(#list > 3)
    local cols = { "user", "window_start", "n", "total" }
    assert.are.same(sorted_rows(list, cols), sorted_rows(got, cols))
  end)

  it("JOIN of two streams within windows, the tables without a watermark (or watermark 0)", function()
    for _, wm in ipairs { false, 0, "0s" } do
      local ctx = dstream.context { clock = "manual", workers = 2 }
      local topts = { event_time = "ts", watermark = wm or nil }
      ctx:queue_stream({ { { "ann", 100 }, { "bob", 500 } }, { { "ann", 1500 } }, { { "zed", 9000 } } })
        :to_table("c", { "user", "ts" }, topts)
      ctx:queue_stream({ { { "ann", 200 } }, { { "bob", 900 }, { "ann", 1900 } }, { { "zed", 9000 } } })
        :to_table("v", { "user", "ts" }, topts)
      local got = {}
      ctx:sql("SELECT c.user, window_start, COUNT(*) AS n FROM c JOIN v ON c.user = v.user "
        .. "GROUP BY TUMBLE(c.ts, '2 seconds'), c.user")
        :foreach_rdd(function(rdd, time)
          for _, r in ipairs(rdd:collect()) do got[#got + 1] = { time, r.user, r.window_start, r.n } end
        end)
      ctx:start()
      ctx:advance(3)
      ctx:stop()
      table.sort(got, function(a, b) return a[2] < b[2] end)
      assert.are.same({ { 3000, "ann", 0, 4 }, { 3000, "bob", 0, 1 } }, got)
    end
  end)

  local CLICKS = { { { user = "ann", ts = 1000 }, { user = "bob", ts = 1500 }, { user = "ann", ts = 2500 } },
    { { user = "ann", ts = 3100 }, { user = "bob", ts = 900 } }, { { user = "ann", ts = 7000 } } }
  local function clicks(opts)
    local ctx = dstream.context { clock = "manual", workers = 2 }
    ctx:queue_stream(CLICKS):to_table("clicks", { "user", "ts" }, { event_time = "ts", watermark = "1s" })
    local out = {}
    ctx:sql("SELECT user, window_start, COUNT(*) AS n FROM clicks GROUP BY TUMBLE(ts, '2 seconds'), user", opts)
      :foreach_rdd(function(rdd, time)
        for _, line in ipairs(sorted_rows(rdd:collect(), { "user", "window_start", "n" })) do out[#out + 1] = time .. " " .. line end
      end)
    ctx:start()
    ctx:advance(3)
    ctx:stop()
    return out
  end

  it("emits a window once when the watermark passes it, and drops a late record", function()
    -- bob 900 arrives when the watermark is 2500 - 1000: late, not counted.
    assert.are.same({ "2000 ann 0 1", "2000 bob 0 1", "3000 ann 2000 2" }, clicks())
  end)

  it("emits every change with emit = \"update\"", function()
    assert.are.same({ "1000 ann 0 1", "1000 ann 2000 1", "1000 bob 0 1", "2000 ann 2000 2", "3000 ann 6000 1" },
      clicks({ emit = "update" }))
  end)
end)

describe("SQL joins of a stream with a static table", function()
  it("keys the static table once, not at every batch", function()
    local ctx = dstream.context { clock = "manual", workers = 2 }
    local reads = ctx:accumulator(0)
    ctx:parallelize({ { "a", "alpha" }, { "b", "beta" } })
      :map(function(r) reads:add(1); return r end)
      :to_table("names", { "k", "name" })
    ctx:queue_stream({ { "a", "c" }, { "b" }, { "a" } }):to_table("keys", { "k" })
    local seen = {}
    ctx:sql("SELECT keys.k, names.name FROM keys LEFT JOIN names ON keys.k = names.k")
      :foreach_rdd(function(rdd, time) seen[#seen + 1] = time .. " " .. table.concat(sorted_rows(rdd:collect(), { "k", "name" }), ",") end)
    ctx:start()
    ctx:advance(3)
    ctx:stop()
    assert.are.same({ "1000 a alpha,c nil", "2000 b beta", "3000 a alpha" }, seen)
    assert.are.equal(2, reads.value)
  end)
end)

describe("SQL running totals", function()
  it("keeps GROUP BY totals across batches with mode = \"running\"", function()
    local ctx = dstream.context { clock = "manual", workers = 2 }
    ctx:queue_stream({ { "a", "b", "a" }, {}, { "b", "c" } }):to_table("w", { "word" })
    local seen = {}
    ctx:sql("SELECT word, COUNT(*) AS n FROM w GROUP BY word", { mode = "running" })
      :foreach_rdd(function(rdd, time) seen[#seen + 1] = time .. ": " .. table.concat(sorted_rows(rdd:collect(), { "word", "n" }), ", ") end)
    ctx:start()
    ctx:advance(3)
    ctx:stop()
    assert.are.same({ "1000: a 2, b 1", "2000: a 2, b 1", "3000: a 2, b 2, c 1" }, seen)
  end)
end)

describe("SQL at the prompt", function()
  it(":sql runs a query over ctx's tables and shows the rows; errors keep the caret", function()
    package.path = "spec/helpers/?.lua;" .. package.path
    local bin = require("engine").interpreter()
    local input = os.tmpname()
    local fh = assert(io.open(input, "w"))
    fh:write('ctx:parallelize({ { "ann", 3 }, { "bob", 5 }, { "ann", 4 } }):to_table("scores", { "name", "points" })\n',
      ":sql SELECT name, SUM(points) AS total FROM scores GROUP BY name ORDER BY total DESC\n",
      ":sql SELECT nme FROM scores\n")
    fh:close()
    local p = assert(io.popen(("'%s' --workers 2 -i < '%s' 2>&1"):format(bin, input)))
    local out = p:read("*a")
    p:close()
    os.remove(input)
    assert.matches("+----+-----+\n|name|total|\n+----+-----+\n| ann|    7|\n| bob|    5|\n+----+-----+", out, 1, true)
    assert.matches("unknown column 'nme'; did you mean 'name'? at line 1, column 8:\n  SELECT nme FROM scores\n         ^", out, 1, true)
  end)
end)

describe("SQL examples", function()
  package.path = "spec/helpers/?.lua;" .. package.path
  local bin = require("engine").interpreter()
  local function run(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    return out
  end

  it("examples/sql_wordcount.lua prints the top words of every batch and of the whole text", function()
    local out = run(("'%s' examples/sql_wordcount.lua"):format(bin))
    local _, batches = out:gsub("========= %d+ ms =========", "")
    assert.are.equal(3, batches)
    -- The whole text's top 5, counted by coreutils.
    local want = {}
    for count, word in run("tr 'A-Z' 'a-z' < examples/data/streams.txt | tr -cs 'a-z' '\\n' | grep -v '^$' | sort | uniq -c"
      .. " | sort -k1,1nr -k2,2 | head -5"):gmatch("(%d+) (%a+)") do
      want[#want + 1] = ("|%s|%s|"):format(word, count)
    end
    local whole = out:match("========= the whole text =========\n(.*)$")
    local got = {}
    for word, count in whole:gmatch("|%s*(%a+)|%s*(%d+)|") do got[#got + 1] = ("|%s|%s|"):format(word, count) end
    assert.are.same(want, got)
  end)

  it("examples/sql_windows.lua leaves the late click out of its window", function()
    local out = run(("'%s' examples/sql_windows.lua"):format(bin))
    assert.matches("windows final at batch 2000 ms:.-| bob|           0|      2000|     1|  /search|", out)
    assert.matches("| ann|        2000|      4000|     2|     /pay|", out, 1, true)
    assert.matches("all clicks: bob [0, 2000) 2", out, 1, true)
  end)
end)

describe("SQL running totals across a restart", function()
  package.path = "spec/helpers/?.lua;" .. package.path
  local H = require("engine")
  local tmp = H.scratch_dirs(after_each)

  it("keeps mode = \"running\" totals in checkpointed keyed state (default checkpoint interval)", function()
    local dir, inp = tmp(), tmp()
    local totals = {}
    local function build()
      return dstream.get_or_create(dir, function()
        local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2 }
        ctx:text_file_stream(inp, { new_files_only = false }):to_table("words", { "word" })
        ctx:sql("SELECT word, COUNT(*) AS n FROM words GROUP BY word", { mode = "running" })
          :foreach_rdd(function(rdd)
            for _, row in ipairs(rdd:collect()) do totals[row.word] = row.n end
          end)
        return ctx
      end)
    end
    H.write_file(inp .. "/a.txt", "x\ny\nx\n")
    local ctx = build()
    ctx:start()
    ctx:await_termination(0.2)
    ctx:advance(ctx.checkpoint_ms / ctx.batch_ms) -- up to the first checkpoint after start
    ctx:stop()
    assert.are.same({ x = 2, y = 1 }, totals)
    totals = {}
    -- a.txt goes: x can only come back from the checkpoint's keyed state.
    assert(os.remove(inp .. "/a.txt"))
    H.write_file(inp .. "/b.txt", "y\nz\n")
    ctx = build()
    ctx:start()
    local deadline = os.time() + 10
    repeat
      ctx:await_termination(0.2)
      ctx:advance(1)
    until totals.z or os.time() > deadline
    ctx:stop()
    assert.are.same({ x = 2, y = 2, z = 1 }, totals)
  end)
end)

describe("SQL on the newest batch of a stream (the prompt's :sql)", function()
  it("reads the batch the stream produced last", function()
    local ctx = dstream.context { clock = "manual", workers = 2 }
    local s = ctx:queue_stream({ { "a", "b" }, { "c", "c", "d" } })
    s:to_table("letters", { "l" })
    s:count():foreach_rdd(function() end)
    ctx:start()
    ctx:advance(2)
    local out = capture(function()
      require("dstream.sql").run_now(ctx, "SELECT l, COUNT(*) AS n FROM letters GROUP BY l ORDER BY l")
    end)
    ctx:stop()
    assert.are.equal("+-+-+\n|l|n|\n+-+-+\n|c|2|\n|d|1|\n+-+-+\n", out)
  end)
end)

-- The SQL corpus against SQLite: every query runs in dstream per batch of a stream (two
-- batches of rows and an empty one) at 1 and 4 workers, and over the whole data as a static
-- dataset, and each answer is compared with sqlite3 running the same query on the same rows
-- (spec/helpers/sql_oracle.lua). NULLs, three-valued logic, joins with no match, empty
-- batches and ties in ORDER BY with LIMIT are in the corpus. Dialect differences that the
-- guide documents (booleans print as true/false, LIKE is case-sensitive: the oracle runs with
-- PRAGMA case_sensitive_like) are normalised in sql_oracle.row_text.
package.path = "spec/helpers/?.lua;" .. package.path
local oracle = require("sql_oracle")
local dstream = require("dstream")

local T_COLS = { "id", "name", "grp", "x", "y" }
local T_ROWS = {
  { 1, "ann", "a", 3, 1.5 }, { 2, "bob", "b", nil, 2.5 }, { 3, "cy", "a", 7, nil },
  { 4, nil, "c", 2, 0.5 }, { 5, "dee", nil, 5, 3.25 }, { 6, "eve", "b", 7, -1.25 },
  { 7, "fay", "a", 0, 2.75 }, { 8, "gus", "c", -4, nil }, { 9, "hal", "b", 7, 1.5 },
  { 10, "ivy", nil, nil, nil }, { 11, "jo", "a", 1, 4.5 }, { 12, "ann", "d", 9, 0.25 },
}
local BATCHES = { { 1, 6 }, { 7, 12 }, { 1, 0 } } -- row ranges; the third batch is empty
local U_COLS = { "grp", "label" }
local U_ROWS = { { "a", "alpha" }, { "b", "beta" }, { "e", "epsilon" }, { nil, "none" } }
local V_COLS = { "grp", "w" } -- a second stream, joined batch by batch
local V_BATCHES = { { { "a", 10 }, { "c", 30 } }, { { "b", 20 }, { "a", 11 }, { "a", 12 } }, {} }

-- Records in every shape to_table takes: named fields, arrays (with holes for NULL).
local function record(r, i)
  if i % 2 == 0 then return { r[1], r[2], r[3], r[4], r[5] } end
  return { id = r[1], name = r[2], grp = r[3], x = r[4], y = r[5] }
end

local CORPUS = {
  -- projections, arithmetic, NULL propagation
  "SELECT id, name FROM t",
  "SELECT * FROM t",
  "SELECT id, x + 1 AS a, x - y AS b, x * 2 AS c, -x AS d FROM t",
  "SELECT id, x / 2 AS half, y / 2 AS yhalf, x % 3 AS m, x / 0 AS z FROM t",
  "SELECT id, (x + 1) * (y - 1) AS e FROM t",
  "SELECT id, name || '-' || grp AS tag FROM t",
  "SELECT id, x * 1.5 AS s FROM t WHERE x IS NOT NULL",
  "SELECT id, 1 + 2 * 3 AS k, (1 + 2) * 3 AS k2 FROM t",
  -- comparisons and three-valued logic
  "SELECT id FROM t WHERE x > 3",
  "SELECT id FROM t WHERE x >= 3 AND y < 2",
  "SELECT id FROM t WHERE x = 7 OR y = 1.5",
  "SELECT id FROM t WHERE x <> 7",
  "SELECT id FROM t WHERE x != 7",
  "SELECT id FROM t WHERE NOT x > 3",
  "SELECT id FROM t WHERE NOT (x > 3 AND y > 1)",
  "SELECT id FROM t WHERE x > 3 OR y > 100",
  "SELECT id, x > 3 AS big, x > 3 AND y > 1 AS both_, x > 3 OR y > 1 AS either FROM t",
  "SELECT id, NOT (x > 3) AS n FROM t",
  "SELECT id, (x > 3) = (y > 1) AS same FROM t",
  "SELECT id FROM t WHERE name IS NULL",
  "SELECT id FROM t WHERE grp IS NOT NULL AND x IS NULL",
  "SELECT id, x IS NULL AS xn, y IS NOT NULL AS yn FROM t",
  "SELECT id FROM t WHERE NULL = NULL",
  "SELECT id FROM t WHERE x = NULL OR id = 1",
  "SELECT id, x = NULL AS eqnull FROM t",
  "SELECT id FROM t WHERE name < 'd'",
  "SELECT id FROM t WHERE name >= 'eve' AND name <= 'ivy'",
  -- IN, BETWEEN, LIKE
  "SELECT id FROM t WHERE x IN (1, 3, 7)",
  "SELECT id FROM t WHERE x NOT IN (1, 3, 7)",
  "SELECT id FROM t WHERE grp IN ('a', 'c')",
  "SELECT id, x IN (3, NULL) AS i, x NOT IN (3, NULL) AS ni FROM t",
  "SELECT id FROM t WHERE x IN (y, 7)",
  "SELECT id FROM t WHERE x BETWEEN 2 AND 7",
  "SELECT id FROM t WHERE x NOT BETWEEN 2 AND 7",
  "SELECT id, y BETWEEN 0 AND 2 AS b FROM t",
  "SELECT id FROM t WHERE name LIKE 'a%'",
  "SELECT id FROM t WHERE name LIKE '%e%'",
  "SELECT id FROM t WHERE name LIKE '_o%'",
  "SELECT id FROM t WHERE name NOT LIKE '%a%'",
  "SELECT id FROM t WHERE name LIKE 'A%'",
  "SELECT id, name LIKE '%y' AS endy FROM t",
  "SELECT id FROM t WHERE name LIKE 'ann' OR name LIKE '%_' AND name LIKE '_v%'",
  "SELECT id FROM t WHERE CAST(x AS TEXT) LIKE '7%' OR grp LIKE '%'",
  -- CASE, CAST, functions
  "SELECT id, CASE WHEN x > 5 THEN 'big' WHEN x > 1 THEN 'mid' ELSE 'small' END AS size FROM t",
  "SELECT id, CASE WHEN x > 5 THEN 'big' END AS size FROM t",
  "SELECT id, CASE grp WHEN 'a' THEN 1 WHEN 'b' THEN 2 ELSE 0 END AS g FROM t",
  "SELECT id, CASE WHEN y IS NULL THEN -1 ELSE y END AS yy FROM t",
  "SELECT id, CAST(y AS INTEGER) AS iy, CAST(x AS REAL) AS rx FROM t",
  "SELECT id, CAST(id AS TEXT) || name AS s FROM t",
  "SELECT id, CAST('12' AS INTEGER) + x AS n FROM t",
  "SELECT id, lower(name) AS l, upper(name) AS u, length(name) AS n FROM t",
  "SELECT id, substr(name, 2) AS a, substr(name, 1, 2) AS b, substr(name, -2, 1) AS c FROM t",
  "SELECT id, trim('  ' || name || ' ') AS s FROM t",
  "SELECT id, abs(y) AS a, round(y) AS r, round(y, 1) AS r1, floor(y) AS f, ceil(y) AS c FROM t",
  "SELECT id, coalesce(x, y, -1) AS c, nullif(x, 7) AS n FROM t",
  "SELECT id, coalesce(name, 'nobody') AS who FROM t WHERE coalesce(x, 0) < 5",
  -- ORDER BY, LIMIT, DISTINCT
  "SELECT id, x FROM t ORDER BY x, id",
  "SELECT id, x FROM t ORDER BY x DESC, id",
  "SELECT id, name FROM t ORDER BY name DESC, id DESC",
  -- a column of numbers and strings: numbers first (NULLs before both), as SQLite orders them
  "SELECT id, CASE WHEN x > 4 THEN name ELSE x END AS m FROM t ORDER BY m, id",
  "SELECT id, CASE WHEN x > 4 THEN name ELSE x END AS m FROM t ORDER BY m DESC, id LIMIT 5",
  "SELECT id, y FROM t ORDER BY y, id LIMIT 4",
  "SELECT id FROM t ORDER BY x * -1, id",
  "SELECT id, name FROM t ORDER BY 2, 1",
  "SELECT id FROM t ORDER BY id LIMIT 0",
  { q = "SELECT id, x FROM t ORDER BY x DESC LIMIT 2", ties = { "x" } },
  { q = "SELECT grp, id FROM t ORDER BY grp LIMIT 3", ties = { "grp" } },
  { q = "SELECT id FROM t LIMIT 3", count_only = true },
  "SELECT DISTINCT grp FROM t",
  "SELECT DISTINCT x FROM t ORDER BY x",
  "SELECT DISTINCT grp, x > 3 AS big FROM t",
  -- aggregates
  "SELECT COUNT(*) AS n FROM t",
  "SELECT COUNT(*) AS n, COUNT(x) AS nx, COUNT(y) AS ny, SUM(x) AS sx, AVG(y) AS ay FROM t",
  "SELECT MIN(x) AS lo, MAX(x) AS hi, MIN(name) AS first, MAX(name) AS last FROM t",
  "SELECT COUNT(DISTINCT grp) AS g, COUNT(DISTINCT x) AS dx FROM t",
  "SELECT SUM(x) AS s, AVG(x) AS a FROM t WHERE x > 100",
  "SELECT COUNT(*) AS n FROM t WHERE id < 0",
  "SELECT grp, COUNT(*) AS n FROM t GROUP BY grp",
  "SELECT grp, COUNT(x) AS n, SUM(x) AS s, AVG(x) AS a, MIN(y) AS lo, MAX(y) AS hi FROM t GROUP BY grp",
  "SELECT grp, COUNT(DISTINCT x) AS d FROM t GROUP BY grp",
  "SELECT grp, x, COUNT(*) AS n FROM t GROUP BY grp, x",
  "SELECT x > 3 AS big, COUNT(*) AS n FROM t GROUP BY x > 3",
  "SELECT grp, COUNT(*) AS n FROM t GROUP BY grp HAVING COUNT(*) > 1",
  "SELECT grp, SUM(x) AS s FROM t GROUP BY grp HAVING SUM(x) > 5 OR grp IS NULL",
  "SELECT grp, COUNT(*) AS n FROM t GROUP BY grp ORDER BY n DESC, grp",
  "SELECT grp, SUM(x) * 2 + COUNT(*) AS score FROM t GROUP BY grp ORDER BY score, grp",
  "SELECT upper(grp) AS g, MAX(x) - MIN(x) AS spread FROM t GROUP BY upper(grp)",
  "SELECT grp, COUNT(*) AS n FROM t WHERE x IS NOT NULL GROUP BY grp ORDER BY grp LIMIT 2",
  "SELECT grp, CASE WHEN COUNT(*) > 2 THEN 'many' ELSE 'few' END AS k FROM t GROUP BY grp",
  "SELECT grp FROM t GROUP BY grp ORDER BY COUNT(*) DESC, grp",
  "SELECT name, COUNT(*) AS n FROM t GROUP BY name HAVING n > 1",
  "SELECT grp, COUNT(*) AS n FROM t GROUP BY 1",
  "SELECT upper(grp) AS g, SUM(x) AS s FROM t GROUP BY g ORDER BY g",
  -- joins: stream with a static table, LEFT with no match, two streams in the same batch
  "SELECT t.id, u.label FROM t JOIN u ON t.grp = u.grp",
  "SELECT t.id, u.label FROM t LEFT JOIN u ON t.grp = u.grp",
  "SELECT t.id, u.label FROM t LEFT JOIN u ON u.grp = t.grp WHERE u.label IS NULL",
  "SELECT u.label, COUNT(*) AS n, SUM(t.x) AS s FROM t JOIN u ON t.grp = u.grp GROUP BY u.label",
  "SELECT t.id, u.label FROM t AS t LEFT JOIN u AS u ON t.grp = u.grp AND t.name = u.label",
  "SELECT a.id, b.id AS other FROM t a JOIN t b ON a.x = b.x WHERE a.id < b.id",
  "SELECT t.id, v.w FROM t JOIN v ON t.grp = v.grp",
  "SELECT t.id, v.w, u.label FROM t LEFT JOIN v ON t.grp = v.grp LEFT JOIN u ON t.grp = u.grp",
}

local function rows_of(first, last)
  local out = {}
  for i = first, last do out[#out + 1] = T_ROWS[i] end
  return out
end

-- SQLite's answers: per batch (tables named t, v each time) and for all rows.
local function oracle_answers(queries)
  local per_batch = {}
  for b, range in ipairs(BATCHES) do
    local setup = oracle.table_sql("t", T_COLS, rows_of(range[1], range[2])) .. "\n"
      .. oracle.table_sql("u", U_COLS, U_ROWS) .. "\n" .. oracle.table_sql("v", V_COLS, V_BATCHES[b])
    per_batch[b] = oracle.run(setup, queries)
  end
  local all_v = {}
  for _, batch in ipairs(V_BATCHES) do for _, r in ipairs(batch) do all_v[#all_v + 1] = r end end
  local whole = oracle.run(oracle.table_sql("t", T_COLS, T_ROWS) .. "\n" .. oracle.table_sql("u", U_COLS, U_ROWS)
    .. "\n" .. oracle.table_sql("v", V_COLS, all_v), queries)
  return per_batch, whole
end

local function compare(entry, columns, got, want, where)
  local ordered = entry.q:find("ORDER BY") ~= nil
  if entry.count_only then
    assert.are.equal(#want, #got, where .. ": " .. entry.q)
    return
  end
  local cols = entry.ties or columns
  local g, w = oracle.texts(got, cols, ordered), oracle.texts(want, cols, ordered)
  assert.are.same(w, g, where .. ": " .. entry.q)
end

describe("SQL corpus against SQLite", function()
  local entries, queries = {}, {}
  for i, e in ipairs(CORPUS) do
    entries[i] = type(e) == "string" and { q = e } or e
    queries[i] = entries[i].q
  end
  local per_batch, whole = oracle_answers(queries)

  it("has at least 80 queries, each answered by sqlite3", function()
    assert.is_true(#entries >= 80)
    assert.are.equal(#entries, #whole)
  end)

  for _, workers in ipairs { 1, 4 } do
    it(("per batch of a stream, at %d workers, matches SQLite"):format(workers), function()
      local ctx = dstream.context { clock = "manual", workers = workers, partitions = workers }
      local t_batches, v_batches = {}, {}
      for b, range in ipairs(BATCHES) do
        t_batches[b] = {}
        for i = range[1], range[2] do t_batches[b][#t_batches[b] + 1] = record(T_ROWS[i], i) end
        v_batches[b] = V_BATCHES[b]
      end
      ctx:queue_stream(t_batches):to_table("t", T_COLS)
      ctx:queue_stream(v_batches):to_table("v", V_COLS)
      ctx:parallelize(U_ROWS, 2):to_table("u", U_COLS)
      local got = {}
      for i, e in ipairs(entries) do
        got[i] = {}
        local s = ctx:sql(e.q)
        got[i].columns = s._sql_columns
        s:foreach_rdd(function(rdd) got[i][#got[i] + 1] = rdd:collect() end)
      end
      ctx:start()
      ctx:advance(#BATCHES)
      ctx:stop()
      for i, e in ipairs(entries) do
        assert.are.equal(#BATCHES, #got[i], e.q)
        for b = 1, #BATCHES do
          compare(e, got[i].columns, got[i][b], per_batch[b][i], ("batch %d, %d workers"):format(b, workers))
        end
      end
    end)
  end

  -- Random expressions (seeded): numeric ones over x (whole, nullable), y (real, nullable),
  -- id, constants and NULL; boolean ones from comparisons, AND/OR/NOT, IS NULL, BETWEEN, IN.
  -- No / or %: SQLite divides 3.0 (a real) unlike 3, and dstream's numbers have no such type.
  it("random expressions with NULLs match SQLite", function()
    math.randomseed(2020)
    local num, bool
    function num(d)
      local r = math.random(d > 2 and 4 or 10)
      if r == 1 then return "x" elseif r == 2 then return "y" elseif r == 3 then return "id" elseif r == 4 then
        return ({ "NULL", "0", "1", "2", "-3", "1.5" })[math.random(6)]
      elseif r <= 6 then return ("(%s %s %s)"):format(num(d + 1), ({ "+", "-", "*" })[math.random(3)], num(d + 1))
      elseif r == 7 then return "-(" .. num(d + 1) .. ")"
      elseif r == 8 then return ("CASE WHEN %s THEN %s ELSE %s END"):format(bool(d + 1), num(d + 1), num(d + 1))
      elseif r == 9 then return ("coalesce(%s, %s)"):format(num(d + 1), num(d + 1))
      else return ("abs(%s)"):format(num(d + 1)) end
    end
    function bool(d)
      local r = math.random(d > 2 and 3 or 8)
      if r <= 2 then return ("%s %s %s"):format(num(d + 1), ({ "=", "<>", "<", "<=", ">", ">=" })[math.random(6)], num(d + 1))
      elseif r == 3 then return ("%s IS %sNULL"):format(num(d + 1), math.random(2) == 1 and "NOT " or "")
      elseif r == 4 then return ("(%s AND %s)"):format(bool(d + 1), bool(d + 1))
      elseif r == 5 then return ("(%s OR %s)"):format(bool(d + 1), bool(d + 1))
      elseif r == 6 then return ("NOT (%s)"):format(bool(d + 1))
      elseif r == 7 then return ("%s BETWEEN %s AND %s"):format(num(d + 1), num(d + 1), num(d + 1))
      else return ("%s %sIN (%s, %s, 7)"):format(num(d + 1), math.random(2) == 1 and "NOT " or "", num(d + 1), num(d + 1)) end
    end
    local queries, columns = {}, {}
    for qi = 1, 6 do
      local items, cols = { "id" }, { "id" }
      for i = 1, 15 do
        items[#items + 1] = ("%s AS c%d"):format(qi % 2 == 0 and bool(0) or num(0), i)
        cols[#cols + 1] = "c" .. i
      end
      queries[qi] = "SELECT " .. table.concat(items, ", ") .. " FROM t"
      columns[qi] = cols
    end
    local want = oracle.run(oracle.table_sql("t", T_COLS, T_ROWS), queries)
    local ctx = dstream.context { workers = 2 }
    local rows = {}
    for i, r in ipairs(T_ROWS) do rows[i] = record(r, i) end
    ctx:parallelize(rows):to_table("t", T_COLS)
    for qi, q in ipairs(queries) do
      local got = ctx:sql(q):collect()
      assert.are.same(oracle.texts(want[qi], columns[qi]), oracle.texts(got, columns[qi]), q)
    end
    ctx:stop()
  end)

  it("over static datasets matches SQLite", function()
    local ctx = dstream.context { workers = 2, partitions = 3 }
    local rows = {}
    for i, r in ipairs(T_ROWS) do rows[i] = record(r, i) end
    ctx:parallelize(rows):to_table("t", T_COLS)
    ctx:parallelize(U_ROWS, 2):to_table("u", U_COLS)
    local all_v = {}
    for _, batch in ipairs(V_BATCHES) do for _, r in ipairs(batch) do all_v[#all_v + 1] = r end end
    ctx:parallelize(all_v):to_table("v", V_COLS)
    for i, e in ipairs(entries) do
      local r = ctx:sql(e.q)
      compare(e, r._sql_columns, r:collect(), whole[i], "static")
    end
    ctx:stop()
  end)
end)

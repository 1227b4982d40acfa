#!/usr/bin/env bash
# spec/e2e/database_postgres.sh: to_sql, read_sql and dstream.db against a real PostgreSQL
# server started here (spec/e2e/lib/postgres.bash), read back with psql: types and NULLs,
# append through COPY (text with tabs, newlines and backslashes), upsert on a composite key,
# a refused row (the batch fails with the row and the server's message; with on_error the
# row goes to the dead-letter file and the others are committed), one session per worker
# (pg_stat_activity), read_sql joined with a stream, and the examples: postgres_totals.lua
# with the server's URL and without (SQLite), enrich_join.lua --sql URL printing what its CSV
# variant prints. The crash tests are spec/e2e/database_crash.sh.
source "$(dirname "$0")/lib/common.bash"
source "$(dirname "$0")/lib/postgres.bash"

if ! pg_start; then
  not_ok "a PostgreSQL server could be started (Debian package postgresql; scripts/setup.sh installs it)"
  finish
fi

run_job() { # run_job NAME: runs $WORK/NAME.lua with the URL as arg[1]; output in NAME.out
  "$DSTREAM" "$WORK/$1.lua" "$PG_URL" >"$WORK/$1.out" 2>&1
}

# ---- types, COPY escaping, composite-key upsert, sessions ----
psql_q "CREATE TABLE t(id BIGINT, name TEXT, score DOUBLE PRECISION, ok BOOLEAN, tags TEXT);
        CREATE TABLE daily(day TEXT, word TEXT, n BIGINT, PRIMARY KEY (day, word))"
cat >"$WORK/types.lua" <<'LUA'
local dstream = require("dstream")
local url = arg[1]
local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 4 }
ctx:queue_stream { { { id = 1, name = "tab\there", score = 1.5, ok = true, tags = { "a" } },
  { 2, "new\nline \\ back", 2.25, false }, { id = 3 } } }
  :to_sql { url = url, table = "t", columns = { "id", "name", "score", "ok", "tags" } }
ctx:queue_stream { { "mon a", "mon b", "mon a" }, { "tue a", "mon a" } }
  :map(function(l) local d, w = l:match("(%S+) (%S+)") return { d, w }, 1 end)
  :update_state_by_key(function(ones, n) return (n or 0) + #ones end)
  :to_sql { url = url, table = "daily", columns = { "day", "word", "n" }, mode = "upsert", key = { "day", "word" } }
ctx:start()
ctx:advance(2)
local db = require("dstream.db")
print("sessions " .. db.query(url, "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'dstream'")[1].n)
ctx:stop()
LUA
run_job types
check "types: the job ran" grep -q "^sessions" "$WORK/types.out" || show types "$WORK/types.out"
got=$(psql_q "SELECT id, replace(replace(coalesce(name, 'NULL'), E'\t', '<TAB>'), E'\n', '<NL>'), coalesce(score::text, 'NULL'), coalesce(ok::text, 'NULL'), coalesce(tags, 'NULL') FROM t ORDER BY id")
want='1|tab<TAB>here|1.5|true|["a"]
2|new<NL>line \ back|2.25|false|NULL
3|NULL|NULL|NULL|NULL'
check "types: numbers, booleans, NULL, JSON and escaped text come back as written (psql)" [ "$got" = "$want" ] ||
  printf '%s\n' "$got" | sed 's/^/#   got: /'
check "upsert: a composite key keeps one row per (day, word) with the latest total" \
  [ "$(psql_q "SELECT day || ' ' || word || ' ' || n FROM daily ORDER BY 1" | tr '\n' ,)" = "mon a 3,mon b 1,tue a 1," ]
# Two workers: two sessions of the job's own (plus the driver's for dstream.db).
check "connections: one session per worker and the driver's ($(sed -n 's/^sessions //p' "$WORK/types.out"))" \
  [ "$(sed -n 's/^sessions //p' "$WORK/types.out")" -eq 3 ]

# ---- a refused row ----
psql_q "CREATE TABLE orders(id INT PRIMARY KEY, n INT CHECK (n >= 0))"
cat >"$WORK/bad.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, partitions = 1 }
ctx:queue_stream { { { id = 1, n = 1 }, { id = 2, n = -5 }, { id = 3, n = 3 }, { id = 4, n = "many" } } }
  :to_sql { url = arg[1], table = "orders", columns = { "id", "n" }, on_error = arg[2], dead_letter = arg[3] }
ctx:start()
ctx:advance(1)
ctx:stop()
LUA
"$DSTREAM" "$WORK/bad.lua" "$PG_URL" >"$WORK/bad.out" 2>&1
st=$?
check "bad row: the batch fails" [ "$st" -ne 0 ]
check "bad row: the error has the row and the server's message" \
  grep -q "table orders refused the row { id = 2, n = -5 }: new row for relation \"orders\" violates check constraint \"orders_n_check\"" "$WORK/bad.out" ||
  show bad "$WORK/bad.out"
check "bad row: nothing of the task was committed" [ "$(psql_q "SELECT count(*) FROM orders")" -eq 0 ]
"$DSTREAM" "$WORK/bad.lua" "$PG_URL" dead_letter "$WORK/dead.jsonl" >"$WORK/bad2.out" 2>&1
check "dead letter: the batch succeeds" [ $? -eq 0 ]
check "dead letter: the other rows are committed" [ "$(psql_q "SELECT string_agg(id::text, ',' ORDER BY id) FROM orders")" = "1,3" ]
check "dead letter: the refused rows (a constraint, a wrong type) are JSON lines with the server's messages" \
  python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; assert len(l)==2 and l[0]["row"]=={"id":2,"n":-5} and "orders_n_check" in l[0]["error"] and l[1]["row"]=={"id":4,"n":"many"} and "invalid input syntax for type integer" in l[1]["error"], l' "$WORK/dead.jsonl"

# An upsert with a refused row: skipped, the others written, and the next batch's upsert
# (through the same staging table) updates them.
psql_q "CREATE TABLE scores(k TEXT PRIMARY KEY, n INT CHECK (n >= 0))"
cat >"$WORK/upbad.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, partitions = 1 }
ctx:queue_stream { { { "a", 1 }, { "b", -1 }, { "c", 2 } }, { { "a", 5 }, { "c", 0 } } }
  :to_sql { url = arg[1], table = "scores", columns = { "k", "n" }, mode = "upsert", key = "k", on_error = "skip" }
ctx:start()
ctx:advance(2)
ctx:stop()
LUA
run_job upbad
check "upsert: a refused row is skipped, the others are written and updated by the next batch" \
  [ "$(psql_q "SELECT string_agg(k || '=' || n, ',' ORDER BY k) FROM scores")" = "a=5,c=0" ] || show upbad "$WORK/upbad.out"

# ---- read_sql joined with a stream ----
psql_q "CREATE TABLE users(id TEXT PRIMARY KEY, name TEXT); INSERT INTO users VALUES ('u1', 'Ann'), ('u2', 'Bo')"
cat >"$WORK/join.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { batch = "1s", clock = "manual" }
local users = ctx:read_sql(arg[1], "SELECT id, name FROM users", { key = "id" })
ctx:queue_stream { { "u1 /a", "u2 /b", "u7 /c" } }
  :map(function(l) return l:match("^(%S+) (%S+)$") end)
  :transform(function(r) return r:left_outer_join(users) end)
  :foreach_rdd(function(r)
    local out = {}
    for _, p in ipairs(r:collect()) do out[#out + 1] = p[1] .. "=" .. (p[2][2] and p[2][2].name or "?") end
    table.sort(out)
    print(table.concat(out, " "))
  end)
ctx:start()
ctx:advance(1)
ctx:stop()
LUA
run_job join
check "read_sql: the stream joins the table read from the server" [ "$(cat "$WORK/join.out")" = "u1=Ann u2=Bo u7=?" ] ||
  show join "$WORK/join.out"

# ---- the examples ----
"$DSTREAM" "$ROOT/examples/postgres_totals.lua" "$PG_URL" >"$WORK/ex.out" 2>&1
check "examples/postgres_totals.lua with the server: 'to' counted 4 times, 4 lines" \
  grep -q "^4 lines, 13 distinct words" "$WORK/ex.out"
check "examples/postgres_totals.lua: psql sees its totals" [ "$(psql_q "SELECT n FROM word_totals WHERE word = 'to'")" = 4 ]
(cd "$WORK" && "$DSTREAM" "$ROOT/examples/postgres_totals.lua") >"$WORK/ex2.out" 2>&1
check "examples/postgres_totals.lua without a URL runs on SQLite and prints the same table" \
  [ "$(tail -n +2 "$WORK/ex.out")" = "$(tail -n +2 "$WORK/ex2.out")" ]
grep -m 1 "^database" "$WORK/ex2.out" | sed 's/^/#   /'
ex_db=$(sed -n 's/^database: sqlite://p' "$WORK/ex2.out")
case "$ex_db" in /tmp/?*.sqlite) rm -f "$ex_db" "$ex_db-wal" "$ex_db-shm" ;; esac
"$DSTREAM" "$ROOT/examples/enrich_join.lua" >"$WORK/csv.out" 2>&1
"$DSTREAM" "$ROOT/examples/enrich_join.lua" --sql "$PG_URL" >"$WORK/sql.out" 2>&1
norm() { sed 's/^batch [0-9]*/batch T/' "$1"; }
check "examples/enrich_join.lua --sql URL prints what the CSV variant prints" [ "$(norm "$WORK/csv.out")" = "$(norm "$WORK/sql.out")" ] ||
  diff <(norm "$WORK/csv.out") <(norm "$WORK/sql.out") | sed 's/^/#   /'
finish

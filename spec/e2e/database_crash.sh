#!/usr/bin/env bash
# spec/e2e/database_crash.sh: to_sql is exactly once across SIGKILLs and a database server
# that goes away, at the settings a user gets (default checkpoint_interval: most runs die
# before their first periodic checkpoint; default to_sql options). jobs/db_crash.lua reads
# a text_file_stream and writes every line into lines (append) and running word totals into
# totals (upsert), on a real PostgreSQL started here (spec/e2e/lib/postgres.bash) and on a
# SQLite file:
#  1. files are moved in while the job is killed at random moments (at least 20 times, a
#     third within the first second of a run) and restarted; after a last run, psql / sqlite3
#     give exactly the input's lines (sort: none lost, none twice) and coreutils' word counts;
#  2. (PostgreSQL) the server is stopped for 3 s mid-job and started again: the job waits
#     (retries logged with the database and table), and nothing is lost or written twice;
#     with the server down longer than retry_for the batch fails naming database, table and cause.
# Runs on the release build only.
source "$(dirname "$0")/lib/common.bash"
source "$(dirname "$0")/lib/postgres.bash"
release_only

JOB=$JOBS/db_crash.lua
crash_seed

# make_files DIR COUNT PREFIX: COUNT files of 20..120 unique numbered lines of 1..8 words.
make_files() { numbered_files "$1" "$2" "$3" "$seed" 100 8; }

start_run() { # start_run NAME URL IN CKPT
  "$DSTREAM" "$JOB" "$2" "$3" "$4" >"$WORK/$1.out" 2>"$WORK/$1.err" </dev/null &
  JOB_PID=$!
  E2E_PIDS+=("$JOB_PID")
}

# feed IN STAGE: moves the staged files in, 0.2 to 0.5 s apart (background; $FEEDER).
feed() {
  (
    for f in "$2"/*; do
      move_in "$f" "$1"
      sleep "0.$((2 + RANDOM % 4))"
    done
  ) &
  FEEDER=$!
  E2E_PIDS+=("$FEEDER")
}

# compare LABEL IN QUERY_CMD: the tables against the input (coreutils).
compare() {
  local label=$1 in=$2 q=$3
  cat "$in"/* | sort >"$WORK/want-lines.txt"
  word_counts "$in"/* >"$WORK/want-words.txt"
  $q "SELECT line FROM lines" | sort >"$WORK/got-lines.txt"
  $q "SELECT word || ' ' || n FROM totals" | sort >"$WORK/got-words.txt"
  local dups lost
  dups=$(comm -13 "$WORK/want-lines.txt" "$WORK/got-lines.txt" | wc -l)
  lost=$(comm -23 "$WORK/want-lines.txt" "$WORK/got-lines.txt" | wc -l)
  if cmp -s "$WORK/want-lines.txt" "$WORK/got-lines.txt"; then
    ok "$label: lines (append) holds each of the $(wc -l <"$WORK/want-lines.txt") input lines exactly once"
  else
    not_ok "$label: lines (append) holds each input line exactly once ($lost lost, $dups extra)"
    diff "$WORK/want-lines.txt" "$WORK/got-lines.txt" | head -n 6 | sed 's/^/#   /'
  fi
  if cmp -s "$WORK/want-words.txt" "$WORK/got-words.txt"; then
    ok "$label: totals (upsert) equal coreutils' count of $(wc -l <"$WORK/want-words.txt") words"
  else
    not_ok "$label: totals (upsert) equal coreutils' count"
    diff "$WORK/want-words.txt" "$WORK/got-words.txt" | head -n 6 | sed 's/^/#   /'
  fi
}

# crash_series LABEL URL: 40 files moved in while the job is killed KILLS times; a last run
# catches up and is stopped gracefully.
crash_series() {
  local label=$1 url=$2
  local in=$WORK/$label-in ck=$WORK/$label-ckpt stage=$WORK/$label-stage
  mkdir -p "$in" "$ck" "$stage"
  make_files "$stage" 40 "$label"
  FEEDER=
  local kills=0 runs=0 early=0 life t0
  t0=$(ms_now)
  while [ "$kills" -lt "$KILLS" ] && [ "$runs" -lt $((KILLS + 10)) ]; do
    runs=$((runs + 1))
    case $((runs % 3)) in
    0) life=$((50 + RANDOM % 950)) ;;  # the first second, some before the first batch
    *) life=$((300 + RANDOM % 1700)) ;;
    esac
    start_run "$label-run$runs" "$url" "$in" "$ck"
    if [ -z "$FEEDER" ]; then
      wait_until 20 grep -q '^ready' "$WORK/$label-run$runs.out"
      feed "$in" "$stage"
    fi
    sleep_ms "$life"
    if alive "$JOB_PID"; then
      kill -KILL "$JOB_PID" 2>/dev/null
      kills=$((kills + 1))
    else
      early=$((early + 1))
      echo "# $label: run $runs ended by itself"
      tail -n 5 "$WORK/$label-run$runs.err" | sed 's/^/#   /'
    fi
    wait "$JOB_PID" 2>/dev/null
    forget_pid "$JOB_PID"
  done
  echo "# $label: $kills kills in $runs runs over $((($(ms_now) - t0) / 1000)) s"
  check "$label: killed with SIGKILL $KILLS times at random moments" [ "$kills" -ge "$KILLS" ]
  check "$label: no run ended by itself between the kills" [ "$early" -eq 0 ]
  wait_exit "$FEEDER" 60
  forget_pid "$FEEDER"
  start_run "$label-last" "$url" "$in" "$ck"
  local pid=$JOB_PID
  sleep 4
  kill -TERM "$pid" 2>/dev/null
  wait_exit "$pid" 30
  forget_pid "$pid"
  check "$label: the last run stops gracefully with status 0" [ "$EXIT_STATUS" -eq 0 ] ||
    show "$label-last stderr" "$WORK/$label-last.err"
  LAST_IN=$in
}

sqlite_q() { sqlite3 "$SQLITE_DB" "$1"; }

# ---- 1. PostgreSQL: SIGKILLs ----
if pg_start; then
  psql_q "CREATE TABLE lines(line TEXT NOT NULL); CREATE TABLE totals(word TEXT PRIMARY KEY, n BIGINT NOT NULL)"
  crash_series postgres "$PG_URL"
  compare "postgres: after $KILLS kills" "$LAST_IN" psql_q
  markers=$(psql_q "SELECT count(*) FROM dstream_commits")
  echo "# postgres: $markers markers in dstream_commits"

  # ---- 2. PostgreSQL: the server stopped and started mid-job ----
  psql_q "TRUNCATE lines, totals, dstream_commits"
  in=$WORK/restart-in ck=$WORK/restart-ckpt stage=$WORK/restart-stage
  mkdir -p "$in" "$ck" "$stage"
  make_files "$stage" 20 restart
  UI_PORT=$(free_port)
  "$DSTREAM" --ui "127.0.0.1:$UI_PORT" "$JOB" "$PG_URL" "$in" "$ck" >"$WORK/restart.out" 2>"$WORK/restart.err" </dev/null &
  pid=$!
  E2E_PIDS+=("$pid")
  wait_until 20 grep -q '^ready' "$WORK/restart.out"
  feed "$in" "$stage"
  sleep 2
  pg_stop_server fast
  echo "# server stopped at $(date +%T.%3N)"
  sleep 2
  # While the server is away: the waiting tasks are on /metrics as they wait.
  curl -s "http://127.0.0.1:$UI_PORT/metrics" >"$WORK/metrics-down.txt"
  sleep 1
  pg_start_server
  echo "# server started at $(date +%T.%3N)"
  wait_exit "$FEEDER" 60
  forget_pid "$FEEDER"
  sleep 4
  # The wait shows in /metrics and in the batch that waited (the live page's batch view).
  curl -s "http://127.0.0.1:$UI_PORT/metrics" >"$WORK/metrics.txt"
  curl -s "http://127.0.0.1:$UI_PORT/api/batches" >"$WORK/batches.json"
  waiting=$(awk '/^dstream_sql_waiting_tasks / { print $2 }' "$WORK/metrics-down.txt")
  check "restart: while the server was down /metrics showed tasks waiting for it (dstream_sql_waiting_tasks ${waiting:-none}, $(awk '/^dstream_sql_waiting_seconds / { print $2 }' "$WORK/metrics-down.txt") s)" \
    [ "${waiting:-0}" -ge 1 ]
  waited=$(awk '/^dstream_sql_retry_wait_seconds_total/ { s += $2 } END { print s + 0 }' "$WORK/metrics.txt")
  check "restart: /metrics shows the time waited for the server (dstream_sql_retry_wait_seconds_total $waited)" \
    awk -v w="$waited" 'BEGIN { exit !(w > 0) }'
  check "restart: /api/batches shows the batch that waited (db_wait_ms)" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); bs=d if isinstance(d, list) else d.get("batches", []); w=[b["db_wait_ms"] for b in bs if b.get("db_wait_ms")]; print("#   longest wait of a batch: %d ms" % max(w)); assert max(w) > 500' "$WORK/batches.json"
  kill -TERM "$pid" 2>/dev/null
  wait_exit "$pid" 30
  forget_pid "$pid"
  check "restart: the job rode out the stopped server and stopped with status 0" [ "$EXIT_STATUS" -eq 0 ] ||
    show "restart stderr" "$WORK/restart.err"
  waits=$(grep -c "postgresql://postgres@127.0.0.1:$PG_PORT/dstream, table .* retrying in" "$WORK/restart.err")
  check "restart: the waits were logged with the database and the table ($waits lines)" [ "$waits" -ge 1 ]
  grep -m 2 "retrying in" "$WORK/restart.err" | sed 's/^/#   /'
  compare "restart: server down 3 s" "$in" psql_q

  # A server down longer than retry_for: the batch fails, naming the database, table and cause.
  cat >"$WORK/giveup.lua" <<LUA
local dstream = require("dstream")
local ctx = dstream.context { batch = "200ms", clock = "manual" }
ctx:queue_stream { { "x" } }:to_sql { url = "$PG_URL", table = "lines", columns = { "line" }, retry_for = "2s" }
ctx:start()
ctx:advance(1)
LUA
  pg_stop_server fast
  "$DSTREAM" "$WORK/giveup.lua" >"$WORK/giveup.out" 2>&1
  st=$?
  pg_start_server
  check "giveup: the job fails when the server stays away past retry_for" [ "$st" -ne 0 ]
  check "giveup: the error names the database, the table and the cause" \
    grep -q "postgresql://postgres@127.0.0.1:$PG_PORT/dstream, table lines: the database could not be reached for .*Connection refused" "$WORK/giveup.out"
  grep -m 1 "could not be reached" "$WORK/giveup.out" | cut -c 1-300 | sed 's/^/#   /'
else
  not_ok "a PostgreSQL server could be started (Debian package postgresql; scripts/setup.sh installs it)"
fi

# ---- 3. SQLite: SIGKILLs ----
SQLITE_DB=$WORK/crash.sqlite
sqlite3 "$SQLITE_DB" "CREATE TABLE lines(line TEXT NOT NULL); CREATE TABLE totals(word TEXT PRIMARY KEY, n INTEGER NOT NULL);"
crash_series sqlite "sqlite:$SQLITE_DB"
compare "sqlite: after $KILLS kills" "$LAST_IN" sqlite_q
finish

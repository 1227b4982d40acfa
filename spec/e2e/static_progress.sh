#!/usr/bin/env bash
# spec/e2e/static_progress.sh: actions on static datasets show Spark's console progress bar on
# a terminal (a pty from script(1)) and nothing when stderr is not one; --ui serves a job of
# static datasets alone while its actions run (issue 18 item 3).
source "$(dirname "$0")/lib/common.bash"

cat >"$WORK/slow.lua" <<'LUA'
local ctx = require("dstream").context { workers = 2 }
local n = ctx:parallelize({ 1, 2, 3, 4, 5, 6, 7, 8 }, 8)
  :map(function(x) local t = os.clock() + tonumber(arg[1]) while os.clock() < t do end return x end)
  :count()
print("count " .. n)
LUA

script -qc "$DSTREAM $WORK/slow.lua 0.3" /dev/null >"$WORK/tty.out" 2>&1 </dev/null
check "on a terminal: the job prints its result" grep -q "count 8" "$WORK/tty.out"
check "on a terminal: a progress bar names the stage and the tasks done of 8" \
  grep -qE '\[Stage count: =*>? *\([0-9] \+ [0-9]\) / 8 \| [0-9,]+ records \| [0-9.]+ s\]' "$WORK/tty.out"
"$DSTREAM" "$WORK/slow.lua" 0.3 >"$WORK/plain.out" 2>"$WORK/plain.err"
check "not a terminal: the result, and no progress bar" \
  eval 'grep -q "count 8" "$WORK/plain.out" && ! grep -q "Stage" "$WORK/plain.err" "$WORK/plain.out"'

"$DSTREAM" --ui 127.0.0.1:0 "$WORK/slow.lua" 1 >"$WORK/ui.out" 2>"$WORK/ui.err" &
JOB=$!
E2E_PIDS+=("$JOB")
wait_until 10 eval 'grep -q "ui: http://" "$WORK/ui.err"'
URL=$(grep -o 'http://[0-9.:]*/' "$WORK/ui.err" | head -n 1)
check "--ui with static datasets only: the page is served while the actions run ($URL)" \
  eval '[ -n "$URL" ] && curl -sf "$URL" >/dev/null && curl -sf "${URL}metrics" | grep -q "^dstream_"'
wait_exit "$JOB" 30
check "--ui with static datasets only: the job ends with its result" \
  eval '[ "$EXIT_STATUS" -eq 0 ] && grep -q "count 8" "$WORK/ui.out"'
finish

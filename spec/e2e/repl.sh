#!/usr/bin/env bash
# spec/e2e/repl.sh: the interactive prompt, driven through a real pseudo-terminal (tmux
# send-keys types, capture-pane reads the screen): expressions and pretty-printed tables, a
# multi-line function used by map on a dataset (prompt globals travel to the workers), errors
# at the prompt and on workers, Tab completion, a running stream whose output appears above
# the line being typed, peek and status, Ctrl-C at the prompt and during an action, :reset,
# :load, :paste, :history, Ctrl-R (one Enter runs the line found), Ctrl-L, history, Ctrl-D,
# `dstream -i job.lua` (ctx is the script's context, no status line), and the prompt reading
# from a pipe and a file.
source "$(dirname "$0")/lib/common.bash"

if ! command -v tmux >/dev/null 2>&1; then
  not_ok "tmux is installed (scripts/setup.sh installs it)"
  finish
fi
unset TMUX
SOCK=$WORK/tmux-0.sock
n_session=0
tm() { tmux -S "$SOCK" "$@"; }
e2e_repl_cleanup() {
  local s
  for s in "$WORK"/tmux-*.sock; do [ -S "$s" ] && tmux -S "$s" kill-server >/dev/null 2>&1; done
  e2e_cleanup
}
trap e2e_repl_cleanup EXIT

# start_session ARGS...: dstream ARGS in a 120x50 terminal; the pane prints "[exit N]" when
# dstream ends.
start_session() {
  tm kill-server >/dev/null 2>&1
  n_session=$((n_session + 1))
  SOCK=$WORK/tmux-$n_session.sock # a new server each time: a dying one may hold the old socket
  local cmd
  cmd="cd '$WORK' && DSTREAM_HISTORY='$WORK/history' '$DSTREAM' --workers 2 $*; echo \"[exit \$?]\"; sleep 300"
  tm -f /dev/null new-session -d -x 120 -y 50 "$cmd"
  tm set-option -g history-limit 5000 >/dev/null
}
# screen: everything the pane shows and has scrolled away, wrapped lines joined.
screen() { tm capture-pane -p -J -S - 2>/dev/null; }
# visible: the lines on screen now, trailing spaces and empty lines dropped.
visible() { tm capture-pane -p -J 2>/dev/null | sed -e 's/ *$//' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'; }
# Lines typed while an entry runs would be echoed twice (once by the terminal, once by the
# prompt, as in any readline program), so type_line waits until the entry is done: one more
# prompt line on the screen, and a bare prompt last.
prompt_lines() { screen | grep -cE '^>>?( |$)'; }
ready_after() {
  [ "$(prompt_lines)" -gt "$1" ] && visible | tail -n 1 | grep -qE '^>>? *$'
}
# terminal_alive: the tmux server of the session still runs; once it is gone every later step
# would wait out its limit (5 minutes in all), so the test ends at once, saying so.
terminal_alive() {
  tm has-session 2>/dev/null && return 0
  not_ok "the terminal running the REPL is still there (its tmux server is gone)"
  finish
}
type_line() {
  local before
  terminal_alive
  before=$(prompt_lines)
  tm send-keys -l -- "$1"
  tm send-keys Enter
  wait_until 60 ready_after "$before"
}
# type_line_nowait TEXT: Enter, without waiting for the entry to finish.
type_line_nowait() {
  tm send-keys -l -- "$1"
  tm send-keys Enter
}
type_text() { tm send-keys -l -- "$1"; }
# wait_screen SECONDS GREP_ARGS...: until the screen matches.
screen_has() { screen | grep -q "$@"; }
wait_screen() {
  local limit=$1
  shift
  wait_until "$limit" screen_has "$@"
}
count_matches() { screen | grep -c -- "$1"; }
# expect DESCRIPTION SECONDS GREP_ARGS...: ok when the screen comes to match.
expect() {
  local desc=$1 limit=$2
  shift 2
  terminal_alive
  if wait_screen "$limit" "$@"; then ok "$desc"; else
    not_ok "$desc"
    echo "# --- screen ---"
    screen | tail -n 25 | sed 's/^/#   /'
  fi
}
# Each step prints a marker afterwards, so the next check waits for the step to be done.
n_marker=0
sync_prompt() {
  n_marker=$((n_marker + 1))
  type_line "print('step-' .. $n_marker .. '-done')"
  wait_screen 30 -x "step-$n_marker-done"
}

# ---- a session: expressions, functions on workers, errors, completion ----
start_session
expect "the prompt starts with a context ready" 20 -F '`ctx` is a context with 1 s batches'

type_line '6 * 7'
expect "an expression prints its value" 10 -x '42'

type_line '{ name = "dstream", list = { 1, 2, 3 }, deep = { a = { b = { c = { d = 1 } } } } }'
expect "a table is pretty-printed with a depth limit" 10 -F '{ deep = { a = { b = { c = {...} } } }, list = { 1, 2, 3 }, name = "dstream" }'

# Characters beyond ASCII reach Lua as their UTF-8 bytes (libedit in the "C" locale dropped them).
type_line 'print("len" .. #"héllo")'
expect "a non-ASCII character typed at the prompt is kept (its two UTF-8 bytes)" 10 -x 'len6'

type_line 'function bump(x)'
type_line '  return x * offset + 1'
type_line 'end'
type_line 'offset = 100'
expect "an incomplete entry continues on the next line" 10 -x '>>   return x \* offset + 1'
type_line 'ctx:parallelize({ 1, 2, 3, 4 }, 2):map(function(x) return bump(x) end):collect()'
expect "a function defined over several lines runs on the workers with the globals it reads" 30 \
  -F '{ 101, 201, 301, 401 }'

type_line 'error("kaput")'
expect "an error at the prompt shows its message" 10 -x 'stdin:1: kaput'
expect "an error at the prompt shows a traceback" 10 -x 'stack traceback:'
type_line 'ctx:parallelize({ 1, 2 }, 2):map(function(x) if x == 2 then error("worker-side failure") end return x end):collect()'
expect "an error on a worker names the prompt's chunk and line" 30 -F 'stdin:1: worker-side failure'
type_line '6 * 9'
expect "the session goes on after errors" 10 -x '54'

type_text 'string.fo'
tm send-keys Tab
type_line '("%d-%s", 7, "x")'
expect "Tab completes a module field (string.fo -> string.format)" 10 -x '7-x'
type_text 'ctx:que'
tm send-keys Tab
type_line '({ { "q1" } })'
expect "Tab completes a method found through the metatable (ctx:que -> ctx:queue_stream)" 10 \
  -F 'stream(queue_stream #'
type_text 'ctx:st'
tm send-keys Tab Tab
expect "a second Tab lists the candidates" 10 -E 'ctx:start +ctx:status +ctx:stop'
tm send-keys C-u
type_line ':help'
expect ":help lists the commands" 10 -F ':reset'

# ---- Ctrl-C at the prompt drops the line ----
type_text 'dropped = "typed but dropped"'
tm send-keys C-c
wait_screen 10 -F 'dropped"^C'
type_line 'dropped'
expect "Ctrl-C at the prompt drops the line being typed" 10 -x 'nil'
sync_prompt

# ---- a running stream: output above the prompt, peek, status ----
type_line 's = ctx:rate_stream{ rows_per_second = 4 }:map(function(x) return x * 1000 end)'
type_line 's:print(2)'
type_line 'ctx:start()'
expect "a started stream prints its batches" 20 -E '^Time: [0-9]+ ms$'
type_text 'half = "typed while batches print'
before=$(count_matches '^Time: ')
wait_until 20 eval '[ "$(count_matches "^Time: ")" -ge $((before + 2)) ]'
last=$(visible | tail -n 1)
check "output of a running print() goes above the line being typed" \
  [ "$last" = '> half = "typed while batches print' ]
[ "$last" = '> half = "typed while batches print' ] || { echo "# last line: $last"; visible | tail -n 8 | sed 's/^/#   /'; }
type_line ' and still whole"'
type_line 'half'
expect "the line typed during output is read whole" 10 -x 'typed while batches print and still whole'
type_line 's:peek(3)'
expect "peek shows the newest batch of a stream" 10 -E '^Time: [0-9]+ ms \([0-9:.]+\), stream\(map #[0-9]+\)$'
type_line 'ctx:status()'
expect "ctx:status() shows batches, delays and rates" 10 -E '^batches: [0-9]+ completed'
expect "ctx:status() shows rates" 10 -E 'input [0-9.]+ records/s'
type_line 's'
expect "a stream is summarised" 10 -E '^stream\(map #[0-9]+\), from stream\(rate_stream #[0-9]+\), newest batch'

# ---- Ctrl-C during an action interrupts it, the streams keep running ----
type_line_nowait 'print("long action" .. " running"); ctx:parallelize({ 1, 2 }, 2):map(function(x) local t = os.clock() while os.clock() - t < 3 do end return x end):collect()'
wait_screen 20 -x 'long action running'
tm send-keys C-c
expect "Ctrl-C during an action raises 'interrupted'" 20 -x 'interrupted'
wait_until 20 eval 'visible | tail -n 1 | grep -qE "^> *$"'
before=$(count_matches '^Time: ')
wait_until 20 eval '[ "$(count_matches "^Time: ")" -gt "$before" ]'
check "the streams keep running after an interrupted action" [ "$(count_matches '^Time: ')" -gt "$before" ]
sync_prompt

# ---- stop, a stopped context cannot start again, :reset ----
type_line 'ctx:stop()'
type_line 'ctx:start()'
expect "a stopped context says how to get a new one" 10 -F 'the context is stopped; create a new one'
type_line ':reset'
expect ":reset makes a new ctx" 10 -F 'ctx is a new context: context('
type_line 'ctx.state'
expect "the new ctx can be used" 10 -x 'initialized'

# ---- a stream that fails stops its context, and the prompt says so ----
type_line 'ctx:queue_stream({ { 1 } }):map(function(x) error("stream broke") end):print()'
type_line 'ctx:start()'
expect "a failed batch is reported at the prompt" 30 -E '^ctx failed and stopped: .*stdin:1: stream broke'
type_line ':reset'
type_line 'ctx.state'
expect ":reset after a failure gives a usable ctx" 10 -x 'initialized'
check "no sanitizer report on the screen" eval '! screen_has -E "ERROR: AddressSanitizer|runtime error:"'

# ---- :load, :paste, :history ----
cat >"$WORK/loadme.lua" <<'LUA'
loaded_value = 99
print("loadme ran")
return "loadme returned"
LUA
type_line ':load loadme.lua'
expect ":load runs a file at the prompt and shows what it returns" 10 -x 'loadme returned'
type_line 'loaded_value + 1'
expect ":load keeps the file's globals" 10 -x '100'
type_line ':load no_such_file.lua'
expect ":load of a missing file says so" 10 -F 'cannot open no_such_file.lua'
type_line ':paste'
expect ":paste says how it ends" 10 -F '(paste mode:'
type_line 'local base = 40'
type_line ''
type_line 'pasted_sum = base + 2'
type_line 'print("pasted", pasted_sum)'
type_line ':end'
expect ":paste runs the lines as one chunk (a local lasts across them)" 10 -xE 'pasted[[:space:]]+42'
type_line ':history 3'
expect ":history lists the last entries, numbered" 10 -E '^ +[0-9]+  print\("pasted", pasted_sum\)$'
expect ":history ends with itself" 10 -E '^ +[0-9]+  :history 3$'

# ---- Ctrl-R: one Enter runs the line found ----
type_line '"found-" .. "by-search"'
expect "an entry to search for" 10 -x 'found-by-search'
sync_prompt
before=$(count_matches '^found-by-search$')
prompts=$(prompt_lines)
tm send-keys C-r
type_text 'by-sea'
sleep 0.3
tm send-keys Enter
wait_until 10 eval '[ "$(count_matches "^found-by-search$")" -gt "$before" ]'
check "Ctrl-R then a single Enter runs the line found (once)" \
  eval '[ "$(count_matches "^found-by-search$")" -eq $((before + 1)) ]'
sleep 0.5
check "Ctrl-R's Enter leaves a bare prompt, not an empty entry" \
  eval '[ "$(prompt_lines)" -eq $((prompts + 1)) ] && visible | tail -n 1 | grep -qE "^> *$"'
[ "$E2E_FAILED" -gt 0 ] && { echo "# --- screen ---"; screen | tail -n 12 | sed 's/^/#   /'; }

# ---- Ctrl-L clears the screen ----
type_line 'print("before-" .. "clear")'
expect "a line to clear" 10 -x 'before-clear'
tm send-keys C-l
wait_until 10 eval '! visible | grep -q "before-clear"'
check "Ctrl-L clears the screen and leaves the prompt" \
  eval '! visible | grep -q "before-clear" && [ "$(visible | grep -c .)" -eq 1 ] && visible | grep -qE "^> *$"'
sync_prompt

# ---- Ctrl-D stops gracefully and leaves ----
tm send-keys C-d
expect "Ctrl-D quits with status 0" 30 -x '\[exit 0\]'
check "history is kept in the history file" grep -q 'bump' "$WORK/history"

# ---- dstream -i job.lua: run the script, then stay ----
# The job starts a context of its own (a local): the prompt's `ctx` is that context, not a
# second idle one, and batches draw no status line over the prompt.
cat >"$WORK/job.lua" <<'LUA'
answer = 41 + 1
local ctx = require("dstream").context { batch = "500ms", name = "ijob" }
ctx:rate_stream { rows_per_second = 10 }:foreach_rdd(function(rdd) rdd:count() end)
ctx:start()
print("job ran")
LUA
start_session -i job.lua
expect "-i runs the script first" 20 -x 'job ran'
expect "-i: the banner says ctx is the script's context" 10 -F "\`ctx\` is the script's context"
type_line 'answer'
expect "-i stays at the prompt with the script's globals" 10 -x '42'
type_line 'ctx.name, #require("dstream.context").open_contexts()'
expect "-i: ctx is the script's context, and no second context was made" 10 -xE 'ijob[[:space:]]+1'
wait_until 20 eval 'type_line "ctx:status().completed" >/dev/null; visible | grep -qxE "([3-9]|[1-9][0-9]+)"'
check "-i: batches ran while at the prompt" eval 'screen | grep -qxE "([3-9]|[1-9][0-9]+)"'
check "-i: no status line from the script's context" eval '! screen_has -F "ijob | batch"'
type_line_nowait ':quit'
expect ":quit leaves with status 0" 30 -x '\[exit 0\]'
tm kill-server >/dev/null 2>&1

# ---- the prompt reading from a pipe (no terminal) ----
printf '%s\n' 'function sq(x)' '  return x * x' 'end' \
  'ctx:parallelize({ 1, 2, 3 }):map(function(x) return sq(x) end):collect()' \
  'error("piped error")' '1 + 2' |
  timeout 60 "$DSTREAM" --workers 2 -i >"$WORK/pipe.out" 2>"$WORK/pipe.err"
STATUS=$?
check "from a pipe: exits 0 at end of input" [ "$STATUS" -eq 0 ]
check "from a pipe: multi-line function used by map" grep -qxF '{ 1, 4, 9 }' "$WORK/pipe.out"
check "from a pipe: errors go to stderr" grep -qxF 'stdin:1: piped error' "$WORK/pipe.err"
check "from a pipe: the session goes on" grep -qx '3' "$WORK/pipe.out"
[ "$E2E_FAILED" -gt 0 ] && { show stdout "$WORK/pipe.out"; show stderr "$WORK/pipe.err"; }
printf '%s\n' 'x = 20' 'x + 1' >"$WORK/commands.lua"
timeout 60 "$DSTREAM" --workers 2 -i -e 'x = 1' <"$WORK/commands.lua" >"$WORK/file.out" 2>&1
STATUS=$?
check "from a file: -i reads the prompt's lines from it" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(cat "$WORK/file.out")" = 21 ]'
finish

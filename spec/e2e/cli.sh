#!/usr/bin/env bash
# spec/e2e/cli.sh: the dstream command line: --version, -v, --help, -e, a script's arg and
# `...`, syntax and run-time errors (tracebacks of the user's frames), --workers, --name=value,
# option values refused at start, --ui-public, the hint for a context never waited for, a
# script on stdin, busted --lua=dstream, and SIGTERM / SIGINT stopping a running job
# gracefully (the batch in flight completes, exit status 0).
source "$(dirname "$0")/lib/common.bash"

# run NAME ARGS...: runs dstream with a time limit; stdout in $WORK/NAME.out, stderr in
# $WORK/NAME.err, exit status in $STATUS.
run() {
  local name=$1
  shift
  timeout 30 "$DSTREAM" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null
  STATUS=$?
}
out() { cat "$WORK/$1.out"; }
err() { cat "$WORK/$1.err"; }
lines_of() { wc -l <"$WORK/$1.err"; }

# ---- --version, --help, -e ----
run version --version
check "--version exits 0" [ "$STATUS" -eq 0 ]
check "--version prints 'dstream VERSION'" grep -Eq '^dstream [0-9]+\.[0-9]+' "$WORK/version.out"
# scripts/setup.sh builds LuaJIT from Debian's source with patches/luajit/ (scripts/luajit.sh)
check "--version names the LuaJIT built by scripts/luajit.sh" grep -q "LuaJIT 2.1.0-beta3, dstream's build: 4096 hot counters" "$WORK/version.out"
run help --help
check "--help exits 0" [ "$STATUS" -eq 0 ]
check "--help mentions --workers" grep -q -- '--workers' "$WORK/help.out"
run e -e 'print(1+1)'
check "-e 'print(1+1)' prints 2 and exits 0" eval '[ "$STATUS" -eq 0 ] && [ "$(out e)" = 2 ]'

# ---- a script sees arg and ... ----
cat >"$WORK/args.lua" <<'LUA'
print(arg[0], arg[1], arg[2], arg[3], select("#", ...), ...)
LUA
run args "$WORK/args.lua" one 'two words'
check "a script sees arg[0], arg[1], arg[2] and ..." \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out args)" = "$WORK/args.lua	one	two words	nil	2	one	two words" ]'

# ---- a syntax error: non-zero, one line naming the file and the line ----
printf 'local ok = 1\nlocal x = = 2\nprint(x)\n' >"$WORK/syntax.lua"
run syntax "$WORK/syntax.lua"
check "a syntax error exits non-zero" eval '[ "$STATUS" -ne 0 ] && [ "$STATUS" -ne 124 ]'
check "a syntax error is one line on stderr" [ "$(lines_of syntax)" -eq 1 ]
check "the syntax error names the file and line" grep -q "syntax.lua:2:" "$WORK/syntax.err"

# ---- a closure that raises on a worker ----
cat >"$WORK/failing_job.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { batch = "200ms", workers = 2, partitions = 2 }
ctx:queue_stream({ { "alpha", "bravo", "charlie-record", "delta" } })
  :map(function(x)
    if x == "charlie-record" then error("boom") end
    return x
  end)
  :foreach_rdd(function(rdd) print(#rdd:collect()) end)
ctx:start()
ctx:await_termination(20)
ctx:stop()
LUA
run failing "$WORK/failing_job.lua"
check "a job whose closure raises exits non-zero" eval '[ "$STATUS" -ne 0 ] && [ "$STATUS" -ne 124 ]'
for word in batch partition charlie-record boom "failing_job.lua:5"; do
  check "the failure report contains '$word'" grep -qF -- "$word" "$WORK/failing.err"
done
[ "$E2E_FAILED" -gt 0 ] && show "stderr of failing_job.lua" "$WORK/failing.err"

# ---- --workers is seen by the context ----
cat >"$WORK/workers.lua" <<'LUA'
local ctx = require("dstream").context { batch = "1s" }
print(ctx.workers, ctx.partitions)
ctx:stop()
LUA
run workers --workers 3 "$WORK/workers.lua"
check "--workers 3 gives a context with 3 workers" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out workers)" = "3	3" ]'

# ---- worker limits a machine cannot boot are refused at start, with the reason ----
# (before: --worker-memory 1k aborted with SIGABRT and no message; --workers 30000 aborted
# after a minute at 10 GB)
cat >"$WORK/limits.lua" <<'LUA'
local ctx = require("dstream").context { batch = "1s" }
print(#ctx:parallelize({ 1, 2, 3 }):collect())
ctx:stop()
LUA
for mem in 1k 1000k; do
  run "mem$mem" --worker-memory "$mem" "$WORK/limits.lua"
  check "--worker-memory $mem exits 1" [ "$STATUS" -eq 1 ]
  check "--worker-memory $mem: the error names the minimum" \
    grep -qF -- "--worker-memory $mem is too small: a worker needs at least 1m" "$WORK/mem$mem.err"
done
# Limits set in the script are checked by context{} the same way.
cat >"$WORK/tiny_mem.lua" <<'LUA'
local ctx = require("dstream").context { batch = "1s", workers = 1, worker_memory = 1024 }
print(#ctx:parallelize({ 1, 2, 3 }):collect())
LUA
run tinymem "$WORK/tiny_mem.lua"
check "context{ worker_memory = 1024 } exits 1 naming the minimum" \
  eval '[ "$STATUS" -eq 1 ] && grep -q "dstream.context: worker_memory: 1024 is too small: a worker needs at least 1m" "$WORK/tinymem.err"'
cat >"$WORK/many_workers.lua" <<'LUA'
local ctx = require("dstream").context { batch = "1s", workers = 30000 }
LUA
run manyworkers "$WORK/many_workers.lua"
check "context{ workers = 30000 } exits 1 at once, saying it is too many" \
  eval '[ "$STATUS" -eq 1 ] && grep -q "dstream.context: workers: 30000 is too many for" "$WORK/manyworkers.err"'
run mem1m --worker-memory 1m "$WORK/limits.lua"
check "--worker-memory 1m (the minimum) runs a job" eval '[ "$STATUS" -eq 0 ] && [ "$(out mem1m)" = 3 ]'
t0=$(ms_now)
run many --workers 30000 "$WORK/limits.lua"
check "--workers 30000 exits 1 within 2 s" eval '[ "$STATUS" -eq 1 ] && [ $(($(ms_now) - t0)) -lt 2000 ]'
check "--workers 30000: the error says why" grep -qF -- "--workers 30000 is too many for" "$WORK/many.err"
cores=$(nproc)
run over --workers $((cores * 4 + 1)) "$WORK/limits.lua"
check "--workers above 4 per core runs with a warning" \
  eval '[ "$STATUS" -eq 0 ] && grep -q "per core" "$WORK/over.err"'
[ "$E2E_FAILED" -gt 0 ] && for f in mem1k mem1000k mem1m many over; do show "$f.err" "$WORK/$f.err"; done

# ---- --checkpoint: the context checkpoints into the directory, and restarts from it ----
cat >"$WORK/ckpt.lua" <<'LUA'
local ctx = require("dstream").context { batch = "1s", clock = "manual", workers = 1 }
local n = 0
ctx:queue_stream({ { "a" }, { "b" } }):foreach_rdd(function(rdd) n = n + rdd:count() end)
ctx:start()
ctx:advance(2)
print(ctx.recovered_from and "recovered" or "fresh", n)
ctx:stop { graceful = true }
LUA
run ckpt1 --checkpoint "$WORK/ck" "$WORK/ckpt.lua"
check "--checkpoint DIR: the first run starts fresh and writes a checkpoint into DIR" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out ckpt1)" = "fresh	2" ] && compgen -G "$WORK/ck/checkpoint-*" >/dev/null'
run ckpt2 --checkpoint "$WORK/ck" "$WORK/ckpt.lua"
check "--checkpoint DIR: the second run restarts from it" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out ckpt2 | cut -f1)" = recovered ]'
run ckpt3 "$WORK/ckpt.lua" --checkpoint "$WORK/ck"
check "--checkpoint after the script is the script's argument (no checkpoint)" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out ckpt3)" = "fresh	2" ]'

# ---- every option with a value takes --name=value too ----
run workers_eq --workers=3 "$WORK/workers.lua"
check "--workers=3 gives a context with 3 workers" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out workers_eq)" = "3	3" ]'
run parts_eq --workers=2 --partitions=5 "$WORK/workers.lua"
check "--partitions=5 is the contexts' default partitions" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out parts_eq)" = "2	5" ]'
run ckpt_eq --checkpoint="$WORK/ck_eq" "$WORK/ckpt.lua"
check "--checkpoint=DIR checkpoints into DIR" \
  eval '[ "$STATUS" -eq 0 ] && compgen -G "$WORK/ck_eq/checkpoint-*" >/dev/null'
run mem_eq --worker-memory=1k "$WORK/limits.lua"
check "--worker-memory=1k is refused like --worker-memory 1k" \
  eval '[ "$STATUS" -eq 1 ] && grep -qF -- "--worker-memory 1k is too small" "$WORK/mem_eq.err"'

# ---- bad values are refused at start, before any code runs, with or without a context ----
# (before: a script that made no context never heard of them)
bad_value() { # bad_value NAME EXPECTED_TEXT OPTION...
  local name=$1 text=$2
  shift 2
  run "bad_$name" "$@" -e 'print("the code ran")'
  check "bad value at start: $* exits 1 before any code runs" \
    eval '[ "$STATUS" -eq 1 ] && [ ! -s "$WORK/bad_$name.out" ]'
  check "bad value at start: $* says '$text'" grep -qF -- "$text" "$WORK/bad_$name.err"
}
bad_value workers "dstream: --workers abc: expected a whole number of at least 1, got abc" --workers abc
bad_value workers0 "dstream: --workers 0: expected a whole number" --workers=0
bad_value memory "dstream: --worker-memory lots: a size is a number of bytes" --worker-memory lots
bad_value partitions "dstream: --partitions 1.5: expected a whole number of at least 1" --partitions 1.5
bad_value loglevel "--log-level takes error, warn, info or debug, not 'loud'" --log-level=loud
bad_value ui "dstream: --ui 127.0.0.1: expected an address like" --ui 127.0.0.1
bad_value ckparent "dstream: --checkpoint $WORK/no/such/ck: $WORK/no/such does not exist: create it first" \
  --checkpoint "$WORK/no/such/ck"
check "--checkpoint with a missing parent creates nothing" [ ! -e "$WORK/no" ]
printf 'x' >"$WORK/plain_file"
bad_value ckfile "is not a directory" --checkpoint "$WORK/plain_file"
bad_value cluster "dstream: --cluster a/b: expected the name of the job's consumer group" --cluster a/b

# ---- --cluster APP: cluster mode as context{ cluster = "APP" }; both, differing: an error ----
run cluster --cluster=app1 -e 'print(require("dstream").context { clock = "manual", workers = 1 }.cluster)'
check "--cluster APP puts the context in cluster mode (group APP)" eval '[ "$STATUS" -eq 0 ] && [ "$(out cluster)" = app1 ]'
run cluster_same --cluster app1 -e 'print(require("dstream").context { clock = "manual", workers = 1, cluster = "app1" }.cluster)'
check "--cluster APP and context{ cluster = \"APP\" } agree" eval '[ "$STATUS" -eq 0 ] && [ "$(out cluster_same)" = app1 ]'
run cluster_both --cluster app1 -e 'require("dstream").context { clock = "manual", workers = 1, cluster = "app2" }'
check "--cluster app1 with context{ cluster = \"app2\" } is an error at the user's line" \
  eval '[ "$STATUS" -eq 1 ] && grep -qF "(command line):1: dstream.context: cluster = \"app2\" but the command line says --cluster app1" "$WORK/cluster_both.err"'

# ---- --ui on an address other machines reach: refused, and --ui-public allows it ----
cat >"$WORK/ui.lua" <<'LUA'
local ctx = require("dstream").context { clock = "manual", workers = 1 }
ctx:queue_stream({ { 1 } }):foreach_rdd(function() end)
ctx:start()
ctx:advance(1)
ctx:stop()
print("served")
LUA
run ui_refused --ui 0.0.0.0:0 "$WORK/ui.lua"
check "--ui 0.0.0.0:0 is refused at start, and the refusal suggests --ui-public" \
  eval '[ "$STATUS" -eq 1 ] && grep -qF -- "or add --ui-public" "$WORK/ui_refused.err" && [ ! -s "$WORK/ui_refused.out" ]'
run ui_public --ui=0.0.0.0:0 --ui-public "$WORK/ui.lua"
check "--ui 0.0.0.0:0 --ui-public serves the UI" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out ui_public)" = served ] && grep -q "ui: http://0.0.0.0:" "$WORK/ui_public.err"'

# ---- -v prints the version and goes on, as luajit -v ----
run v -v -e 'print("went on")'
check "-v prints the version, then runs the rest of the command line" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out v | head -n 1 | cut -d" " -f1)" = dstream ] && [ "$(out v | tail -n 1)" = "went on" ]'
# On a terminal, -v alone prints the version once and exits (luajit -v does not open its prompt).
timeout 10 script -qec "$DSTREAM -v" /dev/null </dev/null >"$WORK/v_tty.out" 2>&1
v_tty_status=$?
check "-v alone on a terminal prints the version once and exits 0" \
  eval '[ "$v_tty_status" -eq 0 ] && [ "$(grep -c "^dstream [0-9]" "$WORK/v_tty.out")" -eq 1 ] && ! grep -q ">" "$WORK/v_tty.out"'

# ---- errors point at the user's code: a traceback of the user's frames ----
cat >"$WORK/runtime_error.lua" <<'LUA'
local function parse(record)
  return record.fields.count + 1
end
local function load_all()
  local n = parse({})
  return n
end
load_all()
LUA
run rterr "$WORK/runtime_error.lua"
check "a run-time error in a script exits 1" [ "$STATUS" -eq 1 ]
check "a run-time error prints its message first" \
  eval '[ "$(head -n 1 "$WORK/rterr.err")" = "dstream: $WORK/runtime_error.lua:2: attempt to index field '"'"'fields'"'"' (a nil value)" ]'
check "a run-time error prints a traceback by default, as luajit does" \
  eval '[ "$(sed -n 2p "$WORK/rterr.err")" = "stack traceback:" ] && grep -qF "runtime_error.lua:5: in function '"'"'load_all'"'"'" "$WORK/rterr.err" && grep -qF "runtime_error.lua:8: in main chunk" "$WORK/rterr.err"'
check "the traceback starts at the user's innermost frame" \
  eval '[ "$(sed -n 3p "$WORK/rterr.err")" = "	$WORK/runtime_error.lua:2: in function '"'"'parse'"'"'" ]'
cat >"$WORK/bad_arg.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { workers = 1 }
local function build(s)
  local mapped = s:map(42)
  return mapped
end
build(ctx:queue_stream({}))
LUA
run badarg "$WORK/bad_arg.lua"
check "an argument check's error names the user's line" \
  eval '[ "$STATUS" -eq 1 ] && [ "$(head -n 1 "$WORK/badarg.err")" = "dstream: $WORK/bad_arg.lua:4: map: expected a function, got number" ]'
check "an argument check's traceback starts at the user's frame" \
  eval '[ "$(sed -n 3p "$WORK/badarg.err")" = "	$WORK/bad_arg.lua:4: in function '"'"'build'"'"'" ] && grep -qF "bad_arg.lua:7: in main chunk" "$WORK/badarg.err"'
check "no frame of dstream's own modules at the default log level" \
  eval '! grep -q "lua/dstream/\|\[C\]" "$WORK/badarg.err" "$WORK/rterr.err"'
cat >"$WORK/stdlib_arg.lua" <<'LUA'
local dstream = require("dstream")
local kmeans = require("dstream.ml.kmeans")
local ctx = dstream.context { workers = 1 }
kmeans.streaming { k = 2, dims = 2 }:predict_on(ctx:queue_stream({}))
LUA
run stdarg "$WORK/stdlib_arg.lua"
check "a stdlib module's argument error names the user's line, with the user's frames only" \
  eval '[ "$(head -n 1 "$WORK/stdarg.err")" = "dstream: $WORK/stdlib_arg.lua:4: predict_on: set the initial centres first (set_initial_centers or set_random_centers)" ] && [ "$(sed -n 3p "$WORK/stdarg.err")" = "	$WORK/stdlib_arg.lua:4: in main chunk" ] && [ "$(wc -l <"$WORK/stdarg.err")" -eq 3 ]'
run badarg_debug --log-level debug "$WORK/bad_arg.lua"
check "--log-level debug shows dstream's frames, from the innermost one" \
  eval '[ "$(sed -n 3p "$WORK/badarg_debug.err")" = "	[C]: in function '"'"'error'"'"'" ] && grep -q "lua/dstream/stream.lua:[0-9]*: in function '"'"'map'"'"'" "$WORK/badarg_debug.err"'
[ "$E2E_FAILED" -gt 0 ] && for f in rterr badarg badarg_debug; do show "$f.err" "$WORK/$f.err"; done

# ---- a started streaming context the script never waits for: a hint, not a silent exit ----
cat >"$WORK/no_await.lua" <<'LUA'
local ctx = require("dstream").context { batch = "1s", workers = 1 }
ctx:queue_stream({ { "a" } }):print()
ctx:start()
LUA
run noawait "$WORK/no_await.lua"
check "a script that starts a context and returns gets a one-line hint (exit 0)" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(lines_of noawait)" -eq 1 ] && grep -qF "ctx:await_termination()" "$WORK/noawait.err"'
run ckpt_nohint "$WORK/ckpt.lua"
check "a manual-clock context stopped by the script gets no hint" eval '[ "$STATUS" -eq 0 ] && [ ! -s "$WORK/ckpt_nohint.err" ]'
cat >"$WORK/never_started.lua" <<'LUA'
local ctx = require("dstream").context { batch = "1s", workers = 1 }
ctx:queue_stream({ { "a" } }):print()
ctx:await_termination()
LUA
run never "$WORK/never_started.lua"
check "await_termination() on a context never started is an error on the user's line" \
  eval '[ "$STATUS" -eq 1 ] && grep -qF "never_started.lua:3: await_termination: the context was never started: call ctx:start() first" "$WORK/never.err"'

# ---- a script on stdin ----
cat >"$WORK/stdin.lua" <<'LUA'
local ctx = require("dstream").context { batch = "1s", clock = "manual", workers = 2 }
local sum = ctx:parallelize({ 1, 2, 3, 4, 5 }, 2):map(function(x) return x * x end):reduce(function(a, b) return a + b end)
print("from stdin", sum, select("#", ...))
ctx:stop()
LUA
timeout 30 "$DSTREAM" - <"$WORK/stdin.lua" >"$WORK/stdin.out" 2>"$WORK/stdin.err"
STATUS=$?
check "'dstream - < file' runs the script from stdin" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out stdin)" = "from stdin	55	0" ]'
timeout 30 "$DSTREAM" <"$WORK/stdin.lua" >"$WORK/stdin2.out" 2>"$WORK/stdin2.err"
STATUS=$?
check "'dstream < file' runs the script from stdin" \
  eval '[ "$STATUS" -eq 0 ] && [ "$(out stdin2)" = "from stdin	55	0" ]'

# ---- busted --lua=dstream ----
mkdir -p "$WORK/bspec/spec"
cat >"$WORK/bspec/spec/tiny_spec.lua" <<'LUA'
describe("dstream under busted", function()
  it("runs a batch on real workers", function()
    local dstream = require("dstream")
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2 }
    local got = {}
    ctx:queue_stream({ { "a b", "b" }, { "c" } })
      :flat_map(function(line) return line:gmatch("%S+") end)
      :map(function(w) return w, 1 end)
      :reduce_by_key(function(a, b) return a + b end)
      :foreach_rdd(function(rdd) got[#got + 1] = rdd:collect_as_map() end)
    ctx:start()
    ctx:advance(2)
    ctx:stop()
    assert.are.same({ { a = 1, b = 2 }, { c = 1 } }, got)
  end)
  it("sees the dstream interpreter", function()
    assert.is_truthy(arg[-1] and arg[-1]:match("dstream$"))
  end)
end)
LUA
(cd "$WORK/bspec" && timeout 60 busted --lua="$DSTREAM" -o plainTerminal spec) >"$WORK/busted.out" 2>&1
STATUS=$?
check "busted --lua=dstream runs a spec file" \
  eval '[ "$STATUS" -eq 0 ] && grep -q "^2 successes / 0 failures / 0 errors" "$WORK/busted.out"'
[ "$STATUS" -ne 0 ] && show "busted output" "$WORK/busted.out"

# ---- SIGTERM and SIGINT stop a running job gracefully ----
# last_open_batch FILE: the time of a batch that started and has not finished yet.
last_open_batch() {
  local last
  last=$(tail -n 1 "$1" 2>/dev/null)
  case "$last" in "start "*) echo "${last#start }" ;; *) return 1 ;; esac
}
has_open_batch() { last_open_batch "$1" >/dev/null; }
for sig in TERM INT; do
  o=$WORK/sig$sig.out
  e=$WORK/sig$sig.err
  bg timeout --foreground 60 "$DSTREAM" "$JOBS/slow_batches.lua" 25 >"$o" 2>"$e"
  job=$BG_PID
  # Wait for a batch in flight (started, not done), then signal. The job runs under
  # `timeout --foreground`, which passes the signal on once; plain timeout would send it
  # twice (to the child and to its process group), and a second signal means "stop now".
  if ! wait_until 20 has_open_batch "$o"; then
    not_ok "SIG$sig: a batch is in flight"
    show stdout "$o"
    show stderr "$e"
    continue
  fi
  t=$(last_open_batch "$o")
  kill -s "$sig" "$job"
  wait_exit "$job" 20
  check "SIG$sig: the job exits 0" [ "$EXIT_STATUS" -eq 0 ]
  check "SIG$sig: the batch in flight ($t) completes" grep -qx "done $t 4" "$o"
  check "SIG$sig: every batch that started completed" \
    eval '[ "$(grep -c "^start " "$o")" -eq "$(grep -c "^done " "$o")" ]'
  check "SIG$sig: no batch starts after the stop" \
    eval '! awk -v t="$t" '"'"'$1 == "start" && $2 > t + 1000 { bad = 1 } END { exit !bad }'"'"' "$o"'
  check "SIG$sig: the script goes on after await_termination" grep -qx exited "$o"
  check "SIG$sig: stderr says it stops gracefully" grep -q "stopping gracefully" "$e"
  [ "$E2E_FAILED" -gt 0 ] && { show stdout "$o"; show stderr "$e"; }
done
finish

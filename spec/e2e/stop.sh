#!/usr/bin/env bash
# spec/e2e/stop.sh: a stop always stops (issue 15). A closure that never returns keeps a
# worker in a loop LuaJIT compiled (a trace checks no hooks): the first SIGINT starts a
# graceful stop that waits for that batch; the second one must end the process within a
# second, saying what it abandoned (the batch, the stage and partition of the stuck task),
# instead of waiting forever to join the worker thread. With task_timeout, the same closure
# fails its batch (the worker is abandoned) and the job ends on its own; a loop that stays in
# the interpreter is interrupted by the timeout and the error names the record.
source "$(dirname "$0")/lib/common.bash"

cat >"$WORK/stuck.lua" <<'LUA'
-- stuck.lua [TIMEOUT]: record 3 never finishes; prints "ready" once started.
local dstream = require("dstream")
local ctx = dstream.context { batch = "200ms", workers = 2, partitions = 2, progress = false,
  clock = "system", task_timeout = arg[1], max_task_attempts = 1 }
local q = ctx:queue_stream({ { 1, 2, 3, 4 } })
q:map(function(x)
  if x == 3 then while true do end end
  return x
end):foreach_rdd(function(rdd) rdd:count() end)
ctx:start()
io.stdout:write("ready\n")
io.stdout:flush()
ctx:await_termination()
LUA

# 1. Two signals 1.5 s apart, no task timeout: the process ends within 1 s of the second.
bg "$DSTREAM" "$WORK/stuck.lua" >"$WORK/out1" 2>"$WORK/err1"
pid=$BG_PID
wait_until 10 grep -q ready "$WORK/out1"
sleep 1 # the batch with record 3 is running
kill -INT "$pid"
sleep 1.5
check "the first signal does not end a job whose batch is still running" alive "$pid"
t0=$(ms_now)
kill -INT "$pid"
wait_exit "$pid" 5
forget_pid "$pid"
took=$(($(ms_now) - t0))
if [ "$EXIT_STATUS" -ne 124 ] && [ "$took" -le 1000 ]; then
  ok "the second signal ends the process within a second (${took} ms, status $EXIT_STATUS)"
else
  not_ok "the second signal ends the process within a second (${took} ms, status $EXIT_STATUS)"
  show stderr "$WORK/err1"
fi
check "it exits with status 1" test "$EXIT_STATUS" -eq 1
if grep -q "abandoned" "$WORK/err1" && grep -Eq "batch [0-9]+ ms" "$WORK/err1" &&
  grep -Eq "count, partition [01] \(worker [01], running" "$WORK/err1"; then
  ok "the message names what was abandoned: the batch, the stage and the partition"
else
  not_ok "the message names what was abandoned: the batch, the stage and the partition"
  show stderr "$WORK/err1"
fi

# 2. ctx:stop() (not graceful) returns with a task stuck: the worker is abandoned after a
# bounded wait (2 s), and the script goes on.
cat >"$WORK/stop_call.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { batch = "200ms", workers = 2, partitions = 2, progress = false }
ctx:queue_stream({ { 1, 2, 3, 4 } }):map(function(x)
  if x == 3 then while true do end end
  return x
end):foreach_rdd(function(rdd) rdd:count() end)
ctx:start()
ctx:await_termination(1)
ctx:stop()
print("stop returned")
LUA
bg "$DSTREAM" "$WORK/stop_call.lua" >"$WORK/out4" 2>"$WORK/err4"
pid=$BG_PID
wait_exit "$pid" 8
forget_pid "$pid"
if [ "$EXIT_STATUS" -eq 0 ] && grep -q "stop returned" "$WORK/out4"; then
  ok "ctx:stop() returns although a task never ends"
else
  not_ok "ctx:stop() returns although a task never ends (status $EXIT_STATUS)"
  show stderr "$WORK/err4"
fi

# 3. A worker abandoned by ctx:stop() that comes back later (a 3 s task) closes its own state
# and ends; the process goes on meanwhile (a new context works) and exits normally.
cat >"$WORK/late.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { batch = "200ms", workers = 2, partitions = 2, progress = false }
ctx:queue_stream({ { 1, 2, 3, 4 } }):map(function(x)
  if x == 3 then local t = os.clock() while os.clock() - t < 3 do end end
  return x
end):foreach_rdd(function(rdd) rdd:count() end)
ctx:start()
ctx:await_termination(0.6)
ctx:stop()
local ctx2 = dstream.context { workers = 2 }
print("count", ctx2:parallelize({ 1, 2, 3 }):count())
local t = os.time() + 3
while os.time() < t do end -- the abandoned worker comes back meanwhile
print("count", ctx2:parallelize({ 1, 2 }):count())
ctx2:stop()
LUA
"$DSTREAM" "$WORK/late.lua" >"$WORK/out5" 2>"$WORK/err5"
status=$?
if [ "$status" -eq 0 ] && [ "$(grep -c '^count' "$WORK/out5")" -eq 2 ]; then
  ok "an abandoned worker that comes back ends cleanly; the process goes on"
  check "the stop said it abandoned a worker" grep -q "1 worker(s) still running a task were abandoned at the stop (after waiting up to 2000 ms)" "$WORK/err5"
else
  not_ok "an abandoned worker that comes back ends cleanly; the process goes on (status $status)"
  show stdout "$WORK/out5"
  show stderr "$WORK/err5"
fi

# 4. task_timeout = 1 s: the stuck batch fails on its own and the job ends.
t0=$(ms_now)
bg "$DSTREAM" "$WORK/stuck.lua" 1s >"$WORK/out2" 2>"$WORK/err2"
pid=$BG_PID
wait_exit "$pid" 15
forget_pid "$pid"
took=$(($(ms_now) - t0))
check "with task_timeout the job ends by itself with status 1 (${took} ms)" test "$EXIT_STATUS" -eq 1
if grep -q "task timed out after 1 s (task_timeout)" "$WORK/err2" && grep -Eq "partition [01]" "$WORK/err2"; then
  ok "the error says the task timed out, and where"
else
  not_ok "the error says the task timed out, and where"
  show stderr "$WORK/err2"
fi

# 5. A loop in interpreted code (a function under jit.off) is interrupted by the timeout
# like an error: the message names the record and the line, and the task is retried.
cat >"$WORK/slow.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { workers = 2, partitions = 2, task_timeout = "500ms", max_task_attempts = 2 }
local ok, err = pcall(function()
  return ctx:parallelize({ "a", "b", "spin", "d" }):map(function(x)
    local function spin() while true do end end
    if x == "spin" then jit.off(spin) spin() end
    return x
  end):collect()
end)
print(ok, err)
ctx:stop()
LUA
"$DSTREAM" "$WORK/slow.lua" >"$WORK/out3" 2>"$WORK/err3"
if grep -q 'record "spin": .*slow.lua:5: task timed out after 0.5 s (task_timeout)' "$WORK/out3" &&
  grep -q "task failed after 2 attempts" "$WORK/out3"; then
  ok "an interpreted loop is interrupted: the task fails naming the record, and is retried"
else
  not_ok "an interpreted loop is interrupted: the task fails naming the record, and is retried"
  show stdout "$WORK/out3"
  show stderr "$WORK/err3"
fi

finish

#!/usr/bin/env bash
# spec/e2e/socket_drain.sh: a graceful stop loses nothing a rate-limited socket had received
# (issue 14). A loopback server writes 20,000 numbered lines at once to a job whose
# socket_text_stream has max_rate = 200 records/s, and waits until its kernel has handed
# every byte to the job's kernel (the send queue is empty). Then the job gets SIGINT (a
# graceful stop): it must count all 20,000 lines, the ones the rate limit had not yet let in
# included (before the fix: the few hundred read at 200/s), each exactly once.
source "$(dirname "$0")/lib/common.bash"

N=20000
cat >"$WORK/server.py" <<'PY'
# server.py N PORTFILE SENTFILE: serves N numbered lines to one client, writes "sent N
# unsent BYTES" once its send queue is empty (or after 10 s), then keeps the connection
# open (the job's stop must end its read at EAGAIN, not at an end of file).
import fcntl, os, socket, struct, sys, termios, time
n, portfile, sentfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
with open(portfile + ".tmp", "w") as f:
    f.write(str(ls.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
c, _ = ls.accept()
c.sendall("".join("%d\n" % i for i in range(1, n + 1)).encode())
deadline, unsent = time.time() + 10, -1
while time.time() < deadline:
    unsent = struct.unpack("i", fcntl.ioctl(c, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    if unsent == 0:
        break
    time.sleep(0.05)
with open(sentfile + ".tmp", "w") as f:
    f.write("sent %d unsent %d\n" % (n, unsent))
os.rename(sentfile + ".tmp", sentfile)
time.sleep(60)
PY

cat >"$WORK/job.lua" <<'LUA'
-- job.lua PORT: counts the lines of a socket held to 200 records/s; prints "ready" once
-- started, "batch N" per batch with records, and at the end "total N" and "distinct N"
-- (distinct numbers seen: every line exactly once).
local dstream = require("dstream")
local ctx = dstream.context { batch = "500ms", workers = 2, partitions = 2, progress = false }
local lines = ctx:socket_text_stream("127.0.0.1", tonumber(arg[1]), { max_rate = 200 })
local total, seen, distinct = 0, {}, 0
lines:foreach_rdd(function(rdd)
  local got = rdd:collect()
  for _, l in ipairs(got) do
    if not seen[l] then seen[l], distinct = true, distinct + 1 end
  end
  total = total + #got
  if #got > 0 then io.stdout:write("batch ", #got, "\n") io.stdout:flush() end
end)
ctx:start()
io.stdout:write("ready\n")
io.stdout:flush()
ctx:await_termination()
io.stdout:write("total ", total, "\ndistinct ", distinct, "\n")
LUA

bg python3 "$WORK/server.py" "$N" "$WORK/port" "$WORK/sent"
wait_until 10 test -s "$WORK/port" || { not_ok "start the loopback server"; finish; }
bg "$DSTREAM" "$WORK/job.lua" "$(cat "$WORK/port")" >"$WORK/out.txt" 2>"$WORK/err.txt"
job=$BG_PID
wait_until 10 grep -qx ready "$WORK/out.txt"
check "the job starts" grep -qx ready "$WORK/out.txt"
wait_until 15 test -s "$WORK/sent"
check "the server wrote all $N lines and its send queue is empty ($(cat "$WORK/sent" 2>/dev/null))" \
  grep -qx "sent $N unsent 0" "$WORK/sent"
# Two batches with records: the limit is at work (about 100 lines a batch).
batches() { grep -c '^batch ' "$WORK/out.txt"; }
wait_until 10 eval '[ "$(batches)" -ge 2 ]'
counted() { awk '$1 == "batch" { n += $2 } END { print n + 0 }' "$WORK/out.txt"; }
before=$(counted)
check "max_rate holds the job back before the stop ($before lines in $(batches) batches)" \
  eval '[ "$(batches)" -ge 2 ] && [ "$before" -lt $((N / 4)) ]'
kill -INT "$job"
wait_exit "$job" 15
check "SIGINT stops the job gracefully (exit 0, got $EXIT_STATUS)" [ "$EXIT_STATUS" -eq 0 ]
echo "# the last batch, after the stop: $(grep '^batch ' "$WORK/out.txt" | tail -n 1)"
check "every line the socket had received is counted ($(grep '^total' "$WORK/out.txt"))" \
  grep -qx "total $N" "$WORK/out.txt"
check "each line once ($(grep '^distinct' "$WORK/out.txt"))" grep -qx "distinct $N" "$WORK/out.txt"
[ "$E2E_FAILED" -eq 0 ] || { show stdout "$WORK/out.txt"; show stderr "$WORK/err.txt"; }
finish

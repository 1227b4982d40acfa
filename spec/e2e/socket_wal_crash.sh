#!/usr/bin/env bash
# spec/e2e/socket_wal_crash.sh: a socket source with the write-ahead log, killed with SIGKILL
# at random moments at the settings a user gets (batch 1 s, checkpoint_interval 10 s;
# jobs/socket_wal.lua saves every line with save_as_text_files). A server
# (lib/numbered_server.py) sends numbered lines, 2000 a second, and goes on with the next line
# when the job reconnects. At the end, checked by Python against the server's log:
#  - no line is in the output directories twice;
#  - every line lost was sent within one block interval (200 ms) plus a margin for the block's
#    fsync and the kernel's socket buffer before a kill, or after it before the next
#    connection (the kernel took it for a process that was gone);
#  - the last run, stopped gracefully, saved every line it was sent.
# Runs on the release build only (a long test; the sanitizer build adds no coverage here).
source "$(dirname "$0")/lib/common.bash"
release_only


JOB=$JOBS/socket_wal.lua
KILLS=${WAL_KILLS:-20}
TOTAL=${WAL_LINES:-100000}
BOUND_MS=${WAL_BOUND_MS:-450}
seed=${WAL_SEED:-$RANDOM}
echo "# seed $seed (WAL_SEED=$seed reproduces the kill times)"
RANDOM=$seed
ck=$WORK/ckpt
out=$WORK/out/lines
mkdir -p "$ck" "$WORK/out"

port=
for _ in $(seq 1 40); do
  p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
  listening "$p" && continue
  bg python3 "$ROOT/spec/e2e/lib/numbered_server.py" "$p" "$TOTAL" "$WORK/server.log"
  if wait_until 5 eval 'listening '"$p"' || ! alive '"$BG_PID"; then
    if alive "$BG_PID"; then port=$p; break; fi
  fi
done
[ -n "$port" ] || { not_ok "the numbered-line server starts"; finish; }

start_run() {
  "$DSTREAM" "$JOB" "$port" "$ck" "$out" >"$WORK/$1.out" 2>"$WORK/$1.err" </dev/null &
  JOB_PID=$!
  E2E_PIDS+=("$JOB_PID")
}

kills=0 runs=0 early=0 wal_seen=0
t0=$(ms_now)
has_blocks() { compgen -G "$ck/wal/*.blk" >/dev/null; }
while [ "$kills" -lt "$KILLS" ] && [ "$runs" -lt $((KILLS + 10)) ]; do
  runs=$((runs + 1))
  # A third of the runs die within their first second; runs 7 and 14 outlive the checkpoint
  # interval (their checkpoints prune the log).
  case $((runs % 3)) in
  0) life=$((50 + RANDOM % 950)) ;;
  *) life=$((300 + RANDOM % 2700)) ;;
  esac
  if [ "$runs" -eq 7 ] || [ "$runs" -eq 14 ]; then life=$((10500 + RANDOM % 1500)); fi
  start_run "run$runs"
  sleep_ms "$life"
  # (Seen at a kill: a checkpoint prunes the blocks it covers, so the end of the loop may find none.)
  has_blocks && wal_seen=1
  if alive "$JOB_PID"; then
    echo "$(ms_now)" >>"$WORK/kills.txt"
    kill -KILL "$JOB_PID"
    kills=$((kills + 1))
  else
    early=$((early + 1))
    echo "# run $runs ended by itself"
    tail -n 5 "$WORK/run$runs.err" | sed 's/^/#   /'
  fi
  wait "$JOB_PID" 2>/dev/null
  forget_pid "$JOB_PID"
  echo "# run $runs killed after $life ms; $(grep '^ready' "$WORK/run$runs.out")"
done
echo "# $kills kills in $runs runs over $((($(ms_now) - t0) / 1000)) s"
check "killed with SIGKILL $KILLS times at random moments" [ "$kills" -ge "$KILLS" ]
check "no run ended by itself between the kills" [ "$early" -eq 0 ]
check "the write-ahead log was written (blocks seen on disk at a kill)" [ "$wal_seen" -eq 1 ]

start_run last
if ! wait_until 120 grep -q '^done' "$WORK/server.log"; then
  not_ok "the server sent all $TOTAL lines"
fi
sleep 2.5 # the last lines into a batch
kill -TERM "$JOB_PID"
wait_exit "$JOB_PID" 30
forget_pid "$JOB_PID"
check "the last run stops gracefully with status 0" [ "$EXIT_STATUS" -eq 0 ] ||
  tail -n 5 "$WORK/last.err" | sed 's/^/#   /'

cat "$WORK"/out/lines-*/part-* >"$WORK/saved.txt" 2>/dev/null
verdict=$(python3 - "$WORK/server.log" "$WORK/kills.txt" "$WORK/saved.txt" "$TOTAL" "$BOUND_MS" <<'PY'
import sys
log, kills_path, saved_path, total, bound = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
sent_at, accepts = {}, []
for line in open(log):
    f = line.split()
    if f[0] == "sent":
        for n in range(int(f[1]), int(f[2]) + 1):
            sent_at[n] = int(f[3])
    elif f[0] == "accept":
        accepts.append(int(f[1]))
kills = [int(x) for x in open(kills_path)]
counts = {}
for line in open(saved_path):
    n = int(line)
    counts[n] = counts.get(n, 0) + 1
twice = [n for n, c in counts.items() if c > 1]
print("ok" if not twice else "not ok", "- no line is saved twice (%d lines saved, %d twice)" % (len(counts), len(twice)))
lost = [n for n in range(1, total + 1) if n not in counts]
unexplained, ages = [], []
last_accept = accepts[-1] if accepts else 0
for n in lost:
    t = sent_at.get(n)
    ok = False
    for k in kills:
        nxt = min([a for a in accepts if a > k] or [float("inf")])
        if k - bound <= t <= nxt:
            ok = True
            ages.append(k - t)
            break
    if not ok:
        unexplained.append(n)
print("# %d lines lost over %d kills; sent at most %d ms before a kill" % (len(lost), len(kills), max(ages) if ages else 0))
print("ok" if not unexplained else "not ok",
      "- every lost line was sent within %d ms before a kill, or after it before the next connection" % bound)
if unexplained:
    print("#   unexplained: %s" % unexplained[:10])
after_last = [n for n, t in sent_at.items() if t > last_accept]
missing_last = [n for n in after_last if n not in counts]
print("ok" if not missing_last else "not ok",
      "- the last run saved every one of the %d lines it was sent" % len(after_last))
PY
)
echo "$verdict"
if echo "$verdict" | grep -q '^not ok'; then E2E_FAILED=$((E2E_FAILED + 1)); fi
finish

#!/usr/bin/env bash
# spec/e2e/ml_crash.sh: models trained by dstream.ml live in the job (issue 21): a k-means and
# a linear_sgd model trained on a rate_stream (jobs/ml_crash.lua, default checkpoint_interval)
# are killed with SIGKILL at random moments (some in the first second of a run, one run living
# past the 10 s interval) and restarted; after every batch, across all runs, both models must
# equal MLlib's update rules computed by Python from the rows each batch took (ml_oracle.py),
# so a restart resumed the model, not a fresh one, and a batch re-run after a kill trained it
# once. Runs before the long one restart from the checkpoint written at start and re-train on
# every logged batch; after it, from a periodic checkpoint: only there does the model come from
# the checkpoint (without it this test fails). Runs on the release build only.
source "$(dirname "$0")/lib/common.bash"
release_only

KILLS=${ML_KILLS:-8}
seed=${CRASH_SEED:-$RANDOM}
echo "# seed $seed (CRASH_SEED=$seed reproduces the kill times)"
RANDOM=$seed
CK=$WORK/ckpt OUT=$WORK/models.txt

start_run() {
  "$DSTREAM" "$ROOT/spec/e2e/jobs/ml_crash.lua" "$CK" "$OUT" >"$WORK/$1.out" 2>"$WORK/$1.err" </dev/null &
  JOB_PID=$!
  E2E_PIDS+=("$JOB_PID")
}

kills=0 runs=0 fresh_after=0
while [ "$kills" -lt "$KILLS" ] && [ "$runs" -lt $((KILLS + 5)) ]; do
  runs=$((runs + 1))
  had=0
  compgen -G "$CK/checkpoint-*[0-9]" >/dev/null && had=1
  case $((runs % 3)) in
  0) life=$((50 + RANDOM % 950)) ;;
  *) life=$((300 + RANDOM % 1700)) ;;
  esac
  [ "$runs" -eq 4 ] && life=$((10500 + RANDOM % 1000)) # past the default checkpoint interval
  start_run "run$runs"
  sleep_ms "$life"
  if alive "$JOB_PID"; then
    kill -KILL "$JOB_PID" 2>/dev/null
    kills=$((kills + 1))
  else
    echo "# run $runs ended by itself"
    show "run $runs stderr" "$WORK/run$runs.err" 5
  fi
  wait "$JOB_PID" 2>/dev/null
  forget_pid "$JOB_PID"
  rec=$(sed -n 's/^ready recovered=//p' "$WORK/run$runs.out" | head -n 1)
  if [ "$had" -eq 1 ] && [ "$rec" = none ]; then fresh_after=$((fresh_after + 1)); fi
  echo "# run $runs killed after $life ms; recovered=${rec:-not started}; $(wc -l <"$OUT" 2>/dev/null || echo 0) lines so far"
done
check "killed with SIGKILL $KILLS times at random moments" [ "$kills" -ge "$KILLS" ]
check "every run after the first checkpoint recovered from one" [ "$fresh_after" -eq 0 ]

start_run last
wait_until 20 grep -qs '^ready' "$WORK/last.out"
sleep 1.5
kill -TERM "$JOB_PID" 2>/dev/null
wait_exit "$JOB_PID" 30
forget_pid "$JOB_PID"
check "the last run recovered from a checkpoint" grep -q '^ready recovered=[0-9]' "$WORK/last.out"
check "the last run stops gracefully with status 0" [ "$EXIT_STATUS" -eq 0 ] || show "last stderr" "$WORK/last.err"

if python3 "$ROOT/spec/e2e/ml_oracle.py" "$OUT" >"$WORK/oracle.txt"; then oracle=0; else oracle=1; fi
cat "$WORK/oracle.txt" # its ok / not ok lines, and the final models
[ "$oracle" -eq 0 ] || E2E_FAILED=$((E2E_FAILED + 1))
finish

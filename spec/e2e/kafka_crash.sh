#!/usr/bin/env bash
# spec/e2e/kafka_crash.sh: Kafka running totals at the settings a user gets, killed with SIGKILL
# over and over (issue 14). The broker is `dstream kafka-mock` in its own process; kcat produces
# chunks of lines all along; spec/e2e/jobs/kafka_totals.lua keeps word totals in
# update_state_by_key with a checkpoint directory, the DEFAULT checkpoint interval and the
# DEFAULT consumer settings (session.timeout.ms too). It is killed with SIGKILL at random
# moments (some in the first second of a run, some after a periodic checkpoint), restarted
# each time; after the last kill a final run catches up and is stopped with SIGINT. Checks:
#   - the final totals equal an independent count of every produced line (sort | uniq -c);
#   - every message is saved by save_as_text_files exactly once across the output
#     directories, and what a batch's directory held after any kill is there at the end (a
#     batch re-run after a restart is cut at the same offsets, keeps its time and replaces
#     its directory with the same lines);
#   - each restart's time from process start to its first batch that read a record is
#     printed, and the final run's is at most 2 s (no wait for the group coordinator after a
#     SIGKILL; before, a restart waited for the killed member's session to time out, 45 s).
# Release build only: CI runs every e2e file under both builds, and this one takes ~2 minutes.
source "$(dirname "$0")/lib/common.bash"
release_only

require_commands kcat
JOB=$JOBS/kafka_totals.lua
KILLS=${KAFKA_CRASH_KILLS:-22}
CHUNKS=40
T_START=$SECONDS
now_ms() { date +%s%3N; }

# ---- the broker in its own process ----
start_kafka_mock words:4

# ---- the input: CHUNKS chunks of 150 lines, produced by kcat all through the kills ----
make_text 41 $((CHUNKS * 150)) "$WORK/input.txt"
TOTAL=$(wc -l <"$WORK/input.txt")
split -l 150 -d -a 3 "$WORK/input.txt" "$WORK/chunk-"
# One chunk every 2.8 s into partition (chunk number mod 4); the last 3 chunks only once the
# final run has started, so that it has records to read whatever its checkpoint holds.
producer() {
  local i=0 f
  for f in "$WORK"/chunk-*; do
    if [ "$i" -ge $((CHUNKS - 3)) ]; then
      while [ ! -e "$WORK/final-started" ]; do sleep 0.2; done
    fi
    kcat -P -b "$BOOT" -t words -p $((i % 4)) -l "$f" 2>>"$WORK/kcat.err" || exit 1
    i=$((i + 1))
    sleep 2.8
  done
}
bg producer
PRODUCER=$BG_PID

# ---- runs ----
# start_run N: starts run N of the job in the background (its pid in $RUN_PID, its start
# time in ms in START_MS[N]).
declare -a START_MS
start_run() {
  START_MS[$1]=$(now_ms)
  "$DSTREAM" --checkpoint "$WORK/ckpt" "$JOB" "$BOOT" words acceptance "$WORK/run$1" \
    >"$WORK/run$1.out" 2>"$WORK/run$1.err" &
  RUN_PID=$!
  E2E_PIDS+=("$RUN_PID")
}
# first_ms N: ms from run N's start to the end of its first batch that read a record, or "".
first_ms() {
  [ -s "$WORK/run$1.first" ] || return 0
  echo $(($(cat "$WORK/run$1.first") - START_MS[$1]))
}

RANDOM=4242 # the same kill times every time this test runs
read_ms=()
for run in $(seq 1 "$KILLS"); do
  start_run "$run"
  # a third in the first second, a third at 1-5 s, a third at 8-14 s (after a checkpoint of
  # the default 10 s interval, for runs that get that far)
  case $((run % 3)) in
    0) ms=$((150 + RANDOM % 850)) ;;
    1) ms=$((1000 + RANDOM % 4000)) ;;
    2) ms=$((8000 + RANDOM % 6000)) ;;
  esac
  sleep "$(awk -v ms="$ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
  if ! alive "$RUN_PID"; then
    not_ok "run $run is alive until it is killed"
    show stderr "$WORK/run$run.err"
    finish
  fi
  kill -KILL "$RUN_PID"
  wait "$RUN_PID" 2>/dev/null
  saved_outputs "$WORK/saved/lines" >>"$WORK/outputs-seen.txt" # what a reader of the outputs saw at this moment
  lived=$(($(now_ms) - START_MS[run]))
  f=$(first_ms "$run")
  echo "# run $run: killed with SIGKILL after ${lived} ms; first batch with new input after ${f:-(none)}${f:+ ms}; state: $(cat "$WORK/run$run.progress" 2>/dev/null || echo -) messages"
  [ -n "$f" ] && read_ms+=("$f")
done
ok "the job was killed with SIGKILL $KILLS times while kcat produced"

# ---- the final run catches up and stops on SIGINT ----
final=$((KILLS + 1))
start_run "$final"
FINAL_PID=$RUN_PID
touch "$WORK/final-started"
wait_exit "$PRODUCER" 120
check "kcat produced all $CHUNKS chunks ($TOTAL lines)" [ "$EXIT_STATUS" -eq 0 ]
progress() { cat "$WORK/run$final.progress" 2>/dev/null || echo 0; }
if ! wait_until 60 eval '[ "$(progress)" -ge "$TOTAL" ]'; then
  not_ok "the final run caught up with the $TOTAL produced lines (at $(progress))"
  show stderr "$WORK/run$final.err"
fi
sleep 1.5 # a few batches more, where anything counted twice would show
kill -INT "$FINAL_PID"
wait_exit "$FINAL_PID" 30
check "the final run stops gracefully on SIGINT (exit 0)" [ "$EXIT_STATUS" -eq 0 ]
f=$(first_ms "$final")
echo "# run $final (final): first batch with new input after ${f:-(none)}${f:+ ms}"
check "after the last SIGKILL, the restart read its first new record within 2 s of its start (${f:-none} ms)" \
  eval '[ -n "$f" ] && [ "$f" -le 2000 ]'
echo "# killed runs that read records: ${#read_ms[@]} of $KILLS, their first batch after (ms): ${read_ms[*]}"

# ---- the totals equal an independent count ----
{
  word_counts "$WORK/input.txt"
  echo "#messages $TOTAL"
} | sort >"$WORK/want.txt"
sort "$WORK/run$final.totals" >"$WORK/got.txt" 2>/dev/null
if cmp -s "$WORK/want.txt" "$WORK/got.txt"; then
  ok "after $KILLS SIGKILLs the totals of $(($(wc -l <"$WORK/want.txt") - 1)) words and $TOTAL messages are exact"
else
  not_ok "after $KILLS SIGKILLs the totals equal the count made with sort | uniq -c"
  diff "$WORK/want.txt" "$WORK/got.txt" | head -n 10 | sed 's/^/#   /'
  show stderr "$WORK/run$final.err"
fi
# ---- every message saved exactly once (re-run batches keep their times and records) ----
sort "$WORK/input.txt" >"$WORK/want-lines.txt"
cat "$WORK"/saved/lines-*/part-* 2>/dev/null | sort >"$WORK/got-lines.txt"
if cmp -s "$WORK/want-lines.txt" "$WORK/got-lines.txt"; then
  ok "save_as_text_files: every one of the $TOTAL messages is in the output directories exactly once"
else
  not_ok "save_as_text_files: every message is in the output directories exactly once"
  echo "#   $(wc -l <"$WORK/got-lines.txt") lines saved for $TOTAL messages; '<' missing, '>' extra:"
  diff "$WORK/want-lines.txt" "$WORK/got-lines.txt" | head -n 6 | sed 's/^/#   /'
fi
# A batch re-run after a restart has the records of its first run: what a reader saw in a
# batch's directory after any kill is still there at the end, in the same directory.
sort -u "$WORK/outputs-seen.txt" >"$WORK/outputs-seen.sorted"
saved_outputs "$WORK/saved/lines" | sort -u >"$WORK/outputs-final.sorted"
changed=$(comm -23 "$WORK/outputs-seen.sorted" "$WORK/outputs-final.sorted" | wc -l)
check "save_as_text_files: no batch directory lost a line a reader had seen in it ($(wc -l <"$WORK/outputs-seen.sorted") seen, $changed gone)" \
  [ "$changed" -eq 0 ]
echo "# run time: $((SECONDS - T_START)) s"
finish

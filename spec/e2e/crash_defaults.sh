#!/usr/bin/env bash
# spec/e2e/crash_defaults.sh: nothing lost, nothing twice, after SIGKILLs at random moments, at
# the settings a user gets (the default checkpoint_interval of 10 s: most runs here die long
# before their first periodic checkpoint, so what they took must come back from the checkpoint
# written at start and the batch log). jobs/crash_defaults.lua on a text_file_stream:
#  1. running totals (update_state_by_key, and SQL's GROUP BY with mode = "running") and a
#     one-hour window with an inverse: after the kills and a last run, all three equal a
#     coreutils count of every input word; and event-time
#     windows (by line number) that close only at the end equal an awk count per window;
#  2. save_as_text_files of the raw lines: every input line exactly once across all output
#     directories, and what a directory held after any kill is there at the end (a batch
#     re-run after a restart keeps its time and input, and replaces its directory).
# Files are moved in (once the first run is up) while the job is killed (at least 20 times; some kills in the first
# second of a run, some while slowed-down fsyncs and renames are in flight, two runs living
# past the first periodic checkpoint) and restarted. For every run the time from its start to
# its first completed batch with input is printed. Runs on the release build only (the
# sanitizer build would double a long test for no new coverage).
source "$(dirname "$0")/lib/common.bash"
release_only


JOB=$JOBS/crash_defaults.lua
crash_seed

# make_files DIR COUNT PREFIX: COUNT files of 20..220 numbered lines of 1..10 words; every line
# is unique (file and line number first), so a line read twice or lost shows by name.
make_files() { numbered_files "$1" "$2" "$3" "$seed" 200 10; }
# start_run NAME MODE IN CKPT OUT [PREFIX...]: the job in the background ($JOB_PID), its start
# time in $RUN_T0.
start_run() {
  local name=$1 mode=$2 in=$3 ck=$4 out=$5
  shift 5
  RUN_T0=$(ms_now)
  "$@" "$DSTREAM" "$JOB" "$mode" "$in" "$ck" "$out" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null &
  JOB_PID=$!
  E2E_PIDS+=("$JOB_PID")
}
# first_input NAME T0: ms from the run's start to its first completed batch with input, or "-".
first_input() {
  local t
  t=$(sed -n 's/^first-input //p' "$WORK/$1.out" | head -n 1)
  if [ -n "$t" ]; then echo $((t - $2)); else echo -; fi
}

# crash_series LABEL MODE OUT: the feeder moves 60 files in, 0.4 to 0.9 s apart, while the job
# is killed KILLS times and restarted; then a last run catches up and is stopped gracefully.
crash_series() {
  local label=$1 mode=$2 out=$3
  local in=$WORK/$mode-in ck=$WORK/$mode-ckpt stage=$WORK/$mode-stage
  mkdir -p "$in" "$ck" "$stage"
  make_files "$stage" 60 "$mode"
  local feeder=
  local kills=0 runs=0 early=0 fresh_after=0 times=() slow_io=0 long_runs=0 t0
  strace -f -qq -o /dev/null true 2>/dev/null && slow_io=1
  t0=$(ms_now)
  while [ "$kills" -lt "$KILLS" ] && [ "$runs" -lt $((KILLS + 10)) ]; do
    runs=$((runs + 1))
    local had=0 how=plain life
    compgen -G "$ck/checkpoint-*[0-9]" >/dev/null && had=1
    # Lives: a third of the runs die within their first second (some before their first
    # batch), most within 3 s, and runs 7 and 14 outlive the 10 s checkpoint interval.
    case $((runs % 3)) in
    0) life=$((50 + RANDOM % 950)) ;;
    *) life=$((300 + RANDOM % 2700)) ;;
    esac
    if [ "$runs" -eq 7 ] || [ "$runs" -eq 14 ]; then
      life=$((10500 + RANDOM % 1500))
      long_runs=$((long_runs + 1))
    fi
    if [ "$slow_io" -eq 1 ] && [ $((runs % 5)) -eq 4 ] || [ "$runs" -eq 14 ]; then
      # fsync and rename delayed: the kill likely lands inside a durable write (the batch
      # log's entry of a batch, or the checkpoint of run 14).
      how=slow
      start_run "$mode-run$runs" "$mode" "$in" "$ck" "$out" \
        strace -f -qq -o /dev/null -e trace=fsync,rename -e inject=fsync,rename:delay_enter=60ms
    else
      start_run "$mode-run$runs" "$mode" "$in" "$ck" "$out"
    fi
    if [ -z "$feeder" ]; then
      # Files already in the directory at the first start are not input (new_files_only):
      # the feeder starts once the first run is up.
      wait_until 20 grep -q '^ready' "$WORK/$mode-run$runs.out"
      (
        for f in "$stage"/*; do
          move_in "$f" "$in"
          sleep "0.$((4 + RANDOM % 6))"
        done
      ) &
      feeder=$!
      E2E_PIDS+=("$feeder")
    fi
    sleep_ms "$life"
    if alive "$JOB_PID"; then
      # Under strace the traced dstream is strace's child: kill the whole group of two.
      pkill -KILL -P "$JOB_PID" 2>/dev/null
      kill -KILL "$JOB_PID" 2>/dev/null
      kills=$((kills + 1))
    else
      early=$((early + 1))
      echo "# $label: run $runs ended by itself"
      tail -n 5 "$WORK/$mode-run$runs.err" | sed 's/^/#   /'
    fi
    wait "$JOB_PID" 2>/dev/null
    forget_pid "$JOB_PID"
    [ "$mode" = save ] && saved_outputs "$WORK/saved/lines" >>"$WORK/outputs-seen.txt" # what a reader saw now
    local rec
    rec=$(sed -n 's/^ready recovered=//p' "$WORK/$mode-run$runs.out" | head -n 1)
    if [ "$had" -eq 1 ] && [ "$rec" = none ]; then
      fresh_after=$((fresh_after + 1))
      echo "# $label: run $runs started afresh although a checkpoint was there"
    fi
    times+=("$(first_input "$mode-run$runs" "$RUN_T0")")
    echo "# $label: run $runs ($how) killed after ${life} ms; recovered=${rec:-not started}; first batch with input after $(first_input "$mode-run$runs" "$RUN_T0") ms"
  done
  echo "# $label: $kills kills in $runs runs over $((($(ms_now) - t0) / 1000)) s ($long_runs past the checkpoint interval)"
  check "$label: killed with SIGKILL $KILLS times at random moments" [ "$kills" -ge "$KILLS" ]
  check "$label: no run ended by itself between the kills" [ "$early" -eq 0 ]
  check "$label: every run after the first checkpoint recovered from one" [ "$fresh_after" -eq 0 ]
  has_checkpoint() { compgen -G "$ck/checkpoint-*[0-9]" >/dev/null; }
  check "$label: checkpoints were written at start (the directory holds one)" has_checkpoint
  wait_exit "$feeder" 60
  forget_pid "$feeder"
  check "$label: all 60 files were moved in" [ "$(ls "$in" | wc -l)" -eq 60 ]
  # The last run: it reads what is left, then a graceful stop (SIGTERM) once it is idle.
  start_run "$mode-last" "$mode" "$in" "$ck" "$out"
  LAST_T0=$RUN_T0
  LAST_PID=$JOB_PID
  LAST_IN=$in
}

# stop_last SECONDS: waits SECONDS for the last run to catch up, then stops it gracefully.
stop_last() {
  sleep "$1"
  kill -TERM "$LAST_PID" 2>/dev/null
  wait_exit "$LAST_PID" 30
  forget_pid "$LAST_PID"
  check "$2: the last run stops gracefully with status 0" [ "$EXIT_STATUS" -eq 0 ] ||
    tail -n 5 "$WORK/$3.err" | sed 's/^/#   /'
}

# ---- 1. running totals and a window ----
out=$WORK/totals.txt
crash_series "totals" totals "$out"
# The line numbered 999999 moves the watermark past every window: they close and are written.
echo "flush-999999" >"$WORK/flush.txt"
wait_until 20 grep -q '^ready' "$WORK/totals-last.out"
move_in "$WORK/flush.txt" "$LAST_IN"
stop_last 6 "totals" totals-last
echo "# totals: the last run's first batch with input after $(first_input totals-last "$LAST_T0") ms"
word_counts "$LAST_IN"/* >"$WORK/want-words.txt"
sed -n 's/^totals //p' "$out" | sort >"$WORK/got-totals.txt"
sed -n 's/^window //p' "$out" | sort >"$WORK/got-window.txt"
sed -n 's/^sql //p' "$out" | sort >"$WORK/got-sql.txt"
if cmp -s "$WORK/want-words.txt" "$WORK/got-totals.txt"; then
  ok "totals: after $KILLS kills the running totals equal coreutils' count ($(wc -l <"$WORK/want-words.txt") words)"
else
  not_ok "totals: after $KILLS kills the running totals equal coreutils' count"
  diff "$WORK/want-words.txt" "$WORK/got-totals.txt" | head -n 10 | sed 's/^/#   /'
fi
if cmp -s "$WORK/want-words.txt" "$WORK/got-sql.txt"; then
  ok "totals: SQL's running GROUP BY totals (mode = \"running\") equal coreutils' count too"
else
  not_ok "totals: SQL's running GROUP BY totals (mode = \"running\") equal coreutils' count too"
  diff "$WORK/want-words.txt" "$WORK/got-sql.txt" | head -n 10 | sed 's/^/#   /'
fi
if cmp -s "$WORK/want-words.txt" "$WORK/got-window.txt"; then
  ok "totals: the one-hour window (with an inverse) equals coreutils' count too"
else
  not_ok "totals: the one-hour window (with an inverse) equals coreutils' count too"
  diff "$WORK/want-words.txt" "$WORK/got-window.txt" | head -n 10 | sed 's/^/#   /'
fi
# The oracle: per (word, 50 s window of the line number), the words after each line's first token.
grep -hv '^flush-' "$LAST_IN"/* | awk '{ split($1, p, "-"); w = int(p[2] * 1000 / 50000) * 50000
  for (i = 2; i <= NF; i++) n[$i " " w]++ } END { for (k in n) print k, n[k] }' | sort >"$WORK/want-event.txt"
sed -n 's/^event //p' "$out.event" 2>/dev/null | sort >"$WORK/got-event.txt"
if cmp -s "$WORK/want-event.txt" "$WORK/got-event.txt"; then
  ok "totals: the event-time windows, kept open through every kill, equal awk's count ($(wc -l <"$WORK/want-event.txt") windows of words)"
else
  not_ok "totals: the event-time windows, kept open through every kill, equal awk's count"
  diff "$WORK/want-event.txt" "$WORK/got-event.txt" | head -n 10 | sed 's/^/#   /'
fi

# ---- 2. save_as_text_files: every line exactly once ----
prefix=$WORK/saved/lines
mkdir -p "$WORK/saved"
crash_series "save" save "$prefix"
stop_last 6 "save" save-last
cat "$LAST_IN"/* | sort >"$WORK/want-lines.txt"
cat "$WORK"/saved/lines-*/part-* 2>/dev/null | sort >"$WORK/got-lines.txt"
dups=$(uniq -d "$WORK/got-lines.txt" | wc -l)
if cmp -s "$WORK/want-lines.txt" "$WORK/got-lines.txt"; then
  ok "save: every one of $(wc -l <"$WORK/want-lines.txt") input lines is in the output directories exactly once"
else
  not_ok "save: every input line is in the output directories exactly once ($dups lines twice)"
  diff "$WORK/want-lines.txt" "$WORK/got-lines.txt" | head -n 10 | sed 's/^/#   /'
fi
# A batch re-run after a restart has the lines of its first run: what a reader saw in a
# batch's directory after any kill is still there at the end, in the same directory.
sort -u "$WORK/outputs-seen.txt" >"$WORK/outputs-seen.sorted"
saved_outputs "$WORK/saved/lines" | sort -u >"$WORK/outputs-final.sorted"
changed=$(comm -23 "$WORK/outputs-seen.sorted" "$WORK/outputs-final.sorted" | wc -l)
check "save: no batch directory lost a line a reader had seen in it ($(wc -l <"$WORK/outputs-seen.sorted") seen, $changed gone)" \
  [ "$changed" -eq 0 ]
finish

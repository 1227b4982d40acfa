#!/usr/bin/env bash
# spec/e2e/spark_examples.sh: the port of Spark's RecoverableNetworkWordCount
# (examples/recoverable_network_wordcount.lua) run as its header says, against nc: a first
# run creates its context, counts every word nc sent and drops the excluded ones; a second run
# on the same checkpoint directory recovers (no "Creating new context") and appends to the
# same output file. The totals are compared with coreutils' count of the text.
source "$(dirname "$0")/lib/common.bash"

EX=$ROOT/examples/recoverable_network_wordcount.lua
printf 'hello a world b b\nhello x c\nzeta hello\n' >"$WORK/text1.txt"
printf 'again c\nomega a world\n' >"$WORK/text2.txt"

# kept FILE...: how many words of FILEs are not excluded (a, b, c).
kept() { cat "$@" | tr -s ' \n' '\n\n' | grep -v -x -e a -e b -e c -e '' | wc -l; }

# run_example TEXT WANT: serves TEXT with nc, runs the example until its output file counts
# WANT words in all (at most 15 s; stdout is a file, so it is read only at the end), then
# stops it with SIGTERM.
run_example() {
  serve_file "$1" || { not_ok "nc serves the text"; finish; }
  "$DSTREAM" "$EX" 127.0.0.1 "$PORT" "$WORK/ckpt" "$WORK/out.txt" >"$WORK/run.out" 2>"$WORK/run.err" &
  local pid=$!
  E2E_PIDS+=("$pid")
  wait_until 15 eval '[ "$(counted "$WORK/out.txt")" -ge '"$2"' ]'
  kill -TERM "$pid"
  wait_exit "$pid" 10
}

# counted FILE: the number of words the "Counts at time" lines of FILE add up to.
counted() {
  sed -n 's/^Counts at time [0-9]* ms \[\(.*\)\]$/\1/p' "$1" 2>/dev/null | tr ',' '\n' | sed -n 's/^\([0-9]*\))$/\1/p' |
    awk '{ s += $1 } END { print s + 0 }'
}

# The excluded words (a, b, c) are dropped; the rest counted once each.
totals() { # totals FILE: "word count" lines from the output file's counts
  sed -n 's/^Counts at time [0-9]* ms \[\(.*\)\]$/\1/p' "$1" | sed 's/), (/\n/g; s/^(//; s/)$//' |
    awk -F, 'NF == 2 { t[$1] += $2 } END { for (w in t) print w, t[w] }' | sort
}

run_example "$WORK/text1.txt" "$(kept "$WORK/text1.txt")"
check "first run: exits 0 on SIGTERM" [ "$EXIT_STATUS" -eq 0 ]
check "first run: creates a new context" grep -q "^Creating new context$" "$WORK/run.out"
check "first run: says how many words it dropped (a, b, b, c: 4)" grep -q "^Dropped 4 word(s) totally$" "$WORK/run.out"
check "first run: appends to the output file" grep -q "^Appending to $WORK/out.txt$" "$WORK/run.out"
cp "$WORK/run.out" "$WORK/run1.out"

run_example "$WORK/text2.txt" "$(kept "$WORK/text1.txt" "$WORK/text2.txt")"
check "second run: exits 0 on SIGTERM" [ "$EXIT_STATUS" -eq 0 ]
check "second run: recovers from the checkpoint (no new context)" eval '! grep -q "Creating new context" "$WORK/run.out"'
word_counts "$WORK/text1.txt" "$WORK/text2.txt" | grep -v -e '^a ' -e '^b ' -e '^c ' >"$WORK/expected.txt"
totals "$WORK/out.txt" >"$WORK/got.txt"
check "the output file of both runs holds every word but the excluded ones, once ($(wc -l <"$WORK/expected.txt") words)" \
  diff "$WORK/expected.txt" "$WORK/got.txt"
finish

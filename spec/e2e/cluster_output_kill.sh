#!/usr/bin/env bash
# spec/e2e/cluster_output_kill.sh: a window whose keyed stage ran but whose output was killed is
# emitted by the partition's next owner, at the settings a user gets (issue 19): no consumer
# conf (librdkafka's 45 s session timeout and 3 s heartbeat), the default batch interval and
# checkpoint_interval. The twin at the defaults of spec/cluster_once_spec.lua's test of the same
# name (3 s sessions); cluster_defaults.sh kills at a random moment, which mostly falls between
# batches. Member a of `dstream --cluster ok` (jobs/cluster_window_kill.lua: 2 s windows every
# 1 s) SIGKILLs itself in its foreach_rdd at its 4th window that holds words, before writing it:
# its keyed stage had applied the batch and written the changes. Member b starts then, gets
# every partition once a's session timed out, and both outputs, added up with awk, must hold
# twice each word's count in tr | sort | uniq -c of all kcat produced (each record is in 2
# windows): a lost window or one emitted twice would show. About two minutes, nearly all waiting
# on the embedded broker's rebalances (44 s each): CI starts it beside the e2e lanes
# (scripts/test.sh, E2E_ASIDE), on the release build only.
source "$(dirname "$0")/lib/common.bash"
source "$(dirname "$0")/lib/cluster.bash"
release_only

require_commands kcat
T_START=$SECONDS
APP=ok
PARTS=2
start_kafka_mock "words:$PARTS" "$APP-windows-repartition:3" "$APP-windows-changelog:3"

# 6,000 lines in chunks of 100, one a second, so that input flows through the kill and the
# takeover; the last five once b owns everything.
make_text 47 6000 "$WORK/input.txt"
split -l 100 -d -a 3 "$WORK/input.txt" "$WORK/chunk-"
CHUNKS=$(ls "$WORK"/chunk-* | wc -l)
bg produce words 1

# start NAME KILL_AT: a member with its own checkpoint directory (pid in PID_<NAME>).
start() {
  "$DSTREAM" --cluster "$APP" --checkpoint "$WORK/ck-$1" --log-level info "$JOBS/cluster_window_kill.lua" \
    "$BOOT" words "$WORK/$1.windows" "$2" >"$WORK/$1.out" 2>"$WORK/$1.err" &
  E2E_PIDS+=("$!")
  printf -v "PID_$1" '%s' "$!"
}

start a 4
wait_exit "$PID_a" 120
check "a kills itself in its output, before writing its 4th window (status $EXIT_STATUS)" [ "$EXIT_STATUS" = 137 ]
check "a's keyed stage had applied the window's batch (the kill is in foreach_rdd)" \
  grep -q "killing this process before it writes window" "$WORK/a.err"
[ "$E2E_FAILED" = 0 ] || { show "a's stderr" "$WORK/a.err"; finish; }
echo "# a wrote $(awk '{ print $1 }' "$WORK/a.windows" | sort -u | wc -l) windows, then: $(grep -o 'killing.*' "$WORK/a.err")"
T_KILL=$SECONDS
start b 0
# b holds every partition once the group's rebalance gave it a's (a's session timing out).
check "b emits windows after a's kill" \
  wait_until 240 eval '[ -s "$WORK/b.windows" ]'
echo "#   (b's first window $((SECONDS - T_KILL)) s after a's kill)"
touch "$WORK/go-words"
wait_until 120 [ -e "$WORK/produced-words" ]

# Every word's windows, both outputs added up, against twice its count; stable for 5 s.
word_counts "$WORK/input.txt" | awk '{ print $1, 2 * $2 }' >"$WORK/want.txt"
WANT=$(awk '{ s += $2 } END { print s }' "$WORK/want.txt")
total() { cat "$WORK"/a.windows "$WORK"/b.windows | awk '{ s += $3 } END { print s + 0 }'; }
wait_until 120 steady "$WANT" 5 total
kill -TERM "$PID_b"
wait_exit "$PID_b" 30
check "b's graceful stop ends with status 0" [ "$EXIT_STATUS" = 0 ]
cat "$WORK"/a.windows "$WORK"/b.windows | awk '{ s[$2] += $3 } END { for (w in s) print w, s[w] }' | sort >"$WORK/got.txt"
join -a 1 -a 2 -e 0 -o 0,1.2,2.2 "$WORK/want.txt" "$WORK/got.txt" >"$WORK/cmp.txt"
SHORT=$(awk '$3 < $2 { n++ } END { print n + 0 }' "$WORK/cmp.txt")
OVER=$(awk '$3 > $2 { n++ } END { print n + 0 }' "$WORK/cmp.txt")
echo "# windows: $(wc -l <"$WORK/got.txt") words, $(total) of $WANT records (2 windows each); $SHORT words below twice their count, $OVER above it"
awk '$3 != $2 { print "#   " $0 }' "$WORK/cmp.txt" | head -n 5
check "every word's windows add up to exactly twice its count (the killed window emitted once, by b)" \
  [ "$SHORT$OVER" = 00 ]
check_no_crash
echo "# took $((SECONDS - T_START)) s"
finish

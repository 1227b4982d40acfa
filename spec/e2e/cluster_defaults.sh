#!/usr/bin/env bash
# spec/e2e/cluster_defaults.sh: partitions and keyed state moving between the processes of a
# cluster at the settings a user gets (issue 19): no consumer conf at all (librdkafka's
# session.timeout.ms of 45 s, heartbeat.interval.ms of 3 s), the default batch interval (1 s)
# and checkpoint_interval (10 s). The twin of the suites that move partitions with a session
# timeout of 3 s for speed (cluster_state.sh, cluster.sh, spec/cluster_window_spec.lua,
# spec/cluster_status_spec.lua, kafka_spec's cluster tests). The job (jobs/cluster_defaults.lua)
# keeps a running word count (update_state_by_key), a sliding windowed count
# (reduce_by_key_and_window with an inverse) and an interval join of two streams (join within
# 30 ms of event time) with 4 state partitions each, on two processes of
# `dstream --cluster cd`, each with its own checkpoint directory, against `dstream kafka-mock` in
# its own process, while kcat produces lines all along:
#   1. a alone, then b joins (scale out): the state partitions are shared;
#   2. once b's checkpoint holds the partitions it owns, a SIGKILL of b at a random moment,
#      mostly in a batch in flight (whose ranges a reads again): a takes everything once b's
#      session timed out; b restarted with its checkpoint directory
#      gets its state partitions back, restored from its local snapshot plus the changelog
#      after it, not the whole changelog;
#   3. a graceful leave (SIGTERM) of a: b ends owning every state partition of both operators
#      (its /api/streams says so; the final checks wait until the group gives b every partition
#      of each input: on the mock a consumer whose SyncGroup came after the leader's gets its
#      share a rebalance later, so one operator may move 44 s or more after another).
# Then each word's running total against tr | sort | uniq -c of all kcat produced (equal: nothing
# lost, and no word counted twice although a read again the killed process's batch in flight:
# the entries the states skipped as applied already are printed from /metrics), each word's
# windows added up against twice that count (every record is in 2 windows of 4 s sliding by
# 2 s; equal too, or more only by the killed process's last window: outputs are at least once
# for the batch a kill cuts), and the join's pairs against python3's nested-loop join of the chunks
# (every pair; a pair twice only with a line read twice). On the embedded broker each rebalance
# but a group's first waits the session timeout less a second (44 s) even when every member has
# rejoined, and a move takes two to four of them, so this takes six to eight minutes, nearly
# all waiting: CI starts it before the busted specs, beside them and the e2e lanes
# (scripts/test.sh, E2E_EARLY), on the release
# build only. CLUSTER_DEBUG=1: debug logs.
source "$(dirname "$0")/lib/common.bash"
source "$(dirname "$0")/lib/cluster.bash"
source "$(dirname "$0")/lib/cluster_state.bash"
release_only

require_commands kcat curl
T_START=$SECONDS
APP=cd
PARTS=4 # partitions of the input topic
N=4     # state partitions of each operator
# Limits for each move, generous for a busy machine: a rebalance takes the mock 44 s here, a
# join of a running group two to four of them, a kill the session timeout (45 s) and one to three;
# even the first start takes one when a's three consumers (its input and two repartition topics)
# miss the first join's 3 s together (48 s once on a loaded machine).
MOVE=240

start_kafka_mock "words:$PARTS" "$APP-counts-repartition:$N" "$APP-counts-changelog:$N" \
  "$APP-windows-repartition:$N" "$APP-windows-changelog:$N" "$APP-pairs-repartition:$N" "$APP-pairs-changelog:$N"

# 12,000 lines in chunks of 100, one every 2.5 s, so that input flows when partitions change
# hands: 40 chunks (100 s) from a's start through b's join, 50 (125 s) from the kill through
# b's session timing out and a taking its partitions, 25 (62 s) through a's leave; the last five
# once the leave is done.
make_text 31 12000 "$WORK/input.txt"
split -l 100 -d -a 3 "$WORK/input.txt" "$WORK/chunk-"
CHUNKS=$(ls "$WORK"/chunk-* | wc -l)
bg produce words 2.5 "40:go-kill" "90:go-leave"

# start NAME: a process of the job with its own checkpoint directory (pid in PID_<NAME>), its
# page on a free port.
LOG_LEVEL=info
[ -n "${CLUSTER_DEBUG:-}" ] && LOG_LEVEL=debug
start() {
  "$DSTREAM" --cluster "$APP" --checkpoint "$WORK/ck-$1" --ui 127.0.0.1:0 --log-level "$LOG_LEVEL" \
    "$ROOT/spec/e2e/jobs/cluster_defaults.lua" "$BOOT" words "$WORK/$1" "$N" >>"$WORK/$1.out" 2>>"$WORK/$1.err" &
  E2E_PIDS+=("$!")
  printf -v "PID_$1" '%s' "$!"
}
T_STEP=$SECONDS
took() { echo "#   (took $((SECONDS - T_STEP)) s)"; T_STEP=$SECONDS; }

# ---- 1. a alone, then b joins while the input flows ----
start a
step "a alone owns every state partition" "$MOVE" "a=$N" a
took
start b
check "scale out: b joins while kcat produces, the state partitions are shared" shared "$MOVE" a b
show_owners a b
took

# ---- 2. SIGKILL of b at a random moment; b restarted from its checkpoint ----
# b's local snapshot must hold the state partitions it owns: a checkpoint written after a batch
# of them (every 10 s by default).
touch "$WORK/b-owns"
check "b checkpoints the state partitions it owns" \
  wait_until 60 eval '[ -n "$(find "$WORK/ck-b" -maxdepth 1 -name "checkpoint-*" -newer "$WORK/b-owns")" ]'
B_OWNED=$(head -n 1 "$WORK/b.state" | sed 's/^# owns //')
B_WINDOWS=$(cat "$WORK/b.windows-owned")
touch "$WORK/go-kill"
sleep "$((RANDOM % 3)).$((RANDOM % 10))" # a moment at random, then mostly in a batch in flight
in_flight b 5
kill -KILL "$PID_b"
wait_exit "$PID_b" 10
for f in ranges windows err; do [ -e "$WORK/b.$f" ] && mv "$WORK/b.$f" "$WORK/b-killed.$f"; done
rm -f "$WORK/b.state"
took
step "after b's SIGKILL, a owns every state partition once b's session timed out" "$MOVE" "a=$N" a
took
start b
check "b restarted gets state partitions back" shared "$MOVE" a b
show_owners a b
# librdkafka's cooperative-sticky assignor gave b the same state partitions of counts (0,1) at
# its join and at its restart in every run here (those of windows mostly), so b gets back some
# it holds in its snapshot: those are restored from where the snapshot stops, not from the
# changelog's start (one it did not hold is, rightly).
check "b restarted restored from its checkpoint (local snapshot), then the changelog after it" \
  wait_until 30 grep -q "brought up to date from the changelog (offsets [1-9][0-9]* to" "$WORK/b.err"
grep "brought up to date" "$WORK/b.err" | sed 's/^.*info: /#   b: /' | head -n 8
check "no state partition b had in its snapshot (counts $B_OWNED, windows $B_WINDOWS) was restored from the changelog's start" \
  eval '! grep -q "update_state_by_key: state partition [${B_OWNED//,/}] brought up to date from the changelog (offsets 0 to" "$WORK/b.err" &&
    ! grep -q "reduce_by_key_and_window: state partition [${B_WINDOWS//,/}] brought up to date from the changelog (offsets 0 to" "$WORK/b.err"'
took

# ---- 3. a graceful leave of a ----
REPLAYED_A=$(replayed_entries a) # (a's /metrics go with it)
touch "$WORK/go-leave" # input flows while a leaves
kill -TERM "$PID_a"
wait_exit "$PID_a" 30
check "a's graceful leave (SIGTERM) ends it with status 0" [ "$EXIT_STATUS" = 0 ]
step "after a's leave, b owns every state partition" "$MOVE" "b=$N" b
check "after a's leave, the group gives b every partition of every input (the windows' and the join's repartition topics too)" \
  wait_until "$MOVE" assigned_all b
took

# ---- the survivor's state against an independent count of everything kcat produced ----
touch "$WORK/go-words"
wait_until 60 [ -e "$WORK/produced-words" ]
SETTLE_CHECKS=10 settle 90 "$(words_in "$WORK/input.txt")" b
verify "defaults" "$WORK/input.txt" b
reread "$WORK/b-killed.ranges" a b
check "input lines were read twice only when the killed process had read them in its last batches, and once more by their next owner" \
  [ "$REREAD" -ge 0 ]
echo "# defaults: the next owner read again $REREAD line(s) ($REREAD_WORDS words) the killed process had read and not committed; the states skipped $((REPLAYED_A + $(replayed_entries b))) entries as applied already"
grep -h "skipped [0-9]* entries applied already\|reads offsets [0-9]* to [0-9]* first" "$WORK/a.err" "$WORK/b.err" | sed 's/^.*info: /#   /' | head -n 6
check "through a SIGKILL: every word counted exactly once (no duplicates: $DUPS)" [ "$DUPS" = 0 ]

# ---- the windows, added up, against the same count: every record in 2 windows ----
window_sums() { cat "$WORK"/*.windows | awk '{ s[$2] += $3 } END { for (w in s) print w, s[w] }' | sort; }
window_total() { cat "$WORK"/*.windows | awk '{ s += $3 } END { print s + 0 }'; }
want=$((2 * $(words_in "$WORK/input.txt")))
wait_until 60 steady "$want" 6 window_total # (6 s: 3 slides)
window_sums >"$WORK/window-sums.txt"
awk '{ print $1, 2 * $2 }' "$WORK/expected.txt" | join -a 1 -e 0 -o 0,1.2,2.2 - "$WORK/window-sums.txt" >"$WORK/cmp-windows.txt"
W_LOST=$(awk '$3 < $2 { n++ } END { print n + 0 }' "$WORK/cmp-windows.txt")
W_DUPS=$(awk '$3 > $2 { d += $3 - $2 } END { print d + 0 }' "$WORK/cmp-windows.txt")
echo "# windows: $(wc -l <"$WORK/window-sums.txt") words, $W_LOST below twice their count, $W_DUPS above it"
awk '$3 < $2 { print "#   short: " $0 }' "$WORK/cmp-windows.txt" | head -n 5
check "every word's windows add up to twice its count or more (nothing lost)" [ "$W_LOST" = 0 ]
check "the windows hold no word that is not in the input" \
  eval '[ -z "$(join -v 2 "$WORK/expected.txt" "$WORK/window-sums.txt")" ]'
# Above twice only through the kill, at least once: a batch whose outputs b had written but
# whose changelog marker it had not (the moment between them) is applied again by its next
# owner, so its records come out once more; they were all in b's last window.
LAST_T=$(awk 'END { print $1 }' "$WORK/b-killed.windows" 2>/dev/null)
awk -v t="$LAST_T" '$1 == t { print $2, $3 }' "$WORK/b-killed.windows" 2>/dev/null | sort >"$WORK/b-last-window.txt"
W_UNEXPLAINED=$(awk '$3 > $2 { print $1, $3 - $2 }' "$WORK/cmp-windows.txt" |
  join -a 1 -e 0 -o 0,1.2,2.2 - "$WORK/b-last-window.txt" | awk '$2 > $3 { n++ } END { print n + 0 }')
check "every word's windows add up to exactly twice its count, above it only by b's last window before its kill (above it: $W_DUPS, unexplained: $W_UNEXPLAINED)" \
  [ "$W_UNEXPLAINED" = 0 ]

# ---- the join's pairs against python3's nested-loop join of the chunks ----
# pairs_as_python [--wait]: the pairs the processes emitted (WORK/*.pairs) against the join of the
# lines (a line's first word; partition p's line at offset o, from chunk p + PARTS * (o / 100),
# at 10 o ms; left: partitions 0 and 2, right: 1 and 3; within 30 ms). --wait: only whether
# every pair came. Else: none missing, none that is not in the join, and a pair more than once
# only when one of its lines was read twice (the .ranges files).
pairs_as_python() {
  python3 - "$WORK" "$PARTS" "$@" <<'PY'
import collections, glob, os, sys
work, parts, wait = sys.argv[1], int(sys.argv[2]), "--wait" in sys.argv
first = {}  # (partition, offset) -> the line's first word
count = collections.Counter()
for f in sorted(glob.glob(os.path.join(work, "chunk-*"))):
    c = int(f.rsplit("-", 1)[1])
    p = c % parts
    for line in open(f).read().split("\n")[:100]:
        first[(p, count[p])] = (line.split() or [""])[0]
        count[p] += 1
by_word = collections.defaultdict(list)
for (p, o), w in first.items():
    by_word[w].append((p, o))
want = set()
for w, recs in by_word.items():
    for (pl, ol) in recs:
        if pl % 2:
            continue
        for (pr, orr) in recs:
            if pr % 2 and abs(ol - orr) * 10 <= 30:
                want.add((pl, ol, pr, orr))
got = collections.Counter()
for f in glob.glob(os.path.join(work, "*.pairs")):
    for line in open(f):
        got[tuple(map(int, line.split()))] += 1
missing = want - set(got)
if wait:
    sys.exit(1 if missing else 0)
reads = collections.Counter()
for f in glob.glob(os.path.join(work, "*.ranges")):
    for line in open(f):
        p, a, b = map(int, line.split())
        for o in range(a, b):
            reads[(p, o)] += 1
extra = set(got) - want
twice = [k for k, n in got.items() if n > 1]
unexplained = [k for k in twice if reads[(k[0], k[1])] < 2 and reads[(k[2], k[3])] < 2]
print("# join: %d pairs in the input, %d emitted more than once (a line read twice)" % (len(want), len(twice)))
if missing or extra or unexplained:
    sys.exit("missing %s; not in the join %s; twice without a line read twice %s"
             % (sorted(missing)[:5], sorted(extra)[:5], unexplained[:5]))
PY
}
wait_until 60 pairs_as_python --wait
check "the join's pairs are python3's nested-loop join of the input: none missing, none more, twice only with a line read twice" \
  pairs_as_python

# ---- the survivor's page: it owns every state partition of both operators ----
curl -s "$(page b)api/streams" >"$WORK/b.streams.json"
check "/api/streams of b: group $APP, every state partition of counts and windows owned, every word's total held, no restore running" \
  "$DSTREAM" -e "local c = require('cjson').decode(io.open('$WORK/b.streams.json'):read('*a')).cluster
    assert(c.group == '$APP' and c.member_id:find('.'), 'member')
    local by = {}
    for _, op in ipairs(c.state) do
      assert(op.partitions == $N and table.concat(op.owned, ',') == '0,1,2,3', op.operator .. ' owns ' .. table.concat(op.owned, ','))
      assert(#op.restoring == 0, op.operator .. ': a restore still runs')
      by[op.operator] = op
    end
    assert(by.counts and by.windows, 'operators')
    -- every word's running total; the windows' panes are gone once the input's last window passed
    assert(by.counts.keys == $(wc -l <"$WORK/expected.txt"), 'counts holds ' .. by.counts.keys .. ' keys')
    for _, i in ipairs(c.inputs) do io.write('#   b: ', i.name, ' assigned ', table.concat(i.assigned, ','), '\n') end"
kill -TERM "$PID_b"
wait_exit "$PID_b" 30
check "b's graceful stop ends with status 0" [ "$EXIT_STATUS" = 0 ]

check_no_crash
echo "# took $((SECONDS - T_START)) s"
finish

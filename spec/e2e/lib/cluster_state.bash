# spec/e2e/lib/cluster_state.bash: what the suites of keyed state across a cluster's processes
# share (cluster_state.sh, cluster_defaults.sh), sourced after common.bash and cluster.bash.
# Each process of their jobs writes WORK/NAME.state after every batch ("# owns P,Q", the state
# partitions of the running count it owns, then its (word, count) pairs) and WORK/NAME.ranges
# (the input offsets of each batch it read). Expects N (state partitions), PARTS (input
# partitions) and the input split in WORK/chunk-* (see cluster.bash's produce).

# state partitions a process owns now (by its last batch)
owned() { head -n 1 "$WORK/$1.state" 2>/dev/null | sed 's/^# owns //' | tr ',' '\n' | grep -c . || true; }
# shared SECONDS NAMES...: waits until each process owns some state partitions, all of them
# between them (the cooperative-sticky assignor may leave them uneven after a restart)
shared() {
  local secs=$1
  shift
  wait_until "$secs" shared_now "$@"
}
shared_now() {
  local n sum=0
  for n in "$@"; do
    [ "$(owned "$n")" -ge 1 ] || return 1
    sum=$((sum + $(owned "$n")))
  done
  [ "$sum" = "$N" ]
}
show_owners() {
  local n
  for n in "$@"; do echo "#   $n owns state partitions $(head -n 1 "$WORK/$n.state" 2>/dev/null | sed 's/^# owns //'), $(($(wc -l <"$WORK/$n.state") - 1)) words"; done
}
# state_sum NAMES...: the sum of the counts the processes hold
state_sum() { cat "${@/#/$WORK/}" 2>/dev/null | grep -v '^#' | awk '{ s += $2 } END { print s + 0 }'; }
# page NAME: the address of process NAME's live page (each is started with --ui 127.0.0.1:0
# and logging at info, which prints it)
page() { grep -o 'http://127.0.0.1:[0-9]*/' "$WORK/$1.err" | tail -n 1; }
# replayed_entries NAMES...: dstream_cluster_replayed_entries_total summed over the processes'
# /metrics
replayed_entries() {
  local n url sum=0 v
  for n in "$@"; do
    url=$(page "$n")
    [ -n "$url" ] || continue
    v=$(curl -s "${url}metrics" | awk '/^dstream_cluster_replayed_entries_total/ { s += $2 } END { print s + 0 }')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# assigned_all NAME: process NAME's /api/streams says the group gives it every partition of
# every Kafka input it has: the job's topic (PARTS partitions) and each stateful operator's
# repartition topic (N). Each input is a consumer of its own, and on the embedded broker each
# gets its share in a rebalance of its own when its SyncGroup came after the leader's (the
# guide's limits of `dstream kafka-mock`), so one operator may own its state partitions a
# rebalance or more (44 s each) after another.
assigned_all() {
  local url
  url=$(page "$1")
  [ -n "$url" ] || return 1
  curl -s --max-time 5 "${url}api/streams" | python3 -c '
import json, sys
parts, n = int(sys.argv[1]), int(sys.argv[2])
inputs = json.load(sys.stdin)["cluster"]["inputs"]
sys.exit(0 if inputs and all(len(i["assigned"]) == (n if i.get("state_of") else parts) for i in inputs) else 1)
' "$PARTS" "$N" 2>/dev/null
}
# in_flight NAME SECONDS: returns once process NAME starts its next batch with records (it notes
# the batch's input ranges in WORK/NAME.ranges before sending anything on; SECONDS at most),
# 0 to 99 ms later (its sends take a few ms to tens): a kill then mostly lands in a batch in
# flight, whose records its partitions' next owner reads again
in_flight() {
  local size deadline=$((SECONDS + $2))
  size=$(wc -c <"$WORK/$1.ranges" 2>/dev/null || echo 0)
  while [ "$(wc -c <"$WORK/$1.ranges" 2>/dev/null || echo 0)" -le "$size" ] && [ $SECONDS -lt $deadline ]; do
    sleep 0.01
  done
  sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
}
# words_in FILE: how many words the lines of FILE hold
words_in() { tr -s ' \t' '\n\n' <"$1" | grep -c .; }
# settle SECONDS WANT NAMES...: waits until the held counts add up to WANT or more and stop moving
# (for SETTLE_CHECKS polls 0.5 s apart: 4 unless set)
settle() {
  local secs=$1 want=$2 last=-1 now stable=0
  shift 2
  local files=()
  for n in "$@"; do files+=("$n.state"); done
  local t_end=$((SECONDS + secs))
  while [ $SECONDS -lt $t_end ]; do
    now=$(state_sum "${files[@]}")
    if [ "$now" -ge "$want" ] && [ "$now" = "$last" ]; then
      stable=$((stable + 1))
      [ $stable -ge "${SETTLE_CHECKS:-4}" ] && return 0
    else
      stable=0
    fi
    last=$now
    sleep 0.5
  done
  echo "# the counts did not settle at $want or more: $now"
  return 1
}
# verify LABEL INPUT NAMES...: the union of the processes' state against the independent count
# of INPUT; sets LOST and DUPS (counts above the input's).
verify() {
  local label=$1 input=$2
  shift 2
  for n in "$@"; do grep -v '^#' "$WORK/$n.state"; done | sort >"$WORK/final-$label.txt"
  word_counts "$input" >"$WORK/expected.txt"
  check "$label: every word is held by one process only" \
    eval '[ -z "$(cut -d" " -f1 "$WORK/final-$label.txt" | uniq -d)" ]'
  join -a 1 -e 0 -o 0,1.2,2.2 "$WORK/expected.txt" "$WORK/final-$label.txt" >"$WORK/cmp-$label.txt"
  LOST=$(awk '$3 < $2 { n++ } END { print n + 0 }' "$WORK/cmp-$label.txt")
  DUPS=$(awk '$3 > $2 { d += $3 - $2 } END { print d + 0 }' "$WORK/cmp-$label.txt")
  EXACT=$(awk '$3 == $2 { n++ } END { print n + 0 }' "$WORK/cmp-$label.txt")
  echo "# $label: $(wc -l <"$WORK/expected.txt") words, $EXACT counted exactly, $LOST below their count, $DUPS duplicate occurrence(s)"
  awk '$3 < $2 { print "#   lost: " $0 }' "$WORK/cmp-$label.txt" | head -n 5
  check "$label: no word is missing or below its count (nothing lost)" [ "$LOST" = 0 ]
  check "$label: no word that is not in the input" \
    eval '[ -z "$(join -v 2 "$WORK/expected.txt" "$WORK/final-$label.txt")" ]'
}
# reread KILLED NAMES...: the input lines read twice (REREAD) and their words (REREAD_WORDS), by
# cluster_reread.py; both -1 and the reason printed when it finds lines read twice otherwise.
reread() {
  local killed=$1 out
  shift
  local files=()
  for n in "$@"; do [ -e "$WORK/$n.ranges" ] && files+=("$WORK/$n.ranges"); done
  if out=$(python3 "$ROOT/spec/e2e/lib/cluster_reread.py" "$WORK" "$PARTS" "$killed" "${files[@]}" 2>&1); then
    read -r REREAD REREAD_WORDS <<<"$out"
  else
    echo "# $out"
    REREAD=-1 REREAD_WORDS=-1
  fi
}


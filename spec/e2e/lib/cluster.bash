# spec/e2e/lib/cluster.bash: what the cluster mode suites share (cluster.sh, cluster_state.sh),
# sourced after common.bash. produce expects $WORK/chunk-* (the input, split), CHUNKS, PARTS and
# BOOT; owners and step expect the suite's owned NAME (partitions the process owns now) and
# show_owners NAMES... (prints them).

# produce TOPIC PAUSE_S [CHUNK:FILE...]: one chunk every PAUSE_S into partition (chunk number
# mod PARTS); chunk CHUNK and those after it wait for $WORK/FILE (a phase of the test), and the
# last five for $WORK/go-TOPIC (the test's end, from which the rest goes without pauses), so
# input flows through every step.
produce() {
  local topic=$1 pause=$2 i=0 f hold
  shift 2
  for f in "$WORK"/chunk-*; do
    for hold in "$@"; do
      if [ "$i" -ge "${hold%%:*}" ]; then
        while [ ! -e "$WORK/${hold#*:}" ]; do sleep 0.1; done
      fi
    done
    if [ "$i" -ge $((CHUNKS - 5)) ]; then
      while [ ! -e "$WORK/go-$topic" ]; do sleep 0.1; done
    fi
    kcat -P -b "$BOOT" -t "$topic" -p $((i % PARTS)) -l "$f" 2>>"$WORK/kcat.err" || exit 1
    i=$((i + 1))
    [ -e "$WORK/go-$topic" ] || sleep "$pause"
  done
  touch "$WORK/produced-$topic"
}

# owners "NAME=N ...": every named process owns exactly N partitions.
owners() {
  local kv
  for kv in "$@"; do [ "$(owned "${kv%=*}")" = "${kv#*=}" ] || return 1; done
}
# step DESCRIPTION SECONDS "NAME=N ..." NAMES-TO-SHOW...: waits for that ownership; ok or not ok.
step() { # step DESCRIPTION SECONDS "NAME=N ..." NAMES-TO-SHOW...
  local what=$1 secs=$2 want=$3
  shift 3
  if wait_until "$secs" owners $want; then ok "$what ($want)"; else not_ok "$what ($want)"; fi
  show_owners "$@"
}

# check_no_crash: not ok for every stderr file of the suite that shows a crash.
check_no_crash() {
  local f
  for f in "$WORK"/*.err; do
    if grep -q "panic\|Segmentation\|AddressSanitizer" "$f"; then not_ok "no crash in $(basename "$f")"; show stderr "$f"; fi
  done
}

#!/usr/bin/env bash
# spec/e2e/cluster.sh: cluster mode (issue 19's first slice): one stateless job on several
# processes, context{ cluster = "APP" }, sharing a topic's partitions through consumer group APP
# (cooperative-sticky). The broker is `dstream kafka-mock` in its own process; kcat produces
# numbered lines all along while processes come and go:
#   run 1 (session.timeout.ms = 3 s): scale out 1 -> 2 -> 3, a graceful leave (SIGTERM) 3 -> 2,
#     a SIGKILL of one process, and it restarted;
#   run 2 (librdkafka's default session timeout, 45 s): one process reads every partition and
#     stops gracefully without waiting for the session timeout. Moves at the defaults (45 s,
#     44 s per rebalance on the mock) are cluster_defaults.sh's, the twin of run 1.
# Each process appends every record it processed to a file of its own (foreach_rdd) and writes
# the partitions the group gave it after each batch (kafka_stats(): member id, assigned).
# Checks, against the input with coreutils: nothing lost (comm), no record processed twice
# before the SIGKILL (partitions hand over at the offsets their last owner's completed batches
# ended: see the guide's Cluster mode), the duplicates after it printed (the killed process's
# batches in flight), partitions moved at each step (printed), and /api/streams of a process
# shows its member id and partitions.
# CLUSTER_DEBUG=1 adds each batch's offset ranges (OUT.ranges) and debug logs (with E2E_KEEP=1).
# Release build only (CI runs every e2e file under both builds).
source "$(dirname "$0")/lib/common.bash"
source "$(dirname "$0")/lib/cluster.bash"
release_only

require_commands kcat curl
T_START=$SECONDS
PARTS=6

cat >"$WORK/job.lua" <<'EOF'
-- dstream job.lua BROKERS TOPIC APP OUT SESSION_MS|default
local dstream = require("dstream")
local brokers, topic, app, out, session = arg[1], arg[2], arg[3], arg[4], arg[5]
local ctx = dstream.context { batch = "300ms", workers = 1, name = "e2e-cluster", cluster = app }
local conf = {}
if session ~= "default" then
  conf["session.timeout.ms"] = session
  conf["heartbeat.interval.ms"] = "300"
end
local lines = ctx:kafka_stream { brokers = brokers, topics = { topic }, start = "earliest", conf = conf }
local fh = assert(io.open(out .. ".lines", "a"))
lines:foreach_rdd(function(rdd)
  local got = rdd:collect()
  if #got > 0 then
    fh:write(table.concat(got, "\n"), "\n")
    fh:flush()
  end
  local st = lines:kafka_stats()
  if os.getenv("CLUSTER_DEBUG") then
    local rf = io.open(out .. ".ranges", "a")
    for _, r in ipairs(require("dstream.kafka").offset_ranges(rdd) or {}) do
      if r.count > 0 then rf:write(string.format("%.3f %d %d-%d\n", os.time() + (os.clock() % 1), r.partition, r.from, r["until"])) end
    end
    rf:close()
  end
  local owned = {}
  for _, o in ipairs(st.assigned or {}) do owned[#owned + 1] = o.topic .. "[" .. o.partition .. "]" end
  local tmp = assert(io.open(out .. ".owned.tmp", "w"))
  tmp:write(tostring(st.member_id), " ", table.concat(owned, ","), "\n")
  tmp:close()
  os.rename(out .. ".owned.tmp", out .. ".owned")
end)
ctx:start()
ctx:await_termination()
EOF

start_kafka_mock "words:$PARTS" "calm:$PARTS"

# ---- the input: numbered lines (each unique), produced in chunks all through the test ----
make_text 19 6000 "$WORK/text.txt"
awk '{ print NR ": " $0 }' "$WORK/text.txt" >"$WORK/input.txt"
split -l 100 -d -a 3 "$WORK/input.txt" "$WORK/chunk-"
CHUNKS=$(ls "$WORK"/chunk-* | wc -l)

# start NAME TOPIC SESSION: a process of the job (pid in PID_<NAME>).
start() {
  "$DSTREAM" ${CLUSTER_DEBUG:+--log-level debug} --ui 127.0.0.1:0 "$WORK/job.lua" "$BOOT" "$2" "app-$2" "$WORK/$1" "$3" \
    >>"$WORK/$1.out" 2>>"$WORK/$1.err" &
  E2E_PIDS+=("$!")
  printf -v "PID_$1" '%s' "$!"
}
# owned NAME: how many partitions the process owns now (by its last batch's figures).
owned() {
  local l
  l=$(cut -d' ' -f2 "$WORK/$1.owned" 2>/dev/null)
  [ -n "$l" ] && echo "$l" | tr ',' '\n' | grep -c . || echo 0
}
show_owners() {
  local n
  for n in "$@"; do echo "#   $n: $(cut -d' ' -f2 "$WORK/$n.owned" 2>/dev/null) (member $(cut -d' ' -f1 "$WORK/$n.owned" 2>/dev/null | cut -c1-40))"; done
}
# verify TOPIC NAMES...: the union of the processes' outputs against the input.
verify() {
  local topic=$1
  shift
  local files=()
  for n in "$@"; do files+=("$WORK/$n.lines"); done
  wait_until 40 eval "[ -e '$WORK/produced-$topic' ] && [ \$(cat ${files[*]} 2>/dev/null | sort -u | wc -l) -ge $(wc -l <"$WORK/input.txt") ]"
  cat "${files[@]}" | sort >"$WORK/all-$topic.txt"
  sort -u "$WORK/all-$topic.txt" >"$WORK/uniq-$topic.txt"
  sort "$WORK/input.txt" >"$WORK/input.sorted"
  LOST=$(comm -23 "$WORK/input.sorted" "$WORK/uniq-$topic.txt" | wc -l)
  EXTRA=$(comm -13 "$WORK/input.sorted" "$WORK/uniq-$topic.txt" | wc -l)
  DUPS=$(($(wc -l <"$WORK/all-$topic.txt") - $(wc -l <"$WORK/uniq-$topic.txt")))
  echo "# $topic: $(wc -l <"$WORK/input.txt") records in, $(wc -l <"$WORK/all-$topic.txt") processed, $LOST lost, $DUPS duplicate(s)"
  for n in "$@"; do echo "#   $n processed $(wc -l <"$WORK/$n.lines" 2>/dev/null || echo 0)"; done
}

# ---- run 1: session.timeout.ms = 3 s ----
bg produce words 0.15
start p1 words 3000
step "one process owns every partition" 60 "p1=$PARTS" p1
start p2 words 3000
step "scale out 1 -> 2: the partitions are shared" 60 "p1=3 p2=3" p1 p2
start p3 words 3000
step "scale out 2 -> 3" 60 "p1=2 p2=2 p3=2" p1 p2 p3
kill -TERM "$PID_p3"
wait_exit "$PID_p3" 15
check "a graceful leave (SIGTERM) ends the process with status 0" [ "$EXIT_STATUS" = 0 ]
step "after the leave 3 -> 2, its partitions moved to the others" 60 "p1=3 p2=3" p1 p2
DUPS_BEFORE_KILL=$(cat "$WORK"/p*.lines | sort | uniq -d | wc -l)
check "no record processed twice over the scale-outs 1 -> 2 -> 3 and the leave 3 -> 2 ($DUPS_BEFORE_KILL)" \
  [ "$DUPS_BEFORE_KILL" = 0 ]
kill -KILL "$PID_p2"
wait_exit "$PID_p2" 5
: >"$WORK/p2.owned"
step "after a SIGKILL, its partitions moved once its session timed out" 60 "p1=$PARTS" p1
start p2 words 3000
step "the killed process restarted gets partitions back" 60 "p1=3 p2=3" p1 p2
touch "$WORK/go-words"
verify words p1 p2 p3
check "run 1: every input record was processed ($LOST lost)" [ "$LOST" = 0 ]
check "run 1: nothing but input records in the outputs" [ "$EXTRA" = 0 ]
echo "# run 1: $DUPS duplicate(s) in all, $((DUPS - DUPS_BEFORE_KILL)) after the SIGKILL"

# /api/streams of a running process: its member id and assigned partitions.
url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$WORK/p1.err" | tail -n 1)
curl -s "${url}api/streams" >"$WORK/streams.json"
check "/api/streams shows the member id and the assigned partitions" \
  "$DSTREAM" -e "local j = require('cjson').decode(io.open('$WORK/streams.json'):read('*a'))
    local i = j.inputs[1]
    assert(i.group == 'app-words', tostring(i.group))
    assert(type(i.member_id) == 'string' and #i.member_id > 0, 'member id')
    assert(#i.assigned == 3, 'assigned: ' .. #i.assigned)
    print('# p1: member ' .. i.member_id .. ' owns ' .. table.concat(i.assigned, ', ') .. ' (' .. i.rebalances .. ' rebalances)')"
for n in p1 p2; do kill -TERM "$(eval echo "\$PID_$n")"; done
for n in p1 p2; do wait_exit "$(eval echo "\$PID_$n")" 15; done

# ---- run 2: librdkafka's default session timeout (45 s): one process takes every partition,
# processes the input once, and its graceful stop (commit, LeaveGroup) does not wait for the
# session timeout. (On the mock a join or a leave with members at 45 s takes up to the
# session timeout: see the guide; cluster_defaults.sh moves partitions at the defaults.) ----
bg produce calm 0.05
start q1 calm default
step "defaults: one process owns every partition" 60 "q1=$PARTS" q1
touch "$WORK/go-calm"
verify calm q1
check "run 2: every input record was processed ($LOST lost)" [ "$LOST" = 0 ]
check "run 2: no duplicates without a rebalance ($DUPS)" [ "$DUPS" = 0 ]
T_STOP=$(ms_now)
kill -TERM "$PID_q1"
wait_exit "$PID_q1" 15
echo "# defaults: the graceful stop took $(($(ms_now) - T_STOP)) ms"
check "defaults: a graceful stop ends with status 0 within 5 s" \
  eval '[ "$EXIT_STATUS" = 0 ] && [ $(($(ms_now) - T_STOP)) -lt 5000 ]'

# ---- a cluster context refuses the keyed state it cannot keep across processes yet ----
"$DSTREAM" -e 'local c = require("dstream").context { cluster = "x" }
  c:driver_state("seen", function() return 1 end, function() end)' \
  >/dev/null 2>"$WORK/state.err"
check "driver_state in cluster mode fails, naming what is built" \
  grep -q "driver_state: cluster mode keeps only the state of update_state_by_key, map_with_state and the windows (reduce_by_key_and_window, event-time windows, session_window, window() after event_time)" "$WORK/state.err"

check_no_crash
echo "# took $((SECONDS - T_START)) s"
finish

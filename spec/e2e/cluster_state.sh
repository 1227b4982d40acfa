#!/usr/bin/env bash
# spec/e2e/cluster_state.sh: keyed state across the processes of a cluster (issue 19): a running
# word count (reduce_by_key per batch, then update_state_by_key, named "counts") run by several
# processes of `dstream --cluster APP`, against `dstream kafka-mock` in its own process, while
# kcat produces lines all along:
#   run 1 (session.timeout.ms = 3 s): scale out 1 -> 2 -> 3 and a graceful leave 3 -> 2 while
#     the first part of the input flows: every word counted exactly once; then a SIGKILL of a
#     process at a random moment while the rest flows (it has a checkpoint directory:
#     restarted, it restores from its local snapshot plus the changelog after it), and the
#     restart: nothing lost and no word counted twice (the next owners read the killed
#     process's batch in flight again, exactly its ranges, and the state skips what it had of
#     it: the entries skipped are printed from /metrics);
#   run 2 (librdkafka's default session timeout): one process counts every word exactly once.
# Moves at the defaults (45 s session timeout, 44 s per rebalance on the mock) are the twin
# cluster_defaults.sh's.
# After each batch a process writes the (word, count) pairs of the state partitions it owns
# and which those are, and (before the batch sends anything on) the input offsets it read. The
# state is checked against an independent count (tr | sort | uniq -c); python3 finds the lines
# read twice from the offsets every process read. CLUSTER_DEBUG=1: the processes log at debug.
# Release build only (CI runs every e2e file under both builds).
source "$(dirname "$0")/lib/common.bash"
source "$(dirname "$0")/lib/cluster.bash"
source "$(dirname "$0")/lib/cluster_state.bash"
release_only

require_commands kcat curl
T_START=$SECONDS
PARTS=4 # partitions of the input topics
N=6     # state partitions

export E2E_JOBS=$JOBS # (the job's shared part, read_ranges.lua)
cat >"$WORK/job.lua" <<'EOF'
-- dstream --cluster APP job.lua BROKERS TOPIC OUT SESSION_MS|default
local dstream = require("dstream")
local text = require("dstream.text")
local brokers, topic, out, session = arg[1], arg[2], arg[3], arg[4]
local ctx = dstream.context { batch = "300ms", workers = 2, name = "e2e-cluster-state" }
local conf = {}
if session ~= "default" then
  conf["session.timeout.ms"] = session
  conf["heartbeat.interval.ms"] = "300"
end
local lines = ctx:kafka_stream { brokers = brokers, topics = { topic }, start = "earliest", conf = conf }
-- Each batch's input offsets, in OUT.ranges, as the batch is computed (spec/e2e/jobs/).
package.path = os.getenv("E2E_JOBS") .. "/?.lua;" .. package.path
local read = require("read_ranges")(lines, out)
local counts = read:flat_map(function(l) return text.words(l) end)
  :map(function(w) return w, 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :update_state_by_key(function(values, n)
    n = n or 0
    for i = 1, #values do n = n + values[i] end
    return n
  end, { partitions = tonumber(os.getenv("STATE_PARTITIONS") or 6) })
  :name("counts")
counts:foreach_rdd(function(rdd)
  local st = counts:kafka_stats()
  local owned = {}
  for _, o in ipairs(st.assigned or {}) do owned[#owned + 1] = o.partition end
  table.sort(owned)
  local tmp = assert(io.open(out .. ".state.tmp", "w"))
  tmp:write("# owns ", table.concat(owned, ","), "\n")
  for _, kv in ipairs(rdd:collect()) do tmp:write(kv[1], " ", kv[2], "\n") end
  tmp:close()
  os.rename(out .. ".state.tmp", out .. ".state")
  local inputs = {}
  for _, o in ipairs(lines:kafka_stats().assigned or {}) do inputs[#inputs + 1] = o.partition end
  tmp = assert(io.open(out .. ".inputs.tmp", "w"))
  tmp:write(table.concat(inputs, ","), "\n")
  tmp:close()
  os.rename(out .. ".inputs.tmp", out .. ".inputs")
end)
ctx:start()
ctx:await_termination()
EOF

start_kafka_mock "words:$PARTS" "calm:$PARTS" "st1-counts-repartition:$N" "st1-counts-changelog:$N" \
  "st2-counts-repartition:$N" "st2-counts-changelog:$N"

make_text 23 4000 "$WORK/input.txt"
split -l 100 -d -a 3 "$WORK/input.txt" "$WORK/chunk-"
CHUNKS=$(ls "$WORK"/chunk-* | wc -l)
FIRST=28 # run 1: the chunks produced before the kill
cat $(ls "$WORK"/chunk-* | head -n "$FIRST") >"$WORK/input-first.txt"

# start NAME APP TOPIC SESSION [OPTIONS...]: a process of the job (pid in PID_<NAME>).
start() {
  local name=$1 app=$2 topic=$3 session=$4
  shift 4
  "$DSTREAM" --cluster "$app" "$@" ${CLUSTER_DEBUG:+--log-level debug} "$WORK/job.lua" "$BOOT" \
    "$topic" "$WORK/$name" "$session" >>"$WORK/$name.out" 2>>"$WORK/$name.err" &
  E2E_PIDS+=("$!")
  printf -v "PID_$name" '%s' "$!"
}
# ---- run 1: session.timeout.ms = 3 s ----
bg produce words 0.8 "$FIRST:go-words-first"
mkdir -p "$WORK/ck-p2"
start p1 st1 words 3000 --log-level info --ui 127.0.0.1:0
step "one process owns every state partition" 60 "p1=$N" p1
start p2 st1 words 3000 --checkpoint "$WORK/ck-p2"
step "scale out 1 -> 2: the state partitions are shared" 60 "p1=3 p2=3" p1 p2
start p3 st1 words 3000 --log-level info --ui 127.0.0.1:0
step "scale out 2 -> 3" 60 "p1=2 p2=2 p3=2" p1 p2 p3
check "a process that joins restores its state partitions from the changelog" \
  wait_until 15 grep -q "state partition [0-9] brought up to date from the changelog (offsets 0 to [1-9][0-9]*): [1-9]" "$WORK/p3.err"
grep "brought up to date" "$WORK/p3.err" | sed 's/^.*info: /#   p3: /' | head -n 3
url=$(page p3)
curl -s "${url}metrics" >"$WORK/p3.metrics"
grep '^dstream_cluster' "$WORK/p3.metrics" | sed 's/^/#   p3 \/metrics: /'
check "/metrics of the joining process shows its member id, state partitions, restores and rebalances" \
  eval 'grep -q "^dstream_cluster_state_partitions{operator=\"counts\"} [1-9]" "$WORK/p3.metrics" &&
    grep -q "^dstream_cluster_restores_total{operator=\"counts\"} [1-9]" "$WORK/p3.metrics" &&
    grep -q "^dstream_cluster_restored_changes_total{operator=\"counts\"} [1-9]" "$WORK/p3.metrics" &&
    grep -q "^dstream_cluster_rebalances_total{input=\"update_state_by_key (repartition)\"} [1-9]" "$WORK/p3.metrics" &&
    grep -q "^dstream_cluster_member{input=\"words\",group=\"st1\",member_id=\"[^\"]\+\"} 1" "$WORK/p3.metrics" &&
    grep -q "^dstream_cluster_restores_running{operator=\"counts\"} 0" "$WORK/p3.metrics"'
# The live page's JSON and the page itself (headless Chromium) say which member p3 is and
# which state partitions it owns: the same as the job's own output (kafka_stats), and the
# restores it ran.
curl -s "${url}api/streams" >"$WORK/p3.streams.json"
p3_owns=$(head -n 1 "$WORK/p3.state" | sed 's/^# owns //')
check "/api/streams of p3: its member id, its assigned input partitions, state partitions $p3_owns and the restores done" \
  "$DSTREAM" -e "local c = require('cjson').decode(io.open('$WORK/p3.streams.json'):read('*a')).cluster
    assert(c.group == 'st1' and c.member_id:find('.'), 'member')
    local op = c.state[1]
    assert(op.operator == 'counts' and op.partitions == $N and table.concat(op.owned, ',') == '$p3_owns', 'owned')
    assert(op.restores.count >= 1 and op.restores.changes >= 1 and #op.recent_restores >= 1, 'restores')
    assert(#op.restoring == 0 and op.keys >= 1, 'keys')
    assert(c.inputs[1].name == 'words' and #c.inputs[1].assigned >= 1 and c.rebalances >= 1, 'inputs')"
grep -o '"member_id":"[^"]*"' "$WORK/p3.streams.json" | head -n 1 | sed 's/^/#   p3 \/api\/streams: /'
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$browser" ]; then
  timeout 60 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d "$WORK/chrome.XXXXXX")" --virtual-time-budget=3000 \
    --dump-dom "$url" >"$WORK/p3.dom.html" 2>>"$WORK/chrome.err"
  check "p3's page shows the cluster: its member id and, for counts, the state partitions it owns" \
    eval 'grep -q "id=\"cluster\" class=\"view on\"" "$WORK/p3.dom.html" &&
      grep -q "group st1 .* member [^ (<]" "$WORK/p3.dom.html" &&
      grep -q "<td>counts</td><td>[0-9, ]* of $N</td>" "$WORK/p3.dom.html"'
  grep -o '<td>counts</td>.*</tr>' "$WORK/p3.dom.html" | head -n 1 | sed 's/<[^>]*>/ | /g; s/^/#   p3 page: /'
else
  not_ok "chromium is installed (Debian package chromium; scripts/setup.sh installs it)"
fi
kill -TERM "$PID_p3"
wait_exit "$PID_p3" 15
check "a graceful leave (SIGTERM) ends the process with status 0" [ "$EXIT_STATUS" = 0 ]
step "after the leave 3 -> 2, its state partitions moved to the others" 60 "p1=3 p2=3" p1 p2
settle 30 "$(words_in "$WORK/input-first.txt")" p1 p2
verify "run 1, moves without a kill" "$WORK/input-first.txt" p1 p2
check "run 1, moves without a kill: every word counted exactly once (no duplicates: $DUPS)" [ "$DUPS" = 0 ]
reread /dev/null p1 p2 p3
check "run 1, moves without a kill: no input line read twice" [ "$REREAD" = 0 ]

touch "$WORK/go-words-first" # the rest of the input flows while a process is killed
sleep "$((RANDOM % 2)).$((RANDOM % 10))" # a moment at random, then mostly in a batch in flight
in_flight p2 3
kill -KILL "$PID_p2"
wait_exit "$PID_p2" 5
mv "$WORK/p2.ranges" "$WORK/p2-killed.ranges"
rm -f "$WORK/p2.state"
step "after a SIGKILL, its state partitions moved once its session timed out" 60 "p1=$N" p1
: >"$WORK/p2.err"
start p2 st1 words 3000 --checkpoint "$WORK/ck-p2" --log-level info --ui 127.0.0.1:0
check "the killed process restarted gets state partitions back" shared 25 p1 p2
show_owners p1 p2
check "the restart restored from its checkpoint (local snapshot), then the changelog after it" \
  wait_until 15 grep -q "brought up to date from the changelog (offsets [1-9][0-9]* to" "$WORK/p2.err"
grep "brought up to date" "$WORK/p2.err" | sed 's/^.*info: /#   p2: /' | head -n 6
touch "$WORK/go-words"
settle 40 "$(words_in "$WORK/input.txt")" p1 p2
verify "run 1" "$WORK/input.txt" p1 p2
reread "$WORK/p2-killed.ranges" p1 p2 p3
check "run 1: input lines were read twice only when the killed process had read them in its last batches, and once more by their next owner" \
  [ "$REREAD" -ge 0 ]
replayed=$(replayed_entries p1 p2)
echo "# run 1: the next owners read again $REREAD line(s) ($REREAD_WORDS words) the killed process had read and not committed; the state skipped $replayed entries as applied already"
grep -h "skipped [0-9]* entries applied already\|reads offsets [0-9]* to [0-9]* first" "$WORK/p1.err" "$WORK/p2.err" | sed 's/^.*info: /#   /' | head -n 6
check "run 1, through a SIGKILL: every word counted exactly once (no duplicates: $DUPS)" [ "$DUPS" = 0 ]
for n in p1 p2; do kill -TERM "$(eval echo "\$PID_$n")"; done
for n in p1 p2; do wait_exit "$(eval echo "\$PID_$n")" 15; done

# ---- run 2: librdkafka's default session timeout (45 s): one process owns every state
# partition and counts every word exactly. No move here: cluster_defaults.sh moves state
# partitions at the defaults (the mock's 44 s per rebalance make that four minutes). ----
bg produce calm 0.02
start q1 st2 calm default --log-level info
step "defaults: one process owns every state partition" 50 "q1=$N" q1
touch "$WORK/go-calm"
settle 40 "$(words_in "$WORK/input.txt")" q1
verify "run 2 (defaults)" "$WORK/input.txt" q1
check "run 2 (defaults): every word counted exactly once (no duplicates: $DUPS)" [ "$DUPS" = 0 ]
reread /dev/null q1
check "run 2 (defaults): no input line read twice" [ "$REREAD" = 0 ]
kill -TERM "$PID_q1"
wait_exit "$PID_q1" 15
check "defaults: a graceful stop ends with status 0" [ "$EXIT_STATUS" = 0 ]

# ---- state partitions are fixed at the first start ----
STATE_PARTITIONS=4 timeout 30 "$DSTREAM" --cluster st2 "$WORK/job.lua" "$BOOT" calm "$WORK/r3" 3000 >/dev/null 2>"$WORK/r3.err"
check "a start asking for other state partitions than the topics have fails, saying so" \
  grep -q "update_state_by_key: topic st2-counts-repartition has $N partitions, but this start asks for 4 state partitions" "$WORK/r3.err"

check_no_crash
echo "# took $((SECONDS - T_START)) s"
finish

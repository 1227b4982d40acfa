#!/usr/bin/env bash
# spec/e2e/kafka_defaults.sh: the warning about a kafka_stream that its group gives no partition
# (sources/kafka_assignment.lua), at the settings a user gets: no consumer conf, so
# librdkafka's session.timeout.ms of 45 s and a warning after 2 x 45 + 3 = 93 s. The twin of
# kafka_spec's test of it with a 6 s session timeout. Two streams of one job in group g-one on
# a topic of one partition (more members than partitions: one of them reads nothing) and one
# stream alone in group g-present, against `dstream kafka-mock` in its own process: the starved
# stream is warned about once, between 93 s and 93 s plus a few batches after the start, naming
# its group and what to check; the others never. About 100 s, nearly all waiting: CI starts it
# beside the e2e lanes (scripts/test.sh, E2E_ASIDE), on the release build only.
source "$(dirname "$0")/lib/common.bash"
release_only

start_kafka_mock one:1 present:2
cat >"$WORK/job.lua" <<'LUA'
local dstream = require("dstream")
local brokers = arg[1]
local ctx = dstream.context { workers = 1 } -- the default batch interval (1 s)
local function stream(topic, group, name)
  ctx:kafka_stream { brokers = brokers, topic = topic, group = group, assign = "group", name = name }
    :foreach_rdd(function() end)
end
stream("one", "g-one", "one-a")
stream("one", "g-one", "one-b")
stream("present", "g-present", "present")
ctx:start()
io.stderr:write("started\n")
ctx:await_termination()
LUA

t0=$SECONDS
bg "$DSTREAM" "$WORK/job.lua" "$BOOT" 2>"$WORK/job.err"
JOB=$BG_PID
warned() { grep -c "has assigned no partition to this process" "$WORK/job.err"; }
if wait_until 130 eval '[ "$(warned)" -ge 1 ]'; then
  after=$((SECONDS - t0))
  if [ "$after" -ge 92 ] && [ "$after" -le 110 ]; then
    ok "the starved stream is warned about after ${after} s (93 s at the default session timeout)"
  else
    not_ok "the warning came after ${after} s, not about 93 s"
  fi
else
  not_ok "a stream the group gives no partition is warned about within 130 s"
  show "job stderr" "$WORK/job.err"
fi
sleep 5 # (a second warning, or one about another stream, would come by now)
line=$(grep "has assigned no partition" "$WORK/job.err" | head -n 1)
check "one warning, for one of the two streams of group g-one" \
  eval '[ "$(warned)" = 1 ] && echo "$line" | grep -Eq "kafka_stream one-[ab]: group g-one has assigned no partition to this process for 9[0-9] s"'
check "it says what to check (topics, members against partitions, brokers)" \
  eval 'echo "$line" | grep -q "Check that the topics exist and have partitions, that the group has no more members than the topics have partitions"'
check "no warning about the stream alone in its group" eval '! grep -q "kafka_stream present: group" "$WORK/job.err"'
kill -TERM "$JOB" 2>/dev/null
wait_exit "$JOB" 30 >/dev/null 2>&1 || true
finish

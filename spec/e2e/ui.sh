#!/usr/bin/env bash
# spec/e2e/ui.sh: watching a running job over HTTP: examples/monitored_job.lua on
# 127.0.0.1:0. /metrics passes `promtool check metrics` and has the figures the issue asks
# for; /api/batches and /api/streams are JSON with records, per-stage timings and delays; the
# page at / renders its four charts with data in headless Chromium (DOM checked, screenshot
# saved); requests that are not for this page are refused; --ui on the command line starts
# the same server, and without it there is none. Everything listens on 127.0.0.1 only. The
# page's other views: a batch's page (#batch=<time>, /api/batches/<time>: stages, per-task
# figures, the error of a failed task), the graph of streams, the workers (/api/workers), keyed
# state and checkpoints (/api/state); a job that failed keeps its page up, read-only with the
# failure on top, until SIGTERM, and without --ui it exits at once as before.
#   DSTREAM_UI_SCREENSHOT=docs/images/ui.png DSTREAM_UI_BATCH_SCREENSHOT=docs/images/ui-batch.png \
#     bash spec/e2e/ui.sh
# also keeps screenshots there: the page once the job has run 15 s (backpressure has settled),
# and the batch page of the failed job's failed batch.
source "$(dirname "$0")/lib/common.bash"

# json_check FILE LUA_EXPR: decodes FILE with lua-cjson (as `j`) and asserts the expression.
json_check() {
  "$DSTREAM" -e "local j = require('cjson').decode(io.open('$1'):read('*a')); assert($2)" \
    >/dev/null 2>"$WORK/json_check.err"
}

# ---- --ui on the command line; no server without it ----
tiny='local c = require("dstream").context { batch = "100ms", workers = 1 }
  c:rate_stream { rows_per_second = 10 }:foreach_rdd(function() end)
  c:start(); c:await_termination(0.3); c:stop()'
timeout 30 "$DSTREAM" -e "$tiny" >/dev/null 2>"$WORK/noui.err"
check "without --ui or ui = ..., no HTTP server is started" eval '! grep -q "ui:" "$WORK/noui.err"'
timeout 30 "$DSTREAM" --ui 127.0.0.1:0 -e "$tiny" >/dev/null 2>"$WORK/cliui.err"
check "--ui 127.0.0.1:0 starts the server on a free loopback port" \
  grep -q '^dstream: ui: http://127.0.0.1:[1-9][0-9]*/$' "$WORK/cliui.err"
timeout 30 "$DSTREAM" --ui 0.0.0.0:4040 -e "$tiny" >/dev/null 2>"$WORK/public.err"
check "--ui 0.0.0.0:4040 is refused (ui_public = true is needed)" \
  eval 'grep -q "refusing to serve the UI on 0.0.0.0" "$WORK/public.err" && ! grep -q "ui: http" "$WORK/public.err"'
timeout 30 "$DSTREAM" --ui 127.1:0 -e "$tiny" >/dev/null 2>"$WORK/short.err"
check "--ui 127.1:0 (127.0.0.1 written short) is loopback, served on 127.0.0.1" \
  grep -q '^dstream: ui: http://127.0.0.1:[1-9][0-9]*/$' "$WORK/short.err"

# ---- slow clients cannot lock the page out (issue 15) ----
# 70 clients each trickle a header line every second (every byte used to restart the 30 s
# idle timer, and 64 of them filled the server): the page still answers at once, because a
# new connection drops the client's longest-idle one past 16 per address, and every slow
# one is cut when its request head is not complete 10 s after the accept.
long='local c = require("dstream").context { batch = "100ms", workers = 1 }
  c:rate_stream { rows_per_second = 10 }:foreach_rdd(function() end)
  c:start(); c:await_termination(20); c:stop()'
bg "$DSTREAM" --ui 127.0.0.1:0 -e "$long" >/dev/null 2>"$WORK/slow.err"
slowjob=$BG_PID
if wait_until 10 grep -q '^dstream: ui: http://127.0.0.1:[0-9]*/$' "$WORK/slow.err"; then
  slowport=$(sed -n 's|^dstream: ui: http://127.0.0.1:\([0-9]*\)/$|\1|p' "$WORK/slow.err" | head -n 1)
  cat >"$WORK/slow.py" <<'PY'
import socket, sys, time, select
port, n = int(sys.argv[1]), int(sys.argv[2])
socks, t0 = [], time.time()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\n")
    socks.append(s)
open_ = {s: True for s in socks}
closed_at = {}
print("started", flush=True)
while open_ and time.time() - t0 < 14:
    r, _, _ = select.select(list(open_), [], [], 1.0)
    for s in r:
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            closed_at[s] = time.time() - t0
            del open_[s]
    for s in list(open_):
        try:
            s.sendall(b"X-Slow: 1\r\n")
        except OSError:
            closed_at[s] = time.time() - t0
            del open_[s]
print("open %d closed %d last_close %.1f" % (len(open_), len(closed_at), max(closed_at.values() or [0])), flush=True)
PY
  : >"$WORK/slow.out"
  python3 "$WORK/slow.py" "$slowport" 70 >"$WORK/slow.out" 2>&1 &
  slowpy=$!
  wait_until 5 grep -q started "$WORK/slow.out"
  sleep 1.5 # a line or two from each
  t0=$(ms_now)
  code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$slowport/")
  took=$(($(ms_now) - t0))
  check "with 70 slow clients trickling headers, GET / answers 200 within 2 s (${took} ms)" \
    eval '[ "$code" = 200 ] && [ "$took" -lt 2000 ]'
  # The slow clients wait for the deadline while the checks below run; see the end.
else
  not_ok "the job with --ui announces its address"
fi

# ---- progress: a status line on a terminal, a log line per batch at --log-level info ----
progress='local c = require("dstream").context { batch = "200ms", workers = 1, name = "prog" }
  c:rate_stream { rows_per_second = 50 }:foreach_rdd(function(r) r:count() end)
  c:start(); c:await_termination(1.3); c:stop()'
timeout 30 "$DSTREAM" --log-level info -e "$progress" >/dev/null 2>"$WORK/progress.log"
nlog=$(grep -c '^dstream: [0-9:.]* info: batch [0-9]* ms: 10 records, processing [0-9.]* m\?s, scheduling delay [0-9.]* m\?s, total delay [0-9.]* m\?s$' "$WORK/progress.log")
check "stderr not a terminal, --log-level info: one log line per batch ($nlog)" [ "$nlog" -ge 4 ]
timeout 30 "$DSTREAM" -e "$progress" >/dev/null 2>"$WORK/progress.quiet"
check "stderr not a terminal, default log level: no progress lines" [ ! -s "$WORK/progress.quiet" ]
if command -v script >/dev/null; then
  # script(1) gives the job a terminal; what it wrote lands in the typescript file.
  printf '%s\n' "$progress" >"$WORK/progress.lua"
  timeout 30 script -qfec "'$DSTREAM' '$WORK/progress.lua'" "$WORK/progress.tty" >/dev/null 2>&1
  esc=$(printf '\033')
  nstatus=$(tr '\r' '\n' <"$WORK/progress.tty" |
    grep -c "^$esc\[Kprog | batch [0-9:.]* | 10 records | processing [0-9.]* ms | delay [0-9.]* ms | 50 rec/s$")
  check "stderr a terminal: a status line redrawn in place after every batch ($nstatus)" [ "$nstatus" -ge 4 ]
else
  not_ok "script(1) is installed (Debian package bsdutils)"
fi

# ---- a job that fails: started now, looked at below (it fails in about 1.5 s) ----
cat >"$WORK/failing.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { batch = "200ms", workers = 2, name = "failing", max_task_attempts = 2,
  checkpoint = arg[1], checkpoint_interval = "400ms" }
local batches = 0
ctx:rate_stream { rows_per_second = 50 }
  :map(function(i) return i % 5, 1 end)
  :update_state_by_key(function(vals, old)
    local s = old or 0
    for _, v in ipairs(vals) do s = s + v end
    return s
  end)
  :name("totals")
  :foreach_rdd(function(rdd)
    batches = batches + 1
    local fail = batches >= 6
    rdd:map(function(k, v) if fail and k == 3 then error("no key 3 here") end return k, v end):count()
  end)
ctx:start()
ctx:await_termination(30)
LUA
bg "$DSTREAM" --ui 127.0.0.1:0 "$WORK/failing.lua" "$WORK/failing.ck" >"$WORK/failing.out" 2>"$WORK/failing.err"
failjob=$BG_PID
t0=$(ms_now)
timeout 30 "$DSTREAM" "$WORK/failing.lua" "$WORK/failing-noui.ck" >/dev/null 2>"$WORK/noui-fail.err"
noui_status=$?
took=$(($(ms_now) - t0))
check "without --ui a failed job exits at once with status 1 (${took} ms), its page not kept" \
  eval '[ "$noui_status" = 1 ] && grep -q "no key 3 here" "$WORK/noui-fail.err" && ! grep -q "stays up" "$WORK/noui-fail.err"'

# ---- the example job, watched ----
bg "$DSTREAM" "$ROOT/examples/monitored_job.lua" 127.0.0.1:0 60 >"$WORK/job.out" 2>"$WORK/job.err"
job=$BG_PID
if ! wait_until 20 grep -q '^dstream: ui: http://127.0.0.1:[0-9]*/$' "$WORK/job.err"; then
  not_ok "the job announces its UI address"
  show stderr "$WORK/job.err"
  finish
fi
url=$(sed -n 's|^dstream: ui: \(http://127.0.0.1:[0-9]*/\)$|\1|p' "$WORK/job.err" | head -n 1)
ok "the job announces its UI address on 127.0.0.1 ($url)"
port=${url##*:}
port=${port%/}
check "the UI listens on 127.0.0.1 only" \
  eval "awk -v p=\":\$(printf '%04X' $port)\" 'NR > 1 && \$4 == \"0A\" && substr(\$2, length(\$2) - 4) == p { print \$2 }' /proc/net/tcp /proc/net/tcp6 | grep -qx '0100007F:$(printf '%04X' "$port")'"

batches_done() {
  curl -sf --max-time 5 "${url}api/batches" -o "$WORK/b.json" && json_check "$WORK/b.json" '#j >= 6'
}
if ! wait_until 30 batches_done; then
  not_ok "the job completes batches that /api/batches lists"
  show stderr "$WORK/job.err"
  finish
fi

# ---- /metrics ----
curl -sf --max-time 5 -D "$WORK/m.head" "${url}metrics" -o "$WORK/metrics.txt"
check "/metrics answers 200 with the Prometheus text content type" \
  grep -qi '^content-type: text/plain; version=0.0.4' "$WORK/m.head"
if command -v promtool >/dev/null; then
  if promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.out" 2>&1; then
    ok "promtool check metrics accepts /metrics"
  else
    not_ok "promtool check metrics accepts /metrics"
    sed 's/^/#   /' "$WORK/promtool.out" | head -n 20
  fi
else
  not_ok "promtool is installed (Debian package prometheus; scripts/setup.sh installs it)"
fi
for pattern in \
  '^dstream_source_records_total{stream="1",name="rate_stream",source="rate_stream"} [1-9]' \
  '^dstream_batches_completed_total [1-9]' \
  '^dstream_batches_failed_total' \
  '^dstream_scheduling_delay_seconds_bucket{le="+Inf"} [1-9]' \
  '^dstream_processing_time_seconds_count [1-9]' \
  '^dstream_total_delay_seconds_sum ' \
  '^# TYPE dstream_state_keys gauge' \
  '^# TYPE dstream_late_records_dropped_total counter' \
  '^dstream_workers_busy [0-2]$' \
  '^dstream_worker_lua_memory_bytes{worker="0"} [1-9]' \
  '^dstream_worker_lua_memory_bytes{worker="1"} [1-9]' \
  '^dstream_source_rate_limit{stream="1",name="rate_stream",source="rate_stream"} [1-9]' \
  '^dstream_backpressure_rate{stream="1",name="rate_stream",source="rate_stream"} [1-9]' \
  '^dstream_backpressure_enabled 1$' \
  '^monitored_rows_total{digit="7"} [1-9]'; do
  check "/metrics has ${pattern#^}" grep -q -- "$pattern" "$WORK/metrics.txt"
done

# ---- /api/batches and /api/streams ----
curl -sf --max-time 5 -D "$WORK/b.head" "${url}api/batches?n=5" -o "$WORK/batches.json"
check "/api/batches answers JSON" grep -qi '^content-type: application/json' "$WORK/b.head"
check "/api/batches?n=5 lists 5 batches, newest first" \
  json_check "$WORK/batches.json" '#j == 5 and j[1].time > j[5].time and j[1].time - j[2].time == 500'
check "each batch has its records, delays and times" \
  json_check "$WORK/batches.json" 'j[1].records > 0 and j[1].status == "completed" and j[1].scheduling_delay_ms >= 0
    and j[1].processing_ms > 0 and j[1].total_delay_ms >= j[1].processing_ms
    and j[1].finished_at >= j[1].started_at and j[1].started_at >= j[1].generated_at'
check "each batch has per-stage timings (the shuffle's map side and the collect)" \
  json_check "$WORK/batches.json" '#j[1].stages >= 2 and j[1].stages[1].tasks >= 1 and j[1].stages[1].task_ms >= 0
    and j[1].stages[1].name:find("reduce_by_key") and j[1].stages[1].records_in > 0'
check "each batch has its records per source" \
  json_check "$WORK/batches.json" 'j[1].sources[1].name == "rate_stream" and j[1].sources[1].records == j[1].records'
curl -sf --max-time 5 "${url}api/streams" -o "$WORK/streams.json"
check "/api/streams describes the context, its inputs and its graph" \
  json_check "$WORK/streams.json" 'j.name == "monitored" and j.state == "active" and j.batch_ms == 500 and j.workers == 2
    and j.backpressure == true and j.batches_completed >= 6
    and j.inputs[1].name == "rate_stream" and j.inputs[1].rate_limit > 0 and j.inputs[1].records > 0
    and #j.streams >= 3 and j.streams[1].name == "rate_stream" and #j.streams[1].parents == 0'

# ---- a batch's page, the workers, state ----
t=$("$DSTREAM" -e "print(string.format('%d', require('cjson').decode(io.open('$WORK/batches.json'):read('*a'))[1].time))")
curl -sf --max-time 5 "${url}api/batches/$t" -o "$WORK/batch.json"
check "/api/batches/<time> has the batch's stages with a row per task and their summary" \
  json_check "$WORK/batch.json" 'j.time == '"$t"' and j.status == "completed" and #j.stages >= 2
    and #j.stages[1].task_list == j.stages[1].tasks and j.stages[1].task_list[1].run_ms >= 0
    and j.stages[1].task_list[1].records_in >= 0 and j.stages[1].task_list[1].records_out >= 0
    and j.stages[1].task_list[1].status == "succeeded" and #j.stages[1].summary.run_ms == 5
    and j.stages[1].summary.skew >= 1 and j.stages[1].records_out > 0'
check "/api/batches/<time> of a batch not kept is 404" [ "$(curl -s -o /dev/null -w '%{http_code}' "${url}api/batches/12345")" = 404 ]
bad_n=$(curl -s --max-time 5 -o "$WORK/bad_n.txt" -w '%{http_code}' "${url}api/batches?n=abc")
check "/api/batches?n=abc is 400 (not the default 100 batches)" [ "$bad_n" = 400 ]
check "/api/batches?n=abc says what n takes" grep -q "^/api/batches: n is how many of the last batches to list, a whole number from 0" "$WORK/bad_n.txt"
check "/api/batches?n=-1 is 400" [ "$(curl -s -o /dev/null -w '%{http_code}' "${url}api/batches?n=-1")" = 400 ]
curl -sf --max-time 5 "${url}api/workers" -o "$WORK/workers.json"
check "/api/workers: per worker its tasks, time busy and Lua memory" \
  json_check "$WORK/workers.json" '#j.workers == 2 and j.workers[2].worker == 1 and j.workers[1].tasks > 0
    and j.workers[2].tasks > 0 and j.workers[1].busy_ms > 0 and j.workers[1].lua_memory > 0
    and j.workers[1].busy_fraction > 0 and j.workers[1].busy_fraction <= 1'
curl -sf --max-time 5 "${url}api/state" -o "$WORK/state.json"
check "/api/state: no keyed state and no checkpoint directory in this job" \
  json_check "$WORK/state.json" '#j.operators == 0 and j.checkpoint_dir == nil and j.last_checkpoint == nil'
check "/metrics has per-worker tasks and time busy" \
  eval 'grep -q "^dstream_worker_tasks_total{worker=\"1\"} [1-9]" "$WORK/metrics.txt" &&
    grep -q "^dstream_worker_busy_seconds_total{worker=\"0\"} [0-9.e-]*[1-9]" "$WORK/metrics.txt"'

# ---- what is refused ----
code() { curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$@"; }
check "an unknown path is 404" [ "$(code "${url}nope")" = 404 ]
check "POST is 405" [ "$(code -X POST -d x "${url}metrics")" = 405 ]
check "a request for another host name is 403 (DNS rebinding)" \
  [ "$(code -H 'Host: attacker.example' "${url}api/batches")" = 403 ]
check "HEAD / answers without a body" \
  eval '[ "$(curl -s --max-time 5 -I "$url" | grep -ci "^content-type: text/html")" = 1 ]'

# ---- the page in headless Chromium ----
browser=$(command -v chromium || command -v chromium-browser || true)
chrome() {
  timeout 60 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d "$WORK/chrome.XXXXXX")" --window-size=1200,900 \
    --virtual-time-budget=5000 "$@" 2>>"$WORK/chrome.err"
}
if [ -z "$browser" ]; then
  not_ok "chromium is installed (Debian package chromium; scripts/setup.sh installs it)"
else
  chrome --dump-dom "$url" >"$WORK/dom.html"
  for chart in rate sched proc total; do
    points=$(grep -o "id=\"chart-$chart\" data-points=\"[0-9]*\"" "$WORK/dom.html" | grep -o '[0-9]*"$' | tr -d '"')
    check "the page draws the $chart chart with data (${points:-0} points)" [ "${points:-0}" -ge 5 ]
  done
  series=$(grep -o '<path d="M[0-9.]*,[0-9.]* L[^"]*" stroke="#[0-9a-f]*" class="series"' "$WORK/dom.html" | wc -l)
  check "the charts are SVG paths through the data ($series series)" [ "$series" -eq 4 ]
  check "the page names the job and lists its input" \
    eval 'grep -q "<h1 id=\"name\">monitored</h1>" "$WORK/dom.html" && grep -q "<td>rate_stream</td>" "$WORK/dom.html"'
  nodes=$(grep -o 'id="graph" data-nodes="[0-9]*" data-edges="[0-9]*"' "$WORK/dom.html")
  check "the page draws the graph of streams: a box per stream, an arrow per parent ($nodes)" \
    eval '[ "$nodes" = "id=\"graph\" data-nodes=\"5\" data-edges=\"4\"" ] && grep -q "<text[^>]*>reduce_by_key</text>" "$WORK/dom.html"'
  check "the page lists the workers with their tasks" \
    grep -q '<td>worker 1</td><td>[1-9][0-9,]*</td>' "$WORK/dom.html"
  check "the page links each batch to its page" grep -q "<a href=\"#batch=$t\"" "$WORK/dom.html"
  chrome --dump-dom "${url}#batch=$t" >"$WORK/batch.html"
  check "a batch's page shows its stages with the summary and rows of their tasks" \
    eval 'grep -q "id=\"batch-title\"[^>]*>Batch [0-9:.]* ($t ms): completed<" "$WORK/batch.html" &&
      grep -q "Stage 1: reduce_by_key (map side)" "$WORK/batch.html" && grep -q "<th>Skew (max / median)</th>" "$WORK/batch.html" &&
      [ "$(grep -o "<td>succeeded</td>" "$WORK/batch.html" | wc -l)" -ge 4 ]'
  if [ -n "${DSTREAM_UI_SCREENSHOT:-}" ]; then
    settled() { curl -sf --max-time 5 "${url}api/batches" -o "$WORK/b.json" && json_check "$WORK/b.json" '#j >= 30'; }
    wait_until 40 settled
  fi
  chrome --window-size=1200,1560 --screenshot="$WORK/ui.png" "$url" >/dev/null
  size=$(stat -c %s "$WORK/ui.png" 2>/dev/null || echo 0)
  check "a screenshot of the page is saved ($size bytes)" [ "$size" -gt 20000 ]
  if [ -n "${DSTREAM_UI_SCREENSHOT:-}" ] && [ "$size" -gt 20000 ]; then
    cp "$WORK/ui.png" "$DSTREAM_UI_SCREENSHOT"
    echo "# screenshot copied to $DSTREAM_UI_SCREENSHOT"
  fi
fi

# ---- the failed job: its page stays up until SIGTERM ----
if wait_until 20 grep -q "stays up" "$WORK/failing.err"; then
  furl=$(sed -n 's|^dstream: ui: \(http://127.0.0.1:[0-9]*/\)$|\1|p' "$WORK/failing.err" | head -n 1)
  check "a failed job with --ui reports the error, then says its page stays up and how to stop it" \
    eval 'grep -q "no key 3 here" "$WORK/failing.err" &&
      grep -q "^dstream: the job failed; its page stays up at $furl (read-only) until Ctrl-C or SIGTERM stops the process$" "$WORK/failing.err"'
  sleep 0.5
  check "the failed job's process keeps running" alive "$failjob"
  curl -sf --max-time 5 "${furl}api/streams" -o "$WORK/fstreams.json"
  check "its /api/streams has the error, the state stopped and the failed batch" \
    json_check "$WORK/fstreams.json" 'j.state == "stopped" and j.error:find("no key 3 here", 1, true)
      and j.batches_failed == 1 and #j.failed_batches == 1 and j.failed_batches[1].error == j.error'
  ft=$("$DSTREAM" -e "print(string.format('%d', require('cjson').decode(io.open('$WORK/fstreams.json'):read('*a')).failed_batches[1].time))")
  curl -sf --max-time 5 "${furl}api/batches/$ft" -o "$WORK/fbatch.json"
  check "/api/batches/<time> of the failed batch: its error, and the failing tasks' error and traceback" \
    json_check "$WORK/fbatch.json" 'j.status == "failed" and j.error:find("no key 3 here", 1, true)
      and (function() for _, st in ipairs(j.stages) do for _, t in ipairs(st.task_list or {}) do
        if t.status == "failed" and t.error:find("no key 3 here", 1, true) and t.error:find("stack traceback", 1, true)
          and t.worker >= 0 and t.partition >= 0 then return true end end end end)()'
  curl -sf --max-time 5 "${furl}api/state" -o "$WORK/fstate.json"
  check "/api/state: keys per stateful operator, the last checkpoint's duration and size" \
    json_check "$WORK/fstate.json" 'j.operators[1].operator == "totals" and j.operators[1].keys == 5
      and j.operators[1].kind == "update_state_by_key" and j.operators[1].partitions == 2
      and j.last_checkpoint.bytes > 0 and j.last_checkpoint.duration_ms >= 0 and j.last_checkpoint.time > 0
      and j.checkpoint_ms == 400'
  curl -sf --max-time 5 "${furl}api/workers" -o "$WORK/fworkers.json"
  check "/api/workers after the failure: the failed tasks per worker, Lua memory as last read" \
    json_check "$WORK/fworkers.json" '#j.workers == 2 and j.workers[1].failed + j.workers[2].failed >= 2
      and j.workers[1].lua_memory > 0'
  curl -sf --max-time 5 "${furl}metrics" -o "$WORK/fmetrics.txt"
  if command -v promtool >/dev/null; then
    check "promtool check metrics accepts the failed job's /metrics" \
      eval 'promtool check metrics <"$WORK/fmetrics.txt" >"$WORK/fpromtool.out" 2>&1'
  fi
  check "its /metrics counts the failed batch and the keys of the state named totals" \
    eval 'grep -q "^dstream_batches_failed_total 1$" "$WORK/fmetrics.txt" &&
      grep -q "^dstream_state_keys{operator=\"totals\"} 5$" "$WORK/fmetrics.txt" &&
      grep -q "^dstream_last_checkpoint_bytes [1-9]" "$WORK/fmetrics.txt"'
  if [ -n "$browser" ]; then
    chrome --dump-dom "$furl" >"$WORK/fdom.html"
    check "the page shows the failure on top, read-only" \
      eval 'grep -q "<div id=\"failure\" class=\"on\">" "$WORK/fdom.html" &&
        grep -q "<pre id=\"failure-error\">[^<]*no key 3 here" "$WORK/fdom.html" &&
        grep -q "<span class=\"state error\" id=\"state\">failed</span>" "$WORK/fdom.html"'
    check "the page lists the failed batch, its state and its checkpoint" \
      eval 'grep -q "<tr class=\"failed\"><td><a href=\"#batch=$ft\"" "$WORK/fdom.html" &&
        grep -q "<td>totals</td><td>update_state_by_key #[0-9]*</td><td>2</td><td>5</td>" "$WORK/fdom.html" &&
        grep -q "id=\"checkpoint\">last checkpoint: batch" "$WORK/fdom.html"'
    chrome --dump-dom "${furl}#batch=$ft" >"$WORK/fbatch.html"
    check "the failed batch's page shows the failing task's error and traceback" \
      eval 'grep -q "id=\"batch-title\" class=\"err\">Batch [0-9:.]* ($ft ms): failed<" "$WORK/fbatch.html" &&
        grep -q "<tr class=\"failed\"><td>[0-9]</td><td>[0-9]</td><td>failed</td>" "$WORK/fbatch.html" &&
        grep -q "<pre class=\"task-error\">[^<]*no key 3 here" "$WORK/fbatch.html" &&
        grep -A3 "<pre class=\"task-error\">" "$WORK/fbatch.html" | grep -q "stack traceback"'
    if [ -n "${DSTREAM_UI_BATCH_SCREENSHOT:-}" ]; then
      chrome --window-size=1200,1500 --screenshot="$WORK/ui-batch.png" "${furl}#batch=$ft" >/dev/null
      cp "$WORK/ui-batch.png" "$DSTREAM_UI_BATCH_SCREENSHOT" && echo "# screenshot copied to $DSTREAM_UI_BATCH_SCREENSHOT"
    fi
  fi
  kill -TERM "$failjob"
  wait_exit "$failjob" 10
  check "SIGTERM ends the failed job's process, with the failure's status (1)" [ "$EXIT_STATUS" -eq 1 ]
  check "and its port is closed" eval '! curl -s --max-time 2 -o /dev/null "$furl"'
else
  not_ok "the failed job says its page stays up"
  show stderr "$WORK/failing.err"
fi

# ---- the slow clients of above: every one was cut by the head deadline ----
if [ -n "${slowpy:-}" ]; then
  wait "$slowpy"
  check "every slow client is cut, the last ones at the 10 s head deadline ($(tail -n 1 "$WORK/slow.out"))" \
    grep -Eq '^open 0 closed 70 last_close (9|10|11)\.' "$WORK/slow.out"
fi
kill -TERM "$slowjob" 2>/dev/null
wait_exit "$slowjob" 20

# ---- the job stops cleanly, and the port with it ----
kill -TERM "$job"
wait_exit "$job" 30
check "the watched job stops gracefully on SIGTERM (exit 0)" [ "$EXIT_STATUS" -eq 0 ]
# The example's own output: a line per batch from its listener, then totals that agree.
sum=$(awk '$1 == "batch" { s += $4 } END { print s + 0 }' "$WORK/job.out")
check "the example's listener printed its batches, and the rows it saw are their records ($sum)" \
  eval 'grep -q "^batch [0-9]* ms: [0-9]* records, scheduling delay [0-9]* ms, processing [0-9]* ms$" "$WORK/job.out" &&
    grep -q "^batches completed: [1-9][0-9]*, rows seen: $sum$" "$WORK/job.out"' 
check "the UI port is closed once the job ended" eval '! curl -s --max-time 2 -o /dev/null "$url"'
finish

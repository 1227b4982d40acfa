#!/usr/bin/env bash
# spec/e2e/backpressure.sh: backpressure and rate limits, judged on the figures jobs report.
# A rate_stream twice as fast as its job: with backpressure off the scheduling delay grows
# batch after batch; with it on, the PID estimator holds the source to what the job keeps up
# with and the delay comes back down (bounded). max_rate on a socket and on a directory
# source: batches never hold much more than the limit allows, and every record arrives.
# Bounds are generous: only "bounded vs growing" and "limited vs not" decide.
source "$(dirname "$0")/lib/common.bash"

# figures FILE: the "batch TIME RECORDS DELAY PROCESSING" lines of a backpressure job.
delays() { awk '$1 == "batch" { print int($4) }' "$1"; }

timeout 120 "$DSTREAM" "$JOBS/backpressure_job.lua" off 10 >"$WORK/off.txt" 2>"$WORK/off.err"
check "backpressure off: the job runs and exits 0" [ $? -eq 0 ]
timeout 120 "$DSTREAM" "$JOBS/backpressure_job.lua" on 16 >"$WORK/on.txt" 2>"$WORK/on.err"
check "backpressure on: the job runs and exits 0" [ $? -eq 0 ]

off_n=$(delays "$WORK/off.txt" | wc -l)
on_n=$(delays "$WORK/on.txt" | wc -l)
off_first=$(delays "$WORK/off.txt" | head -n 3 | sort -n | tail -n 1)
off_last=$(delays "$WORK/off.txt" | tail -n 1)
on_peak=$(delays "$WORK/on.txt" | sort -n | tail -n 1)
on_tail=$(delays "$WORK/on.txt" | tail -n 3 | sort -n | tail -n 1)
echo "# off: $off_n batches, first delays up to ${off_first:-?} ms, last ${off_last:-?} ms"
echo "# on: $on_n batches, peak delay ${on_peak:-?} ms, last three up to ${on_tail:-?} ms"
if [ "$off_n" -ge 10 ] && [ "$off_last" -ge 3000 ] && [ "$off_last" -ge $((off_first + 2500)) ]; then
  ok "backpressure off: the scheduling delay keeps growing (${off_first} -> ${off_last} ms)"
else
  not_ok "backpressure off: the scheduling delay keeps growing"
  sed 's/^/#   /' "$WORK/off.txt"
fi
if [ "$on_n" -ge 16 ] && [ "$on_tail" -lt 1500 ] && [ "$on_tail" -lt $((off_last / 2)) ] &&
  [ "$on_tail" -lt "$on_peak" ]; then
  ok "backpressure on: the scheduling delay comes back down and stays bounded (peak ${on_peak}, last ${on_tail} ms)"
else
  not_ok "backpressure on: the scheduling delay stays bounded"
  sed 's/^/#   /' "$WORK/on.txt"
  show stderr "$WORK/on.err"
fi
limit_on=$(awk '$1 == "limit" { print $2 }' "$WORK/on.txt")
check "backpressure on: the source is held below its 4000 rows/s (limit ${limit_on:-?})" \
  eval '[ "${limit_on:-0}" -gt 0 ] && [ "${limit_on:-0}" -lt 4000 ]'
check "backpressure off: the source has no limit" grep -qx 'limit 0' "$WORK/off.txt"
check "backpressure on: the estimate is in the metrics" \
  grep -q '^metric dstream_backpressure_rate{stream="1",name="rate_stream",source="rate_stream"} [0-9]' "$WORK/on.txt"
check "backpressure on: the limit in force is in the metrics" \
  grep -q '^metric dstream_source_rate_limit{stream="1",name="rate_stream",source="rate_stream"} [0-9]' "$WORK/on.txt"
check "backpressure on/off: enabled is in the metrics" \
  eval 'grep -qx "metric dstream_backpressure_enabled 1" "$WORK/on.txt" && grep -qx "metric dstream_backpressure_enabled 0" "$WORK/off.txt"'

# ---- max_rate on a socket source: read slower, lose nothing ----
seq -f 'line %g of the rate-limited text' 1 12000 >"$WORK/lines.txt"
serve_file "$WORK/lines.txt" || { not_ok "start a TCP server"; finish; }
timeout 60 "$DSTREAM" "$JOBS/rate_limited_job.lua" socket 127.0.0.1 "$PORT" 4000 12000 \
  >"$WORK/sock.txt" 2>"$WORK/sock.err"
check "socket max_rate: the job exits 0" [ $? -eq 0 ]
check "socket max_rate: every line arrives (total 12000)" grep -qx 'total 12000' "$WORK/sock.txt"
sock_batches=$(grep -c '^batch ' "$WORK/sock.txt")
sock_max=$(awk '$1 == "batch" { print $2 }' "$WORK/sock.txt" | sort -n | tail -n 1)
# 4000/s and 500 ms batches: 2000 per batch, plus a burst; without the limit one batch would
# hold everything.
check "socket max_rate: no batch holds much more than the limit allows (max ${sock_max:-?}, ${sock_batches} batches)" \
  eval '[ "${sock_max:-99999}" -le 4000 ] && [ "$sock_batches" -ge 4 ]'
check "socket max_rate: the limit is in the metrics" \
  grep -q '^metric dstream_source_max_rate{stream="1",name="socket_text_stream 127.0.0.1:[0-9]*",source="socket_text_stream 127.0.0.1:[0-9]*"} 4000$' "$WORK/sock.txt"
wait "$SERVER_PID" 2>/dev/null

# ---- max_rate on a directory source ----
mkdir -p "$WORK/in"
bg timeout 60 "$DSTREAM" "$JOBS/rate_limited_job.lua" files "$WORK/in" 4000 10000 \
  >"$WORK/files.txt" 2>"$WORK/files.err"
job=$BG_PID
if wait_until 30 grep -qx ready "$WORK/files.txt"; then
  seq -f 'file line %g' 1 10000 >"$WORK/in/.big.writing"
  mv "$WORK/in/.big.writing" "$WORK/in/big.txt"
fi
wait_exit "$job" 60
check "files max_rate: the job exits 0" [ "$EXIT_STATUS" -eq 0 ]
check "files max_rate: every line arrives (total 10000)" grep -qx 'total 10000' "$WORK/files.txt"
file_batches=$(grep -c '^batch ' "$WORK/files.txt")
file_max=$(awk '$1 == "batch" { print $2 }' "$WORK/files.txt" | sort -n | tail -n 1)
check "files max_rate: the file is read over several batches (max ${file_max:-?}, ${file_batches} batches)" \
  eval '[ "${file_max:-99999}" -le 4000 ] && [ "$file_batches" -ge 3 ]'
finish

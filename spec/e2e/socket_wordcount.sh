#!/usr/bin/env bash
# spec/e2e/socket_wordcount.sh: socket_text_stream against a real TCP server (nc): per-batch
# word counts merged on the driver equal a reference wordcount of the text; and a server that
# goes away mid-stream and comes back on the same port: the receiver reconnects, keeps what it
# received, and the totals equal the counts of both texts.
source "$(dirname "$0")/lib/common.bash"

# make_text SEED LINES FILE: deterministic text; words from a small vocabulary plus numbered
# ones, separated by runs of spaces, with empty and blank lines.
make_text() {
  awk -v seed="$1" -v n="$2" 'BEGIN {
    srand(seed)
    split("the a stream batch window spark lua jit worker driver block record key value " \
          "socket file reduce map filter join state time clock event late early", v, " ")
    for (i = 1; i <= n; i++) {
      k = int(rand() * 11)
      line = (rand() < 0.1) ? "  " : ""
      for (j = 1; j <= k; j++) {
        w = (rand() < 0.2) ? ("w" int(rand() * 500)) : v[1 + int(rand() * 25)]
        line = line w
        if (j < k) line = line ((rand() < 0.15) ? "   " : " ")
      }
      if (rand() < 0.05) line = line " "
      print line
    }
  }' >"$3"
}

run_job() { # run_job EXPECTED_WORDS OUT ERR
  timeout 60 "$DSTREAM" "$JOBS/socket_wordcount.lua" 127.0.0.1 "$PORT" "$1" 40 >"$2" 2>"$3"
}

# ---- one server, one text ----
make_text 42 20000 "$WORK/text.txt"
expected=$(wc -w <"$WORK/text.txt")
[ "$expected" -gt 50000 ] || not_ok "generated text is big enough ($expected words)"
serve_file "$WORK/text.txt" || { not_ok "start a TCP server"; finish; }
run_job "$expected" "$WORK/out.txt" "$WORK/err.txt"
status=$?
check "socket wordcount job exits 0" [ "$status" -eq 0 ]
word_counts "$WORK/text.txt" >"$WORK/want.txt"
sort "$WORK/out.txt" >"$WORK/got.txt"
if cmp -s "$WORK/want.txt" "$WORK/got.txt"; then
  ok "socket wordcount: totals of $(wc -l <"$WORK/want.txt") distinct words equal the reference"
else
  not_ok "socket wordcount: totals equal the reference"
  diff "$WORK/want.txt" "$WORK/got.txt" | head -n 10 | sed 's/^/#   /'
  show stderr "$WORK/err.txt"
fi
check "socket wordcount: stderr has no error" eval '! grep -qi "error\|fail" "$WORK/err.txt"'
wait "$SERVER_PID" 2>/dev/null

# ---- the server goes away mid-stream and comes back on the same port ----
make_text 7 8000 "$WORK/part1.txt"
make_text 8 6000 "$WORK/part2.txt"
# The first text ends without a newline: the line cut by the disconnect is kept.
printf 'unterminated tail' >>"$WORK/part1.txt"
expected=$(($(wc -w <"$WORK/part1.txt") + $(wc -w <"$WORK/part2.txt")))
serve_file "$WORK/part1.txt" || { not_ok "start the first TCP server"; finish; }
first_pid=$SERVER_PID
bg timeout 60 "$DSTREAM" "$JOBS/socket_wordcount.lua" 127.0.0.1 "$PORT" "$expected" 40 \
  >"$WORK/out2.txt" 2>"$WORK/err2.txt"
job=$BG_PID
# The first server ends once it has sent its text (nc -q 0); then a second one takes the port.
if wait_exit "$first_pid" 30 && [ "$EXIT_STATUS" -ne 124 ]; then
  ok "reconnect: the first server sent its text and went away"
else
  not_ok "reconnect: the first server sent its text and went away"
fi
serve_file "$WORK/part2.txt" "$PORT" || not_ok "reconnect: restart the server on port $PORT"
wait_exit "$job" 60
check "reconnect: job exits 0" [ "$EXIT_STATUS" -eq 0 ]
word_counts "$WORK/part1.txt" "$WORK/part2.txt" >"$WORK/want2.txt"
sort "$WORK/out2.txt" >"$WORK/got2.txt"
if cmp -s "$WORK/want2.txt" "$WORK/got2.txt"; then
  ok "reconnect: totals equal the counts of both texts"
else
  not_ok "reconnect: totals equal the counts of both texts"
  diff "$WORK/want2.txt" "$WORK/got2.txt" | head -n 10 | sed 's/^/#   /'
  show stderr "$WORK/err2.txt"
fi
check "reconnect: the unterminated last line of the first text is counted" \
  grep -qx 'unterminated 1' "$WORK/got2.txt"
check "reconnect: the receiver says it lost the connection and reconnects" \
  grep -qi 'reconnect' "$WORK/err2.txt"
finish

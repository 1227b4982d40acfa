#!/usr/bin/env bash
# spec/e2e/file_stream.sh: text_file_stream on a real directory: files moved in during the run
# (written under a dot name, then renamed) are each counted exactly once; files there before
# the start and names being written are not read; an unreadable entry (a dangling symlink, a
# FIFO) is reported on stderr and skipped while the rest is counted; a missing directory is a
# one-line error naming it, with a non-zero exit.
source "$(dirname "$0")/lib/common.bash"

dir=$WORK/incoming
mkdir -p "$dir"
# There before the start: seen, never read (new files only, as Spark's textFileStream).
printf 'old line 1\nold line 2\n' >"$dir/old.txt"

# publish NAME LINES [NO_NEWLINE]: writes lines "NAME:i words" under a dot name, then renames.
published=0
publish() {
  local name=$1 n=$2 i
  for ((i = 1; i <= n; i++)); do
    printf '%s:%d some words here and there %d\n' "$name" "$i" $((i * 7919 % 1000))
  done >"$dir/.$name.writing"
  if [ "${3:-}" = no_newline ] && [ "$n" -gt 0 ]; then
    truncate -s -1 "$dir/.$name.writing"
  fi
  cat "$dir/.$name.writing" >>"$WORK/all.txt"
  [ "$n" -gt 0 ] && [ "${3:-}" = no_newline ] && echo >>"$WORK/all.txt"
  mv "$dir/.$name.writing" "$dir/$name"
  published=$((published + n))
}

: >"$WORK/all.txt"
expected=$((1 + 0 + 120 + 5000 + 37 + 2 + 900))
bg timeout 60 "$DSTREAM" "$JOBS/file_lines.lua" "$dir" "$expected" 40 >"$WORK/out.txt" 2>"$WORK/err.txt"
job=$BG_PID
if ! wait_until 30 grep -qx ready "$WORK/out.txt"; then
  not_ok "file stream job starts"
  show stderr "$WORK/err.txt"
  finish
fi
publish a.txt 1
publish empty.txt 0
publish b.log 120
sleep 0.3
# A name still being written stays unread, and so does a dot file left behind.
printf 'never read\n' >"$dir/.left-behind"
printf 'never read\n' >"$dir/_temporary"
publish c.txt 5000
ln -s "$WORK/does-not-exist" "$dir/dangling.txt"
mkfifo "$dir/pipe.txt"
sleep 0.3
publish d.txt 37 no_newline
publish 'e with spaces.txt' 2
sleep 0.3
publish f.txt 900
[ "$published" -eq "$expected" ] || not_ok "test bookkeeping: $published lines published, $expected expected"

wait_exit "$job" 60
check "file stream job exits 0" [ "$EXIT_STATUS" -eq 0 ]
# Every published line, exactly once.
sort "$WORK/all.txt" | grep -v '^$' | awk '{ print "1\t" $0 }' >"$WORK/want.txt"
grep -v '^ready$' "$WORK/out.txt" | sort >"$WORK/got.txt"
if cmp -s "$WORK/want.txt" "$WORK/got.txt"; then
  ok "every line of the $expected lines moved in is counted exactly once"
else
  not_ok "every line of the $expected lines moved in is counted exactly once"
  diff "$WORK/want.txt" "$WORK/got.txt" | head -n 10 | sed 's/^/#   /'
  show stderr "$WORK/err.txt"
fi
check "lines counted more than once: none" eval '! grep -qv "^1	" "$WORK/got.txt"'
check "a file present before the start is not read" eval '! grep -q "old line" "$WORK/got.txt"'
check "files under dot and underscore names are not read" eval '! grep -q "never read" "$WORK/got.txt"'
check "the last line of a file without a final newline is counted" grep -q $'^1\td.txt:37 ' "$WORK/got.txt"
check "the dangling symlink is reported on stderr" grep -q "dangling.txt" "$WORK/err.txt"
check "the FIFO is reported on stderr" grep -q "pipe.txt" "$WORK/err.txt"
check "the reports say the entries are skipped" eval '[ "$(grep -c "skipped" "$WORK/err.txt")" -ge 2 ]'

# A missing directory: one line on stderr naming it, and a non-zero exit.
missing=$WORK/no/such/dir
timeout 30 "$DSTREAM" "$JOBS/file_lines.lua" "$missing" 1 5 >"$WORK/out3.txt" 2>"$WORK/err3.txt"
status=$?
check "missing directory: non-zero exit (not a timeout)" eval '[ "$status" -ne 0 ] && [ "$status" -ne 124 ]'
check "missing directory: one error line on stderr (then the job's traceback)" \
  [ "$(grep -cv -e '^stack traceback:$' -e $'^\t' "$WORK/err3.txt")" -eq 1 ]
check "missing directory: the error names the directory" grep -qF "$missing" "$WORK/err3.txt"
check "missing directory: the error names the job's line" grep -q "file_lines.lua:[0-9]" "$WORK/err3.txt"
check "missing directory: nothing on stdout" [ ! -s "$WORK/out3.txt" ]
[ "$E2E_FAILED" -gt 0 ] && show "stderr (missing directory)" "$WORK/err3.txt"
finish

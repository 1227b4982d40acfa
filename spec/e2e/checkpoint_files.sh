#!/usr/bin/env bash
# spec/e2e/checkpoint_files.sh: a job facing checkpoint files it cannot read (issue 14).
#  1. Every file's format version changed (as an upgrade could): the job refuses to start,
#     exits non-zero with an error naming each file and what is wrong with it and how to start
#     afresh, and leaves every file as it was (before: "using an older checkpoint" for each,
#     a start from zero, exit 0, and the files pruned).
#  2. A truncated newest file: the job resumes from the one before, and the checkpoints it
#     writes then never delete the truncated file nor leave fewer than 3 good ones (before:
#     pruning kept the truncated file and deleted good ones, then deleted it too).
source "$(dirname "$0")/lib/common.bash"

cat >"$WORK/job.lua" <<'LUA'
-- job.lua CHECKPOINT_DIR BATCHES: running word totals on a manual clock, checkpointed every
-- batch; prints "ready recovered=<ms|none>", then "<time> word=n ..." per batch.
local dstream = require("dstream")
local ctx = dstream.context { batch = "1s", clock = "manual", checkpoint = arg[1],
  checkpoint_interval = "1s", workers = 2, partitions = 2, progress = false }
ctx:queue_stream({ { "a", "b" }, { "a" }, { "b", "b" }, { "a" }, { "c" }, { "a" }, { "b" }, { "c" },
  { "a" }, { "b" }, { "c" }, { "a" } })
  :map(function(w) return w, 1 end)
  :update_state_by_key(function(values, total) return (total or 0) + #values end)
  :name("totals")
  :foreach_rdd(function(rdd, time)
    local rows = rdd:collect()
    table.sort(rows, function(x, y) return x[1] < y[1] end)
    local out = { string.format("%d", time) }
    for _, kv in ipairs(rows) do out[#out + 1] = kv[1] .. "=" .. kv[2] end
    print(table.concat(out, " "))
  end)
ctx:start()
print("ready recovered=" .. (ctx.recovered_from and string.format("%d", ctx.recovered_from) or "none"))
ctx:advance(tonumber(arg[2]))
ctx:stop { graceful = true }
LUA

# run NAME CKPT BATCHES: runs the job; output in $WORK/NAME.out/.err, status in $STATUS.
run() {
  timeout 60 "$DSTREAM" "$WORK/job.lua" "$2" "$3" >"$WORK/$1.out" 2>"$WORK/$1.err"
  STATUS=$?
}
files_of() { find "$1" -maxdepth 1 -name 'checkpoint-*[0-9]' | sort; }
readable() { # readable FILE: a dstream checkpoint whose header version is 1 and length right
  local size len
  size=$(stat -c %s "$1")
  len=$(od -An -j24 -N8 -t u8 "$1" | tr -d ' ')
  [ "$(head -c 8 "$1")" = DSCKPT01 ] && [ "$(od -An -j8 -N4 -t u4 "$1" | tr -d ' ')" = 1 ] &&
    [ "$size" -eq $((32 + len)) ]
}

# ---- 1. no file readable ----
ck=$WORK/ck1
run first "$ck" 4
check "a first run writes checkpoints (exit $STATUS)" eval '[ "$STATUS" -eq 0 ] && [ -n "$(files_of "$ck")" ]'
for f in $(files_of "$ck"); do printf '\002' | dd of="$f" bs=1 seek=8 conv=notrunc status=none; done
(cd "$ck" && md5sum checkpoint-*[0-9]) >"$WORK/before.md5"
run upgraded "$ck" 4
check "with no readable checkpoint the job refuses to start (exit $STATUS)" \
  eval '[ "$STATUS" -ne 0 ] && ! grep -q "^ready" "$WORK/upgraded.out"'
all_named=1
for f in $(files_of "$ck"); do
  grep -qF "$f has an unknown format version 2 (this dstream reads version 1)" "$WORK/upgraded.err" || all_named=0
done
check "the error names every file and what is wrong with it" [ "$all_named" -eq 1 ]
check "the error says how to start afresh" \
  grep -qF "To start afresh, remove $ck or use another checkpoint directory" "$WORK/upgraded.err"
check "no 'using an older checkpoint' when there is none" eval '! grep -q "older checkpoint" "$WORK/upgraded.err"'
check "every file is left as it was" eval '(cd "$ck" && md5sum -c --quiet "$WORK/before.md5" >/dev/null 2>&1)'
[ "$E2E_FAILED" -eq 0 ] || show stderr "$WORK/upgraded.err"

# ---- 2. a truncated newest file ----
ck=$WORK/ck2
run first2 "$ck" 4
newest=$(files_of "$ck" | tail -n 1)
truncate -s -5 "$newest"
run resumed "$ck" 6
check "after a truncated newest checkpoint the job resumes from the one before (exit $STATUS)" \
  eval '[ "$STATUS" -eq 0 ] && grep -qx "ready recovered=4000" "$WORK/resumed.out"'
check "the truncated file is reported" grep -qF "$newest is truncated" "$WORK/resumed.err"
check "pruning kept the truncated file" test -f "$newest"
good=0
for f in $(files_of "$ck"); do [ "$f" != "$newest" ] && readable "$f" && good=$((good + 1)); done
check "pruning kept the 3 newest good generations ($good good, $(files_of "$ck" | wc -l) files)" \
  eval '[ "$good" -eq 3 ] && [ "$(files_of "$ck" | wc -l)" -eq 4 ]'
run whole "$WORK/ck3" 10
grep -v '^ready' "$WORK/resumed.out" >"$WORK/resumed.batches"
grep -v '^ready' "$WORK/whole.out" | tail -n 6 >"$WORK/whole.batches"
check "the totals of batches 5 to 10 are those of an uninterrupted run" \
  eval '[ -s "$WORK/whole.batches" ] && cmp -s "$WORK/whole.batches" "$WORK/resumed.batches"' 
[ "$E2E_FAILED" -eq 0 ] || { show stdout "$WORK/resumed.out"; show stderr "$WORK/resumed.err"; ls -l "$ck" | sed 's/^/#   /'; }
finish

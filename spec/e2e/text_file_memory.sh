#!/usr/bin/env bash
# spec/e2e/text_file_memory.sh: ctx:text_file reads its file in blocks as the tasks need them
# (issue 18 item 4): a 200 MB file is counted with a peak RSS far below its size (the kernel's
# figure, VmHWM), and the counts equal coreutils'. Once, on the normal build (the sanitizers'
# shadow memory would measure themselves).
source "$(dirname "$0")/lib/common.bash"
release_only

yes "the quick brown fox jumps over the lazy dog and then some more words" | head -n 2900000 >"$WORK/big.txt" # ~200 MB
LINES=$(wc -l <"$WORK/big.txt")
WORDS=$(wc -w <"$WORK/big.txt")
cat >"$WORK/count.lua" <<'LUA'
local dstream = require("dstream")
local ctx = dstream.context { workers = 2 }
local lines = ctx:text_file(arg[1])
print("lines " .. lines:count())
print("words " .. lines:flat_map(function(l) return l:gmatch("%S+") end):count())
for line in io.lines("/proc/self/status") do
  local kb = line:match("^VmHWM:%s*(%d+) kB")
  if kb then print("peak_kb " .. kb) end
end
LUA
"$DSTREAM" "$WORK/count.lua" "$WORK/big.txt" >"$WORK/out.txt" 2>"$WORK/err.txt"
check "the job exits 0" [ "$?" -eq 0 ]
check "lines: $LINES, as wc -l counts" grep -qx "lines $LINES" "$WORK/out.txt"
check "words: $WORDS, as wc -w counts" grep -qx "words $WORDS" "$WORK/out.txt"
PEAK=$(sed -n 's/^peak_kb //p' "$WORK/out.txt")
check "peak RSS ${PEAK:-?} kB is under 100 MB for a 200 MB file (blocks in flight, not the file)" \
  [ "${PEAK:-999999999}" -lt 102400 ]
finish

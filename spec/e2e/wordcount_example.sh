#!/usr/bin/env bash
# spec/e2e/wordcount_example.sh: examples/wordcount.lua with no arguments (its built-in source)
# ends by itself with status 0 and prints one line per batch with that batch's top words;
# each line equals a reference computed here with awk (rate_stream gives batch k the rows
# 2000*(k-1) .. 2000*k-1, and row i is line i % 14 + 1 of examples/data/streams.txt).
source "$(dirname "$0")/lib/common.bash"

example=$ROOT/examples/wordcount.lua
data=$ROOT/examples/data/streams.txt
start=$SECONDS
(cd "$WORK" && timeout 30 "$DSTREAM" "$example") >"$WORK/out.txt" 2>"$WORK/err.txt"
status=$?
elapsed=$((SECONDS - start))
check "the example ends by itself with status 0 (took ${elapsed}s)" [ "$status" -eq 0 ]
check "the example writes nothing on stderr" [ ! -s "$WORK/err.txt" ]
[ -s "$WORK/err.txt" ] && show stderr "$WORK/err.txt"
n=$(grep -Ec '^batch [0-9]+ ms: [0-9]+ distinct words; top: the=[0-9]+ ' "$WORK/out.txt")
check "at least 3 lines 'batch ... top: the=...' ($n)" [ "$n" -ge 3 ]
check "every line of output is a batch line" \
  eval '[ "$(wc -l <"$WORK/out.txt")" -eq "$n" ]'
check "batch times are 1000 ms apart and increasing" awk '
  { t = $2 + 0; if (NR > 1 && t != prev + 1000) bad = 1; prev = t }
  END { exit bad }' "$WORK/out.txt"

# reference K: "D distinct words; top: w=c ..." for the K-th batch.
reference() {
  awk -v k="$1" '
    { text[NR - 1] = $0 }
    END {
      n = NR
      for (i = 2000 * (k - 1); i < 2000 * k; i++) {
        line = tolower(text[i % n])
        gsub(/[^a-z]+/, " ", line)
        m = split(line, w, " ")
        for (j = 1; j <= m; j++) count[w[j]]++
      }
      for (x in count) print count[x], x
    }' "$data" | sort -k1,1nr -k2,2 >"$WORK/ref.txt"
  printf '%d distinct words; top:' "$(wc -l <"$WORK/ref.txt")"
  head -n 5 "$WORK/ref.txt" | awk '{ printf " %s=%s", $2, $1 }'
  echo
}
k=0
mismatch=0
while IFS= read -r line; do
  k=$((k + 1))
  got=${line#batch * ms: }
  want=$(reference "$k")
  if [ "$got" != "$want" ]; then
    mismatch=1
    echo "# batch $k: got  '$got'"
    echo "#          want '$want'"
  fi
done <"$WORK/out.txt"
check "every batch's distinct count and top 5 equal the reference ($k batches)" \
  eval '[ "$mismatch" -eq 0 ] && [ "$k" -ge 3 ]'
finish

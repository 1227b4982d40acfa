#!/usr/bin/env bash
# spec/e2e/cluster_examples.sh: the five cluster examples of the guide, each three processes of
# `dstream --cluster` against an embedded broker, run side by side (each has its broker on a
# port of its own): every member prints, and what the members hold together (their state
# partitions' counts; their windows' counts added up) equals what was produced, each word at
# one member only; the sessions example's sessions are those python3 finds in the lines the
# example produces, and the join example's pairs are the left outer join python3 computes;
# the stateless word count's members each own input partitions, each partition's words counted
# by one member only.
# Checked with python3. Release build only (about 16 s).
source "$(dirname "$0")/lib/common.bash"
release_only

run_example() { # NAME
  (cd "$WORK" && timeout 60 "$DSTREAM" "$ROOT/examples/$1.lua") >"$WORK/$1.out" 2>"$WORK/$1.err"
  echo $? >"$WORK/$1.status"
}
run_example cluster_state_wordcount &
run_example cluster_windowed_wordcount &
run_example cluster_sessions &
run_example cluster_join &
run_example cluster_wordcount &
wait

# together NAME REGEX: python3 adds up the word=count pairs that follow REGEX on the members'
# lines, fails if a word is at two members or the sums differ from the "produced" line plus
# the "initial" line (the state's initial counts) when there is one.
together() {
  python3 - "$WORK/$1.out" "$2" <<'PY'
import re, sys
text, pattern = open(sys.argv[1]).read(), re.compile(sys.argv[2])
held, where, produced, initial = {}, {}, None, {}
for line in text.splitlines():
    if line.startswith("produced ") or line.startswith("initial "):
        counts = dict((w, int(n)) for w, n in (p.split("=") for p in line.split()[1:]))
        if line.startswith("initial "):
            initial = counts
        else:
            produced = counts
        continue
    m = pattern.search(line)
    if not m:
        continue
    member = line.split()[0]
    for pair in m.group(1).split():
        w, n = pair.split("=")
        if w in where and where[w] != member:
            sys.exit("%s is at %s and %s" % (w, where[w], member))
        where[w] = member
        held[w] = held.get(w, 0) + int(n)
for w, n in initial.items():
    produced[w] = (produced or {}).get(w, 0) + n
if held != produced:
    sys.exit("members hold %s, produced %s" % (sorted(held.items()), sorted((produced or {}).items())))
print("# %d words, %d occurrences" % (len(held), sum(held.values())))
PY
}

for name in cluster_state_wordcount cluster_windowed_wordcount cluster_sessions cluster_join; do
  check "$name: the example ends with status 0" [ "$(cat "$WORK/$name.status")" -eq 0 ]
  n=$(grep -c '^member[123] owns state partitions [0-9,]*:' "$WORK/$name.out")
  check "$name: each of the three members says which state partitions it owns ($n)" [ "$n" -eq 3 ]
  [ "$n" -eq 3 ] || { show output "$WORK/$name.out"; show stderr "$WORK/$name.err"; }
done
check "cluster_wordcount: the example ends with status 0" [ "$(cat "$WORK/cluster_wordcount.status")" -eq 0 ]
n=$(grep -c '^member[123] owns words\[' "$WORK/cluster_wordcount.out")
check "cluster_wordcount: each of the three members says which input partitions it owns ($n)" [ "$n" -ge 3 ]
# Each "p<i>" word is partition i's: one member's count of it, at most the 40 / 6 lines produced.
check "cluster_wordcount: each partition's words are counted by one member only" python3 - "$WORK/cluster_wordcount.out" <<'PY'
import re, sys
seen = {}
for line in open(sys.argv[1]):
    m = re.match(r"^(member\d) counted (.*)$", line)
    if not m:
        continue
    for w, n in re.findall(r"(p\d)=(\d+)", m.group(2)):
        if w in seen or int(n) > 7:
            sys.exit("%s counted by %s and %s, or more than produced (%s)" % (w, seen.get(w), m.group(1), n))
        seen[w] = m.group(1)
if len(seen) != 6:
    sys.exit("partitions counted: %s" % sorted(seen))
PY
[ "$n" -ge 3 ] || { show output "$WORK/cluster_wordcount.out"; show stderr "$WORK/cluster_wordcount.err"; }
check "cluster_state_wordcount: the members' counts, together, are what was produced (plus the initial state)" \
  together cluster_state_wordcount '^member\d owns state partitions [\d,]*: (.*)$'
check "cluster_windowed_wordcount: the members' windows, added up, are what was produced" \
  together cluster_windowed_wordcount '; in all: (.*)$'
check "cluster_sessions: the members' sessions, added up, are what was produced" \
  together cluster_sessions '; in all: (.*)$'

# sessions_as_python: the sessions (word, start, end, records) of the example's lines, found by
# python3 from the lines' rule (examples/lib/cluster_demo.lua with the example's stamp and words:
# line i holds words[(i-1)%8], words[3i%8] and every fourth "session", at time
# 100i + 3000*((i-1)//10) ms; a gap of 2 s), equal the members' sessions, none late.
sessions_as_python() {
  python3 - "$WORK/cluster_sessions.out" <<'PY'
import re, sys
words = ["kafka", "group", "member", "partition", "session", "gap", "watermark", "topic"]
times = {}
for i in range(1, 41):
    ts = 100 * i + 3000 * ((i - 1) // 10)
    for w in [words[(i - 1) % 8], words[(i * 3) % 8]] + (["session"] if i % 4 == 0 else []):
        times.setdefault(w, []).append(ts)
want = []
for w, stamps in times.items():
    stamps.sort()
    start = last = stamps[0]; n = 0
    for ts in stamps + [None]:
        if ts is None or ts >= last + 2000:
            want.append("%s[%.1f-%.1fs]=%d" % (w, start / 1000, (last + 2000) / 1000, n))
            start, n = ts, 0
        last, n = ts, n + 1
got, late = [], 0
for line in open(sys.argv[1]):
    m = re.match(r"^member\d owns state partitions [\d,]*: \d+ sessions (.*); late (\d+); in all:", line)
    if m:
        got += m.group(1).split()
        late += int(m.group(2))
if sorted(got) != sorted(want) or late != 0:
    sys.exit("members emitted %s (late %d); python finds %s" % (sorted(got), late, sorted(want)))
print("# %d sessions" % len(want))
PY
}
check "cluster_sessions: each session (word, start, end, records) is one python3 finds in the input, each once, none late" \
  sessions_as_python

# join_as_python: the left outer join within 2 s of the example's lines (line i: an impression
# of words[(i-1)%8] and a click on words[3i%8], both at 800i ms), a nested loop, equals what
# the members emitted together, each ad at one member, each record once, none late.
join_as_python() {
  python3 - "$WORK/cluster_join.out" <<'PY'
import re, sys
words = ["shoes", "tea", "bikes", "books", "maps", "lamps", "socks", "pens"]
imps = [(words[(i - 1) % 8], 800 * i) for i in range(1, 41)]
clicks = [(words[(3 * i) % 8], 800 * i) for i in range(1, 41)]
want = []
for ad, ti in imps:
    hits = ["%s:%d>%d" % (ad, ti, tc) for c, tc in clicks if c == ad and abs(tc - ti) <= 2000]
    want += hits or ["%s:%d>-" % (ad, ti)]
got, late, where = [], 0, {}
for line in open(sys.argv[1]):
    m = re.match(r"^(member\d) owns state partitions [\d,]*: \d+ joined (.*); late (\d+)$", line)
    if m:
        for rec in m.group(2).split():
            ad = rec.split(":")[0]
            if where.setdefault(ad, m.group(1)) != m.group(1):
                sys.exit("%s at %s and %s" % (ad, where[ad], m.group(1)))
        got += m.group(2).split()
        late += int(m.group(3))
if sorted(got) != sorted(want) or late != 0:
    sys.exit("members emitted %s (late %d); python finds %s" % (sorted(got), late, sorted(want)))
print("# %d joined, %d without a click" % (len(want), sum(1 for w in want if w.endswith(">-"))))
PY
}
check "cluster_join: the members' pairs are the left outer join python3 computes, each once, each ad at one member, none late" \
  join_as_python
finish

"""spec/e2e/lib/cluster_reread.py CHUNKS PARTS KILLED.ranges OTHER.ranges...: the input lines
two processes of a cluster read, and their words, printed as "LINES WORDS" (the bound on the
words a SIGKILL may count twice). The input is CHUNKS/chunk-NNN, 100 lines each, chunk c
produced to partition c % PARTS; a .ranges file holds "partition from until" per batch a process
read. Exits with the reason when a line was read three times, or twice but not by the killed
process (KILLED: /dev/null when none was), or when what was read again is not the end of what
the killed process read of a partition (its last batches, which it had not committed)."""
import collections, os, sys

chunks, parts, killed, others = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
readers = collections.defaultdict(list)  # (partition, offset) -> the files that read it
for f in [killed] + others:
    for line in open(f):
        p, a, b = map(int, line.split())
        for o in range(a, b):
            readers[(p, o)].append(f)
twice = sorted(k for k, r in readers.items() if len(r) > 1)
for k in twice:
    if len(readers[k]) > 2:
        sys.exit("partition %d offset %d was read %d times" % (k[0], k[1], len(readers[k])))
    if killed not in readers[k]:
        sys.exit("partition %d offset %d was read twice, not by the killed process" % k)
for p in range(parts):
    again = [o for (q, o) in twice if q == p]
    if again and any(o >= again[0] and (q, o) not in twice
                     for (q, o), r in readers.items() if q == p and killed in r):
        sys.exit("partition %d: what was read again is not the killed process's last reads" % p)
words = 0
for p, o in twice:
    with open(os.path.join(chunks, "chunk-%03d" % (p + parts * (o // 100)))) as f:
        words += len(f.read().split("\n")[o % 100].split())
print(len(twice), words)

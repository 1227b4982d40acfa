#!/usr/bin/env python3
"""spec/e2e/ml_oracle.py OUT_FILE: checks the lines spec/e2e/jobs/ml_crash.lua appended
across its runs against MLlib's update rules computed here, independently of dstream, from
the rows each batch took. Prints TAP-like 'ok'/'not ok' lines and exits 1 on a mismatch.

- every batch time has one content: a line written twice (a batch re-run after a restart)
  is the same line, models included;
- the batches' rows, in time order, are 0, 1, 2, ... with none missing or taken twice;
- after each batch, the k-means centres and weights (StreamingKMeansModel.update, decay 0.9
  per batch) and the SGD weights (runMiniBatchSGD: 5 rounds, step 0.5 / sqrt(i), intercept,
  convergence tolerance 0.001) equal the ones computed here, to 1e-9 relative (sums are added
  in another order than the workers' partitions).
"""
import math
import sys


def noise(v, m):
    return ((v * m) % 1000) / 1000 - 0.5


def point(v):
    c = v % 3
    cx, cy = (0, 5, -5)[c], (0, 5, 5)[c]
    return (cx + noise(v, 2654435761), cy + noise(v, 40503))


def labelled(v):
    x1, x2 = ((v * 7919) % 200) / 100 - 1, ((v * 104729) % 200) / 100 - 1
    return 3 * x1 - 2 * x2 + 1 + 0.1 * noise(v, 2246822519), (x1, x2)


def kmeans_update(centres, weights, points, decay=0.9):
    sums = [[0.0, 0.0] for _ in centres]
    counts = [0] * len(centres)
    for p in points:
        best, bi = math.inf, 0
        for i, c in enumerate(centres):
            d = (c[0] - p[0]) ** 2 + (c[1] - p[1]) ** 2
            if d < best:
                best, bi = d, i
        sums[bi][0] += p[0]
        sums[bi][1] += p[1]
        counts[bi] += 1
    weights = [w * decay for w in weights]
    centres = [list(c) for c in centres]
    for i, n in enumerate(counts):
        if n > 0:
            updated = weights[i] + n
            lam = n / max(updated, 1e-16)
            weights[i] = updated
            centres[i] = [centres[i][j] * (1 - lam) + sums[i][j] * (lam / n) for j in range(2)]
    largest = max(range(len(weights)), key=lambda i: weights[i])
    smallest = min(range(len(weights)), key=lambda i: weights[i])
    if weights[smallest] < 1e-8 * weights[largest]:
        w = (weights[largest] + weights[smallest]) / 2
        weights[largest] = weights[smallest] = w
        for j in range(2):
            x = centres[largest][j]
            p = 1e-14 * max(abs(x), 1)
            centres[largest][j], centres[smallest][j] = x + p, x - p
    return centres, weights


def sgd(w, data, iterations=5, step=0.5, tol=0.001):
    if not data:
        return w
    for i in range(1, iterations + 1):
        g = [0.0, 0.0, 0.0]
        for y, (x1, x2) in data:
            diff = w[0] * x1 + w[1] * x2 + w[2] - y
            g[0] += diff * x1
            g[1] += diff * x2
            g[2] += diff
        s = step / math.sqrt(i)
        prev = w
        w = [prev[j] - s * g[j] / len(data) for j in range(3)]
        diff = math.sqrt(sum((w[j] - prev[j]) ** 2 for j in range(3)))
        if diff < tol * max(math.sqrt(sum(x * x for x in w)), 1):
            break
    return w


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def main():
    lines = {}
    same = True
    for line in open(sys.argv[1]):
        f = line.split()
        t = int(f[1])
        if t in lines and lines[t] != f:
            same = False
            print("# batch %d written twice with different contents:\n#   %s\n#   %s" % (t, " ".join(lines[t]), " ".join(f)))
        lines[t] = f
    bad = 0
    print(("ok" if same else "not ok") + " - oracle: a batch re-run after a restart wrote the very same line (%d batches)" % len(lines))
    bad += not same
    nxt, contiguous = 0, True
    centres, weights, w = [[1.0, 1.0], [4.0, 4.0], [-4.0, 4.0]], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    mismatch = None
    for t in sorted(lines):
        f = lines[t]
        count, lo, hi = int(f[2]), int(f[3]), int(f[4])
        if count > 0 and (lo != nxt or hi != nxt + count - 1):
            contiguous = False
            print("# batch %d took rows %d..%d (%d), expected from %d" % (t, lo, hi, count, nxt))
        rows = range(lo, hi + 1) if count > 0 else range(0)
        nxt += count
        centres, weights = kmeans_update(centres, weights, [point(v) for v in rows])
        w = sgd(w, [labelled(v) for v in rows])
        got = [float(x) for x in f[6:9] + f[10:13] + f[14:17]]
        want = []
        for c, wt in zip(centres, weights):
            want += [c[0], c[1], wt]
        gotw = [float(x) for x in f[18:21]]
        if mismatch is None and not (all(close(a, b) for a, b in zip(got, want)) and all(close(a, b) for a, b in zip(gotw, w))):
            mismatch = "batch %d: job km %s lr %s; oracle km %s lr %s" % (t, got, gotw, want, w)
    print(("ok" if contiguous else "not ok") + " - oracle: the batches took rows 0..%d, none missing or twice" % (nxt - 1))
    bad += not contiguous
    if mismatch:
        print("# " + mismatch)
    print(("ok" if mismatch is None else "not ok") + " - oracle: after every batch both models equal MLlib's rules computed in Python")
    bad += mismatch is not None
    print("# final models: km %s weights %s; lr %s" % ([["%.4f" % x for x in c] for c in centres], ["%.1f" % x for x in weights], ["%.4f" % x for x in w]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

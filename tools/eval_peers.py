#!/usr/bin/python3
"""eval_peers.py - the scikit-learn peers of `funnelctl eval` (docs/CHURN.md).

Reads the CSV funnelctl eval writes (header `ts,label,p,<features...>`, one
row per labelled example in the order the online model learned them; p is
the online model's prequential prediction) and prints one JSON object:

- batch_auc: LogisticRegression trained offline on the first --split of the
  rows (time order) and scored on the rest, with the online model's input
  transform (sign(r) log2(1 + |r|), then StandardScaler fitted on the
  training part);
- online_auc_test: the online model's p on that same test part;
- sgd_auc: SGDClassifier(loss="log_loss") prequentially in file order, in
  mini-batches of --batch rows: each batch is scored before partial_fit on
  it (the first batch scores 0.5); the standardiser is updated with a batch
  (StandardScaler.partial_fit) only after that batch was scored, so every
  score uses rows seen before; sgd_auc_test over the test part too;
- online_auc: p over all rows.

Uses Debian's python3-sklearn (run with /usr/bin/python3). Errors (missing
or empty file, bad header, a non-numeric cell, one class only) exit 2 with
the reason on stderr.
"""

import argparse
import json
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler


def fail(msg):
    print(f"eval_peers: {msg}", file=sys.stderr)
    sys.exit(2)


def load(path):
    try:
        f = open(path)
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    with f:
        header = f.readline().rstrip("\n").split(",")
        if header[:3] != ["ts", "label", "p"] or len(header) < 4:
            fail(f"{path}:1: header must start with ts,label,p and name the features")
        rows = []
        for lineno, line in enumerate(f, start=2):
            cells = line.rstrip("\n").split(",")
            if len(cells) != len(header):
                fail(f"{path}:{lineno}: {len(cells)} cells, the header has {len(header)}")
            try:
                rows.append([float(c) for c in cells])
            except ValueError:
                bad = next(i for i, c in enumerate(cells) if not _is_num(c))
                fail(f"{path}:{lineno}: column {header[bad]}: not a number: {cells[bad]!r}")
    if not rows:
        fail(f"{path}: no examples")
    return header, np.array(rows, dtype=np.float64)


def _is_num(c):
    try:
        float(c)
        return True
    except ValueError:
        return False


def transform(x):
    return np.sign(x) * np.log2(1.0 + np.abs(x))


def auc(y, s, what):
    if len(np.unique(y)) < 2:
        fail(f"{what}: only one class among {len(y)} examples")
    return float(roc_auc_score(y, s))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--split", type=float, default=0.7)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    if not 0 < a.split < 1 or a.batch < 1:
        fail("--split must be in (0, 1) and --batch >= 1")
    t0 = time.monotonic()
    _header, m = load(a.csv)
    y = m[:, 1].astype(int)
    p = m[:, 2]
    x = transform(m[:, 3:])
    n = len(y)
    cut = int(n * a.split)
    if cut < 1 or cut >= n:
        fail(f"{n} examples cannot be split at {a.split}")

    # batch peer: time-ordered split
    sc = StandardScaler().fit(x[:cut])
    if len(np.unique(y[:cut])) < 2:
        fail("training part: only one class")
    lr = LogisticRegression(max_iter=2000)
    lr.fit(sc.transform(x[:cut]), y[:cut])
    batch_auc = auc(y[cut:], lr.predict_proba(sc.transform(x[cut:]))[:, 1], "test part")

    # online peer: prequential partial_fit
    sgd = SGDClassifier(loss="log_loss", random_state=1)
    osc = StandardScaler()
    scores = np.full(n, 0.5)
    fitted = False
    for i in range(0, n, a.batch):
        xb, yb = x[i:i + a.batch], y[i:i + a.batch]
        if fitted:
            scores[i:i + a.batch] = sgd.predict_proba(osc.transform(xb))[:, 1]
        osc.partial_fit(xb)
        sgd.partial_fit(osc.transform(xb), yb, classes=np.array([0, 1]))
        fitted = True

    out = {
        "examples": n,
        "positives": int(y.sum()),
        "split": a.split,
        "batch_auc": batch_auc,
        "online_auc_test": auc(y[cut:], p[cut:], "test part"),
        "sgd_auc": auc(y, scores, "all examples"),
        "sgd_auc_test": auc(y[cut:], scores[cut:], "test part"),
        "online_auc": auc(y, p, "all examples"),
        "seconds": round(time.monotonic() - t0, 3),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

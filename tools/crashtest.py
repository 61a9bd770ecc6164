"""Crash torture: SIGKILL a writer at random moments and prove no committed row is lost.

A child process appends deterministic rows to a store (row ``g``, the ``g``-th row ever
written, is a pure function of ``g``), in batches of random size, committing at random
points, and reports each commit on stdout once ``flush()`` returned. The harness kills it
with SIGKILL after a random delay, reopens the store, and checks that

* every committed row equals the row a re-run produces (all fields, bit for bit),
* a ring holds exactly the newest ``size`` rows, in order,
* no row the child reported as committed is missing (rows lost must be 0),
* ``verify`` finds every checksum consistent with the committed state,
* the store accepts new appends afterwards (the next child continues from it).

Rows appended but not yet committed when the kill landed are dropped, as documented.

    python tools/crashtest.py --kills 200            # unbounded and ring stores, half each
    python tools/crashtest.py --kills 20 --seed 1    # what the test suite runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUFFER_ROWS = 1024


def row_values(g: np.ndarray) -> dict[str, np.ndarray]:
    """The deterministic content of global rows ``g``."""
    g = np.asarray(g, dtype=np.int64)
    obs = (g[:, None] * 4 + np.arange(4)).astype(np.float32)
    return {
        "obs": obs,
        "action": g % 3,
        "reward": (g % 7).astype(np.float32) - 3,
        "next_obs": obs + 4,
        "terminated": g % 11 == 10,
        "truncated": g % 13 == 12,
        "check": g * 2654435761 % 2**31,
    }


def child(path: str, capacity: int | None, seed: int) -> None:
    """Append forever (until killed); print 'C <total>' after every commit."""
    import gymnasium as gym

    import replaystore as rs

    if not os.path.exists(os.path.join(path, "zarr.json")):
        store = rs.create(path, gym.spaces.Box(-1e9, 1e9, (4,), np.float32), gym.spaces.Discrete(3),
                          capacity=capacity, extra_fields=[("check", "int64")], chunk_rows=4096)
        store.close()
    store = rs.open(path, "a", buffer_rows=BUFFER_ROWS)
    rng = np.random.default_rng(seed)
    total = store.total + store.buffered
    print(f"C {store.total}", flush=True)
    while True:
        n = int(rng.choice([1, 3, 64, 500, 3000]))
        batch = row_values(np.arange(total, total + n))
        if n == 1 and rng.random() < 0.5:
            store.append(**{k: v[0] for k, v in batch.items()})
        else:
            store.extend(batch)
        total += n
        print(f"A {total}", flush=True)
        if rng.random() < 0.3:
            store.flush()
            print(f"C {store.total}", flush=True)


def check(path: Path, capacity: int | None, reported: int) -> dict:
    """Reopen after a kill and verify; returns counts."""
    import replaystore as rs

    store = rs.open(path, "r")
    total, size = store.total, store.size
    if total < reported:
        return {"ok": False, "error": f"lost committed rows: total {total} < reported {reported}",
                "lost": reported - total, "checked": 0}
    expect_size = total if capacity is None else min(total, capacity)
    # a ring commits an eviction before it overwrites rows; a kill between that commit and
    # the append's commit leaves fewer rows, short by at most one write (buffer_rows=1024)
    if not (expect_size - (0 if capacity is None else BUFFER_ROWS) <= size <= expect_size):
        return {"ok": False, "error": f"size {size}, expected {expect_size}", "lost": 0, "checked": 0}
    data = store.read_range(0, size)
    want = row_values(np.arange(total - size, total))
    for k, v in want.items():
        if not np.array_equal(data[k], v):
            bad = int(np.flatnonzero(np.any(data[k].reshape(size, -1) != v.reshape(size, -1), axis=1))[0])
            return {"ok": False, "error": f"field {k!r} row {bad} differs from the re-run", "lost": 0,
                    "checked": size}
    store.close()
    report = rs.verify(path)
    if not report.ok:
        return {"ok": False, "error": "verify after the kill: " + "; ".join(report.lines()[1:]),
                "lost": 0, "checked": size}
    return {"ok": True, "lost": 0, "checked": size, "total": total}


def run(kills: int, *, seed: int = 0, workdir: Path | None = None, max_delay: float = 0.6,
        capacity: int = 20_000, verbose: bool = False) -> dict:
    """Run ``kills`` kill/reopen/verify cycles, half on an unbounded store, half on a ring."""
    rng = np.random.default_rng(seed)
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="rs-crash-")) if own else Path(workdir)
    totals = {"kills": 0, "rows_checked": 0, "rows_lost": 0, "uncommitted_dropped": 0, "failures": [],
              "wraps": 0}
    try:
        for kind, cap in (("unbounded", None), ("ring", capacity)):
            path = work / f"{kind}.zarr"
            shutil.rmtree(path, ignore_errors=True)
            n_kills = kills // 2 if kind == "unbounded" else kills - kills // 2
            for i in range(n_kills):
                cmd = [sys.executable, __file__, "--child", str(path), "--capacity", str(cap or 0),
                       "--seed", str(int(rng.integers(2**31)))]
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONPATH": str(ROOT)})
                # wait until the child runs, then a random moment
                first = proc.stdout.readline()
                if not first.startswith("C "):
                    err = proc.stderr.read()
                    raise RuntimeError(f"child failed to start: {first!r} {err}")
                time.sleep(float(rng.uniform(0, max_delay)))
                os.kill(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
                lines = [first, *out.splitlines()]
                reported = max(int(x.split()[1]) for x in lines if x.startswith("C "))
                appended = max([int(x.split()[1]) for x in lines if x.startswith("A ")] or [reported])
                res = check(path, cap, reported)
                totals["kills"] += 1
                totals["rows_checked"] += res["checked"]
                totals["rows_lost"] += res["lost"]
                if res["ok"]:
                    totals["uncommitted_dropped"] += max(0, appended - res["total"])
                    if cap and res["total"] > cap:
                        totals["wraps"] = max(totals["wraps"], res["total"] // cap)
                else:
                    totals["failures"].append(f"{kind} kill {i}: {res['error']}")
                if verbose:
                    print(kind, i, res, flush=True)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-delay", type=float, default=0.6)
    ap.add_argument("--capacity", type=int, default=20_000)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.capacity or None, args.seed)
        return
    t = time.perf_counter()
    res = run(args.kills, seed=args.seed, max_delay=args.max_delay, capacity=args.capacity,
              verbose=args.verbose)
    print(json.dumps({**res, "seconds": round(time.perf_counter() - t, 1)}, indent=2))
    print(f"kills: {res['kills']}  rows checked: {res['rows_checked']:,}  committed rows lost: "
          f"{res['rows_lost']}  uncommitted rows dropped: {res['uncommitted_dropped']:,}  "
          f"ring laps: {res['wraps']}  failures: {len(res['failures'])}")
    sys.exit(1 if res["rows_lost"] or res["failures"] else 0)


if __name__ == "__main__":
    main()

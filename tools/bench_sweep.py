"""Wall-clock of a training sweep (``replaystore.sweep``) on 1 and 2 Dask worker processes.

The same grid runs on a local cluster of 1 and of 2 workers: tabular Q-learning in
minibatches on a FrozenLake store of ~200k rows (collected once with
``replaystore.collect.collect`` and kept in ``--store``), ``gamma`` = 0.9, 0.95, 0.99 x
seeds 0-3 = 12 runs, each ``--updates`` batches of 256 and a 100-episode evaluation.

Two timings per worker count, medians over ``--rounds``:

* **cold**: ``sweep(workers=N)`` as ``replaystore sweep --workers N`` runs it: start a
  ``LocalCluster``, run, close it;
* **warm**: ``sweep(client=...)`` on a cluster already running (only the runs; the
  workers' first round also imports replaystore, which the median leaves out).

Also shown: the mean seconds a run took on its worker, and whether the tables of 1 and 2
workers are the same (every column but the timings). The load average before and after
is printed: on a shared machine the 2-worker figure is only as good as the idle cores.

Usage::

    python tools/bench_sweep.py                      # ~3-4 minutes on 2 cores
    python tools/bench_sweep.py --rounds 5 --updates 40000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import replaystore as rs  # noqa: E402
from replaystore.collect import collect  # noqa: E402
from replaystore.sweep import TIMING_COLUMNS, sweep  # noqa: E402

GRID = {"gamma": [0.9, 0.95, 0.99]}
SEEDS = [0, 1, 2, 3]


def build(path: Path, rows: int) -> None:
    if (path / "zarr.json").exists() and len(rs.open(path)) == rows:
        return
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    collect("FrozenLake-v1", path, steps=rows, seed=0)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=Path("/tmp/replaystore-bench/fl-200k.zarr"))
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--updates", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import distributed

    build(args.store, args.rows)
    kw = {"agent": "q", "grid": GRID, "seeds": SEEDS, "evaluate_episodes": 100,
          "train_kwargs": {"batch_size": 256, "updates": args.updates}}
    runs = len(SEEDS) * len(GRID["gamma"])
    print(f"store {args.store}: {len(rs.open(args.store)):,} rows; {runs} runs of {args.updates:,} "
          f"updates (batch 256) + 100 evaluation episodes; {os.cpu_count()} cores; "
          f"load average before: {load()}")
    cold: dict[int, list[float]] = {1: [], 2: []}
    warm: dict[int, list[float]] = {1: [], 2: []}
    per_run: dict[int, list[float]] = {1: [], 2: []}
    tables = {}
    with contextlib.ExitStack() as stack:
        clients = {}
        for n in (1, 2):
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"))
            clients[n] = stack.enter_context(distributed.Client(cluster))
        for r in range(args.rounds):  # interleaved, so that a change of load hits both alike
            for n in (1, 2):
                t0 = time.perf_counter()
                tables[n] = sweep(args.store, workers=n, **kw)
                cold[n].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                t = sweep(args.store, client=clients[n], **kw)
                warm[n].append(time.perf_counter() - t0)
                per_run[n].append(t["worker_seconds"].mean())
            print(f"  round {r + 1}: " + "; ".join(
                f"{n} worker{'s' if n > 1 else ''} cold {cold[n][-1]:.1f} s, warm {warm[n][-1]:.1f} s"
                for n in (1, 2)) + f" (load {load()})", flush=True)
    results = {n: (statistics.median(cold[n]), statistics.median(warm[n]),
                   statistics.median(per_run[n])) for n in (1, 2)}
    same = tables[1].drop(columns=list(TIMING_COLUMNS)).equals(tables[2].drop(columns=list(TIMING_COLUMNS)))
    print()
    print("| workers | cold wall-clock (s) | warm wall-clock (s) | runs/s (warm) | s per run on its worker |")
    print("|---:|---:|---:|---:|---:|")
    for n, (c, w, r) in results.items():
        print(f"| {n} | {c:.1f} | {w:.1f} | {runs / w:.2f} | {r:.2f} |")
    (c1, w1, _), (c2, w2, _) = results[1], results[2]
    print(f"| 2 vs 1 | {c1 / c2:.2f}x | {w1 / w2:.2f}x | | |")
    print(f"\nmedians of {args.rounds} rounds; tables of 1 and 2 workers identical (but for the "
          f"timings): {same}; load average after: {load()}")


if __name__ == "__main__":
    main()

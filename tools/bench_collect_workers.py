"""Collection throughput with Dask workers (issue 17): 1 vs 2 worker processes.

For each env, in one run: a plain ``replaystore.collect.collect`` in this process (the
baseline: one process, one store), then ``collect_sharded`` into a sharded dataset on a
``LocalCluster`` of 1 and of 2 worker processes, the same ``--tasks`` (so the same rows)
each time. The cluster is started before the clock starts (it is started once per worker
count and reused over the rounds); the row also shows the wall-clock of a whole
``replaystore collect --workers`` including starting and closing its cluster, once.
Rows/s are medians over ``--rounds``; the ratio is 2 workers over 1 worker.

    python3 tools/bench_collect_workers.py --steps 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", default="FrozenLake-v1,CartPole-v1")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import distributed

    from replaystore.collect import collect
    from replaystore.collect.distributed import collect_sharded

    base = tempfile.mkdtemp(prefix="bench-collect-")
    clusters = {}
    try:
        for w in (1, 2):
            cluster = distributed.LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                                               dashboard_address=":0")
            clusters[w] = (cluster, distributed.Client(cluster))
        print(f"machine: {os.cpu_count()} cores; steps {args.steps:,} per run, {args.tasks} tasks, "
              f"{args.rounds} rounds (medians)\n")
        print("| env | 1 process, plain collect rows/s | 1 worker rows/s | 2 workers rows/s | "
              "2 workers / 1 worker | 2 workers / plain | whole CLI run, 2 workers (s) |")
        print("|---|---|---|---|---|---|---|")
        for env in args.envs.split(","):
            times: dict[str, list[float]] = {"plain": [], "1": [], "2": []}
            for r in range(args.rounds):
                for key in ("plain", "1", "2"):
                    out = os.path.join(base, f"{env}-{key}-{r}.zarr")
                    if key == "plain":
                        t = _time(lambda out=out: collect(env, out, steps=args.steps, seed=r))
                    else:
                        client = clusters[int(key)][1]
                        t = _time(lambda out=out, client=client: collect_sharded(
                            env, out, steps=args.steps, tasks=args.tasks, client=client, seed=r))
                    times[key].append(t)
                    shutil.rmtree(out, ignore_errors=True)
            out = os.path.join(base, f"{env}-cli.zarr")
            import subprocess
            import sys

            cli = _time(lambda out=out: subprocess.run(
                [sys.executable, "-m", "replaystore", "collect", env, "--out", out, "--steps",
                 str(args.steps), "--workers", "2", "--tasks", str(args.tasks), "--no-progress"],
                check=True, capture_output=True))
            shutil.rmtree(out, ignore_errors=True)
            rate = {k: args.steps / statistics.median(v) for k, v in times.items()}
            print(f"| {env} | {rate['plain']:,.0f} | {rate['1']:,.0f} | {rate['2']:,.0f} | "
                  f"{rate['2'] / rate['1']:.2f}x | {rate['2'] / rate['plain']:.2f}x | {cli:.1f} |",
                  flush=True)
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Append throughput of a store (transitions/s) and its on-disk size per field.

Vector observations float32[8], Discrete(4) actions. For batches of 1, 64 and 4096 rows
(``append`` for 1, ``extend`` otherwise) it times appending N rows and closing the store,
side by side with writes of the same rows into preallocated numpy memmaps (one .npy per
field), and with the store committing after every batch (``flush()``).

    python tools/bench_append.py [--rows 1000000] [--codecs zstd:3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import replaystore as rs


def make_rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n + 1, 8), dtype=np.float32)
    return {"obs": obs[:-1], "action": rng.integers(0, 4, n), "reward": rng.standard_normal(n, dtype=np.float32),
            "next_obs": obs[1:], "terminated": rng.random(n) < 0.01, "truncated": np.zeros(n, bool)}


def bench_store(path: Path, data: dict, batch: int, codecs, commit: bool, fsync: bool = True) -> float:
    n = len(data["reward"])
    rs.create(path, gym.spaces.Box(-10, 10, (8,)), gym.spaces.Discrete(4), codecs=codecs).close()
    store = rs.open(path, "a", fsync=fsync)
    t = time.perf_counter()
    if batch == 1:
        cols = list(data)
        rows = [dict(zip(cols, vals, strict=True)) for vals in zip(*(data[c] for c in cols), strict=True)]
        t = time.perf_counter()
        for row in rows:
            store.append(**row)
            if commit:
                store.flush()
    else:
        for a in range(0, n, batch):
            store.extend({k: v[a : a + batch] for k, v in data.items()})
            if commit:
                store.flush()
    store.close()
    return n / (time.perf_counter() - t)


def bench_memmap(path: Path, data: dict, batch: int) -> float:
    n = len(data["reward"])
    path.mkdir()
    mms = {k: np.lib.format.open_memmap(path / f"{k}.npy", mode="w+", dtype=v.dtype, shape=v.shape)
           for k, v in data.items()}
    t = time.perf_counter()
    if batch == 1:
        for i in range(n):
            for k, m in mms.items():
                m[i] = data[k][i]
    else:
        for a in range(0, n, batch):
            for k, m in mms.items():
                m[a : a + batch] = data[k][a : a + batch]
    for m in mms.values():
        m.flush()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rows-single", type=int, default=100_000, help="rows for the 1-row case")
    ap.add_argument("--codecs", default=None)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rs-append-"))
    try:
        print(f"\n### append throughput (transitions/s, obs float32[8], codecs={args.codecs or 'none'}, "
              f"median of {args.reps})\n")
        print("| batch rows | rows | store (commit when the buffer fills) | commit every batch, fsync | "
              "commit every batch, no fsync | memmap .npy | store / memmap |")
        print("|---|---|---|---|---|---|---|")
        for batch in (1, 64, 4096):
            n = args.rows_single if batch == 1 else args.rows
            data = make_rows(n)
            res = {"store": [], "commit": [], "commit_nosync": [], "memmap": []}
            for r in range(args.reps):
                res["store"].append(bench_store(work / f"s{batch}_{r}", data, batch, args.codecs, False))
                if batch > 1 or r == 0:
                    m = min(n, 2000 * batch)  # 2000 commits: enough for a stable rate
                    sub = {k: v[:m] for k, v in data.items()}
                    res["commit"].append(bench_store(work / f"c{batch}_{r}", sub, batch, args.codecs, True))
                    res["commit_nosync"].append(
                        bench_store(work / f"d{batch}_{r}", sub, batch, args.codecs, True, fsync=False))
                    shutil.rmtree(work / f"d{batch}_{r}", ignore_errors=True)
                res["memmap"].append(bench_memmap(work / f"m{batch}_{r}", data, batch))
                shutil.rmtree(work / f"c{batch}_{r}", ignore_errors=True)
                shutil.rmtree(work / f"m{batch}_{r}", ignore_errors=True)
            med = {k: float(np.median(v)) for k, v in res.items()}
            print(f"| {batch} | {n:,} | {med['store']:,.0f} | {med['commit']:,.0f} | "
                  f"{med['commit_nosync']:,.0f} | {med['memmap']:,.0f} | {med['store'] / med['memmap']:.2f} |")
        path = work / "s4096_0"
        store = rs.open(path)
        sizes = store.nbytes_on_disk()
        print(f"\n### on-disk size per field ({args.rows:,} rows, codecs={args.codecs or 'none'})\n")
        print("| field | dtype | shape | chunk rows | bytes on disk | bytes per row |")
        print("|---|---|---|---|---|---|")
        for f in store.schema:
            print(f"| {f.name} | {f.dtype.name} | {f.shape} | {f.chunk_rows:,} | {sizes[f.name]:,} | "
                  f"{sizes[f.name] / len(store):.2f} |")
        print(f"| total | | | | {sum(sizes.values()):,} | {sum(sizes.values()) / len(store):.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Append throughput of a store (transitions/s) and its on-disk size per field.

Vector observations float32[8], Discrete(4) actions. For batches of 1, 64 and 4096 rows
(``append`` for 1, ``extend`` otherwise) it times appending N rows and closing the store,
side by side with writes of the same rows into preallocated numpy memmaps (one .npy per
field), and with the store committing after every batch (``flush()``).

Section ``peers`` (issue 13): one-row appends and ``extend`` of 4,096-row blocks, each into
a fresh (empty) ring of capacity = rows and into a FULL ring (pre-filled to capacity, untimed,
so every write overwrites), for replaystore (default durability: fsync on, the close that
commits is timed), TorchRL's ``ReplayBuffer(LazyMemmapStorage)`` (``rb.add(td)`` /
``rb.extend(td_block)``, TensorDict rows built before the timing, as the store's row dicts
are) and the numpy memmap write of the same rows (fresh .npy files / the same files again;
``flush()`` timed). TorchRL is optional (a benchmark reference only): "not installed"
when it does not import.

    python tools/bench_append.py [--rows 1000000] [--codecs zstd:3] [--sections batches,sizes,peers]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
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
        rows = store_rows(data)
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


def bench_memmap(path: Path, data: dict, batch: int, full: bool = False) -> float:
    """Rows/s writing ``data`` into one .npy memmap per field; ``full`` writes the files
    once first (untimed), so the timed pass overwrites, like a full ring."""
    n = len(data["reward"])
    path.mkdir()
    mms = {k: np.lib.format.open_memmap(path / f"{k}.npy", mode="w+", dtype=v.dtype, shape=v.shape)
           for k, v in data.items()}
    if full:
        for k, m in mms.items():
            m[:] = data[k]
            m.flush()
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


def store_rows(data: dict) -> list[dict]:
    cols = list(data)
    return [dict(zip(cols, vals, strict=True)) for vals in zip(*(data[c] for c in cols), strict=True)]


def bench_store_ring(path: Path, data: dict, batch: int, codecs, full: bool) -> float:
    """Rows/s writing ``data`` into a ring of capacity ``len(data)`` with the default
    durability (commit on close, fsync on), empty or pre-filled to capacity (untimed)."""
    n = len(data["reward"])
    store = rs.create(path, gym.spaces.Box(-10, 10, (8,)), gym.spaces.Discrete(4), capacity=n,
                      codecs=codecs)
    if full:
        store.extend(data)
        store.flush()
    rows = store_rows(data) if batch == 1 else None
    t = time.perf_counter()
    if rows is not None:
        for row in rows:
            store.append(**row)
    else:
        for a in range(0, n, batch):
            store.extend({k: v[a : a + batch] for k, v in data.items()})
    store.close()
    return n / (time.perf_counter() - t)


def torchrl_available() -> bool:
    try:
        import tensordict  # noqa: F401
        import torchrl  # noqa: F401
    except Exception:  # any import failure: the peer is just not available
        return False
    return True


def bench_torchrl(scratch: Path, data: dict, batch: int, full: bool) -> float:
    """Rows/s of ``rb.add(td)`` (batch 1) or ``rb.extend(block)`` into a TorchRL
    ``ReplayBuffer(LazyMemmapStorage(len(data)))``, empty or pre-filled (untimed)."""
    import torch
    from tensordict import TensorDict
    from torchrl.data import LazyMemmapStorage, ReplayBuffer

    logging.getLogger("torchrl").setLevel(logging.WARNING)  # no line per storage created
    n = len(data["reward"])
    scratch.mkdir()
    rb = ReplayBuffer(storage=LazyMemmapStorage(n, scratch_dir=scratch), batch_size=32)
    big = TensorDict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()},
                     batch_size=[n])
    if full:
        rb.extend(big)
    if batch == 1:
        rows = [big[i] for i in range(n)]
        t = time.perf_counter()
        for td in rows:
            rb.add(td)
    else:
        blocks = [big[a : a + batch] for a in range(0, n, batch)]
        t = time.perf_counter()
        for block in blocks:
            rb.extend(block)
    rate = n / (time.perf_counter() - t)
    del rb
    shutil.rmtree(scratch, ignore_errors=True)
    return rate


def section_peers(args: argparse.Namespace, work: Path) -> None:
    have_trl = torchrl_available()
    print(f"\n### append vs TorchRL LazyMemmapStorage and a numpy memmap (rows/s, obs float32[8], "
          f"codecs={args.codecs or 'none'}, median of {args.reps}; ring capacity = rows)\n")
    print("| write | into | rows | memmap .npy | replaystore (defaults) | TorchRL LazyMemmapStorage | "
          "replaystore / memmap | replaystore / TorchRL |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for batch in (1, 4096):
        n = args.rows_single if batch == 1 else args.rows
        data = make_rows(n)
        for full in (False, True):
            res: dict[str, list[float]] = {"memmap": [], "store": [], "torchrl": []}
            for r in range(args.reps):
                tag = f"p{batch}_{int(full)}_{r}"
                res["memmap"].append(bench_memmap(work / f"m{tag}", data, batch, full))
                shutil.rmtree(work / f"m{tag}", ignore_errors=True)
                res["store"].append(bench_store_ring(work / f"s{tag}", data, batch, args.codecs, full))
                shutil.rmtree(work / f"s{tag}", ignore_errors=True)
                if have_trl:
                    res["torchrl"].append(bench_torchrl(work / f"t{tag}", data, batch, full))
            med = {k: float(np.median(v)) if v else None for k, v in res.items()}
            print(f"batch {batch}, full={full}: " + ", ".join(
                f"{k} {' '.join(f'{x:,.0f}' for x in v)}" for k, v in res.items() if v),
                file=sys.stderr, flush=True)
            what = "one-row `append` / `rb.add(td)`" if batch == 1 else "`extend` of 4,096-row blocks"
            into = "full ring (overwrite)" if full else "fresh store"
            trl = f"{med['torchrl']:,.0f}" if med["torchrl"] else "not installed"
            vs_trl = f"{med['store'] / med['torchrl']:.2f}" if med["torchrl"] else "n/a"
            print(f"| {what} | {into} | {n:,} | {med['memmap']:,.0f} | {med['store']:,.0f} | {trl} | "
                  f"{med['store'] / med['memmap']:.2f} | {vs_trl} |", flush=True)


def section_batches(args: argparse.Namespace, work: Path) -> None:
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
            if not (batch == 4096 and r == 0):  # s4096_0 is kept for the sizes table
                shutil.rmtree(work / f"s{batch}_{r}", ignore_errors=True)
        med = {k: float(np.median(v)) for k, v in res.items()}
        print(f"| {batch} | {n:,} | {med['store']:,.0f} | {med['commit']:,.0f} | "
              f"{med['commit_nosync']:,.0f} | {med['memmap']:,.0f} | {med['store'] / med['memmap']:.2f} |",
              flush=True)


def section_sizes(args: argparse.Namespace, work: Path) -> None:
    path = work / "s4096_0"
    if not path.exists():  # the batches section did not run: write the store now
        bench_store(path, make_rows(args.rows), 4096, args.codecs, False)
    store = rs.open(path)
    sizes = store.nbytes_on_disk()
    print(f"\n### on-disk size per field ({args.rows:,} rows, codecs={args.codecs or 'none'})\n")
    print("| field | dtype | shape | chunk rows | bytes on disk | bytes per row |")
    print("|---|---|---|---|---|---|")
    for f in store.schema:
        print(f"| {f.name} | {f.dtype.name} | {f.shape} | {f.chunk_rows:,} | {sizes[f.name]:,} | "
              f"{sizes[f.name] / len(store):.2f} |")
    print(f"| total | | | | {sum(sizes.values()):,} | {sum(sizes.values()) / len(store):.2f} |")
    store.close()


SECTIONS = {"batches": section_batches, "sizes": section_sizes, "peers": section_peers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rows-single", type=int, default=100_000, help="rows for the 1-row case")
    ap.add_argument("--codecs", default=None)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma list of {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch.set_num_threads for TorchRL (default 1: one thread, like the other "
                         "writers; 0 keeps torch's default, which on 2 busy cores makes TorchRL's "
                         "writes into a fresh storage vary 20x between runs)")
    args = ap.parse_args()
    if args.torch_threads > 0 and torchrl_available():
        import torch

        torch.set_num_threads(args.torch_threads)
    sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    bad = [x for x in sections if x not in SECTIONS]
    if bad:
        ap.error(f"--sections: unknown {bad}; choose from {list(SECTIONS)}")
    work = Path(tempfile.mkdtemp(prefix="rs-append-"))
    try:
        for name in sections:
            SECTIONS[name](args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

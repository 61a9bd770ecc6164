"""Sampling throughput and memory of replaystore against numpy memmaps and plain zarr.

Every case runs in its own subprocess (so peak anonymous memory is that case's own) and
draws the very same row indices from the same data for the store and for its baselines:

* the baseline ``memmap`` gathers the same fields from one ``np.load(mmap_mode="r")``
  ``.npy`` file per field (``np.take`` on the mapped array, the fastest way we found);
* ``zarr`` is zarr-python's own orthogonal indexing on the store's arrays (a few
  batches only: it is three orders of magnitude slower).

Usage::

    python tools/bench_sample.py                    # full run (needs ~20 GB disk, ~15 min)
    python tools/bench_sample.py --quick            # small sizes, a minute or two
    python tools/bench_sample.py --cold             # also page-cache-dropped cases (root)
    python tools/bench_sample.py --sections sequence --sizes 1000000,10000000  # sequences only
    python tools/bench_sample.py --sections nstep --sizes 1000000   # n-step (n=3) vs uniform
    python tools/bench_sample.py --sections weighted --sizes 1000000,50000000  # weighted vs uniform
    python tools/bench_sample.py --sections per --sizes 4000000     # PER vs uniform, TorchRL, cpprb
    python tools/bench_sample.py --sections framestack   # frame_stack=4 (images) vs pre-stacked memmap

Results print as markdown tables and are saved as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import replaystore as rs  # noqa: E402

VEC_FIELDS = ["obs", "action", "reward", "next_obs", "terminated", "truncated", "episode", "step", "priority"]
IMG_FIELDS = ["obs", "action", "reward", "next_obs", "terminated", "truncated", "episode", "step", "priority"]


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def _spaces(kind: str):
    import gymnasium as gym

    if kind == "vec":
        return gym.spaces.Box(-10, 10, (8,), np.float32), gym.spaces.Discrete(4)
    return gym.spaces.Box(0, 255, (84, 84), np.uint8), gym.spaces.Discrete(6)


def build(workdir: Path, kind: str, rows: int, codecs: str | None = None) -> Path:
    """Create (once) a store of ``rows`` synthetic transitions and .npy copies of its fields."""
    tag = f"{kind}_{rows}" + (f"_{codecs.replace(':', '')}" if codecs else "")
    path = workdir / f"{tag}.zarr"
    npy = workdir / f"{tag}.npy"
    done = workdir / f"{tag}.done"
    if done.exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(npy, ignore_errors=True)
    obs_space, act_space = _spaces(kind)
    store = rs.create(path, obs_space, act_space, extra_fields=[("priority", "float32")],
                      codecs=codecs)
    rng = np.random.default_rng(12345)
    block = 1 << 18 if kind == "vec" else 1 << 12
    n_act = act_space.n
    t0 = time.perf_counter()
    for a in range(0, rows, block):
        n = min(block, rows - a)
        if kind == "vec":
            obs = rng.standard_normal((n + 1, 8), dtype=np.float32)
        else:
            obs = rng.integers(0, 256, (n + 1, 84, 84), dtype=np.uint8)
        # 1000:10:1-style imbalance in the action, so balanced sampling has work to do
        action = rng.choice(n_act, size=n, p=_imbalanced(n_act))
        store.extend({
            "obs": obs[:-1], "next_obs": obs[1:], "action": action,
            "reward": rng.standard_normal(n, dtype=np.float32),
            "terminated": rng.random(n) < 0.005, "truncated": rng.random(n) < 0.001,
            "priority": rng.random(n, dtype=np.float32),
        })
    store.close()
    build_s = time.perf_counter() - t0
    store = rs.open(path)
    npy.mkdir()
    for f in store.schema.names:
        fld = store.schema[f]
        mm = np.lib.format.open_memmap(npy / f"{f}.npy", mode="w+", dtype=fld.dtype, shape=(rows, *fld.shape))
        for a in range(0, rows, 1 << 20):
            b = min(rows, a + (1 << 20))
            mm[a:b] = store.read_range(a, b, fields=[f])[f]
        mm.flush()
        del mm
    store.close()
    done.write_text(json.dumps({"rows": rows, "build_seconds": build_s}))
    return path


def _imbalanced(k: int) -> np.ndarray:
    w = np.array([1000.0, 10.0, 1.0] + [100.0] * (k - 3))
    return w / w.sum()


def disk_bytes(path: Path) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(d, f))
            total += min(st.st_size, st.st_blocks * 512)
    return total


# --------------------------------------------------------------------------------------
# one measurement (runs in a subprocess)
# --------------------------------------------------------------------------------------
def rss_anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def warm_up(root: Path) -> None:
    """Read every file under ``root`` once, so the case starts with a warm page cache."""
    for d, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                while f.read(1 << 24):
                    pass


def drop_pages(root: Path) -> None:
    """Evict ``root``'s files from the page cache (``POSIX_FADV_DONTNEED``; no root needed)."""
    for d, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(d, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm_through_store(store) -> None:
    """Bring every field into the page cache the way the store reads it: through its
    mappings, so the kernel reads (and, with 2 MiB pages, maps) large folios."""
    n = len(store)
    for f in store.schema:
        view = store.mapped_view(f.name) if hasattr(store, "mapped_view") else (
            store._view(f) if store._mapped(f) else None)  # (the pre-refactor API, for A/B runs)
        if view is not None:
            a = view.array[:n]
            flat = a.reshape(len(a), -1).view(np.uint8).reshape(-1) if a.size else a
            int(flat[::4096].sum()) if flat.size else None
        else:
            for lo in range(0, n, 1 << 20):
                store.read_range(lo, min(n, lo + (1 << 20)), fields=[f.name])


def worker(spec: dict) -> dict:
    path = Path(spec["path"])
    warm_store = spec.get("warm", True) and spec["reader"] == "store"
    if warm_store:
        drop_pages(path)  # then warmed through the store's own mappings, below
    elif spec.get("warm", True) and spec["reader"] != "stacked":  # (stacked: warms its own files)
        warm_up(path.with_suffix(".npy") if spec["reader"] == "memmap" else path)
    batch, nb, reps = spec["batch"], spec["batches"], spec["reps"]
    per_batch = batch * spec.get("length", 1)  # rows in a batch (a sequence batch: windows x length)
    t_index = 0.0
    reader, sampler_kind = spec["reader"], spec["sampler"]
    store = rs.open(path, cache_bytes=spec.get("cache_bytes", 256 * 2**20))
    if warm_store:
        warm_through_store(store)
    fields = list(store.schema.names)
    n = len(store)
    if spec.get("random_advice"):
        store.advise_random(True)
    kw = dict(batch_size=batch, seed=spec.get("seed", 0))
    if spec.get("n_step"):
        kw.update(n_step=spec["n_step"], gamma=0.99)
    if spec.get("frame_stack") and reader == "store":
        kw.update(frame_stack=spec["frame_stack"])
    if sampler_kind == "uniform":
        sampler = rs.UniformSampler(store, **kw)
    elif sampler_kind == "epoch":
        sampler = rs.UniformSampler(store, replacement=False, **kw)
    elif sampler_kind == "balanced":
        sampler = rs.BalancedSampler(store, by="action", **kw)
    elif sampler_kind == "weighted":
        t_index = time.perf_counter()
        sampler = rs.WeightedSampler(store, weights="priority", **kw)  # (builds its block tree)
        t_index = time.perf_counter() - t_index
    elif sampler_kind == "sequence":
        t_index = time.perf_counter()
        sampler = rs.SequenceSampler(store, length=spec["length"], **kw)
        sampler.sample_indices()  # (builds the episode index)
        t_index = time.perf_counter() - t_index
    else:
        raise ValueError(sampler_kind)
    total_batches = nb * reps + spec.get("warmup", 20)
    peak = rss_anon_kb()
    if reader != "store":
        # the baselines read exactly the indices the sampler would have drawn
        idx = [sampler.sample_indices() for _ in range(total_batches)]
        store.close()
        del sampler
        peak = rss_anon_kb()
    if reader == "memmap":
        npy = path.with_suffix(".npy")
        mm = {f: np.load(npy / f"{f}.npy", mmap_mode="r") for f in fields}
        if spec.get("random_advice"):
            import mmap as _mmap
            for m in mm.values():
                m._mmap.madvise(_mmap.MADV_RANDOM)
        arrs = {f: np.asarray(m) for f, m in mm.items()}

        def one(i):
            return {f: np.take(a, idx[i], axis=0) for f, a in arrs.items()}
    elif reader == "stacked":  # pre-stacked frames (what FrameStackObservation at collection stores)
        npy = path.with_suffix(".npy")
        k = spec["frame_stack"]
        files = {f: npy / (f"{f}{k}.npy" if f in ("obs", "next_obs") else f"{f}.npy") for f in fields}
        for file in files.values() if spec.get("warm", True) else ():
            with open(file, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        arrs = {f: np.asarray(np.load(file, mmap_mode="r")) for f, file in files.items()}
        for a in arrs.values() if spec.get("warm", True) else ():  # (and mapped, as the store's are)
            flat = a.reshape(-1).view(np.uint8)
            int(flat[::4096].sum())

        def one(i):
            return {f: np.take(a, idx[i], axis=0) for f, a in arrs.items()}
    elif reader == "zarr":
        import zarr

        g = zarr.open_group(str(path), mode="r")
        arrs = {f: g[f] for f in fields}

        def one(i):
            return {f: a.get_orthogonal_selection((idx[i],)) for f, a in arrs.items()}
    elif reader == "store":
        prefetch = spec.get("prefetch", 0)
        it = sampler.iter(None, prefetch=prefetch) if prefetch else None

        def one(i):
            return next(it) if it is not None else sampler.sample()
    else:
        raise ValueError(reader)
    warm = spec.get("warmup", 20)
    for i in range(warm):
        one(i)
    rates = []
    i = warm
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(nb):
            one(i)
            i += 1
        rates.append(nb * per_batch / (time.perf_counter() - t))
        peak = max(peak, rss_anon_kb())
    return {"rows_per_s": float(np.median(rates)), "all": rates, "rss_anon_mb": peak / 1024, "rows": n,
            "index_seconds": t_index}


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------
def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def run(spec: dict, cgroup_mb: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    if cgroup_mb:
        cg = Path("/sys/fs/cgroup/memory/replaystore-bench")
        cg.mkdir(exist_ok=True)
        (cg / "memory.limit_in_bytes").write_text(str(cgroup_mb * 2**20))
        proc = subprocess.Popen(
            ["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec \"$@\"", "sh", *cmd],
            stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate()
    else:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(title: str, rows: list[dict], cols: list[str]) -> str:
    lines = [f"\n### {title}\n", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        if v >= 1e6:
            return f"{v / 1e6:.2f}M"
        if v >= 1e4:
            return f"{v / 1e3:.0f}k"
        if v >= 100:
            return f"{v:.0f}"
        return f"{v:.2f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default="/tmp/replaystore-bench")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--rows", type=int, default=4_000_000, help="vector store rows for the main table")
    ap.add_argument("--sizes", default="1000000,10000000,50000000", help="rows for the scaling table")
    ap.add_argument("--image-rows", type=int, default=200_000)
    ap.add_argument("--cold", action="store_true", help="page-cache-dropped and memory-limited cases (root)")
    ap.add_argument("--cgroup-mb", type=int, default=512, help="memory limit of the memory-limited case")
    ap.add_argument("--json", default=None, help="write all results here")
    ap.add_argument("--rounds", type=int, default=3,
                    help="main table: store and memmap alternate this many times (medians shown)")
    ap.add_argument("--peer-python", default="/tmp/benchvenv/bin/python",
                    help="a python with torchrl and cpprb for the PER peers (skipped if missing)")
    ap.add_argument("--sections", default="main,scaling,compressed,cold,sequence,nstep",
                    help="comma-separated subset of main,scaling,compressed,cold,sequence,nstep,framestack")
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(per_worker(spec) if spec.get("task") == "per" else worker(spec)))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.rows, args.sizes, args.image_rows = 400_000, "200000,1000000", 20_000
        args.rounds = 1
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: dict = {"machine": f"{os.cpu_count()} cores", "time": time.strftime("%Y-%m-%d %H:%M")}
    out = []

    sections = set(args.sections.split(","))
    if "cold" in sections:
        args.cold = True
    # 1. vector and image: every sampler against memmap and zarr on the same indices
    for kind, rows, batch, nb in (("vec", args.rows, 256, 400), ("img", args.image_rows, 32, 400)):
        if "main" not in sections:
            break
        path = build(work, kind, rows)
        main_rows = []
        for sampler in ("uniform", "balanced", "weighted", "epoch"):
            base = dict(path=str(path), batch=batch, batches=nb, reps=7, sampler=sampler)
            # store and memmap take turns, --rounds times; the table shows medians (this
            # host's throughput drifts by tens of percent between runs a minute apart)
            r_store, r_mm = [], []
            for _ in range(args.rounds):
                r_store.append(run({**base, "reader": "store"}))
                r_mm.append(run({**base, "reader": "memmap"}))
            r_z = run({**base, "reader": "zarr", "batches": 2, "reps": 3, "warmup": 1})
            st = [r["rows_per_s"] for r in r_store]
            mm = [r["rows_per_s"] for r in r_mm]
            main_rows.append({
                "sampler": sampler, "store rows/s": float(np.median(st)),
                "memmap rows/s": float(np.median(mm)), "zarr-python rows/s": r_z["rows_per_s"],
                "store / memmap": float(np.median(st)) / float(np.median(mm)),
                "store range": f"{min(st) / 1e6:.2f}–{max(st) / 1e6:.2f}M",
                "memmap range": f"{min(mm) / 1e6:.2f}–{max(mm) / 1e6:.2f}M",
                "store RssAnon MB": max(r["rss_anon_mb"] for r in r_store),
                "memmap RssAnon MB": max(r["rss_anon_mb"] for r in r_mm),
            })
        uni = main_rows[0]["store rows/s"]
        for r in main_rows:
            r["vs uniform"] = r["store rows/s"] / uni
        results[f"{kind}_main"] = main_rows
        what = "obs float32[8]" if kind == "vec" else "obs uint8[84,84]"
        out.append(table(
            f"{kind}: {rows:,} rows, {what}, batch {batch}, all {len(VEC_FIELDS)} fields, warm page cache "
            f"(store {disk_bytes(path) / 2**20:.0f} MiB on disk)",
            main_rows,
            ["sampler", "store rows/s", "memmap rows/s", "store / memmap", "vs uniform",
             "store range", "memmap range", "zarr-python rows/s", "store RssAnon MB",
             "memmap RssAnon MB"]))
        print(out[-1], flush=True)

    # 2. scaling with store size (vector, uniform)
    scale_rows = []
    for rows in sizes if "scaling" in sections else []:
        path = build(work, "vec", rows)
        base = dict(path=str(path), batch=256, batches=400, reps=7, sampler="uniform")
        r_store = run({**base, "reader": "store"})
        r_mm = run({**base, "reader": "memmap"})
        scale_rows.append({"rows": f"{rows:,}", "store GiB": disk_bytes(path) / 2**30,
                           "store rows/s": r_store["rows_per_s"], "memmap rows/s": r_mm["rows_per_s"],
                           "store / memmap": r_store["rows_per_s"] / r_mm["rows_per_s"],
                           "store RssAnon MB": r_store["rss_anon_mb"]})
    for r in scale_rows:
        r[f"vs {sizes[0]:,} rows"] = r["store rows/s"] / scale_rows[0]["store rows/s"]
    results["scaling"] = scale_rows
    if scale_rows:
        out.append(table("uniform sampling vs store size (vector, batch 256, warm cache)", scale_rows,
                         ["rows", "store GiB", "store rows/s", "memmap rows/s", "store / memmap",
                          f"vs {sizes[0]:,} rows", "store RssAnon MB"]))
        print(out[-1], flush=True)

    # 3. sequences: SequenceSampler (16 windows of 64 rows) against uniform (1024 rows)
    if "sequence" in sections:
        _sequence(work, args, sizes, out, results)
    # 3b. n-step returns: UniformSampler(n_step=3) against UniformSampler
    if "nstep" in sections:
        _nstep(work, args, sizes, out, results)
    # 3e. weighted: WeightedSampler against UniformSampler as the store grows
    if "weighted" in sections:
        _weighted(work, args, sizes, out, results)
    # 3c. frame stacks: UniformSampler(frame_stack=4) against pre-stacked frames and uniform
    if "framestack" in sections:
        _framestack(work, args, out, results)
    # 3d. prioritized replay: sample + priority update, against uniform and TorchRL / cpprb
    if "per" in sections:
        _per(work, args, sizes, out, results)
    # 4. compressed store: what compression costs at sampling time
    if "compressed" in sections:
        _compressed(work, args, out, results)
    # 5. cold page cache and memory-limited process
    if args.cold:
        _cold(work, args, sizes, out, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print("\n".join(out))


def _compressed(work, args, out, results):
    path = build(work, "vec", min(args.rows, 1_000_000), codecs="zstd:3")
    plain = build(work, "vec", min(args.rows, 1_000_000))
    base = dict(batch=256, batches=100, reps=5, sampler="uniform", reader="store")
    comp = [
        {"layout": "uncompressed (default)", **_pick(run({**base, "path": str(plain)})),
         "MiB on disk": disk_bytes(plain) / 2**20},
        {"layout": "zstd:3, 256 MiB chunk cache (whole store fits)", **_pick(run({**base, "path": str(path)})),
         "MiB on disk": disk_bytes(path) / 2**20},
        {"layout": "zstd:3, 16 MiB chunk cache (most reads decode a chunk)",
         **_pick(run({**base, "path": str(path), "cache_bytes": 16 * 2**20, "batches": 20})),
         "MiB on disk": disk_bytes(path) / 2**20},
    ]
    results["compressed"] = comp
    out.append(table(f"compression at sampling time ({min(args.rows, 1_000_000):,} rows, vector, uniform)",
                     comp, ["layout", "rows/s", "RssAnon MB", "MiB on disk"]))
    print(out[-1], flush=True)
    return comp


def _sequence(work, args, sizes, out, results):
    """Rows/s of 16 windows of 64 rows against uniform batches of 1024 rows, same store
    (synthetic episodes: a row ends one with probability 0.006, ~166 rows long); the two
    take turns ``--rounds`` times (medians shown)."""
    seq_rows = []
    for rows in sizes:
        path = build(work, "vec", rows)
        base = dict(path=str(path), batches=200, reps=7, reader="store")
        r_u, r_s = [], []
        for _ in range(args.rounds):
            r_u.append(run({**base, "sampler": "uniform", "batch": 1024}))
            r_s.append(run({**base, "sampler": "sequence", "batch": 16, "length": 64}))
        u = float(np.median([r["rows_per_s"] for r in r_u]))
        q = float(np.median([r["rows_per_s"] for r in r_s]))
        ratios = [b["rows_per_s"] / a["rows_per_s"] for a, b in zip(r_u, r_s, strict=True)]
        seq_rows.append({"rows": f"{rows:,}", "uniform rows/s (batch 1024)": u,
                         "sequence rows/s (16 x 64)": q, "sequence / uniform": q / u,
                         "ratio range": f"{min(ratios):.2f}–{max(ratios):.2f}",
                         "episode index build s": float(np.median([r["index_seconds"] for r in r_s])),
                         "sequence RssAnon MB": max(r["rss_anon_mb"] for r in r_s)})
    results["sequence"] = seq_rows
    out.append(table("sequences: SequenceSampler length 64, batch 16, vs uniform batch 1024 (vector, warm cache)",
                     seq_rows, ["rows", "uniform rows/s (batch 1024)", "sequence rows/s (16 x 64)",
                                "sequence / uniform", "ratio range", "episode index build s",
                                "sequence RssAnon MB"]))
    print(out[-1], flush=True)
    return seq_rows


def _nstep(work, args, sizes, out, results):
    """Rows/s of UniformSampler(n_step=3, gamma=0.99) against UniformSampler, batch 256
    (and 1024: the per-batch cost of the window spread over more rows), same store
    (synthetic episodes ~166 rows long, one env: windows are adjacent rows); the two take
    turns ``--rounds`` times (medians shown)."""
    rows_out = []
    for rows in sizes:
        path = build(work, "vec", rows)
        for batch in (256, 1024):
            base = dict(path=str(path), batch=batch, batches=400 * 256 // batch, reps=7, reader="store",
                        sampler="uniform")
            r_u, r_n = [], []
            for _ in range(args.rounds):
                r_u.append(run(base))
                r_n.append(run({**base, "n_step": 3}))
            u = float(np.median([r["rows_per_s"] for r in r_u]))
            q = float(np.median([r["rows_per_s"] for r in r_n]))
            ratios = [b["rows_per_s"] / a["rows_per_s"] for a, b in zip(r_u, r_n, strict=True)]
            rows_out.append({"rows": f"{rows:,}", "batch": batch, "uniform rows/s": u, "n-step (n=3) rows/s": q,
                             "n-step / uniform": q / u, "ratio range": f"{min(ratios):.2f}–{max(ratios):.2f}",
                             "n-step RssAnon MB": max(r["rss_anon_mb"] for r in r_n)})
    results["nstep"] = rows_out
    out.append(table("n-step returns: UniformSampler(n_step=3, gamma=0.99) vs UniformSampler, all fields "
                     "(vector, warm cache)", rows_out,
                     ["rows", "batch", "uniform rows/s", "n-step (n=3) rows/s", "n-step / uniform", "ratio range",
                      "n-step RssAnon MB"]))
    print(out[-1], flush=True)
    return rows_out


def prestack(path: Path, k: int) -> None:
    """Write ``obs{k}.npy``/``next_obs{k}.npy`` next to the store's .npy copies: every row's
    last ``k`` frames of its episode (the first frame repeated), computed here from
    ``step`` alone (one env, no ring: an episode's rows are consecutive)."""
    npy = path.with_suffix(".npy")
    done = npy / f"stacked{k}.done"
    if done.exists():
        return
    obs = np.load(npy / "obs.npy", mmap_mode="r")
    nxt = np.load(npy / "next_obs.npy", mmap_mode="r")
    step = np.load(npy / "step.npy")
    n = len(obs)
    o4 = np.lib.format.open_memmap(npy / f"obs{k}.npy", mode="w+", dtype=obs.dtype, shape=(n, k, *obs.shape[1:]))
    n4 = np.lib.format.open_memmap(npy / f"next_obs{k}.npy", mode="w+", dtype=obs.dtype,
                                   shape=(n, k, *obs.shape[1:]))
    for a in range(0, n, 4096):
        t = np.arange(a, min(n, a + 4096))
        for j in range(k):
            back = k - 1 - j
            o4[t, j] = obs[t - np.minimum(back, step[t])]
            if j < k - 1:
                n4[t, j] = obs[t - np.minimum(back - 1, step[t])]
        n4[t, k - 1] = nxt[t]
    o4.flush()
    n4.flush()
    del o4, n4
    done.write_text("ok")


def _framestack(work, args, out, results):
    """Rows/s of UniformSampler(frame_stack=4) on the image store against a numpy memmap of
    pre-stacked frames (obs and next_obs ``(rows, 4, 84, 84)``: what collecting through
    ``FrameStackObservation(4)`` stores, 4x the bytes) on the same indices, and against
    plain uniform sampling; all fields, batch 32; the cases take turns ``--rounds`` times."""
    rows_out = []
    for rows in [args.image_rows]:
        path = build(work, "img", rows)
        prestack(path, 4)
        base = dict(path=str(path), batch=32, batches=400, reps=7, sampler="uniform")
        r_u, r_f, r_m = [], [], []
        for _ in range(args.rounds):
            r_u.append(run({**base, "reader": "store"}))
            r_f.append(run({**base, "reader": "store", "frame_stack": 4}))
            r_m.append(run({**base, "reader": "stacked", "frame_stack": 4}))
        u, f, m = (float(np.median([r["rows_per_s"] for r in rs_])) for rs_ in (r_u, r_f, r_m))
        npy = path.with_suffix(".npy")
        rows_out.append({
            "rows": f"{rows:,}", "uniform rows/s": u, "frame_stack=4 rows/s": f, "pre-stacked memmap rows/s": m,
            "frame_stack / uniform": f / u, "frame_stack / pre-stacked": f / m,
            "ratio range (vs uniform)": "{:.2f}–{:.2f}".format(
                *(lambda x: (min(x), max(x)))([b["rows_per_s"] / a["rows_per_s"] for a, b in zip(r_u, r_f, strict=True)])),
            "pre-stacked range": "{:.0f}k–{:.0f}k".format(*(lambda x: (min(x) / 1e3, max(x) / 1e3))(
                [r["rows_per_s"] for r in r_m])),
            "store GiB": disk_bytes(path) / 2**30,
            "pre-stacked obs+next_obs GiB": sum(os.path.getsize(npy / f"{x}4.npy") for x in ("obs", "next_obs")) / 2**30,
            "frame_stack RssAnon MB": max(r["rss_anon_mb"] for r in r_f)})
    results["framestack"] = rows_out
    out.append(table("frame stacks: UniformSampler(frame_stack=4) vs pre-stacked memmap and uniform "
                     "(images uint8[84,84], batch 32, all fields, warm cache)", rows_out, list(rows_out[0])))
    print(out[-1], flush=True)
    return rows_out


def _weighted(work, args, sizes, out, results):
    """Rows/s of WeightedSampler(weights="priority") against UniformSampler, batch 256, all
    fields, same store (priority uniform in [0, 1)); the two take turns ``--rounds`` times
    (medians shown). Also the time to build the sampler's block tree (reading the whole
    field) and the weighted processes' peak anonymous memory."""
    rows_out = []
    for rows in sizes:
        path = build(work, "vec", rows)
        base = dict(path=str(path), batch=256, batches=400, reps=7, reader="store")
        r_u, r_w = [], []
        for _ in range(args.rounds):
            r_u.append(run({**base, "sampler": "uniform"}))
            r_w.append(run({**base, "sampler": "weighted"}))
        u = float(np.median([r["rows_per_s"] for r in r_u]))
        w = float(np.median([r["rows_per_s"] for r in r_w]))
        ratios = [b["rows_per_s"] / a["rows_per_s"] for a, b in zip(r_u, r_w, strict=True)]
        rows_out.append({"rows": f"{rows:,}", "uniform rows/s": u, "weighted rows/s": w,
                         "weighted / uniform": w / u, "ratio range": f"{min(ratios):.2f}–{max(ratios):.2f}",
                         "tree build s": float(np.median([r["index_seconds"] for r in r_w])),
                         "uniform RssAnon MB": max(r["rss_anon_mb"] for r in r_u),
                         "weighted RssAnon MB": max(r["rss_anon_mb"] for r in r_w)})
    for r in rows_out:
        r[f"weighted vs {sizes[0]:,} rows"] = r["weighted rows/s"] / rows_out[0]["weighted rows/s"]
    results["weighted"] = rows_out
    out.append(table("weighted: WeightedSampler(weights='priority') vs UniformSampler, batch 256, all fields "
                     "(vector, warm cache)", rows_out,
                     ["rows", "uniform rows/s", "weighted rows/s", "weighted / uniform", "ratio range",
                      f"weighted vs {sizes[0]:,} rows", "tree build s", "uniform RssAnon MB",
                      "weighted RssAnon MB"]))
    print(out[-1], flush=True)
    return rows_out


def _cold(work, args, sizes, out, results):
    if True:
        big = build(work, "vec", sizes[-1])
        cold_rows = []
        base = dict(path=str(big), batch=256, batches=40, reps=5, sampler="uniform", warmup=2, warm=False)
        cases = [
            ("memmap, MADV_RANDOM", {"reader": "memmap", "random_advice": True}, None),
            ("memmap, default advice", {"reader": "memmap"}, None),
            ("store, readahead on, prefetch 2", {"reader": "store", "prefetch": 2}, None),
            ("store, MADV_RANDOM, readahead, prefetch 2",
             {"reader": "store", "prefetch": 2, "random_advice": True}, None),
            (f"memmap, MADV_RANDOM, cgroup {args.cgroup_mb} MB",
             {"reader": "memmap", "random_advice": True}, args.cgroup_mb),
            (f"store, prefetch 2, cgroup {args.cgroup_mb} MB", {"reader": "store", "prefetch": 2},
             args.cgroup_mb),
            (f"store, no prefetch, cgroup {args.cgroup_mb} MB", {"reader": "store"}, args.cgroup_mb),
        ]
        for name, extra, cg in cases:
            if not drop_caches():
                print("cannot drop the page cache (needs root); skipping cold cases")
                break
            r = run({**base, **extra}, cgroup_mb=cg)
            cold_rows.append({"case": name, **_pick(r)})
        results["cold"] = cold_rows
        out.append(table(f"cold page cache ({sizes[-1]:,} rows, {disk_bytes(big) / 2**30:.1f} GiB, "
                         "caches dropped before each case)", cold_rows, ["case", "rows/s", "RssAnon MB"]))
        print(out[-1], flush=True)


def _pick(r: dict) -> dict:
    return {"rows/s": r["rows_per_s"], "RssAnon MB": r["rss_anon_mb"]}


# --------------------------------------------------------------------------------------
# prioritized replay
# --------------------------------------------------------------------------------------
PER_FIELDS = ["obs", "action", "reward", "next_obs", "terminated", "truncated"]


def per_worker(spec: dict) -> dict:
    """One process: ``reps`` rounds of ``batches`` batches of 256, each a sample then a
    priority update with fresh |TD errors|; for replaystore, uniform batches of the same
    fields from the same store take turns with the prioritized ones."""
    rng = np.random.default_rng(0)
    batch, nb, reps, lib = spec["batch"], spec["batches"], spec["reps"], spec["lib"]
    npy = Path(spec["npy"])
    if lib == "replaystore":
        store = rs.open(spec["path"], "a")
        uni = rs.UniformSampler(store, batch, seed=0, fields=PER_FIELDS)
        per = rs.PrioritizedSampler(store, batch, alpha=0.6, beta=0.4, seed=0, fields=PER_FIELDS)

        def step():
            b = per.sample()
            per.update_priorities(b["index"], rng.random(batch) + 1e-6)

        def uniform():
            uni.sample()
    else:
        data = {f: np.load(npy / f"{f}.npy", mmap_mode="r") for f in PER_FIELDS}
        n = len(data["reward"])
        if lib == "torchrl":
            import torch
            from tensordict import TensorDict
            from torchrl.data import LazyMemmapStorage, PrioritizedReplayBuffer

            torch.set_num_threads(1)
            rb = PrioritizedReplayBuffer(alpha=0.6, beta=0.4, storage=LazyMemmapStorage(
                n, scratch_dir=spec["scratch"]), batch_size=batch)
            for a in range(0, n, 1 << 20):
                b_ = min(n, a + (1 << 20))
                rb.extend(TensorDict({f: torch.from_numpy(np.ascontiguousarray(v[a:b_])) for f, v in data.items()},
                                     batch_size=[b_ - a]))

            def step():
                _, info = rb.sample(return_info=True)
                rb.update_priority(info["index"], torch.from_numpy(rng.random(batch) + 1e-6).float())
        elif lib == "cpprb":
            import cpprb

            env_dict = {"obs": {"shape": 8, "dtype": np.float32}, "next_obs": {"shape": 8, "dtype": np.float32},
                        "action": {"dtype": np.int64}, "reward": {"dtype": np.float32},
                        "terminated": {"dtype": np.bool_}, "truncated": {"dtype": np.bool_}}
            rb = cpprb.PrioritizedReplayBuffer(n, env_dict, alpha=0.6)
            for a in range(0, n, 1 << 20):
                b_ = min(n, a + (1 << 20))
                rb.add(**{f: np.asarray(v[a:b_]) for f, v in data.items()})

            def step():
                s_ = rb.sample(batch, beta=0.4)
                rb.update_priorities(s_["indexes"], rng.random(batch) + 1e-6)
        else:
            raise ValueError(lib)
        uniform = None
    for _ in range(20):
        step()
        if uniform:
            uniform()
    r_per, r_uni = [], []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(nb):
            step()
        r_per.append(nb * batch / (time.perf_counter() - t))
        if uniform:
            t = time.perf_counter()
            for _ in range(nb):
                uniform()
            r_uni.append(nb * batch / (time.perf_counter() - t))
    out = {"per": float(np.median(r_per)), "rss_anon_mb": rss_anon_kb() / 1024}
    if r_uni:
        out["uniform"] = float(np.median(r_uni))
        out["ratios"] = [p / u for p, u in zip(r_per, r_uni, strict=True)]
    return out


def _run_with(python: str, spec: dict) -> dict:
    cmd = [python, __file__, "--worker", json.dumps(spec)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _per(work, args, sizes, out, results):
    """PrioritizedSampler (alpha 0.6, beta 0.4, batch 256, sample + update_priorities) against
    UniformSampler on the same store in the same process (both reading the six transition
    fields), and TorchRL's PrioritizedReplayBuffer(LazyMemmapStorage) and cpprb's
    PrioritizedReplayBuffer holding the same rows, each in its own process."""
    rows_out = []
    peers = os.path.exists(args.peer_python)
    for rows in sizes:
        src = build(work, "vec", rows)
        path = work / f"per_{rows}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(src, path)  # (the sampler writes its _priority array into the copy)
        subprocess.run(["sync"], check=False)  # (the copy's pages written back, then read warm)
        warm_up(path)
        base = dict(task="per", path=str(path), npy=str(src.with_suffix(".npy")), batch=256,
                    batches=200, reps=7, scratch=str(work / "torchrl-scratch"))
        mine = [_run_with(sys.executable, {**base, "lib": "replaystore"}) for _ in range(args.rounds)]
        row = {"rows": f"{rows:,}", "uniform rows/s": float(np.median([m["uniform"] for m in mine])),
               "PER rows/s": float(np.median([m["per"] for m in mine]))}
        ratios = [r for m in mine for r in m["ratios"]]
        row["PER / uniform"] = float(np.median(ratios))
        row["ratio range"] = f"{min(ratios):.2f}–{max(ratios):.2f}"
        row["PER RssAnon MB"] = max(m["rss_anon_mb"] for m in mine)
        for lib in ("torchrl", "cpprb"):
            if not peers:
                row[f"{lib} rows/s"] = "not installed"
                continue
            shutil.rmtree(work / "torchrl-scratch", ignore_errors=True)
            r = _run_with(args.peer_python, {**base, "lib": lib, "reps": 3, "batches": 100})
            row[f"{lib} rows/s"] = r.get("per", r.get("error"))
            if "per" in r:
                row[f"PER / {lib}"] = row["PER rows/s"] / r["per"]
        shutil.rmtree(work / "torchrl-scratch", ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        rows_out.append(row)
    results["per"] = rows_out
    out.append(table("prioritized replay: sample + update_priorities, batch 256, alpha 0.6 (vector, warm cache)",
                     rows_out, ["rows", "uniform rows/s", "PER rows/s", "PER / uniform", "ratio range",
                                "torchrl rows/s", "PER / torchrl", "cpprb rows/s", "PER / cpprb",
                                "PER RssAnon MB"]))
    print(out[-1], flush=True)
    return rows_out


if __name__ == "__main__":
    main()

"""Uniform-sampling throughput of one store as a local directory, a packed ``.zip`` and an
``s3://`` URL on a loopback S3 server (moto, in its own process), side by side.

The same store (vector observations float32[8], all 8 fields returned, batch 256) is read
in every form with the same seed, so each form draws the very same rows. For ``s3://`` the
first pass fetches whole chunks into the store's chunk cache; the table shows that warm-up
separately from the steady state (skipped when moto is not installed). A second table
gives the ``.zip`` sizes of a 100-row and a 60,000-row FrozenLake store (collected with
``replaystore collect``) next to the data size ``info`` reports and the directory's
size on disk and apparent size.

Usage::

    python tools/bench_share.py                 # 1M rows, ~2 minutes
    python tools/bench_share.py --rows 4000000 --cache-mib 1024
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import replaystore as rs  # noqa: E402


def build(path: Path, rows: int) -> None:
    import gymnasium as gym

    if (path / "zarr.json").exists() and len(rs.open(path)) == rows:
        return
    shutil.rmtree(path, ignore_errors=True)
    rng = np.random.default_rng(0)
    with rs.create(path, gym.spaces.Box(-10, 10, (8,), np.float32), gym.spaces.Discrete(4),
                   fsync=False) as s:
        for a in range(0, rows, 1 << 18):
            n = min(1 << 18, rows - a)
            obs = rng.uniform(-10, 10, (n + 1, 8)).astype(np.float32)
            s.extend(dict(obs=obs[:-1], action=rng.integers(0, 4, n), reward=rng.normal(size=n).astype("f4"),
                          next_obs=obs[1:], terminated=rng.random(n) < 0.01, truncated=np.zeros(n, bool)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rate(store, batches: int, repeats: int) -> tuple[float, list[float]]:
    """(first-batch seconds, rows/s of each repeat after it) with a fixed seed."""
    sampler = rs.UniformSampler(store, batch_size=256, seed=0)
    t = time.perf_counter()
    sampler.sample()
    first = time.perf_counter() - t
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(batches):
            sampler.sample()
        rates.append(batches * 256 / (time.perf_counter() - t))
    return first, rates


def sizes(work: Path) -> list[tuple[str, int, int, int, int]]:
    """``(store, data bytes, directory on disk, directory apparent, zip bytes)`` of two
    FrozenLake stores."""
    from replaystore.inspect import summary

    out = []
    for steps in (100, 60_000):
        d, z = work / f"fl_{steps}.zarr", work / f"fl_{steps}.zip"
        if not (d / "zarr.json").exists():
            subprocess.run([sys.executable, "-m", "replaystore", "collect", "FrozenLake-v1", "--out", str(d),
                            "--steps", str(steps), "--seed", "0", "--no-progress"], check=True,
                           stdout=subprocess.DEVNULL)
        rs.pack(d, z, overwrite=True)
        with rs.open(d) as s:
            info = summary(s)
        out.append((f"FrozenLake, {steps:,} rows", sum(f[-2] for f in info.fields), info.on_disk,
                    info.apparent, z.stat().st_size))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache-mib", type=int, default=256, help="chunk cache of the s3:// store")
    ap.add_argument("--workdir", default="/tmp/replaystore-bench-share")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    local = work / f"vec_{args.rows}.zarr"
    t = time.perf_counter()
    build(local, args.rows)
    zpath = work / f"vec_{args.rows}.zip"
    t = time.perf_counter()
    rs.pack(local, zpath, overwrite=True)
    pack_s = time.perf_counter() - t
    size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())

    forms = [("local directory", lambda: rs.open(local)),
             ("packed .zip", lambda: rs.open(zpath))]
    upload_s = None
    server = None
    try:
        import moto  # noqa: F401
    except ImportError:
        print("moto is not installed: the s3:// form is skipped")
    else:
        server, upload_s, url = _s3(local)
        forms.append(("s3:// (loopback)", lambda: rs.open(url, cache_bytes=args.cache_mib << 20)))
    rows = []
    try:
        results = {}
        for _round in range(2):  # alternate forms, so host noise hits all of them alike
            for name, opener in forms:
                t = time.perf_counter()
                store = opener()
                open_s = time.perf_counter() - t
                first, r = rate(store, args.batches, args.repeats)
                store.close()
                prev = results.get(name)
                results[name] = (open_s, first, (prev[2] if prev else []) + r)
        base = float(np.median(results["local directory"][2]))
        for name, (open_s, first, r) in results.items():
            med = float(np.median(r))
            rows.append((name, open_s * 1e3, first * 1e3, med, med / base))
    finally:
        if server is not None:
            server.terminate()
            server.wait()

    upload = "" if upload_s is None else f", upload to loopback S3 {upload_s:.1f} s"
    print(f"\nstore: {args.rows:,} rows, {size / 2**20:.0f} MiB apparent, zip {zpath.stat().st_size / 2**20:.1f} "
          f"MiB, vector obs float32[8], all 8 fields, batch 256; pack {pack_s:.2f} s{upload}; "
          f"{os.cpu_count()} cores\n")
    print("| form | open (ms) | first batch (ms) | rows/s (median) | vs directory |")
    print("|---|---:|---:|---:|---:|")
    for name, o, f, med, ratio in rows:
        print(f"| {name} | {o:.1f} | {f:.1f} | {med:,.0f} | {ratio:.2f}x |")
    print("\n| store | data (info) | directory on disk | directory apparent | .zip |")
    print("|---|---:|---:|---:|---:|")
    for name, data, disk, apparent, zsize in sizes(work):
        print(f"| {name} | {data / 2**10:,.1f} KiB | {disk / 2**10:,.1f} KiB | {apparent / 2**20:,.1f} MiB "
              f"| {zsize / 2**10:,.1f} KiB |")


def _s3(local: Path):
    """Start moto on a free port and upload ``local``: ``(server, upload seconds, url)``."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        import s3fs

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        t = time.perf_counter()
        fs.put(str(local), "bench/store.zarr", recursive=True)
        return server, time.perf_counter() - t, "s3://bench/store.zarr"
    except BaseException:
        server.terminate()
        server.wait()
        raise


if __name__ == "__main__":
    main()

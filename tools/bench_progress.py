"""What the progress bar costs: ``replaystore collect FrozenLake-v1 --steps N`` with its bar
on a pseudo-terminal, and with ``--no-progress``, alternating, ``--reps`` times each.

Prints a markdown table: mode, median seconds (wall clock of the whole process), median
bytes the terminal received, median redraws (carriage returns that start a line again).

    python tools/bench_progress.py --steps 1000000 --reps 3
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def on_terminal(args: list[str]) -> tuple[float, bytes]:
    """Run ``replaystore ARGS`` with stdout and stderr on a new pseudo-terminal."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "replaystore", *args],
                                stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    proc.wait()
    seconds = time.perf_counter() - t0
    reader.join(10)
    os.close(master)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)}: exit status {proc.returncode}\n"
                         + b"".join(chunks)[-2000:].decode(errors="replace"))
    return seconds, b"".join(chunks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--env", default="FrozenLake-v1")
    a = ap.parse_args()
    modes = {"bar on a terminal": [], "--no-progress": []}
    root = Path(tempfile.mkdtemp(prefix="bench_progress_"))
    try:
        for rep in range(a.reps):
            for mode, runs in modes.items():
                out = root / f"{rep}-{len(runs)}-{mode[:2]}.zarr"
                args = ["collect", a.env, "--out", str(out), "--steps", str(a.steps)]
                seconds, term = on_terminal(args + (["--no-progress"] if mode.startswith("--") else []))
                runs.append((seconds, len(term), len(re.findall(rb"\r(?!\n)", term))))
                shutil.rmtree(out, ignore_errors=True)
                print(f"  {mode}: {seconds:.1f}s, {len(term):,} bytes", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"`replaystore collect {a.env} --steps {a.steps:,}`, median of {a.reps} (alternating)\n")
    print("| mode | seconds | terminal bytes | redraws |")
    print("|---|---:|---:|---:|")
    for mode, runs in modes.items():
        med = [statistics.median(r[i] for r in runs) for i in range(3)]
        print(f"| {mode} | {med[0]:.1f} | {med[1]:,.0f} | {med[2]:,.0f} |")


if __name__ == "__main__":
    main()

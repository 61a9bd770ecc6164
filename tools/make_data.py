"""Regenerate the bundled dataset in data/ with the CLI, byte-identically.

    python tools/make_data.py            # rewrites data/frozenlake-4x4-slippery.zarr
    python tools/make_data.py --check    # rebuild into a temp dir and compare every file

The dataset: FrozenLake-v1 4x4, slippery, uniformly random policy, 200,000 transitions,
seed 0, zstd-compressed chunks of 262,144 rows. ``SOURCE_DATE_EPOCH`` pins the timestamps
in the metadata, so a rebuild reproduces every byte.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "frozenlake-4x4-slippery.zarr"
SOURCE_DATE_EPOCH = "1767225600"  # 2026-01-01T00:00:00Z
COMMAND = [
    "collect", "FrozenLake-v1", "--steps", "200000", "--seed", "0",
    "--env-kwargs", '{"is_slippery": true}', "--chunk-rows", "262144", "--codecs", "zstd:9",
    "--no-progress",
]


#: files a store holds only while (or after) a process has it open: never part of its content
#: (``.writer.lock``, ``.live``; see replaystore.storage.layout.RUNTIME_FILES, repeated here
#: so the check reads nothing of the package it checks)
RUNTIME_FILES = frozenset({".writer.lock", ".live"})


def build(out: Path) -> None:
    """Run the CLI of this checkout (not whatever replaystore is installed) into ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONPATH": path}
    subprocess.run([sys.executable, "-m", "replaystore", *COMMAND, "--out", str(out)], check=True, env=env,
                   cwd=ROOT)


def content_files(root: Path) -> list[Path]:
    """The store's files relative to ``root``, without :data:`RUNTIME_FILES`."""
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name not in RUNTIME_FILES)


def same_tree(a: Path, b: Path) -> list[str]:
    """The files that differ between the stores ``a`` and ``b`` (runtime files ignored)."""
    diffs = []
    files_a = content_files(a)
    files_b = content_files(b)
    if files_a != files_b:
        diffs.append(f"file lists differ: {set(files_a) ^ set(files_b)}")
    for rel in set(files_a) & set(files_b):
        if not filecmp.cmp(a / rel, b / rel, shallow=False):
            diffs.append(str(rel))
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="rebuild elsewhere and compare byte by byte")
    args = ap.parse_args()
    target = ROOT / "data" / NAME
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp) / NAME)
            diffs = same_tree(target, Path(tmp) / NAME)
        if diffs:
            sys.exit(f"data/{NAME} differs from a rebuild: {diffs}")
        print(f"data/{NAME} is byte-identical to a rebuild")
        return
    build(target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

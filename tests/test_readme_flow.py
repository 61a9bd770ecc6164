"""The README's command-line flow runs top to bottom as written (issue 14, item 8).

The main ``bash`` block of the README (collect, inspect, train, evaluate, demo, verify)
and then its sharing block (pack, use the zip in place, unpack) are run line by line, in
order, in one empty directory, as a user would paste them: each line is one real
``python -m replaystore`` process (the same entry point as ``replaystore``), and each must exit 0. A line that needs a file an earlier line
has not made yet (the README once ran ``collect --qtable q.npy`` before ``train`` had
written it) fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def block_with(marker: str) -> list[list[str]]:
    """The ``replaystore`` command lines of the bash block that contains ``marker``."""
    block = next(b for b in bash_blocks() if marker in b)
    lines = [shlex.split(ln, comments=True) for ln in block.splitlines()]
    return [argv for argv in lines if argv and argv[0] == "replaystore"]


def test_the_flow_blocks_are_found():
    main = block_with("replaystore collect FrozenLake-v1 --out fl.zarr")
    names = [argv[1] for argv in main]
    for cmd in ("collect", "info", "train", "evaluate", "verify"):
        assert cmd in names, names
    assert names.index("train") < names.index("evaluate")


def test_readme_flow_runs_top_to_bottom(tmp_path):
    flow = block_with("replaystore collect FrozenLake-v1 --out fl.zarr") + block_with("replaystore pack fl.zarr")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}
    for argv in flow:
        r = subprocess.run([sys.executable, "-m", "replaystore", *argv[1:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"README line failed: {shlex.join(argv)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        assert "Traceback" not in r.stderr, shlex.join(argv)
    # what the flow promises is there: the store, the agent, the zip and its unpacked copy
    assert (tmp_path / "fl.zarr").is_dir() and (tmp_path / "fl.zip").is_file()
    assert (tmp_path / "fl2.zarr").is_dir()
    out = subprocess.run([sys.executable, "-m", "replaystore", "verify", "fl2.zarr"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr

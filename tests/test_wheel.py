"""The wheel a user installs: it ships the bundled dataset, and `replaystore demo` works
from any directory after a normal (non-editable) install."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STORE = "replaystore/data/frozenlake-4x4-slippery.zarr"


@pytest.mark.slow
def test_the_wheel_ships_the_dataset_and_the_demo_runs_from_another_directory(tmp_path):
    src = tmp_path / "src"  # (a copy: building never writes into the checkout)
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache", ".ruff_cache",
        "*.writer.lock", ".writer.lock"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("replaystore-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    here = {n for n in names if n.startswith(STORE + "/")}
    want = {str(p.relative_to(ROOT / "replaystore").as_posix()) for p in (ROOT / STORE).rglob("*") if p.is_file()
            and p.name != ".writer.lock"}
    assert {n.removeprefix("replaystore/") for n in here} == want  # every file, hidden ones too
    assert f"{STORE}/.crc/obs.bin" in names and f"{STORE}/zarr.json" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(py), "-c", "import replaystore; print(replaystore.__file__)"], cwd=elsewhere,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed wheel, not this checkout
    demo = subprocess.run([str(py), "-m", "replaystore", "demo", "--episodes", "50"], cwd=elsewhere,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr
    assert "gives up" in demo.stdout and "evaluate" in demo.stdout
    installed = Path(where).parent / "data" / "frozenlake-4x4-slippery.zarr"
    check = subprocess.run([str(py), "-m", "replaystore", "verify", str(installed)], cwd=elsewhere,
                           capture_output=True, text=True)
    assert check.returncode == 0 and "OK" in check.stdout, check.stdout + check.stderr
    assert not (installed / ".writer.lock").exists()  # (the demo only read it)

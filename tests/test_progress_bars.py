"""Progress that costs nothing: on a terminal the bars are redrawn a few times a second
(not per step) and end with their final state; when stderr is not a terminal nothing is
drawn at all (no leftover labels); exports and imports report their progress block by
block (or episode by episode), not 0 -> 100%.

The terminal is a real pseudo-terminal (``pty.openpty``) behind a real ``replaystore``
process; the reporters recording calls are real subclasses of the Progress ABC."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import lake_rows
from conftest import run_cli as run

import replaystore as rs
from replaystore.cli import ClickProgress
from replaystore.interop import (
    export_csv,
    export_minari,
    export_parquet,
    import_d4rl,
    import_minari,
)
from replaystore.progress import Progress

LAKE = "FrozenLake-v1"
DET = '{"is_slippery": false}'
EVERY = 0.25  # the CLI's bars: at most 4 redraws a second


def on_terminal(*args: object, timeout: float = 120) -> tuple[bytes, float, str]:
    """Run ``replaystore ARGS`` with stderr on a pseudo-terminal; return what the terminal
    received, the seconds the process took and its stdout."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the process closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "replaystore", *map(str, args)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=timeout)
    seconds = time.perf_counter() - t0
    reader.join(10)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks)[-2000:]
    return b"".join(chunks), seconds, out.decode()


def redraws(term: bytes) -> int:
    """Carriage returns that start a redraw (the terminal turns each newline into \\r\\n)."""
    return len(re.findall(rb"\r(?!\n)", term))


def assert_throttled(term: bytes, seconds: float) -> None:
    most = seconds / EVERY + 4  # a start, the final state, and slack
    assert redraws(term) <= most, (redraws(term), seconds)
    assert len(term) <= 160 * most, (len(term), seconds)  # a redraw is one line, ~100 bytes


def test_collect_on_a_terminal_redraws_a_few_times_a_second(tmp_path):
    term, seconds, out = on_terminal("collect", LAKE, "--out", tmp_path / "c.zarr", "--steps",
                                     60_000)
    assert_throttled(term, seconds)  # per-step redraws: 60,000 of them, megabytes
    text = term.decode()
    assert text.count(f"collect {LAKE}") >= 1
    assert "60000/60000" in text and text.endswith("\r\n")  # the final state, line ended
    assert out.startswith("recorded 60000 transitions")


def test_minibatch_train_on_a_terminal_redraws_a_few_times_a_second(tmp_path):
    store = tmp_path / "s.zarr"
    run("collect", LAKE, "--out", store, "--steps", 2000, "--env-kwargs", DET, "--no-progress")
    term, seconds, _ = on_terminal("train", store, "--out", tmp_path / "q.npy", "--batch-size", 32,
                                   "--updates", 20_000)
    assert_throttled(term, seconds)
    assert "20000/20000" in term.decode()


# -- stderr not a terminal: no bar, no labels ----------------------------------------------
def test_collect_into_a_pipe_writes_nothing_on_stderr(tmp_path):
    r = subprocess.run([sys.executable, "-m", "replaystore", "collect", LAKE, "--out",
                        str(tmp_path / "p.zarr"), "--steps", "500"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # not "collect FrozenLake-v1"
    assert r.stdout.startswith("recorded 500 transitions") and len(r.stdout.splitlines()) == 1


@pytest.mark.parametrize("args", [
    ("train", "{store}", "--out", "{tmp}/q.npy"),  # sweeps until converged
    ("train", "{store}", "--out", "{tmp}/m.npy", "--batch-size", "64", "--updates", "300"),
    ("export", "{store}", "{tmp}/o.parquet", "--to", "parquet"),
    ("export", "{store}", "{tmp}/o.csv", "--to", "csv"),
])
def test_commands_into_a_pipe_write_no_bar_labels(tmp_path, args):
    store = tmp_path / "s.zarr"
    run("collect", LAKE, "--out", store, "--steps", 3000, "--env-kwargs", DET, "--no-progress")
    r = run(*(a.format(store=store, tmp=tmp_path) for a in args))
    assert r.exit_code == 0, r.output
    assert r.stderr == ""  # not "converging", "sweeps", "export parquet"...
    assert len(r.stdout.strip().splitlines()) >= 1


# -- the reporter itself -------------------------------------------------------------------
class Terminal(io.StringIO):
    """A file that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_click_bar_draws_the_final_state_once_and_a_count_for_unknown_totals():
    term = Terminal()
    bar = ClickProgress(every=3600.0, file=term)
    with bar.task(1000, "work"):
        for _ in range(1000):
            bar.update(1, dq=0.5)
    text = term.getvalue()
    assert redraws(text.encode()) == 2 and text.count("work") == 2  # the start, the end
    assert text.rstrip().endswith("1000/1000  dq=0.5\x1b[?25h")
    term = Terminal()
    bar = ClickProgress(every=0.0, file=term)
    with bar.task(None, "sweeps"):
        bar.update(7)
    assert "sweeps  7" in term.getvalue() and "/" not in term.getvalue()


def test_update_costs_well_under_a_microsecond():
    for file in (Terminal(), io.StringIO()):
        bar = ClickProgress(file=file)
        with bar.task(10**6, "work"):
            t0 = time.perf_counter()
            for _ in range(200_000):
                bar.update(1)
            per_call = (time.perf_counter() - t0) / 200_000
        assert per_call < 2e-6, per_call  # ~0.2 us; a redraw per call is ~20 us


# -- exports and imports report as they go -------------------------------------------------
class Recorder(Progress):
    """Records the total and the done count after every update."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.done: list[int] = []

    def start(self, total: int | None, label: str) -> None:
        self.total, self.done = total, []

    def update(self, n: int = 1, **status: Any) -> None:
        self.done.append((self.done[-1] if self.done else 0) + n)

    def close(self) -> None:
        pass

    def assert_moved(self, least: int = 4) -> None:
        assert len(self.done) >= least, self.done  # not one jump from 0 to 100%
        assert all(b > a for a, b in zip([0, *self.done], self.done, strict=False)), self.done
        assert self.done[-1] == self.total, (self.done[-1], self.total)


def lake_store(path: Path, n: int) -> Path:
    with rs.create(path, gym.spaces.Discrete(16), gym.spaces.Discrete(4)) as store:
        store.extend(lake_rows(n))
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    return lake_store(tmp_path_factory.mktemp("big") / "big.zarr", 300_000)


@pytest.mark.parametrize("export", [export_parquet, export_csv])
def test_tabular_exports_report_block_by_block(big, tmp_path, export):
    rec = Recorder()
    export(big, tmp_path / "out", progress=rec)
    assert rec.total == 300_000
    rec.assert_moved()


def test_minari_export_and_import_report_as_they_go(tmp_path, monkeypatch):
    pytest.importorskip("minari", reason='needs pip install "replaystore[minari]"')
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    store = lake_store(tmp_path / "m.zarr", 20_000)
    rec = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unfinished last episode is skipped
        export_minari(store, tmp_path / "ds", progress=rec)
    assert rec.total == 20_000
    rec.assert_moved()
    rec = Recorder()
    stats = import_minari(tmp_path / "ds", tmp_path / "back.zarr", progress=rec)
    assert rec.total == stats.rows
    rec.assert_moved(least=100)  # episode by episode


def test_d4rl_import_reports_block_by_block(tmp_path):
    h5py = pytest.importorskip("h5py", reason='needs pip install "replaystore[hdf5]"')
    n = 300_000
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        f["observations"] = rng.standard_normal((n, 2)).astype("f4")
        f["next_observations"] = rng.standard_normal((n, 2)).astype("f4")
        f["actions"] = rng.standard_normal((n, 1)).astype("f4")
        f["rewards"] = rng.standard_normal(n).astype("f4")
        f["terminals"] = rng.random(n) < 0.01
        f["timeouts"] = np.zeros(n, bool)
    rec = Recorder()
    import_d4rl(tmp_path / "d.hdf5", tmp_path / "d.zarr", progress=rec)
    assert rec.total == n
    rec.assert_moved()

"""What offline training leaves behind and shows (issue 14, item 4): the --log CSV (a row
per sweep or per N updates), every evaluation on the terminal (or a note saying which),
the sweep-mode progress (sweeps and the bound), and Ctrl-C: a real SIGINT to a real
``replaystore train`` / ``collect`` process keeps what was done and says so.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Recorder

import replaystore as rs
from replaystore.agents import QLearningAgent
from replaystore.cli import main
from replaystore.training import OfflineTrainer

LAKE = "FrozenLake-v1"
DET = '{"is_slippery": false}'
COLUMNS = ["update", "transitions", "sweep", "max_dq", "bound", "seconds", "mean_return",
           "success_rate", "mean_length"]


def ok(*args: object) -> str:
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        header = f.readline().strip().split(",")
    with open(path, newline="") as f:
        return header, list(csv.DictReader(f))


@pytest.fixture(scope="module")
def slippery(tmp_path_factory) -> Path:
    """A slippery lake: sweep training takes tens of sweeps."""
    path = tmp_path_factory.mktemp("slip") / "fl.zarr"
    ok("collect", LAKE, "--out", path, "--steps", 20_000, "--seed", 0, "--no-progress",
       "--env-kwargs", '{"is_slippery": true}')
    return path


# -- the CSV -------------------------------------------------------------------------------------
def test_the_readme_example_logs_every_sweep_and_evaluates_at_the_end(slippery, tmp_path):
    log = tmp_path / "metrics.csv"
    text = ok("train", slippery, "--out", tmp_path / "q.npz", "--gamma", 0.95, "--eval-every", 5000,
              "--eval-episodes", 5, "--log", log, "--no-progress")
    sweeps = int(text.split()[0])
    assert 5 < sweeps < 5000 and "converged" in text
    header, rows = read_csv(log)
    assert header == COLUMNS
    assert [int(r["update"]) for r in rows] == list(range(1, sweeps + 1))
    assert [int(r["sweep"]) for r in rows] == list(range(1, sweeps + 1))
    assert [int(r["transitions"]) for r in rows] == [20_000 * k for k in range(1, sweeps + 1)]
    for r in rows:
        assert float(r["bound"]) == pytest.approx(float(r["max_dq"]) * 0.95 / 0.05)
    assert all(r["mean_return"] == "" for r in rows[:-1])
    assert rows[-1]["mean_return"] != "" and 0 <= float(rows[-1]["success_rate"]) <= 1  # the final one
    assert "1 evaluations of the greedy policy" in text and f"wrote {sweeps} rows of metrics to {log}" in text


def test_minibatch_rows_every_n_updates_and_at_evaluations(slippery, tmp_path):
    log = tmp_path / "m.csv"
    ok("train", slippery, "--out", tmp_path / "q.npz", "--batch-size", 32, "--updates", 230,
       "--log-every", 50, "--eval-every", 100, "--eval-episodes", 2, "--log", log, "--no-progress")
    header, rows = read_csv(log)
    assert header == COLUMNS
    assert [int(r["update"]) for r in rows] == [50, 100, 150, 200, 230]
    assert [int(r["transitions"]) for r in rows] == [32 * u for u in (50, 100, 150, 200, 230)]
    assert all(r["sweep"] == "" and r["bound"] == "" for r in rows)
    assert [int(r["update"]) for r in rows if r["mean_return"]] == [100, 200, 230]


def test_the_terminal_shows_every_evaluation_or_says_which(slippery, tmp_path):
    text = ok("train", slippery, "--out", tmp_path / "a.npz", "--updates", 30, "--eval-every", 5,
              "--eval-episodes", 2, "--no-progress")
    assert "6 evaluations of the greedy policy" in text
    assert [int(u) for u in _eval_updates(text)] == [5, 10, 15, 20, 25, 30]
    log = tmp_path / "m.csv"
    text = ok("train", slippery, "--out", tmp_path / "b.npz", "--updates", 30, "--eval-every", 1,
              "--eval-episodes", 2, "--log", log, "--no-progress")
    assert f"the last 5 of 30 evaluations (every one is in {log})" in text
    assert [int(u) for u in _eval_updates(text)] == [26, 27, 28, 29, 30]
    assert sum(1 for r in read_csv(log)[1] if r["mean_return"]) == 30


def test_learn_says_which_evaluations_it_shows(tmp_path):
    log = tmp_path / "curves.csv"
    text = ok("learn", "CliffWalking-v1", "--buffer", tmp_path / "b.zarr", "--capacity", 3000, "--steps", 1500,
              "--learning-starts", 100, "--commit-every", 200, "--eval-every", 100, "--eval-episodes", 1,
              "--env-kwargs", '{"max_episode_steps": 100}', "--out", tmp_path / "q.npz", "--log", log,
              "--no-progress")
    assert f"the last 5 of 15 evaluations (every one is in {log})" in text
    assert [ln.split(":")[0] for ln in text.splitlines() if ln.startswith("step ")] == [
        f"step {s:,}" for s in range(1100, 1501, 100)]


def _eval_updates(text: str) -> list[str]:
    return [ln.split()[1].rstrip(":") for ln in text.splitlines() if ln.startswith("  update ")]


def test_eval_every_without_an_environment_is_an_error(slippery):
    with rs.open(slippery) as store:
        agent = QLearningAgent.from_spaces(store.observation_space, store.action_space)
        with pytest.raises(rs.EnvError, match=r"eval_every=10 needs eval_env="):
            OfflineTrainer(store, agent).train(updates=20, eval_every=10)
    assert not agent.q.any()  # refused before any update




def test_the_sweep_bar_counts_sweeps_and_shows_the_bound(slippery):
    rec = Recorder()
    with rs.open(slippery) as store:
        agent = QLearningAgent.from_spaces(store.observation_space, store.action_space, gamma=0.95,
                                           alpha_schedule="constant")
        res = OfflineTrainer(store, agent).train(progress=rec)
    assert rec.calls[0] == ("start", None, "sweeps until bound < 1e-06")  # not the 500,000 cap
    updates = [c for c in rec.calls if c[0] == "update"]
    assert len(updates) == res.updates and all(c[1] == 1 for c in updates)
    assert updates[-1][2]["bound"] == pytest.approx(res.last_max_dq * 0.95 / 0.05)
    assert rec.calls[-1] == ("close",)


# -- Ctrl-C --------------------------------------------------------------------------------------
def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    """A real ``replaystore`` process that takes SIGINT as a terminal's Ctrl-C does."""
    return subprocess.Popen([sys.executable, "-m", "replaystore", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 60) -> None:
    t0 = time.monotonic()
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "the process never got going"
        time.sleep(0.05)


def _csv_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("mode", ["minibatches", "sweeps"])
def test_ctrl_c_during_train_saves_the_agent_trained_so_far(slippery, tmp_path, mode):
    out, log = tmp_path / "q.npz", tmp_path / "m.csv"
    extra = ["--batch-size", "16", "--log-every", "20"] if mode == "minibatches" else []
    proc = _start(["train", str(slippery), "--out", str(out), "--updates", "100000000", "--log", str(log),
                   "--no-progress", *extra], tmp_path)
    _wait_for(lambda: _csv_rows(log) >= 3, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    head, _, tail = lines[0].partition(" updates: ")
    assert head.startswith("interrupted after ") and tail == f"saved the agent trained so far to {out}"
    n = int(head.removeprefix("interrupted after ").replace(",", ""))
    agent = QLearningAgent.load(out)
    assert agent.q.any()
    rows = read_csv(log)[1]
    assert int(rows[-1]["update"]) == n  # the log ends at the update the agent has
    if mode == "minibatches":
        assert agent.visits.sum() == 16 * n
    else:
        assert agent.visits.sum() == 20_000 * n


def test_ctrl_c_during_collect_says_how_many_rows_were_kept(tmp_path):
    out = tmp_path / "c.zarr"

    def rows() -> int:
        try:
            with rs.open(out) as store:
                return len(store)
        except rs.ReplayStoreError:
            return 0

    proc = _start(["collect", LAKE, "--out", str(out), "--steps", "100000000", "--chunk-rows", "1000",
                   "--no-progress"], tmp_path)
    _wait_for(lambda: rows() > 0, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    with rs.open(out) as store:
        kept = len(store)
        assert store.info["collections"][-1]["status"] == "interrupted"
    assert kept > 0
    assert stderr.strip() == f"interrupted: kept {kept:,} rows (committed) in {out}"

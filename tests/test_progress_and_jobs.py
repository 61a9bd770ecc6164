"""Long jobs report to a Progress (the CLI's click bar is throttled), and the jobs the CLI
runs are library calls a Python user can make: train_store, run_demo, inspect.summary,
inspect.sample_frame."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import Recorder

import replaystore as rs
from replaystore.agents import QLearningAgent
from replaystore.cli import ClickProgress
from replaystore.collect import collect
from replaystore.demo import run_demo
from replaystore.inspect import human_bytes, sample_frame, summary
from replaystore.training import OfflineTrainer, train_store

LAKE = "FrozenLake-v1"
DET = {"is_slippery": False}




@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lake") / "fl.zarr"
    collect(LAKE, path, steps=1200, seed=0, env_kwargs=DET)
    return path


def test_jobs_report_to_a_progress(lake, tmp_path):
    rec = Recorder()
    collect("CartPole-v1", tmp_path / "p", steps=50, num_envs=2, progress=rec)
    assert rec.calls[0] == ("start", 50, "collect CartPole-v1")
    assert rec.calls[-1] == ("close",) and rec.done() == 50
    rec = Recorder()
    collect(LAKE, tmp_path / "e", episodes=4, progress=rec, env_kwargs=DET)
    assert rec.calls[0] == ("start", 4, f"collect {LAKE}") and rec.done() == 4
    rec = Recorder()
    with rs.open(lake) as store:
        agent = QLearningAgent.from_spaces(store.observation_space, store.action_space)
        OfflineTrainer(store, agent).train(updates=3, progress=rec)
    assert rec.calls[0] == ("start", 3, "sweeps") and rec.done() == 3
    assert all("dq" in c[2] for c in rec.calls if c[0] == "update")
    rec = Recorder()
    rs.merge(tmp_path / "m.zarr", [lake, tmp_path / "e"], progress=rec)
    with rs.open(tmp_path / "m.zarr") as m:
        assert rec.calls[0] == ("start", len(m), "merge") and rec.done() == len(m)
    rec = Recorder()
    rs.pack(lake, tmp_path / "l.zip", progress=rec)
    assert rec.calls[0][2] == "pack l.zip" and rec.calls[-1] == ("close",)


def test_progress_true_writes_a_line_at_the_end(tmp_path, capsys):
    collect(LAKE, tmp_path / "t", steps=30, progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"collect {LAKE} 30/30"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("every", "draws"), [(3600.0, 2), (0.0, 501)])
def test_click_bar_is_redrawn_at_most_every_interval(every, draws):
    term = Terminal()
    bar = ClickProgress(every=every, file=term)
    bar.start(500, "work")
    for _ in range(500):
        bar.update(1, dq=0.5)
    bar.close()
    assert term.getvalue().count("\r") == draws  # start, (every update,) final state
    assert "500/500" in term.getvalue()  # what was not drawn yet is drawn at close
    bar = ClickProgress(every=0.0, file=io.StringIO())  # not a terminal: nothing at all
    with bar.task(500, "work"):
        bar.update(500)
    assert bar.file.getvalue() == ""


def test_train_store_chooses_mode_and_schedule(lake, tmp_path):
    report = train_store(lake, tmp_path / "q.npy", updates=2)
    assert report.mode == "sweeps" and report.agent.alpha_schedule == "constant"
    assert report.lines()[0].startswith("2 sweeps (2,400 transitions")
    assert QLearningAgent.load(tmp_path / "q.npy").q.shape == (16, 4)
    report = train_store(lake, None, balanced_by="action", updates=3)
    assert report.mode == "minibatches" and report.agent.alpha_schedule == "visits"
    assert report.result.transitions == 3 * 256 and report.out is None
    assert not any(line.startswith("saved") for line in report.lines())
    with pytest.raises(rs.AgentConfigError, match="q.txt"):
        train_store(lake, tmp_path / "q.txt", updates=1)
    with pytest.raises(rs.AgentConfigError, match="does not exist"):
        train_store(lake, tmp_path / "no" / "q.npy", updates=1)
    assert not (tmp_path / "no").exists()


def test_train_store_evaluates_in_the_recorded_env(lake):
    report = train_store(lake, updates=20, gamma=0.9, eval_every=10, eval_episodes=3)
    assert [ev["update"] for ev in report.result.evaluations] == [10, 20]
    assert report.result.evaluations[-1]["success_rate"] == 1.0  # the store's kwargs: DET


def test_run_demo_is_a_library_call(lake, tmp_path):
    echoed: list[str] = []
    report = run_demo(lake, episodes=5, out=tmp_path / "d.npy", echo=echoed.append)
    assert echoed == report.lines()
    assert [ln.split()[0] for ln in echoed] == ["dataset", LAKE, "train", "evaluate", "optimum",
                                                "saved", "done"]
    assert report.evaluation["success_rate"] == 1.0 and report.gap["rel_gap"] <= 1e-9
    assert report.saved == str(tmp_path / "d.npy") and (tmp_path / "d.npy").is_file()


def test_inspect_summary_and_sample_frame(lake):
    with rs.open(lake) as store:
        s = summary(store)
        assert s.rows == 1200 and s.capacity is None and s.observation == "Discrete(16)"
        assert [f[0] for f in s.fields][:3] == ["obs", "action", "reward"]
        assert s.lines()[0] == f"store:          {lake}"
        df = sample_frame(store, batch_size=6, seed=2, fields=["obs", "action"])
        assert df.columns.tolist() == ["obs", "action"] and len(df) == 6
        again = sample_frame(store, batch_size=6, seed=2, fields=["obs", "action"])
        np.testing.assert_array_equal(df.values, again.values)
    assert human_bytes(1023) == "1023 B" and human_bytes(1536) == "1.5 KiB"

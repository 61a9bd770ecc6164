"""One saved-agent format (issue 14, item 5): one ``.npz`` file that every command takes the
same way, older layouts still read, existing outputs kept unless ``--overwrite``.

Real files and the real command line (click's runner, or a subprocess for ``learn``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

import replaystore as rs
from replaystore.agents import QLearningAgent
from replaystore.cli import main
from replaystore.policy import load_policy

LAKE = "FrozenLake-v1"
DET = '{"is_slippery": false}'
AGENT_FILE = "a saved agent: one .npz file written by train/learn"


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: object) -> str:
    r = run(*args)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lake") / "fl.zarr"
    ok("collect", LAKE, "--out", path, "--steps", 2000, "--seed", 0, "--env-kwargs", DET, "--no-progress")
    return path


def trained(gamma: float = 0.9) -> QLearningAgent:
    agent = QLearningAgent(16, 4, gamma=gamma, alpha=0.5)
    agent.q[:] = np.random.default_rng(0).random((16, 4))
    agent.visits[:] = np.arange(64).reshape(16, 4)
    agent.obs_start = 0
    return agent


def write_three_files(path: Path, agent: QLearningAgent) -> None:
    """The layout replaystore wrote before: Q.npy, Q.json and Q.visits.npy."""
    np.save(path, agent.q)
    np.save(path.with_suffix(".visits.npy"), agent.visits)
    meta = {"format": "replaystore.QLearningAgent", "format_version": 1, **agent.hyperparameters(),
            "q_file": path.name, "visits_file": path.with_suffix(".visits.npy").name}
    path.with_suffix(".json").write_text(json.dumps(meta))


# -- the file ------------------------------------------------------------------------------------
def test_train_writes_one_npz_file_numpy_reads_without_pickle(lake, tmp_path):
    out = tmp_path / "q.npz"
    ok("train", lake, "--out", out, "--gamma", 0.9, "--no-progress")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.npz"]  # nothing else, no temp files
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == ["meta", "q", "visits"]
        q, visits, meta = z["q"], z["visits"], json.loads(str(z["meta"]))
    assert q.shape == (16, 4) and q.dtype == np.float64 and q.any()
    assert visits.dtype == np.int64 and visits.sum() > 0
    assert meta["format"] == "replaystore.QLearningAgent" and meta["gamma"] == 0.9
    agent = QLearningAgent.load(out)
    np.testing.assert_array_equal(agent.q, q)
    np.testing.assert_array_equal(agent.visits, visits)


def test_a_npy_name_is_kept_exactly_and_old_sidecars_of_it_go(tmp_path):
    path = tmp_path / "agent.npy"
    write_three_files(path, QLearningAgent(16, 4))
    new = trained()
    new.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.npy"]
    np.testing.assert_array_equal(QLearningAgent.load(path).q, new.q)
    np.testing.assert_array_equal(load_policy(path).q, new.q)


def test_save_replaces_by_rename_so_an_open_reader_keeps_the_old_file(tmp_path):
    path = tmp_path / "q.npz"
    trained().save(path)
    with open(path, "rb") as old:
        before = old.read()
        old.seek(0)
        QLearningAgent(16, 4, gamma=0.5).save(path)
        assert old.read() == before  # the old file was swapped, not rewritten in place
    assert QLearningAgent.load(path).gamma == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.npz"]


def test_a_pickled_member_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "UNPICKLED"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "q.npz"
    meta = {"format": "replaystore.QLearningAgent", "format_version": 1, **QLearningAgent(1, 1).hyperparameters()}
    obj = np.empty((), dtype=object)
    obj[()] = Boom()
    np.savez(path, meta=np.array(json.dumps(meta)), q=obj, visits=np.zeros((1, 1), np.int64))
    with pytest.raises(rs.CorruptStoreError, match="q.npz"):
        QLearningAgent.load(path)
    r = run("evaluate", LAKE, path, "--episodes", 1)
    assert r.exit_code == 1 and str(path) in r.output
    assert not marker.exists()


# -- every command takes it the same way -------------------------------------------------------
@pytest.mark.parametrize("layout", ["npz", "three files", "bare npy"])
def test_evaluate_and_collect_take_every_layout(lake, tmp_path, layout):
    agent = rs.training.train_store(lake, gamma=0.9).agent  # solves the deterministic lake
    if layout == "npz":
        path = tmp_path / "q.npz"
        agent.save(path)
    elif layout == "three files":
        path = tmp_path / "q.npy"
        write_three_files(path, agent)
    else:
        path = tmp_path / "q.npy"
        np.save(path, agent.q)
    text = ok("evaluate", LAKE, path, "--episodes", 3, "--env-kwargs", DET)
    assert "success rate 100.00%" in text
    out = tmp_path / "c.zarr"
    ok("collect", LAKE, "--out", out, "--steps", 40, "--qtable", path, "--epsilon", 0, "--env-kwargs", DET,
       "--no-progress")
    with rs.open(out) as store:
        rows = store.read_range(0, len(store))
    np.testing.assert_array_equal(rows["action"], agent.greedy_policy()[rows["obs"]])


@pytest.mark.parametrize(("command", "option"), [("train", "--out"), ("learn", "--out"),
                                                  ("evaluate", "AGENT"), ("collect", "--qtable")])
def test_help_says_what_the_agent_file_is(command, option):
    text = " ".join(ok(command, "--help").split())
    assert AGENT_FILE in text, text
    assert option in text


# -- existing outputs are kept --------------------------------------------------------------------
def test_train_refuses_an_existing_out_unless_overwrite(lake, tmp_path):
    out = tmp_path / "q.npz"
    ok("train", lake, "--out", out, "--updates", 1, "--no-progress")
    before = out.read_bytes()
    r = run("train", lake, "--out", out, "--updates", 5, "--no-progress")
    assert r.exit_code == 1
    assert r.output.strip() == (f"Error: {out}: already exists; use --overwrite to replace it (or "
                                "choose another --out)")
    assert out.read_bytes() == before
    ok("train", lake, "--out", out, "--updates", 5, "--no-progress", "--overwrite")
    assert out.read_bytes() != before


def test_demo_refuses_an_existing_out_unless_overwrite(tmp_path):
    out = tmp_path / "demo.npz"
    out.write_bytes(b"mine")
    r = run("demo", "--out", out, "--episodes", 10)
    assert r.exit_code == 1
    assert r.output.strip() == (f"Error: {out}: already exists; use --overwrite to replace it (or "
                                "choose another --out)")
    assert out.read_bytes() == b"mine"  # refused before training: nothing replaced
    ok("demo", "--out", out, "--episodes", 10, "--overwrite")
    assert QLearningAgent.load(out).q.shape == (16, 4)


def test_train_refuses_an_existing_log_before_training(lake, tmp_path):
    log = tmp_path / "m.csv"
    log.write_text("mine\n")
    r = run("train", lake, "--out", tmp_path / "q.npz", "--log", log, "--no-progress")
    assert r.exit_code == 1 and "use --overwrite" in r.output and str(log) in r.output
    assert log.read_text() == "mine\n" and not (tmp_path / "q.npz").exists()


def test_train_store_refuses_in_python_words(lake, tmp_path):
    out = tmp_path / "q.npz"
    out.write_bytes(b"x")
    with pytest.raises(rs.StoreExistsError, match=re.escape(f"{out}: already exists; pass overwrite=True")):
        rs.training.train_store(lake, out, updates=1)
    assert out.read_bytes() == b"x"


def _learn(tmp_path: Path, *extra: object) -> Result:
    return run("learn", "CliffWalking-v1", "--buffer", tmp_path / "b.zarr", "--capacity", 3000,
               "--steps", 600, "--learning-starts", 100, "--commit-every", 200, "--no-progress", *extra)


def test_learn_refuses_an_existing_out_but_resume_may_replace_its_own(tmp_path):
    out = tmp_path / "taxi.npz"
    out.write_bytes(b"someone else's file")
    r = _learn(tmp_path, "--out", out)
    assert r.exit_code == 1 and f"{out}: already exists; use --overwrite" in r.output
    assert out.read_bytes() == b"someone else's file" and not (tmp_path / "b.zarr").exists()
    r = _learn(tmp_path, "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert QLearningAgent.load(out).q.shape == (48, 4)
    r = _learn(tmp_path, "--out", out, "--resume")  # the run's own output: replaced
    assert r.exit_code == 0, r.output
    assert QLearningAgent.load(out).q.shape == (48, 4)

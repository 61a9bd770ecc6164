"""Tests of the ``replaystore`` command line: real stores in ``tmp_path``, real gymnasium
environments, every command run through :class:`click.testing.CliRunner`.

Error paths are held to the CLI's contract (module docstring of ``replaystore.cli`` and
the README): a one-line ``Error: ...`` naming the offending path/field/value, a non-zero
exit code and never a traceback.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

import replaystore as rs
from replaystore.agents import QLearningAgent
from replaystore.cli import main

LAKE = "FrozenLake-v1"
DET = '{"is_slippery": false}'  # deterministic FrozenLake: a learnt policy always succeeds
README = Path(__file__).resolve().parents[1] / "README.md"
COMMANDS = sorted(main.commands)
FIELDS = ["obs", "action", "reward", "next_obs", "terminated", "truncated", "episode", "step"]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: object) -> str:
    """Run a command that must succeed; return its output."""
    r = run(*args)
    assert r.exception is None, f"{args}: {r.exception!r}\n{r.output}"
    assert r.exit_code == 0, f"{args}: exit code {r.exit_code}\n{r.output}"
    assert "Traceback" not in r.output
    return r.output


def assert_error(r: Result, *needles: str) -> str:
    """A handled failure: non-zero exit, exactly one line ``Error: ...`` naming ``needles``."""
    assert r.exit_code != 0, r.output
    # CliRunner swallows uncaught exceptions (no traceback in output): a handled error
    # always ends in SystemExit
    assert isinstance(r.exception, SystemExit), f"uncaught {r.exception!r}\n{r.output}"
    assert "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{r.output}"
    assert lines[0].startswith("Error:"), r.output
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def read_all(path: Path) -> dict[str, np.ndarray]:
    with rs.open(path) as store:
        return store.read_range(0, len(store))


def table_rows(output: str, skip: int) -> list[list[str]]:
    """Data rows of a pandas ``to_string`` table (after ``skip`` header lines)."""
    return [line.split() for line in output.strip().splitlines()[skip:]]


# --------------------------------------------------------------------------------------
# shared data (collected once per module: keeps the file fast)
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    """2,000 random transitions of deterministic FrozenLake (random play reaches the goal)."""
    path = tmp_path_factory.mktemp("lake") / "fl.zarr"
    ok("collect", LAKE, "--out", path, "--steps", 2000, "--seed", 0, "--env-kwargs", DET,
       "--no-progress")
    return path


@pytest.fixture(scope="module")
def qtable(lake: Path) -> Path:
    """A Q-table trained to convergence on ``lake`` by ``replaystore train``."""
    out = lake.parent / "q.npz"
    text = ok("train", lake, "--out", out, "--gamma", 0.9, "--no-progress")
    assert "converged" in text
    return out


@pytest.fixture(scope="module")
def pole(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pole") / "cp.zarr"
    ok("collect", "CartPole-v1", "--out", path, "--steps", 60, "--no-progress")
    return path


# --------------------------------------------------------------------------------------
# help, README, entry points
# --------------------------------------------------------------------------------------
def test_commands_are_the_documented_ones():
    assert set(COMMANDS) == {"collect", "info", "head", "episodes", "sample", "train",
                             "evaluate", "demo", "verify", "pack", "unpack", "export", "import",
                             "merge", "learn", "plot", "sweep"}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_works_and_shows_an_example(command):
    for flag in ("--help", "-h"):
        out = ok(command, flag)
        assert out.startswith(f"Usage: main {command}") or f" {command} " in out.splitlines()[0]
        assert "Example:" in out
        assert f"replaystore {command}" in out


def test_top_level_help_lists_every_command():
    out = ok("--help")
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\b", out, re.M), command


def test_version():
    assert rs.__version__ in ok("--version")


def test_every_command_is_documented_in_readme():
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"replaystore (\w+)", text))
    missing = [c for c in main.commands if c not in documented]
    assert not missing, f"commands missing from README.md: {missing}"


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "replaystore", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for command in COMMANDS:
        assert command in r.stdout
    r = subprocess.run([sys.executable, "-m", "replaystore", "info", "/nonexistent/x.zarr"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("Error:") and "/nonexistent/x.zarr" in r.stderr


# --------------------------------------------------------------------------------------
# collect
# --------------------------------------------------------------------------------------
def test_collect_steps(tmp_path, lake):
    out = tmp_path / "s.zarr"
    text = ok("collect", LAKE, "--out", out, "--steps", 123, "--no-progress")
    assert text.startswith("recorded 123 transitions") and str(out) in text
    with rs.open(out) as store:
        assert len(store) == 123 and store.total == 123
        assert store.capacity is None
        assert store.env_info["id"] == LAKE
        assert list(store.schema.names) == FIELDS
        [rec] = store.info["collections"]
        assert rec["status"] == "complete" and rec["requested"] == {"steps": 123}
        assert rec["seed"] == 0 and rec["policy"]["kind"] == "random"


def test_collect_episodes(tmp_path):
    out = tmp_path / "e.zarr"
    text = ok("collect", LAKE, "--out", out, "--episodes", 7, "--no-progress")
    assert "(7 complete episodes" in text
    with rs.open(out) as store:
        ep = store.episodes()
        assert len(ep) == 7 and ep["complete"].all()
        assert int(ep["length"].sum()) == len(store)
        assert re.search(rf"recorded {len(store)} transitions", text)


def test_collect_env_kwargs(tmp_path):
    out = tmp_path / "k.zarr"
    ok("collect", LAKE, "--out", out, "--steps", 50, "--no-progress",
       "--env-kwargs", '{"is_slippery": false, "map_name": "8x8"}')
    with rs.open(out) as store:
        assert store.env_info == {"id": LAKE, "kwargs": {"is_slippery": False, "map_name": "8x8"}}
        assert store.observation_space.n == 64
        d = store.read_range(0, len(store))
        assert d["obs"].max() < 64



@pytest.mark.parametrize("env_id", [LAKE, "CartPole-v1"])
def test_collect_steps_without_a_finished_episode(tmp_path, env_id):
    # one step ends no episode: there is no mean return to report, and that is no error
    out = tmp_path / "one.zarr"
    text = ok("collect", env_id, "--out", out, "--steps", 1, "--no-progress")
    assert text.startswith("recorded 1 transitions (0 complete episodes")
    with rs.open(out) as store:
        assert len(store) == 1

def test_collect_num_envs(tmp_path):
    out = tmp_path / "v.zarr"
    text = ok("collect", LAKE, "--out", out, "--steps", 301, "--num-envs", 2, "--no-progress")
    assert text.startswith("recorded 301 transitions")
    with rs.open(out) as store:
        assert len(store) == 301
        assert store.info["collections"][0]["num_envs"] == 2
        d = store.read_range(0, len(store))
    # each episode is a chain: next_obs of a step is obs of the following step
    for e in np.unique(d["episode"]):
        rows = np.flatnonzero(d["episode"] == e)
        np.testing.assert_array_equal(d["step"][rows], np.arange(len(rows)))
        np.testing.assert_array_equal(d["next_obs"][rows[:-1]], d["obs"][rows[1:]])


def test_collect_num_envs_episodes(tmp_path):
    out = tmp_path / "ve.zarr"
    text = ok("collect", LAKE, "--out", out, "--episodes", 5, "--num-envs", 2, "--no-progress")
    assert "(5 complete episodes" in text
    with rs.open(out) as store:
        ep = store.episodes()
        assert len(ep) == 5 and ep["complete"].all()


def test_collect_capacity_ring(tmp_path):
    out = tmp_path / "r.zarr"
    text = ok("collect", LAKE, "--out", out, "--steps", 250, "--capacity", 100, "--no-progress")
    assert text.startswith("recorded 250 transitions")
    with rs.open(out) as store:
        assert store.capacity == 100 and len(store) == 100 and store.total == 250
    assert "100 (ring)" in ok("info", out)
    # appending keeps the ring; another capacity is refused
    ok("collect", LAKE, "--out", out, "--steps", 30, "--no-progress")
    with rs.open(out) as store:
        assert len(store) == 100 and store.total == 280
    assert_error(run("collect", LAKE, "--out", out, "--steps", 5, "--capacity", 50,
                     "--no-progress"), str(out), "100", "50")


@pytest.mark.parametrize("num_envs", [1, 2])
def test_collect_seed_reproducible(tmp_path, num_envs):
    paths = [tmp_path / f"{n}.zarr" for n in ("a", "b", "c")]
    for p, seed in zip(paths, (5, 5, 6), strict=True):
        ok("collect", LAKE, "--out", p, "--steps", 400, "--seed", seed, "--num-envs", num_envs,
           "--no-progress")
    a, b, c = (read_all(p) for p in paths)
    assert sorted(a) == sorted(FIELDS)
    for name in FIELDS:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
        assert a[name].tobytes() == b[name].tobytes(), name
    assert a["action"].tobytes() != c["action"].tobytes()


def test_collect_appends(tmp_path):
    out = tmp_path / "ap.zarr"
    ok("collect", LAKE, "--out", out, "--steps", 100, "--no-progress")
    first = read_all(out)
    text = ok("collect", LAKE, "--out", out, "--steps", 60, "--seed", 1, "--no-progress")
    assert text.startswith("recorded 60 transitions")
    both = read_all(out)
    assert len(both["obs"]) == 160
    for name in FIELDS:  # the old rows are untouched
        np.testing.assert_array_equal(both[name][:100], first[name])
    # every run starts new episodes: ids never collide across runs
    assert not set(both["episode"][100:]) & set(first["episode"])
    assert both["step"][100] == 0
    with rs.open(out) as store:
        recs = store.info["collections"]
        assert [r["rows"] for r in recs] == [[0, 100], [100, 160]]
        assert [r["seed"] for r in recs] == [0, 1]


def test_collect_with_qtable(tmp_path, qtable):
    greedy = tmp_path / "greedy.zarr"
    text = ok("collect", LAKE, "--out", greedy, "--episodes", 5, "--qtable", qtable,
              "--epsilon", 0, "--env-kwargs", DET, "--no-progress")
    assert "mean return 1.000" in text  # the trained greedy policy always reaches the goal
    with rs.open(greedy) as store:
        rec = store.info["collections"][0]
        assert rec["policy"]["kind"] == "qtable" and rec["policy"]["shape"] == [16, 4]
        assert rec["epsilon"] == 0.0
        ep = store.episodes()
        assert (ep["return"] == 1.0).all() and (ep["length"] == 6).all()
    noisy = tmp_path / "noisy.zarr"
    ok("collect", LAKE, "--out", noisy, "--steps", 300, "--qtable", qtable, "--epsilon", 1,
       "--env-kwargs", DET, "--no-progress")
    with rs.open(noisy) as store:
        assert store.info["collections"][0]["epsilon"] == 1.0
        acts = store.read_range(0, len(store), fields=["action"])["action"]
    assert len(np.unique(acts)) == 4  # epsilon 1: uniform actions, not the greedy ones


def test_collect_epsilon_ignored_without_qtable(tmp_path):
    out = tmp_path / "rnd.zarr"
    ok("collect", LAKE, "--out", out, "--steps", 20, "--epsilon", 0.5, "--no-progress")
    with rs.open(out) as store:
        assert store.info["collections"][0]["policy"]["kind"] == "random"


def test_collect_chunk_rows_and_codecs(tmp_path):
    out = tmp_path / "cc.zarr"
    ok("collect", LAKE, "--out", out, "--steps", 200, "--chunk-rows", 32, "--codecs", "zstd:3",
       "--no-progress")
    with rs.open(out) as store:
        assert {f.chunk_rows for f in store.schema} == {32}
        assert {f.codec for f in store.schema} == {"zstd:3"}
        assert len(store) == 200
    text = ok("info", out)
    assert "zstd:3" in text and re.search(r"\b32\s+zstd:3", text)
    # the data round-trips like an uncompressed store's
    plain = tmp_path / "plain.zarr"
    ok("collect", LAKE, "--out", plain, "--steps", 200, "--no-progress")
    a, b = read_all(out), read_all(plain)
    for name in FIELDS:
        np.testing.assert_array_equal(a[name], b[name])


# --------------------------------------------------------------------------------------
# inspect: info, head, episodes, sample
# --------------------------------------------------------------------------------------
def test_info(lake):
    text = ok("info", lake)
    assert f"store:          {lake}" in text
    assert re.search(r"^format version: 1 \(replaystore ", text, re.M)
    assert re.search(rf"^env:\s+{LAKE} \{{\"is_slippery\": false\}}$", text, re.M)
    assert re.search(r"^rows:\s+2,000 \(total written 2,000\)$", text, re.M)
    assert re.search(r"^capacity:\s+unbounded$", text, re.M)
    with rs.open(lake) as store:
        ep = store.episodes()
    assert re.search(rf"^episodes:\s+{len(ep):,} \({int(ep['complete'].sum()):,} complete\)$",
                     text, re.M)
    assert re.search(r"^observation:\s+Discrete\(16\)$", text, re.M)
    assert re.search(r"^action:\s+Discrete\(4\)$", text, re.M)
    assert "fields:" in text
    for name in FIELDS:
        assert re.search(rf"^  {name}\s+\w+\s+\(\)\s+[\d,]+\s+none\s+[\d.]+ (B|KiB|MiB)\s*[\d.]+ (B|KiB|MiB)$",
                         text, re.M), name  # data, on disk
    assert re.search(r"^  total\s+[\d.]+ (B|KiB|MiB)\s*[\d.]+ (B|KiB|MiB)$", text, re.M)
    assert re.search(r"^size:\s+data [\d.]+ (B|KiB|MiB), on disk [\d.]+ (B|KiB|MiB), apparent ", text, re.M)


def test_head(lake):
    data = read_all(lake)
    text = ok("head", lake, "-n", 5, "--fields", "obs,action,reward")
    lines = text.strip().splitlines()
    assert lines[0].split() == ["obs", "action", "reward"]
    rows = table_rows(text, 2)
    assert len(rows) == 5
    for i, r in enumerate(rows):
        assert int(r[0]) == i
        assert int(r[1]) == data["obs"][i] and int(r[2]) == data["action"][i]
        assert float(r[3]) == data["reward"][i]
    default = ok("head", lake)
    assert default.strip().splitlines()[0].split() == FIELDS
    assert len(table_rows(default, 2)) == 10
    assert len(table_rows(ok("head", lake, "-n", 0), 0)) >= 1  # an empty table, no crash


def test_episodes(lake):
    with rs.open(lake) as store:
        ep = store.episodes()
    text = ok("episodes", lake, "-n", 3)
    lines = text.strip().splitlines()
    assert lines[0].split() == ["episode", "first_row", "length", "return", "terminated",
                                "truncated", "complete"]
    rows = table_rows(text, 1)
    assert len(rows) == 3
    for r, (_, want) in zip(rows, ep.head(3).iterrows(), strict=True):
        assert [int(r[0]), int(r[1]), int(r[2])] == [want["episode"], want["first_row"],
                                                     want["length"]]
    assert len(table_rows(ok("episodes", lake), 1)) == len(ep)


def test_sample(lake):
    text = ok("sample", lake, "--batch-size", 5, "--seed", 3)
    lines = text.strip().splitlines()
    assert lines[0].split() == FIELDS
    assert len(lines) == 6
    assert ok("sample", lake, "--batch-size", 5, "--seed", 3) == text  # seeded: same batch
    assert ok("sample", lake, "--batch-size", 5, "--seed", 4) != text
    # rows drawn are rows of the store
    data = read_all(lake)
    stored = set(zip(data["episode"].tolist(), data["step"].tolist(), data["obs"].tolist(),
                     strict=True))
    for r in table_rows(text, 1):
        assert (int(r[7]), int(r[8]), int(r[1])) in stored


def test_sample_fields(lake):
    text = ok("sample", lake, "--batch-size", 4, "--fields", "obs, action")
    lines = text.strip().splitlines()
    assert lines[0].split() == ["obs", "action"]
    assert len(lines) == 5


def test_sample_balanced_by_action(lake):
    text = ok("sample", lake, "--batch-size", 400, "--balanced-by", "action", "--seed", 1,
              "--fields", "action")
    acts = np.array([int(r[1]) for r in table_rows(text, 1)])
    assert len(acts) == 400
    counts = np.bincount(acts, minlength=4)
    assert (counts > 60).all() and (counts < 140).all(), counts
    assert ok("sample", lake, "--batch-size", 400, "--balanced-by", "action", "--seed", 1,
              "--fields", "action") == text
    # terminated is rare in the data; balanced batches hold about half terminal rows
    text = ok("sample", lake, "--batch-size", 200, "--balanced-by", "terminated",
              "--fields", "terminated")
    term = [r[1] == "True" for r in table_rows(text, 1)]
    assert 60 < sum(term) < 140


# --------------------------------------------------------------------------------------
# train, evaluate
# --------------------------------------------------------------------------------------
def test_train_updates(lake, tmp_path):
    out = tmp_path / "q.npz"
    text = ok("train", lake, "--out", out, "--updates", 3, "--no-progress")
    assert text.startswith("3 sweeps (6,000 transitions")
    assert "ran the requested 3 updates" in text
    assert f"saved the agent (Q-table 16x4, visit counts, hyperparameters) to {out}" in text
    agent = QLearningAgent.load(out)
    assert agent.q.shape == (16, 4) and agent.q.any()
    assert agent.gamma == 0.99 and agent.alpha == 1.0


def test_train_batches_and_epochs(lake, tmp_path):
    out = tmp_path / "q.npz"
    text = ok("train", lake, "--out", out, "--epochs", 1, "--batch-size", 250, "--no-progress")
    assert text.startswith("8 updates (2,000 transitions")
    assert QLearningAgent.load(out).alpha_schedule == "visits"
    text = ok("train", lake, "--out", out, "--epochs", 2, "--no-progress", "--overwrite")
    assert text.startswith("2 sweeps (4,000 transitions")


def test_train_until_converged_and_cap(lake, tmp_path):
    out = tmp_path / "q.npz"
    text = ok("train", lake, "--out", out, "--max-updates", 3, "--no-progress")
    assert text.startswith("3 sweeps")
    assert "hit the cap of 3 updates before the Q-table stopped changing" in text
    assert "raise max_updates or tol" in text
    text = ok("train", lake, "--out", out, "--gamma", 0.5, "--no-progress", "--overwrite")
    assert re.search(r"converged: max \|dQ\| \* gamma/\(1-gamma\) < [\d.e+-]+ for 1 consecutive "
                     r"update$", text, re.M)
    text = ok("train", lake, "--out", out, "--batch-size", 64, "--max-updates", 5,
              "--no-progress", "--overwrite")
    assert "hit the cap of 5 updates" in text and "train in sweeps" in text


def test_train_balanced_by(lake, tmp_path):
    out = tmp_path / "q.npz"
    text = ok("train", lake, "--out", out, "--balanced-by", "action", "--updates", 5,
              "--no-progress")
    assert text.startswith("5 updates (1,280 transitions")  # default batch of 256
    text = ok("train", lake, "--out", out, "--balanced-by", "action", "--batch-size", 32,
              "--updates", 5, "--no-progress", "--overwrite")
    assert text.startswith("5 updates (160 transitions")
    assert QLearningAgent.load(out).visits.sum() == 160


def test_train_eval_and_log(lake, tmp_path):
    out, log = tmp_path / "q.npz", tmp_path / "m.csv"
    text = ok("train", lake, "--out", out, "--updates", 30, "--gamma", 0.9, "--eval-every", 10,
              "--eval-episodes", 5, "--log", log, "--no-progress")
    evals = re.findall(r"^  update\s+(\d+): mean return ([\d.]+), success ([\d.]+)%, mean length "
                       r"[\d.]+$", text, re.M)
    assert [int(u) for u, _, _ in evals] == [10, 20, 30]
    assert "3 evaluations of the greedy policy" in text and f"wrote 30 rows of metrics to {log}" in text
    # uses the store's env kwargs (deterministic lake): 30 sweeps of value iteration solve it
    assert evals[-1][1:] == ("1.000", "100.00")
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(log) as f:
        header = f.readline().strip().split(",")
    assert header == ["update", "transitions", "sweep", "max_dq", "bound", "seconds", "mean_return",
                      "success_rate", "mean_length"]
    assert [int(r["update"]) for r in rows] == list(range(1, 31))  # a row per sweep
    assert [int(r["transitions"]) for r in rows] == [2_000 * k for k in range(1, 31)]
    evaluated = [r for r in rows if r["mean_return"]]
    assert [int(r["update"]) for r in evaluated] == [10, 20, 30]
    assert float(rows[-1]["success_rate"]) == 1.0 and float(rows[-1]["mean_length"]) == 6.0
    assert all(float(r["max_dq"]) >= 0 for r in rows)



def _store_without_env(path: Path) -> Path:
    """A FrozenLake-shaped store made with the library: no env id recorded."""
    from gymnasium.spaces import Discrete

    n = 64
    with rs.create(path, Discrete(16), Discrete(4)) as store:
        store.extend({"obs": np.arange(n) % 16, "action": np.arange(n) % 4,
                      "reward": (np.arange(n) % 16 == 14).astype(float),
                      "next_obs": (np.arange(n) + 1) % 16,
                      "terminated": np.arange(n) % 16 == 14, "truncated": np.zeros(n, bool)})
    return path


def test_train_eval_every_needs_an_env(tmp_path):
    path = _store_without_env(tmp_path / "noenv.zarr")
    text = ok("train", path, "--out", tmp_path / "q.npz", "--updates", 2, "--no-progress")
    assert "ran the requested 2 updates" in text
    text = ok("train", path, "--out", tmp_path / "q.npz", "--updates", 2, "--eval-every", 1,
              "--eval-episodes", 2, "--env", LAKE, "--env-kwargs", DET, "--no-progress", "--overwrite")
    assert "  update        2: mean return" in text
    assert_error(run("train", path, "--out", tmp_path / "q.npz", "--updates", 2, "--eval-every",
                     1, "--no-progress"), "--eval-every", "--env")

def test_train_log_without_eval(lake, tmp_path):
    log = tmp_path / "m.csv"
    ok("train", lake, "--out", tmp_path / "q.npz", "--updates", 200, "--batch-size", 16,
       "--log", log, "--no-progress")
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["update"]) for r in rows] == [200]  # every --log-every 1000 updates, and the last
    assert rows[0]["mean_return"] == "" and rows[0]["sweep"] == "" and rows[0]["bound"] == ""


def test_train_gamma_alpha(lake, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    ok("train", lake, "--out", a, "--updates", 2, "--gamma", 0.5, "--alpha", 0.25,
       "--no-progress")
    ok("train", lake, "--out", b, "--updates", 2, "--no-progress")
    qa, qb = QLearningAgent.load(a), QLearningAgent.load(b)
    assert (qa.gamma, qa.alpha, qa.alpha_schedule) == (0.5, 0.25, "constant")
    assert (qb.gamma, qb.alpha) == (0.99, 1.0)
    assert not np.array_equal(qa.q, qb.q)
    assert 0 < qa.q.max() < 0.5  # two steps of size 1/4 toward targets <= 1 + 0.5 * 0.25


def test_evaluate(qtable):
    text = ok("evaluate", LAKE, qtable, "--episodes", 20, "--env-kwargs", DET)
    assert text.strip() == (f"{LAKE}: 20 episodes, mean return 1.000 (std 0.000), "
                            "success rate 100.00%, mean length 6.0")
    # slippery lake (the default): a valid run, worse than the deterministic one
    text = ok("evaluate", LAKE, qtable, "--episodes", 20, "--seed", 1)
    m = re.fullmatch(rf"{LAKE}: 20 episodes, mean return ([\d.]+) \(std [\d.]+\), "
                     r"success rate ([\d.]+)%, mean length ([\d.]+)", text.strip())
    assert m and float(m[1]) < 1.0
    assert ok("evaluate", LAKE, qtable, "--episodes", 20, "--seed", 1) == text
    # epsilon 1 plays randomly
    text = ok("evaluate", LAKE, qtable, "--episodes", 20, "--epsilon", 1, "--env-kwargs", DET)
    assert "success rate 100.00%" not in text


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------
def test_demo(lake, tmp_path):
    out = tmp_path / "demo_q.npz"
    text = ok("demo", "--data", lake, "--episodes", 20, "--out", out)
    lines = text.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["dataset", LAKE, "train", "evaluate", "optimum",
                                               "saved", "done"]
    assert lines[0] == f"dataset   {lake}"
    assert re.fullmatch(rf"\s+{LAKE} \{{\"is_slippery\": false\}}: 2,000 transitions, "
                        r"[\d,]+ episodes, collected earlier by a random policy; their mean "
                        r"return [\d.]+ \(undiscounted\)", lines[1])
    assert re.match(r"train     offline on the stored transitions only \(no new env steps\): \d+ "
                    r"full sweeps \(.* transitions replayed, .*\); converged", lines[2])
    assert lines[3] == (f"evaluate  greedy policy in {LAKE}: mean undiscounted return 1.000 over "
                        "20 episodes, success rate 100.0%, mean length 6.0")
    m = re.fullmatch(r"optimum   discounted value of the start state \(gamma=0.95\): optimal "
                     r"V\*=([\d.]+), greedy policy V=([\d.]+) \(gives up (-?[\d.]+)% of the "
                     r"optimal value\)", lines[4])
    assert m and float(m[2]) <= float(m[1]) + 1e-9
    assert lines[5] == f"saved     {out}"
    assert re.fullmatch(r"done in [\d.]+s", lines[6])
    assert QLearningAgent.load(out).gamma == 0.95


def test_demo_missing_data(tmp_path):
    assert_error(run("demo", "--data", tmp_path / "none.zarr"), str(tmp_path / "none.zarr"))



def test_demo_store_without_env_id(tmp_path):
    path = _store_without_env(tmp_path / "noenv.zarr")
    r = run("demo", "--data", path, "--episodes", 2)
    assert r.exit_code != 0
    assert isinstance(r.exception, SystemExit), f"uncaught {r.exception!r}\n{r.output}"
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and str(path) in last, r.output

# --------------------------------------------------------------------------------------
# error paths: one line "Error: ...", exit code != 0, no traceback
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["info", "head", "episodes", "sample", "train"])
def test_missing_store(tmp_path, command):
    path = tmp_path / "nope.zarr"
    extra = ["--out", tmp_path / "q.npz", "--updates", 1] if command == "train" else []
    assert_error(run(command, path, *extra), str(path))


@pytest.mark.parametrize("command", ["info", "head", "episodes", "sample"])
def test_directory_not_a_store(tmp_path, command):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x.txt").write_text("hello")
    assert_error(run(command, tmp_path / "dir"), str(tmp_path / "dir"), "not a replaystore store")


def test_regular_file_not_a_store(tmp_path):
    f = tmp_path / "file.zarr"
    f.write_text("hello")
    assert_error(run("info", f), str(f))


@pytest.mark.parametrize("content", [b"garbage{", b"\x00\xff\xfe", b"[]", b"{}", b""])
def test_garbage_zarr_json(tmp_path, content):
    d = tmp_path / "g.zarr"
    d.mkdir()
    (d / "zarr.json").write_bytes(content)
    assert_error(run("info", d), str(d))
    assert_error(run("sample", d), str(d))


def test_zarr_json_is_a_directory(tmp_path):
    d = tmp_path / "g.zarr"
    (d / "zarr.json").mkdir(parents=True)
    assert_error(run("info", d), str(d / "zarr.json"))


def test_damaged_field_metadata(lake, tmp_path):
    import shutil

    d = tmp_path / "broken.zarr"
    shutil.copytree(lake, d)
    (d / "obs" / "zarr.json").write_text("junk")
    assert_error(run("head", d), str(d / "obs" / "zarr.json"), "'obs'")


def test_collect_unknown_env(tmp_path):
    out = tmp_path / "x.zarr"
    assert_error(run("collect", "NoSuchEnv-v0", "--out", out, "--steps", 5, "--no-progress"),
                 "NoSuchEnv")
    assert not out.exists()


def test_evaluate_unknown_env(qtable):
    assert_error(run("evaluate", "NoSuchEnv-v0", qtable, "--episodes", 1), "NoSuchEnv")


def test_bad_env_kwargs_for_the_env(tmp_path, qtable):
    out = tmp_path / "x.zarr"
    assert_error(run("collect", LAKE, "--out", out, "--steps", 5, "--env-kwargs",
                     '{"nonsense_kw": 1}', "--no-progress"), "nonsense_kw")
    assert not out.exists()
    assert_error(run("evaluate", LAKE, qtable, "--env-kwargs", '{"nonsense_kw": 1}'),
                 "nonsense_kw")


@pytest.mark.parametrize("value", ["{bad", "[1, 2]", '"text"'])
def test_collect_env_kwargs_not_a_json_object(tmp_path, value):
    out = tmp_path / "x.zarr"
    assert_error(run("collect", LAKE, "--out", out, "--steps", 5, "--env-kwargs", value,
                     "--no-progress"), "--env-kwargs", value)
    assert not out.exists()


@pytest.mark.parametrize("value", ["{bad", "[1, 2]"])
def test_evaluate_env_kwargs_not_a_json_object(qtable, value):
    assert_error(run("evaluate", LAKE, qtable, "--env-kwargs", value), "--env-kwargs", value)


@pytest.mark.parametrize("budget", [[], ["--steps", "5", "--episodes", "2"]])
def test_collect_needs_exactly_one_budget(tmp_path, budget):
    out = tmp_path / "x.zarr"
    assert_error(run("collect", LAKE, "--out", out, *budget, "--no-progress"),
                 "--steps", "--episodes")
    assert not out.exists()


def test_collect_into_incompatible_store(lake, tmp_path):
    import shutil

    d = tmp_path / "fl.zarr"
    shutil.copytree(lake, d)
    line = assert_error(run("collect", "CartPole-v1", "--out", d, "--steps", 5, "--no-progress"),
                        str(d), "CartPole-v1", "Discrete(16)")
    assert "Box" in line
    with rs.open(d) as store:  # nothing was written
        assert len(store) == 2000 and len(store.info["collections"]) == 1
    # other env kwargs with other spaces are refused too
    assert_error(run("collect", LAKE, "--out", d, "--steps", 5, "--no-progress",
                     "--env-kwargs", '{"map_name": "8x8"}'), str(d), "Discrete(64)")


def test_collect_into_existing_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("keep me")
    assert_error(run("collect", LAKE, "--out", f, "--steps", 5, "--no-progress"), str(f))
    assert f.read_text() == "keep me"


def test_collect_bad_codec(tmp_path):
    out = tmp_path / "x.zarr"
    assert_error(run("collect", LAKE, "--out", out, "--steps", 5, "--codecs", "bogus",
                     "--no-progress"), "'bogus'")
    assert not out.exists()


def test_qtable_wrong_shape(qtable, tmp_path):
    eight = '{"map_name": "8x8"}'
    assert_error(run("evaluate", LAKE, qtable, "--episodes", 2, "--env-kwargs", eight),
                 "(16, 4)", "64")
    out = tmp_path / "x.zarr"
    assert_error(run("collect", LAKE, "--out", out, "--steps", 5, "--qtable", qtable,
                     "--env-kwargs", eight, "--no-progress"), "(16, 4)", "(64, 4)")
    assert not out.exists()


def test_qtable_for_box_env(qtable, tmp_path):
    assert_error(run("evaluate", "CartPole-v1", qtable, "--episodes", 1), "Discrete")
    out = tmp_path / "x.zarr"
    assert_error(run("collect", "CartPole-v1", "--out", out, "--steps", 5, "--qtable", qtable,
                     "--no-progress"), "Discrete")


@pytest.mark.parametrize("content", [b"garbage\n", b"", b"\x93NUMPY\x01\x00"])
def test_garbage_qtable(qtable, tmp_path, content):
    q = tmp_path / "q.npz"
    QLearningAgent.load(qtable).save(q)  # a saved agent, then damaged
    q.write_bytes(content)
    assert_error(run("evaluate", LAKE, q, "--episodes", 1), str(q))
    out = tmp_path / "x.zarr"
    assert_error(run("collect", LAKE, "--out", out, "--steps", 5, "--qtable", q,
                     "--no-progress"), str(q))
    assert not out.exists()


def test_missing_qtable(tmp_path):
    q = tmp_path / "none.npz"
    assert_error(run("evaluate", LAKE, q), str(q))
    assert_error(run("collect", LAKE, "--out", tmp_path / "x.zarr", "--steps", 5, "--qtable", q,
                     "--no-progress"), str(q))


def test_train_on_box_observations(pole, tmp_path):
    line = assert_error(run("train", pole, "--out", tmp_path / "q.npz", "--updates", 1,
                            "--no-progress"), "Box", "Discrete")
    assert "observation" in line
    assert not (tmp_path / "q.npz").exists()


def test_sample_balanced_by_continuous_field(lake):
    assert_error(run("sample", lake, "--balanced-by", "reward"), "'reward'", "continuous")


@pytest.mark.parametrize("command", ["sample", "train"])
def test_balanced_by_unknown_field(lake, tmp_path, command):
    extra = ["--out", tmp_path / "q.npz", "--updates", 1, "--no-progress"] if command == "train" else []
    assert_error(run(command, lake, "--balanced-by", "nosuch", *extra), "'nosuch'")


@pytest.mark.parametrize("command", ["head", "sample"])
def test_unknown_field(lake, command):
    assert_error(run(command, lake, "--fields", "obs,nosuch"), "'nosuch'")


def test_train_out_into_missing_directory(lake, tmp_path):
    out = tmp_path / "nodir" / "q.npz"
    assert_error(run("train", lake, "--out", out, "--updates", 1, "--no-progress"),
                 str(tmp_path / "nodir"))
    assert not (tmp_path / "nodir").exists()


def test_train_out_without_npy_suffix(lake, tmp_path):
    out = tmp_path / "q.txt"
    assert_error(run("train", lake, "--out", out, "--updates", 1, "--no-progress"), str(out))


def test_train_log_into_missing_directory(lake, tmp_path):
    log = tmp_path / "nodir" / "m.csv"
    assert_error(run("train", lake, "--out", tmp_path / "q.npz", "--updates", 1, "--log", log,
                     "--no-progress"), str(log))


def test_train_updates_and_epochs_together(lake, tmp_path):
    assert_error(run("train", lake, "--out", tmp_path / "q.npz", "--updates", 1, "--epochs", 1,
                     "--no-progress"), "updates", "epochs")


@pytest.mark.parametrize("command", ["sample", "train"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_batch_size_is_a_usage_error(lake, tmp_path, command, value):
    extra = ["--out", tmp_path / "q.npz", "--no-progress"] if command == "train" else []
    r = run(command, lake, "--batch-size", value, *extra)
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    assert f"Invalid value for '--batch-size': {value}" in r.output
    assert not (tmp_path / "q.npz").exists()


def test_error_output_goes_to_stderr(tmp_path):
    path = tmp_path / "nope.zarr"
    r = CliRunner().invoke(main, ["info", str(path)])
    assert r.stdout == "" and r.stderr.startswith("Error:")
    assert json.dumps(str(path))[1:-1] in r.stderr


def test_every_option_of_every_command_has_help_text():
    import click

    missing = [f"{name} {p.opts[-1]}" for name, cmd in main.commands.items() for p in cmd.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, f"options without help text: {missing}"

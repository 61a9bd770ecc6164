"""Imports: Minari datasets written by minari itself from real gymnasium environments, and
handwritten D4RL-style HDF5 files, compared exactly with what the source holds; the CLI's
``import`` command; and the error paths (missing keys, bad flags, missing extras,
existing output)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import cli_one_line as one_line
from conftest import run_cli as run

import replaystore as rs
from replaystore.errors import (
    DatasetNotFoundError,
    InteropError,
    MissingExtraError,
    SpaceError,
    StoreExistsError,
)
from replaystore.interop import InteropWarning, import_d4rl, import_from, import_minari

MINARI_REASON = 'Minari import needs pip install "replaystore[minari]"'


@pytest.fixture
def minari(tmp_path, monkeypatch):
    mn = pytest.importorskip("minari", reason=MINARI_REASON)
    pytest.importorskip("h5py", reason=MINARI_REASON)
    pytest.importorskip("PIL", reason=MINARI_REASON)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari-datasets"))
    return mn




def episode_buffer(**kw):
    from minari.data_collector import EpisodeBuffer

    return EpisodeBuffer(**kw)


def read_all(path) -> dict[str, np.ndarray]:
    with rs.open(path) as store:
        return store.read_range(0, len(store))


def assert_matches_minari(store_path, ds) -> None:
    """Every row of the store is the matching step of the Minari dataset, exactly."""
    data = read_all(store_path)
    start = 0
    for ep in ds.iterate_episodes():
        n = len(ep.rewards)
        rows = slice(start, start + n)
        start += n
        assert (data["episode"][rows] == ep.id).all()
        np.testing.assert_array_equal(data["step"][rows], np.arange(n))
        np.testing.assert_array_equal(data["obs"][rows], ep.observations[:-1])
        np.testing.assert_array_equal(data["next_obs"][rows], ep.observations[1:])
        np.testing.assert_array_equal(data["action"][rows], ep.actions)
        # float32 in the store; these rewards are exact in float32, so equal as float64 too
        np.testing.assert_array_equal(data["reward"][rows].astype(np.float64), ep.rewards)
        np.testing.assert_array_equal(data["terminated"][rows], ep.terminations)
        np.testing.assert_array_equal(data["truncated"][rows], ep.truncations)
    assert start == len(data["reward"]) == ds.total_steps


# --------------------------------------------------------------------------------------
# Minari datasets made by minari
# --------------------------------------------------------------------------------------
def test_import_a_dataset_recorded_by_minaris_data_collector(minari, tmp_path):
    pytest.importorskip("jax", reason='minari.DataCollector needs jax (pip install "minari[create]")')
    env = minari.DataCollector(gym.make("CartPole-v1"))
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(300):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    with pytest.warns(UserWarning):  # minari's own warnings about missing author etc.
        env.create_dataset("replaystore/cartpole-v0")
    env.close()
    ds = minari.load_dataset("replaystore/cartpole-v0")
    assert ds.total_steps == 300 and ds.total_episodes > 5
    out = tmp_path / "cp.zarr"
    stats = import_minari("replaystore/cartpole-v0", out)
    assert (stats.rows, stats.episodes) == (300, ds.total_episodes)
    assert_matches_minari(out, ds)
    with rs.open(out) as store:
        assert store.env_info == {"id": "CartPole-v1", "kwargs": {}}
        assert store.observation_space == ds.observation_space
        assert store.action_space == gym.spaces.Discrete(2)
        assert store.episodes()["complete"].all()  # the collector truncates the last episode
        src = store.info["imported_from"]
        assert src["dataset_id"] == "replaystore/cartpole-v0" and src["steps"] == 300
        assert src["env_spec"]["id"] == "CartPole-v1"


def frozenlake_buffers(minari, episodes: int, seed: int, cut_last: int | None = None) -> list:
    """Episodes of a real FrozenLake env with seeded random actions, as minari buffers."""
    env = gym.make("FrozenLake-v1", map_name="4x4", max_episode_steps=30)
    env.action_space.seed(seed)
    buffers = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        o, a, r, te, tr = [obs], [], [], [], []
        while True:
            act = env.action_space.sample()
            obs, rew, term, trunc, _ = env.step(act)
            o.append(obs), a.append(act), r.append(rew), te.append(term), tr.append(trunc)
            if term or trunc or (e == episodes - 1 and cut_last is not None and len(r) == cut_last):
                break
        buffers.append(episode_buffer(observations=np.array(o), actions=np.array(a),
                                            rewards=np.array(r, np.float64), terminations=np.array(te),
                                            truncations=np.array(tr)))
    env.close()
    return buffers


def test_import_a_dataset_minari_made_from_a_real_env(minari, tmp_path):
    buffers = frozenlake_buffers(minari, 8, seed=3, cut_last=2)
    env = gym.make("FrozenLake-v1", map_name="4x4", max_episode_steps=30)
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers("replaystore/lake-v2", buffers, env=env, author="t",
                                           author_email="t", code_permalink="t", algorithm_name="random",
                                           description="t")
    ds = minari.load_dataset("replaystore/lake-v2")
    out = tmp_path / "lake.zarr"
    with pytest.warns(InteropWarning, match="1 episode end without termination or truncation"):
        stats = import_from("replaystore/lake-v2", out, "minari")
    assert stats.rows == ds.total_steps == sum(len(b) for b in buffers)
    assert_matches_minari(out, ds)
    with rs.open(out) as store:
        # the env spec comes back with what gym.make needs: kwargs and the step limit
        assert store.env_info == {"id": "FrozenLake-v1",
                                  "kwargs": {"map_name": "4x4", "max_episode_steps": 30}}
        ep = store.episodes()
        assert len(ep) == 8 and ep["complete"].sum() == 7 and not ep["complete"].iloc[-1]
        assert store.info["imported_from"]["notes"] == stats.notes


def test_import_rounds_float64_rewards_with_a_warning(minari, tmp_path):
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    buf = episode_buffer(observations=np.zeros((3, 2), np.float32), actions=np.zeros((2, 2), np.float32),
                               rewards=np.array([0.1, 0.5]), terminations=np.array([False, True]),
                               truncations=np.array([False, False]))
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers("replaystore/r-v0", [buf], observation_space=space, action_space=space)
    with pytest.warns(InteropWarning, match="1 reward rounded to float32"):
        import_minari("replaystore/r-v0", tmp_path / "r.zarr")
    np.testing.assert_array_equal(read_all(tmp_path / "r.zarr")["reward"], np.float32([0.1, 0.5]))


def test_import_minari_errors(minari, tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="replaystore/nope-v0: no Minari dataset with this id"):
        import_minari("replaystore/nope-v0", tmp_path / "a.zarr")
    with pytest.raises(DatasetNotFoundError, match="no such Minari dataset"):
        import_minari(tmp_path / "missing", tmp_path / "a.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InteropError, match="not a Minari dataset"):
        import_minari(tmp_path / "plain", tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists()
    # an episode with as many observations as steps (not one more): refused, no store left
    space = gym.spaces.Discrete(4)
    good = episode_buffer(observations=np.array([0, 1]), actions=np.array([1]), rewards=np.array([1.0]),
                                terminations=np.array([True]), truncations=np.array([False]))
    bad = episode_buffer(observations=np.array([0, 1]), actions=np.array([1, 2]),
                               rewards=np.array([0.0, 1.0]), terminations=np.array([False, True]),
                               truncations=np.array([False, False]))
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers("replaystore/bad-v0", [good, bad], observation_space=space,
                                           action_space=space)
    with pytest.raises(InteropError, match=r"replaystore/bad-v0: episode 1: 2 observations \(obs\) for 2 steps"):
        import_minari("replaystore/bad-v0", tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()
    # an existing store is not touched
    existing = tmp_path / "e.zarr"
    rs.create(existing, space, space).close()
    with pytest.raises(StoreExistsError):
        import_minari("replaystore/bad-v0", existing)
    assert rs.open(existing).observation_space == space
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(MissingExtraError, match=r'pip install "replaystore\[minari\]"'):
        import_minari("replaystore/bad-v0", tmp_path / "c.zarr")


# --------------------------------------------------------------------------------------
# D4RL-style HDF5 files
# --------------------------------------------------------------------------------------
@pytest.fixture
def h5py():
    return pytest.importorskip("h5py", reason='D4RL import needs pip install "replaystore[hdf5]"')


def d4rl_arrays(n: int = 23, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    terminals = np.zeros(n, np.float32)
    timeouts = np.zeros(n, bool)
    terminals[[4, 5, 12]] = 1.0  # a one-row episode at 5
    timeouts[[9, 16]] = True     # rows 17.. are an unfinished episode
    return {
        "observations": rng.standard_normal((n, 3)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "rewards": rng.standard_normal((n, 1)).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "next_observations": rng.standard_normal((n, 3)).astype(np.float32),
        "infos/qpos": rng.standard_normal((n, 2)),
    }


def write_h5(h5py, path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v
    return path


def reference_rows(a: dict[str, np.ndarray], with_next: bool) -> dict[str, np.ndarray]:
    """What the import must produce, row by row, the plain way."""
    n = len(a["rewards"])
    out: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated",
                                            "truncated", "episode", "step")}
    ep = step = 0
    for t in range(n):
        done = bool(a["terminals"][t]) or bool(a["timeouts"][t])
        if with_next or (not done and t + 1 < n):
            out["obs"].append(a["observations"][t])
            out["action"].append(a["actions"][t])
            out["reward"].append(a["rewards"][t, 0])
            out["next_obs"].append(a["next_observations"][t] if with_next else a["observations"][t + 1])
            out["terminated"].append(bool(a["terminals"][t]))
            out["truncated"].append(bool(a["timeouts"][t]))
            out["episode"].append(ep)
            out["step"].append(step)
        ep, step = (ep + 1, 0) if done else (ep, step + 1)
    return {k: np.array(v) for k, v in out.items()}


def test_d4rl_without_next_observations_drops_the_unpaired_rows(h5py, tmp_path):
    a = d4rl_arrays()
    del a["next_observations"]
    src = write_h5(h5py, tmp_path / "d.hdf5", a)
    want = reference_rows(a, with_next=False)
    out = tmp_path / "d.zarr"
    with pytest.warns(InteropWarning, match=r"dropped 6 row\(s\) with no next observation"):
        stats = import_d4rl(src, out, block_rows=4)  # blocks cut through episodes
    assert (stats.rows, stats.dropped_rows) == (17, 6) and len(want["reward"]) == 17
    assert stats.episodes == len(np.unique(want["episode"])) == 5  # the one-row episode is gone
    got = read_all(out)
    for name, values in want.items():
        np.testing.assert_array_equal(got[name], values.astype(got[name].dtype), err_msg=name)
    assert not got["terminated"].any() and not got["truncated"].any()
    with rs.open(out) as store:
        assert store.observation_space == gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        assert store.action_space == gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        src_info = store.info["imported_from"]
        assert src_info["format"] == "d4rl" and src_info["file"] == str(src.resolve())
        assert src_info["dropped_rows"] == 6 and src_info["ignored_keys"] == ["infos"]
        assert src_info["next_observations"] is False


def test_d4rl_with_next_observations_keeps_every_row(h5py, tmp_path):
    a = d4rl_arrays(seed=1)
    a["actions"] = np.random.default_rng(1).integers(2, 6, len(a["rewards"])).astype(np.int32)
    src = write_h5(h5py, tmp_path / "d.hdf5", a)
    out = tmp_path / "d.zarr"
    stats = import_d4rl(src, out, discrete_actions=True, env_id="Hopper-v5", env_kwargs={"ctrl_cost_weight": 0.1},
                        block_rows=5)
    assert (stats.rows, stats.dropped_rows, stats.episodes) == (23, 0, 6) and not stats.notes
    want = reference_rows(a, with_next=True)
    got = read_all(out)
    for name, values in want.items():
        np.testing.assert_array_equal(got[name], values.astype(got[name].dtype), err_msg=name)
    assert got["terminated"].sum() == 3 and got["truncated"].sum() == 2
    with rs.open(out) as store:
        lo, hi = int(a["actions"].min()), int(a["actions"].max())
        assert store.action_space == gym.spaces.Discrete(hi - lo + 1, start=lo)
        assert store.env_info == {"id": "Hopper-v5", "kwargs": {"ctrl_cost_weight": 0.1}}
        ep = store.episodes()
        assert list(ep["complete"]) == [True] * 5 + [False]


def test_d4rl_without_timeouts_and_with_given_spaces(h5py, tmp_path):
    a = d4rl_arrays(seed=2)
    del a["timeouts"]
    a["actions"] = np.random.default_rng(2).integers(0, 3, len(a["rewards"]))
    src = write_h5(h5py, tmp_path / "d.hdf5", a)
    with pytest.warns(InteropWarning, match="no 'timeouts' in the file: episodes end only at terminals"):
        stats = import_d4rl(src, tmp_path / "d.zarr", action_space=gym.spaces.Discrete(3))
    assert stats.rows == 23
    got = read_all(tmp_path / "d.zarr")
    assert not got["truncated"].any()
    np.testing.assert_array_equal(got["episode"], np.cumsum(np.r_[0, a["terminals"][:-1]]))
    # a given space is checked like any append: values outside it are refused
    with pytest.warns(InteropWarning), pytest.raises(SpaceError, match="action"):
        import_d4rl(src, tmp_path / "e.zarr", action_space=gym.spaces.Discrete(2))
    assert not (tmp_path / "e.zarr").exists()


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (lambda a: a.pop("rewards"), ["no 'rewards' dataset", "observations, actions, rewards, terminals"]),
        (lambda a: a.__setitem__("actions", a["actions"][:-1]), ["'actions' has 22 rows but 'observations' has 23"]),
        (lambda a: a["terminals"].__setitem__(7, 2.0), ["'terminals' row 7 is", "expected 0/1"]),
        (lambda a: a.__setitem__("rewards", np.zeros((23, 2))), ["'rewards' has shape (23, 2)"]),
        (lambda a: a["rewards"].__setitem__((3, 0), np.nan), ["'rewards' row 3 is nan"]),
        (lambda a: a.__setitem__("next_observations", a["next_observations"][:, :2]),
         ["'next_observations' has shape (23, 2)"]),
    ],
    ids=["missing-rewards", "short-actions", "bad-terminal", "wide-rewards", "nan-reward", "bad-next"],
)
def test_d4rl_bad_files_name_the_file_and_the_key(h5py, tmp_path, change, needles):
    a = d4rl_arrays()
    change(a)
    src = write_h5(h5py, tmp_path / "bad.hdf5", a)
    with pytest.raises(InteropError) as e:
        import_d4rl(src, tmp_path / "bad.zarr")
    assert str(src) in str(e.value)
    for needle in needles:
        assert needle in str(e.value)
    assert not (tmp_path / "bad.zarr").exists()


def test_d4rl_other_errors(h5py, tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="no such file"):
        import_d4rl(tmp_path / "missing.hdf5", tmp_path / "a.zarr")
    text = tmp_path / "text.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(InteropError, match=f"{text}: not a readable HDF5 file"):
        import_d4rl(text, tmp_path / "a.zarr")
    src = write_h5(h5py, tmp_path / "d.hdf5", d4rl_arrays())
    existing = tmp_path / "e.zarr"
    rs.create(existing, gym.spaces.Discrete(2), gym.spaces.Discrete(2)).close()
    with pytest.raises(StoreExistsError):
        import_d4rl(src, existing)
    import_d4rl(src, existing, overwrite=True)
    assert len(rs.open(existing)) == 23
    with pytest.raises(InteropError, match="discrete actions need integer 'actions'"):
        import_d4rl(src, tmp_path / "f.zarr", discrete_actions=True)
    with pytest.raises(InteropError, match="'yaml'.*minari, d4rl"):
        import_from(src, tmp_path / "g.zarr", "yaml")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingExtraError, match=r'pip install "replaystore\[hdf5\]"'):
        import_d4rl(src, tmp_path / "h.zarr")


# --------------------------------------------------------------------------------------
# the CLI
# --------------------------------------------------------------------------------------
def test_cli_import_d4rl(h5py, tmp_path):
    a = d4rl_arrays()
    del a["next_observations"]
    src = write_h5(h5py, tmp_path / "d.hdf5", a)
    out = tmp_path / "d.zarr"
    r = run("import", src, out, "--from", "d4rl", "--env", "Hopper-v5", "--no-progress")
    assert r.exit_code == 0, r.output
    line = one_line(r)
    assert line.startswith(f"imported 5 episodes (17 rows) from D4RL file {src} into {out}")
    assert "dropped 6 row(s) with no next observation" in line
    assert rs.open(out).env_info == {"id": "Hopper-v5", "kwargs": {}}
    r = run("import", src, out, "--from", "d4rl")
    assert r.exit_code == 1 and one_line(r).startswith(f"Error: {out}: already exists")
    a.pop("rewards")
    bad = write_h5(h5py, tmp_path / "bad.hdf5", a)
    r = run("import", bad, tmp_path / "b.zarr", "--from", "d4rl")
    assert r.exit_code == 1
    assert one_line(r).startswith(f"Error: {bad}: no 'rewards' dataset")
    r = run("import", src, tmp_path / "c.zarr", "--from", "d4rl", "--env-kwargs", "[1]", "--env", "X-v0")
    assert r.exit_code == 1 and "--env-kwargs: expected a JSON object" in one_line(r)
    r = run("import", src, tmp_path / "c.zarr", "--from", "csv")
    assert r.exit_code == 2 and "Invalid value for '--from'" in r.output


def test_cli_import_minari(minari, tmp_path):
    buffers = frozenlake_buffers(minari, 3, seed=0)
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers("replaystore/cli-v0", buffers, env="FrozenLake-v1")
    out = tmp_path / "m.zarr"
    r = run("import", "replaystore/cli-v0", out, "--from", "minari", "--no-progress")
    assert r.exit_code == 0, r.output
    n = sum(len(b) for b in buffers)
    assert one_line(r) == one_line(r) and one_line(r).startswith(
        f"imported 3 episodes ({n} rows) from Minari dataset replaystore/cli-v0 into {out}")
    assert_matches_minari(out, minari.load_dataset("replaystore/cli-v0"))
    r = run("import", "replaystore/missing-v0", tmp_path / "x.zarr", "--from", "minari")
    assert r.exit_code == 1 and one_line(r).startswith("Error: replaystore/missing-v0: no Minari dataset")
    r = run("import", "replaystore/cli-v0", tmp_path / "y.zarr", "--from", "minari", "--discrete-actions")
    assert r.exit_code == 1 and "apply to --from d4rl" in one_line(r)


def test_readme_example_runs(minari, h5py, tmp_path, monkeypatch):
    import re

    from replaystore.collect import collect

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "replaystore.interop" in b]
    monkeypatch.chdir(tmp_path)
    collect("FrozenLake-v1", "fl.zarr", episodes=4, seed=0)
    write_h5(h5py, tmp_path / "hopper.hdf5", d4rl_arrays())
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", InteropWarning)  # complete episodes, a complete file
        exec(compile(block, "README.md", "exec"), scope)
    with rs.open("fl.zarr") as store:
        want = store.to_pandas().reset_index(drop=True)
    assert scope["df"].equals(want) and scope["stats"].rows == len(want)
    assert minari.load_dataset("replaystore/frozenlake-v0").total_episodes == 4
    assert len(rs.open("back.zarr")) == len(want) and len(rs.open("hopper.zarr")) == 23

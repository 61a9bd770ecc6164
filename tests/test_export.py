"""Exports: a store to Parquet and CSV (read back with pandas) and to Minari (read back with
minari and imported again), compared exactly with what the store holds; the CLI's
``export`` command; and the error paths (missing extra, existing output, failures
part-way, nothing to export)."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from conftest import cli_one_line as one_line
from conftest import run_cli as run

import replaystore as rs
from replaystore.errors import (
    InteropError,
    MissingExtraError,
    ReplayStoreError,
    SchemaError,
    StoreExistsError,
)
from replaystore.interop import (
    InteropWarning,
    export_as,
    export_csv,
    export_minari,
    export_parquet,
    import_minari,
)
from replaystore.storage.store import ReplayStore

OBS = gym.spaces.Dict({"pos": gym.spaces.Box(-10, 10, (3,), np.float32),
                       "cam": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})
ACT = gym.spaces.Discrete(4)
EXTRA = [("q", "float64"), ("label", "int16"), ("h", "float16")]
IMAGES = ["obs.cam", "next_obs.cam"]
N = 50


def mixed_batch(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows with awkward values: -0.0, subnormals, NaN/inf and extreme exponents."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-10, 10, (n + 1, 3)).astype(np.float32)
    pos[1, 0], pos[2, 1], pos[3, 2] = -0.0, np.float32(1e-40), np.float32(1) / 3
    cam = rng.integers(0, 256, (n + 1, 8, 8, 3), dtype=np.uint8)
    q = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    q[:5] = [np.nan, np.inf, -np.inf, -0.0, 5e-324]
    return {
        "obs.pos": pos[:-1], "obs.cam": cam[:-1], "action": rng.integers(0, 4, n),
        "reward": (rng.standard_normal(n) * 1e3).astype(np.float32),
        "next_obs.pos": pos[1:], "next_obs.cam": cam[1:],
        "terminated": rng.random(n) < 0.15, "truncated": rng.random(n) < 0.05,
        "q": q, "label": rng.integers(-500, 500, n).astype(np.int16),
        "h": rng.standard_normal(n).astype(np.float16),
    }


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """A store with every kind of field (read only by the tests)."""
    path = tmp_path_factory.mktemp("mixed") / "mixed.zarr"
    with rs.create(path, OBS, ACT, extra_fields=EXTRA) as store:
        store.extend(mixed_batch(N))
    return path


def narrow_fields(store) -> list[str]:
    return [n for n in store.schema.names if n not in IMAGES]


def assert_same_frame(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns, dtypes and values bit for bit (NaN equals NaN, -0.0 is not 0.0)."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for c in want.columns:
        g, w = got[c].to_numpy(), want[c].to_numpy()
        assert g.dtype == w.dtype, f"{c}: {g.dtype} != {w.dtype}"
        np.testing.assert_array_equal(g, w, err_msg=c)
        if w.dtype.kind == "f":
            np.testing.assert_array_equal(np.signbit(g), np.signbit(w), err_msg=c)


def read_csv_like(path: Path, want: pd.DataFrame) -> pd.DataFrame:
    """Read a CSV back with the dtypes of ``want`` (float16 via float64: pandas' parser
    has no float16)."""
    dtypes = {c: ("float64" if t == np.float16 else t) for c, t in want.dtypes.items()}
    df = pd.read_csv(path, dtype=dtypes)
    for c, t in want.dtypes.items():
        if t == np.float16:
            df[c] = df[c].to_numpy().astype(np.float16)
    return df


# --------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------
def test_parquet_round_trip_equals_to_pandas(mixed, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "m.parquet"
    with pytest.warns(InteropWarning, match=r"left out image-like field\(s\) obs\.cam, next_obs\.cam"):
        stats = export_parquet(mixed, out, block_rows=7)
    assert stats.rows == N and out.is_file()
    with rs.open(mixed) as store:
        want = store.to_pandas(fields=narrow_fields(store)).reset_index(drop=True)
    got = pd.read_parquet(out)
    assert_same_frame(got, want)
    assert list(stats.columns) == list(want.columns)
    assert not any(c.startswith(("obs.cam", "next_obs.cam")) for c in got.columns)
    f = pq.ParquetFile(out)
    assert f.num_row_groups == math.ceil(N / 7)  # written block by block
    meta = json.loads(f.schema_arrow.metadata[b"replaystore"])
    assert meta["rows"] == N and meta["source"] == str(mixed)
    assert [d["name"] for d in meta["fields"]] == narrow_fields(rs.open(mixed))
    assert meta["spaces"]["observation"] == rs.open(mixed).metadata["spaces"]["observation"]


def test_parquet_keeps_images_as_fixed_size_lists(mixed, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "img.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("error", InteropWarning)  # nothing is left out
        export_parquet(mixed, out, include_images=True, block_rows=16)
    with rs.open(mixed) as store:
        data = store.read_range(0, N)
        want = store.to_pandas(fields=narrow_fields(store)).reset_index(drop=True)
    schema = pq.read_schema(out)
    for name in IMAGES:
        t = schema.field(name).type
        assert pa.types.is_fixed_size_list(t) and t.list_size == 8 * 8 * 3
        assert json.loads(schema.field(name).metadata[b"replaystore.shape"]) == [8, 8, 3]
    got = pd.read_parquet(out)
    for name in IMAGES:
        arr = np.stack(got[name].to_numpy()).reshape(N, 8, 8, 3)
        assert arr.dtype == np.uint8
        np.testing.assert_array_equal(arr, data[name])
    assert_same_frame(got.drop(columns=IMAGES), want)


def test_parquet_of_a_ring_is_in_logical_order(tmp_path):
    path = tmp_path / "ring.zarr"
    with rs.create(path, OBS, ACT, extra_fields=EXTRA, capacity=20, chunk_rows=8) as store:
        store.extend(mixed_batch(N, seed=3))
    out = tmp_path / "ring.parquet"
    with pytest.warns(InteropWarning):
        export_parquet(path, out, block_rows=6)
    got = pd.read_parquet(out)
    with rs.open(path) as store:
        assert len(store) == 20 and store.total == N
        want = store.to_pandas(fields=narrow_fields(store)).reset_index(drop=True)
    assert_same_frame(got, want)
    # the newest 20 rows written, oldest first
    np.testing.assert_array_equal(got["reward"].to_numpy(), mixed_batch(N, seed=3)["reward"][-20:])


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------
def test_csv_round_trip_is_exact(mixed, tmp_path):
    out = tmp_path / "m.csv"
    with pytest.warns(InteropWarning, match="obs.cam"):
        stats = export_csv(mixed, out, block_rows=7)
    with rs.open(mixed) as store:
        want = store.to_pandas(fields=narrow_fields(store)).reset_index(drop=True)
    lines = out.read_text().splitlines()
    assert len(lines) == N + 1 and lines[0] == ",".join(want.columns)  # one header, no repeats
    assert stats.rows == N and list(stats.columns) == list(want.columns)
    assert_same_frame(read_csv_like(out, want), want)


def test_csv_named_image_field_becomes_columns(mixed, tmp_path):
    out = tmp_path / "cam.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error", InteropWarning)
        export_csv(mixed, out, fields=["obs.cam", "action", "obs.cam"])  # duplicates ignored
    with rs.open(mixed) as store:
        want = store.to_pandas(fields=["obs.cam", "action"]).reset_index(drop=True)
    assert want.columns[0] == "obs.cam_0_0_0" and len(want.columns) == 8 * 8 * 3 + 1
    assert_same_frame(read_csv_like(out, want), want)


def test_empty_store_exports_the_columns_only(tmp_path):
    path = tmp_path / "empty.zarr"
    rs.create(path, gym.spaces.Box(-1, 1, (2,)), ACT).close()
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"e.{fmt}"
        stats = export_as(path, out, fmt)
        got = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
        assert stats.rows == 0 and len(got) == 0
        assert list(got.columns) == ["obs_0", "obs_1", "action", "reward", "next_obs_0", "next_obs_1",
                                     "terminated", "truncated", "episode", "step"]


# --------------------------------------------------------------------------------------
# bounded memory, failures, errors
# --------------------------------------------------------------------------------------
@pytest.fixture
def read_sizes(monkeypatch) -> list[int]:
    """Records the number of rows of every read_range call."""
    sizes: list[int] = []
    real = ReplayStore.read_range

    def spy(self, start, stop, fields=None):
        out = real(self, start, stop, fields)
        sizes.append(len(next(iter(out.values()))) if out else 0)
        return out

    monkeypatch.setattr(ReplayStore, "read_range", spy)
    return sizes


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_tabular_exports_read_in_blocks(mixed, tmp_path, read_sizes, fmt):
    with pytest.warns(InteropWarning):
        export_as(mixed, tmp_path / f"b.{fmt}", fmt, block_rows=8)
    assert read_sizes and max(read_sizes) <= 8 and sum(read_sizes) == N


def test_missing_pyarrow_names_the_extra(mixed, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "x.parquet"
    with pytest.raises(MissingExtraError, match=r'pip install "replaystore\[parquet\]"') as e:
        export_parquet(mixed, out)
    assert isinstance(e.value, ImportError) and isinstance(e.value, ReplayStoreError)
    assert not out.exists()
    export_csv(mixed, tmp_path / "x.csv", fields=["reward"])  # CSV needs no extra


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_existing_output_is_refused_unless_overwrite(mixed, tmp_path, fmt):
    out = tmp_path / f"old.{fmt}"
    out.write_text("keep me")
    with pytest.raises(StoreExistsError, match=str(out)):
        export_as(mixed, out, fmt, fields=["reward"])
    assert out.read_text() == "keep me"
    export_as(mixed, out, fmt, fields=["reward"], overwrite=True)
    got = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out, dtype={"reward": "float32"})
    np.testing.assert_array_equal(got["reward"].to_numpy(), mixed_batch(N)["reward"])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_failed_export_leaves_nothing_behind(mixed, tmp_path, monkeypatch, fmt):
    out = tmp_path / f"fail.{fmt}"
    out.write_text("old")
    real = ReplayStore.read_range
    calls = []

    def failing(self, start, stop, fields=None):
        calls.append(start)
        if len(calls) == 3:
            raise OSError("disk on fire")
        return real(self, start, stop, fields)

    monkeypatch.setattr(ReplayStore, "read_range", failing)
    with pytest.raises(OSError, match="disk on fire"):
        export_as(mixed, out, fmt, fields=["reward"], block_rows=5, overwrite=True)
    assert out.read_text() == "old"  # the old file stays; no temporary file is left
    assert [p.name for p in tmp_path.iterdir()] == ["fail." + fmt]


def test_unknown_format_and_field(mixed, tmp_path):
    with pytest.raises(InteropError, match="'xlsx'.*parquet, csv, minari"):
        export_as(mixed, tmp_path / "x.xlsx", "xlsx")
    with pytest.raises(SchemaError, match="nope"):
        export_csv(mixed, tmp_path / "x.csv", fields=["reward", "nope"])
    with pytest.raises(InteropError, match="no fields to export"):
        export_parquet(mixed, tmp_path / "x.csv", fields=[])
    assert not (tmp_path / "x.csv").exists()


# --------------------------------------------------------------------------------------
# Minari
# --------------------------------------------------------------------------------------
@pytest.fixture
def minari(tmp_path, monkeypatch):
    mn = pytest.importorskip("minari", reason='Minari export needs pip install "replaystore[minari]"')
    pytest.importorskip("h5py", reason='Minari export needs pip install "replaystore[minari]"')
    pytest.importorskip("PIL", reason='Minari export needs pip install "replaystore[minari]"')
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari-datasets"))
    return mn


def episode_rows(data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The rows of each episode id, episodes in the order of their first rows."""
    ids = list(dict.fromkeys(data["episode"].tolist()))
    return [{k: v[data["episode"] == e] for k, v in data.items()} for e in ids]


def write_episode(store, ep: int, n: int, rng, *, done: str | None = "terminated", first_step: int = 0):
    obs = rng.uniform(-5, 5, (n + 1, 2)).astype(np.float32)
    return {
        "obs": obs[:-1], "next_obs": obs[1:], "action": rng.integers(0, 3, n),
        "reward": rng.standard_normal(n).astype(np.float32),
        "terminated": np.arange(n) == (n - 1 if done == "terminated" else -1),
        "truncated": np.arange(n) == (n - 1 if done == "truncated" else -1),
        "episode": np.full(n, ep), "step": first_step + np.arange(n),
    }


def interleave(a: dict, b: dict) -> dict:
    """Rows of two episodes alternating (as two vector envs write them)."""
    n = len(a["reward"]) + len(b["reward"])
    order = np.argsort(np.r_[np.arange(len(a["reward"])) * 2, np.arange(len(b["reward"])) * 2 + 1],
                       kind="stable")
    return {k: np.concatenate([a[k], b[k]])[order] for k in a} | {"_n": n}


def test_minari_round_trip_of_a_ring_with_partial_and_interleaved_episodes(minari, tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "ring.zarr"
    store = rs.create(path, gym.spaces.Box(-5, 5, (2,), np.float32), gym.spaces.Discrete(3), capacity=20)
    first = write_episode(store, 0, 6, rng)                      # start evicted by the ring
    a = write_episode(store, 1, 4, rng, done="truncated")
    b = write_episode(store, 2, 3, rng)
    both = interleave(a, b)
    both.pop("_n")
    c = write_episode(store, 3, 5, rng)
    last = write_episode(store, 4, 4, rng, done=None)             # unfinished at the end
    for part in (first, both, c, last):
        store.extend(part)
    store.close()
    with rs.open(path) as store:
        data = store.read_range(0, len(store))
    assert len(data["reward"]) == 20 and data["step"][0] == 2  # the ring evicted 2 rows of episode 0
    expected = [e for e in episode_rows(data) if e["episode"][0] in (1, 2, 3)]
    assert [int(e["episode"][0]) for e in expected] == [1, 2, 3]

    with pytest.warns(InteropWarning, match=r"skipped 2 incomplete episodes \(8 rows\): 1 whose first rows "
                      r"a ring has evicted, 1 unfinished at the end of the store"):
        stats = export_minari(path, "replaystore/ring-v0")
    assert (stats.episodes, stats.rows, stats.skipped_episodes, stats.dropped_rows) == (3, 12, 2, 8)

    ds = minari.load_dataset("replaystore/ring-v0")
    assert ds.total_episodes == 3 and ds.total_steps == 12
    assert ds.observation_space == gym.spaces.Box(-5, 5, (2,), np.float32)
    for ep, want in zip(ds.iterate_episodes(), expected, strict=True):
        np.testing.assert_array_equal(ep.observations, np.concatenate([want["obs"], want["next_obs"][-1:]]))
        np.testing.assert_array_equal(ep.actions, want["action"])
        assert ep.rewards.dtype == np.float32
        np.testing.assert_array_equal(ep.rewards, want["reward"])
        np.testing.assert_array_equal(ep.terminations, want["terminated"])
        np.testing.assert_array_equal(ep.truncations, want["truncated"])

    back = tmp_path / "back.zarr"
    import_minari("replaystore/ring-v0", back)
    with rs.open(back) as store:
        got = store.read_range(0, len(store))
        assert store.episodes()["complete"].all()
    for k, (g, want) in enumerate(zip(episode_rows(got), expected, strict=True)):
        assert (g["episode"] == k).all()
        np.testing.assert_array_equal(g["step"], np.arange(len(want["reward"])))
        for name in ("obs", "next_obs", "action", "reward", "terminated", "truncated"):
            assert g[name].dtype == want[name].dtype, name
            np.testing.assert_array_equal(g[name], want[name], err_msg=name)


def test_minari_round_trip_of_dict_images_and_multidiscrete(minari, tmp_path, monkeypatch):
    obs_space = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (3,), np.float32),
                                 "cam": gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)})
    act_space = gym.spaces.MultiDiscrete([3, 2])
    rng = np.random.default_rng(1)
    path = tmp_path / "img.zarr"
    with rs.create(path, obs_space, act_space) as store:
        for n in (5, 3):
            pos = rng.uniform(-1, 1, (n + 1, 3)).astype(np.float32)
            cam = rng.integers(0, 256, (n + 1, 32, 32, 3), dtype=np.uint8)  # noise: JPEG would alter it
            store.extend({"obs.pos": pos[:-1], "obs.cam": cam[:-1], "next_obs.pos": pos[1:],
                          "next_obs.cam": cam[1:], "action": np.c_[rng.integers(0, 3, n), rng.integers(0, 2, n)],
                          "reward": np.ones(n, np.float32), "terminated": np.arange(n) == n - 1,
                          "truncated": np.zeros(n, bool)})
        original = store.read_range(0, len(store))
    monkeypatch.chdir(tmp_path)
    stats = export_minari(path, "./img-v3")  # a (relative) path, not an id
    out = tmp_path / "img-v3"
    assert stats.episodes == 2 and not (tmp_path / "minari-datasets" / "img-v3").exists()
    ds = minari.MinariDataset(out / "data")
    assert ds.id == "img-v3"
    ep = ds[0]
    np.testing.assert_array_equal(ep.observations["cam"][:5], original["obs.cam"][:5])
    np.testing.assert_array_equal(ep.observations["cam"][5], original["next_obs.cam"][4])
    np.testing.assert_array_equal(ep.actions, original["action"][:5])
    back = tmp_path / "back.zarr"
    import_minari("./img-v3", back)
    with rs.open(back) as store:
        got = store.read_range(0, len(store))
        assert store.action_space == act_space
    for name in ("obs.pos", "obs.cam", "next_obs.pos", "next_obs.cam", "action", "reward", "terminated",
                 "truncated", "step"):
        np.testing.assert_array_equal(got[name], original[name], err_msg=name)
    np.testing.assert_array_equal(got["episode"], np.r_[np.zeros(5), np.ones(3)])


def test_minari_gets_the_env_spec_and_import_restores_it(minari, tmp_path):
    from replaystore.collect import collect

    path = tmp_path / "fl.zarr"
    collect("FrozenLake-v1", path, episodes=6, seed=0, env_kwargs={"is_slippery": False})
    export_minari(path, "replaystore/fl-v1")
    ds = minari.load_dataset("replaystore/fl-v1")
    assert ds.env_spec.id == "FrozenLake-v1" and ds.env_spec.kwargs["is_slippery"] is False
    env = ds.recover_environment()
    assert env.observation_space == gym.spaces.Discrete(16)
    env.close()
    back = tmp_path / "back.zarr"
    import_minari("replaystore/fl-v1", back)
    with rs.open(back) as store, rs.open(path) as orig:
        assert store.env_info["id"] == "FrozenLake-v1"
        assert store.env_info["kwargs"]["is_slippery"] is False
        src = store.info["imported_from"]
        assert src["format"] == "minari" and src["dataset_id"] == "replaystore/fl-v1"
        assert src["rows"] == len(store) == len(orig) and src["episodes"] == 6
        for name in ("obs", "next_obs", "action", "reward", "terminated", "truncated", "step"):
            np.testing.assert_array_equal(store.read_range(0, len(store), fields=name)[name],
                                          orig.read_range(0, len(orig), fields=name)[name], err_msg=name)


def test_minari_export_warns_about_next_obs_it_cannot_keep(minari, tmp_path):
    path = tmp_path / "odd.zarr"
    with rs.create(path, gym.spaces.Discrete(10), gym.spaces.Discrete(2), extra_fields=[("label", "int8")]) as s:
        s.extend({"obs": [0, 1, 2], "next_obs": [1, 7, 3], "action": [0, 1, 0], "reward": [0.0, 0.0, 1.0],
                  "terminated": [False, False, True], "truncated": [False, False, False], "label": [1, 2, 3]})
    with pytest.warns(InteropWarning) as rec:
        stats = export_minari(path, "replaystore/odd-v0")
    text = " | ".join(str(w.message) for w in rec)
    assert "1 row had a next_obs that differs" in text and "extra field(s) label not exported" in text
    assert len(stats.notes) == 2
    ep = minari.load_dataset("replaystore/odd-v0")[0]
    np.testing.assert_array_equal(ep.observations, [0, 1, 2, 3])


def test_minari_export_errors(minari, tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    rng = np.random.default_rng(0)
    with rs.create(path, gym.spaces.Box(-5, 5, (2,), np.float32), gym.spaces.Discrete(3)) as s:
        s.extend(write_episode(s, 0, 3, rng, done=None))
    root = tmp_path / "minari-datasets"
    with pytest.raises(InteropError, match="nothing to export.*none of its 1 episode is complete"):
        export_minari(path, "replaystore/none-v0")
    assert not (root / "replaystore" / "none-v0").exists()
    with rs.open(path, mode="a") as s:
        s.extend(write_episode(s, 1, 4, rng))
    with pytest.warns(InteropWarning, match="skipped 1 incomplete episode"):
        assert export_minari(path, "replaystore/s-v0").episodes == 1
    with pytest.raises(StoreExistsError, match="replaystore/s-v0"):
        export_minari(path, "replaystore/s-v0")
    with rs.open(path, mode="a") as s:
        s.extend(write_episode(s, 2, 2, rng))
    with pytest.warns(InteropWarning):
        export_minari(path, "replaystore/s-v0", overwrite=True)
    assert minari.load_dataset("replaystore/s-v0").total_episodes == 2
    # a directory that is not a Minari dataset is never replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(StoreExistsError, match="not a Minari dataset"):
        export_minari(path, other, overwrite=True)
    assert (other / "precious.txt").exists()
    # a store without spaces
    nospace = tmp_path / "nospace.zarr"
    rs.create(nospace, fields=[("x", "float32")]).close()
    with pytest.raises(InteropError, match="no observation/action spaces"):
        export_minari(nospace, "replaystore/x-v0")
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(MissingExtraError, match=r'pip install "replaystore\[minari\]"'):
        export_minari(path, "replaystore/y-v0")


def test_minari_export_reads_in_blocks(minari, tmp_path, read_sizes):
    path = tmp_path / "blocks.zarr"
    rng = np.random.default_rng(2)
    with rs.create(path, gym.spaces.Box(-5, 5, (2,), np.float32), gym.spaces.Discrete(3)) as s:
        for e in range(6):
            s.extend(write_episode(s, e, 7, rng))
    read_sizes.clear()
    stats = export_minari(path, "replaystore/blocks-v0", block_rows=5)
    assert stats.episodes == 6 and max(read_sizes) <= 5
    assert minari.load_dataset("replaystore/blocks-v0").total_steps == 42


def test_minari_export_in_arrow_format(minari, tmp_path):
    pytest.importorskip("pyarrow", reason="minari's arrow storage needs pyarrow")
    path = tmp_path / "a.zarr"
    rng = np.random.default_rng(5)
    with rs.create(path, gym.spaces.Box(-5, 5, (2,), np.float32), gym.spaces.Discrete(3)) as s:
        for e, n in enumerate((3, 2)):
            s.extend(write_episode(s, e, n, rng))
        data = s.read_range(0, 5)
    export_minari(path, "replaystore/arrow-v0", data_format="arrow")
    ds = minari.load_dataset("replaystore/arrow-v0")
    assert ds.storage.FORMAT == "arrow"
    import_minari("replaystore/arrow-v0", tmp_path / "back.zarr")
    got = read_all_store(tmp_path / "back.zarr")
    for name in ("obs", "next_obs", "action", "reward", "terminated", "truncated", "step"):
        np.testing.assert_array_equal(got[name], data[name], err_msg=name)


def read_all_store(path) -> dict[str, np.ndarray]:
    with rs.open(path) as store:
        return store.read_range(0, len(store))


# --------------------------------------------------------------------------------------
# the CLI
# --------------------------------------------------------------------------------------


def test_cli_export_parquet_and_csv(mixed, tmp_path):
    with rs.open(mixed) as store:
        want = store.to_pandas(fields=narrow_fields(store)).reset_index(drop=True)
    r = run("export", mixed, tmp_path / "m.parquet", "--to", "parquet", "--no-progress")
    assert r.exit_code == 0, r.output
    line = one_line(r)
    assert line.startswith(f"exported {N} rows x {len(want.columns)} columns of {mixed} to Parquet file "
                           f"{tmp_path / 'm.parquet'} in ")
    assert "left out image-like field(s) obs.cam, next_obs.cam" in line
    assert_same_frame(pd.read_parquet(tmp_path / "m.parquet"), want)
    r = run("export", mixed, tmp_path / "m.csv", "--to", "csv", "--fields", "obs.pos, reward",
            "--no-progress")
    assert r.exit_code == 0 and one_line(r).startswith(f"exported {N} rows x 4 columns")
    assert list(pd.read_csv(tmp_path / "m.csv").columns) == ["obs.pos_0", "obs.pos_1", "obs.pos_2", "reward"]
    r = run("export", mixed, tmp_path / "all.parquet", "--to", "parquet", "--include-images", "--no-progress")
    assert r.exit_code == 0 and "left out" not in one_line(r)
    assert "obs.cam" in pd.read_parquet(tmp_path / "all.parquet").columns


def test_cli_export_minari(minari, tmp_path):
    path = tmp_path / "s.zarr"
    rng = np.random.default_rng(4)
    with rs.create(path, gym.spaces.Box(-5, 5, (2,), np.float32), gym.spaces.Discrete(3)) as s:
        for e, n in enumerate((3, 4, 2)):
            s.extend(write_episode(s, e, n, rng, done="terminated" if e < 2 else None))
    r = run("export", path, "replaystore/cli-v0", "--to", "minari", "--no-progress")
    assert r.exit_code == 0, r.output
    line = one_line(r)
    assert line.startswith(f"exported 2 episodes (7 rows) of {path} to Minari dataset replaystore/cli-v0")
    assert "skipped 1 incomplete episode (2 rows)" in line
    assert minari.load_dataset("replaystore/cli-v0").total_episodes == 2
    r = run("export", path, "replaystore/cli-v0", "--to", "minari", "--no-progress")
    assert r.exit_code == 1 and one_line(r).startswith("Error: replaystore/cli-v0: a Minari dataset already")
    r = run("export", path, "replaystore/cli-v1", "--to", "minari", "--fields", "obs")
    assert r.exit_code == 1 and "--fields and --include-images apply to" in one_line(r)


def test_cli_export_errors(mixed, tmp_path, monkeypatch):
    out = tmp_path / "exists.csv"
    out.write_text("x")
    r = run("export", mixed, out, "--to", "csv")
    assert r.exit_code == 1 and one_line(r) == f"Error: {out}: already exists; use --overwrite to replace it"
    r = run("export", tmp_path / "nope.zarr", tmp_path / "n.csv", "--to", "csv")
    assert r.exit_code == 1 and str(tmp_path / "nope.zarr") in one_line(r)
    r = run("export", mixed, tmp_path / "x.xlsx", "--to", "xlsx")
    assert r.exit_code == 2 and "Invalid value for '--to'" in r.output
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    r = run("export", mixed, tmp_path / "x.parquet", "--to", "parquet")
    assert r.exit_code == 1
    line = one_line(r)
    assert line.startswith("Error: export to Parquet needs") and 'pip install "replaystore[parquet]"' in line

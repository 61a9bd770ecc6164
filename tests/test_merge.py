"""Merging stores (``replaystore.merge`` and ``replaystore merge``): exact round trips,
episode renumbering, rings, layouts, refusals that write nothing, provenance,
determinism, and the command line's one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import STD_ACT, STD_OBS, read_all, std_batch, store_files
from gymnasium.spaces import Box, Discrete

import replaystore as rs
from replaystore.cli import main
from replaystore.collect import collect
from replaystore.merge import merge

EPOCH = "1700000000"  # SOURCE_DATE_EPOCH for reproducible metadata


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def make_store(path: Path, start: int, n: int, *, capacity=None, env_id="Env-v0", extra=(),
               obs_space=STD_OBS, act_space=STD_ACT, **create_kw) -> Path:
    """A closed store holding self-identifying rows ``start .. start+n-1`` (episodes end
    every 5 rows, some by truncation), written in a few batches. Small chunks (64 rows)
    unless told: default chunks are a megabyte-sized file per field."""
    create_kw.setdefault("chunk_rows", 64)
    create_kw.setdefault("fsync", False)
    with rs.create(path, obs_space, act_space, capacity=capacity, env_id=env_id,
                   extra_fields=list(extra), **create_kw) as store:
        if obs_space is STD_OBS and act_space is STD_ACT:
            batch = std_batch(start, n, term_every=5, trunc_every=13)
        else:
            batch = {"obs": np.zeros((n, *obs_space.shape), obs_space.dtype),
                     "action": np.zeros(n, np.int64), "reward": np.arange(start, start + n, dtype=np.float32),
                     "next_obs": np.zeros((n, *obs_space.shape), obs_space.dtype),
                     "terminated": np.arange(n) % 5 == 4, "truncated": np.zeros(n, bool)}
        for name, dtype, *shape in extra:
            shape = tuple(shape[0]) if shape else ()
            batch[name] = (np.arange(start, start + n).reshape(-1, *([1] * len(shape)))
                           * np.ones(shape)).astype(dtype)
        for a in range(0, n, 17):
            store.extend({k: v[a:a + 17] for k, v in batch.items()})
    return path


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for k, v in sorted(store_files(root).items()):
        h.update(k.encode() + b"\0" + v)
    return h.hexdigest()


def check_merged(out: Path, inputs: list[Path]) -> list[dict]:
    """OUT's fields equal the inputs' concatenated, except ``episode``, which is a one-to-one
    renumbering per input (same boundaries) with ids unique across inputs. Returns the
    inputs' rows."""
    parts = []
    for p in inputs:
        with rs.open(p) as s:
            parts.append(read_all(s))
    with rs.open(out) as s:
        got = read_all(s)
        names = s.schema.names
    assert set(names) == set(parts[0])
    for name in names:
        if name == "episode":
            continue
        want = np.concatenate([p[name] for p in parts])
        assert got[name].dtype == want.dtype, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    seen: set[int] = set()
    a = 0
    for p in parts:
        n = len(p["reward"])
        src, dst = p["episode"], got["episode"][a:a + n]
        pairs = np.unique(np.stack([src, dst], axis=1), axis=0)
        assert len(pairs) == len(np.unique(src)) == len(np.unique(dst)), "not one-to-one"
        np.testing.assert_array_equal(np.diff(src) != 0, np.diff(dst) != 0)
        ids = set(np.unique(dst).tolist())
        assert not ids & seen, "episode ids shared between inputs"
        seen |= ids
        a += n
    assert a == len(got["reward"])
    return parts


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_error(r: Result, *needles: str) -> str:
    assert r.exit_code != 0, r.output
    assert isinstance(r.exception, SystemExit), f"uncaught {r.exception!r}\n{r.output}"
    assert "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def leftovers(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if ".merging-" in p.name or ".rsjob-" in p.name]


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------
def test_unbounded_inputs_round_trip(tmp_path):
    ins = [make_store(tmp_path / "a.zarr", 0, 40),
           make_store(tmp_path / "b.zarr", 1000, 23),  # ends inside an episode
           make_store(tmp_path / "c.zarr", 5000, 1)]
    before = [digest(p) for p in ins]
    stats = merge(tmp_path / "out.zarr", ins, block_rows=7)
    assert (stats.inputs, stats.rows, stats.size) == (3, 64, 64)
    parts = check_merged(tmp_path / "out.zarr", ins)
    assert stats.episodes == sum(len(np.unique(p["episode"])) for p in parts)
    assert [digest(p) for p in ins] == before, "an input was modified"
    assert leftovers(tmp_path) == []
    with rs.open(tmp_path / "out.zarr") as s:
        assert s.capacity is None
        ep = s.episodes()
        assert len(ep) == stats.episodes
        # b's unfinished last episode stays unfinished: c's row is an episode of its own
        assert ep["length"].sum() == 64 and not ep.iloc[-2]["complete"]
        assert s.to_pandas().shape[0] == 64
        assert rs.UniformSampler(s, batch_size=8, seed=0).sample()["reward"].shape == (8,)
        assert rs.BalancedSampler(s, by="action", batch_size=8, seed=0).sample()["action"].shape == (8,)


def test_ring_input_keeps_its_partial_episode(tmp_path):
    ring = make_store(tmp_path / "ring.zarr", 0, 137, capacity=50, chunk_rows=16)
    flat = make_store(tmp_path / "flat.zarr", 500, 30)
    merge(tmp_path / "out.zarr", [ring, flat], block_rows=11)
    check_merged(tmp_path / "out.zarr", [ring, flat])
    with rs.open(tmp_path / "out.zarr") as s, rs.open(ring) as r:
        got = s.read_range(0, 50)
        np.testing.assert_array_equal(got["reward"], np.arange(87, 137, dtype=np.float32))
        assert got["step"][0] != 0  # the ring evicted this episode's start
        first = s.episodes().iloc[0]
        assert first["first_row"] == 0 and not first["complete"]
        rec = s.info["merged_from"][0]
        assert rec["input_rows"] == [87, 137] and rec["capacity"] == 50 and rec["rows"] == 50
        assert s.capacity is None and s.schema["obs"].chunk_rows == r.schema["obs"].chunk_rows == 16


def test_empty_input(tmp_path):
    empty = make_store(tmp_path / "e.zarr", 0, 0)
    a = make_store(tmp_path / "a.zarr", 0, 12)
    stats = merge(tmp_path / "out.zarr", [empty, a, empty])
    assert (stats.rows, stats.inputs) == (12, 3)
    check_merged(tmp_path / "out.zarr", [empty, a, empty])
    with rs.open(tmp_path / "out.zarr") as s:
        assert [r["rows"] for r in s.info["merged_from"]] == [0, 12, 0]
        assert s.info["merged_from"][0]["episode_offset"] is None


def test_ring_out_keeps_the_newest_rows(tmp_path):
    ins = [make_store(tmp_path / "a.zarr", 0, 40), make_store(tmp_path / "b.zarr", 100, 40)]
    stats = merge(tmp_path / "out.zarr", ins, capacity=32)
    assert stats.rows == 80 and stats.size == 32
    with rs.open(tmp_path / "out.zarr") as s:
        assert s.capacity == 32
        np.testing.assert_array_equal(s.read_range(0, 32)["reward"], np.arange(108, 140, dtype=np.float32))


def test_user_extra_fields(tmp_path):
    extra = [("label", "int16"), ("w", "float32", (2,))]
    ins = [make_store(tmp_path / f"{k}.zarr", 100 * i, 30, extra=extra) for i, k in enumerate("ab")]
    merge(tmp_path / "out.zarr", ins)
    parts = check_merged(tmp_path / "out.zarr", ins)
    with rs.open(tmp_path / "out.zarr") as s:
        assert s.schema["label"].dtype == np.int16 and s.schema["w"].shape == (2,)
        assert read_all(s, ["label"])["label"][30] == parts[1]["label"][0] == 100


def test_compressed_input_layout_is_inherited_or_overridden(tmp_path):
    a = make_store(tmp_path / "a.zarr", 0, 50, codecs={"obs": "zstd:3", "reward": "gzip:1"}, chunk_rows=32)
    b = make_store(tmp_path / "b.zarr", 100, 50)  # uncompressed, default chunks
    merge(tmp_path / "out.zarr", [a, b])
    check_merged(tmp_path / "out.zarr", [a, b])
    with rs.open(tmp_path / "out.zarr") as s:
        assert {f.name: f.codec for f in s.schema if f.codec} == {"obs": "zstd:3", "reward": "gzip:1"}
        assert {f.chunk_rows for f in s.schema} == {32}
    merge(tmp_path / "plain.zarr", [a, b], codecs="none", chunk_rows={"obs": 64})
    check_merged(tmp_path / "plain.zarr", [a, b])
    with rs.open(tmp_path / "plain.zarr") as s:
        assert all(f.codec is None for f in s.schema)
        assert s.schema["obs"].chunk_rows == 64 and s.schema["reward"].chunk_rows == 32


def test_collected_stores_train_after_merging(tmp_path):
    from replaystore.agents import QLearningAgent
    from replaystore.training import OfflineTrainer

    kw = {"is_slippery": False}
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    collect("FrozenLake-v1", a, steps=300, seed=0, env_kwargs=kw, num_envs=2)  # interleaved episodes
    collect("FrozenLake-v1", b, steps=200, seed=1, env_kwargs=kw)
    merge(tmp_path / "out.zarr", [a, b], block_rows=64)
    check_merged(tmp_path / "out.zarr", [a, b])
    with rs.open(tmp_path / "out.zarr") as s:
        assert s.env_info == {"id": "FrozenLake-v1", "kwargs": kw}
        agent = QLearningAgent.from_spaces(s.observation_space, s.action_space, gamma=0.9)
        res = OfflineTrainer(s, agent).train(updates=3)
        assert res.updates == 3 and res.transitions == 3 * 500


# --------------------------------------------------------------------------------------
# provenance and determinism
# --------------------------------------------------------------------------------------
def test_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    kw = {"is_slippery": False}
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    collect("FrozenLake-v1", a, steps=120, seed=0, env_kwargs=kw)
    collect("FrozenLake-v1", a, steps=30, seed=7, env_kwargs=kw)  # a second collection run
    collect("FrozenLake-v1", b, steps=80, seed=3, env_kwargs=kw)
    with rs.open(a) as s:
        a_eps = np.unique(read_all(s, ["episode"])["episode"])
    merge(tmp_path / "out.zarr", [a, str(b)])
    with rs.open(tmp_path / "out.zarr") as s:
        info = s.info
        assert info["merged_at"] == "2023-11-14T22:13:20+00:00"
        ra, rb = info["merged_from"]
        assert ra["path"] == str(a) and rb["path"] == str(b)
        assert (ra["rows"], rb["rows"]) == (150, 80)
        assert ra["episodes"] == len(a_eps)
        assert ra["env"] == rb["env"] == {"id": "FrozenLake-v1", "kwargs": kw}
        assert ra["created"]["time"] == "2023-11-14T22:13:20+00:00"
        assert ra["input_rows"] == [0, 150] and ra["out_rows"] == [0, 150] and rb["out_rows"] == [150, 230]
        assert ra["status"] == rb["status"] == "complete"
        assert ra["merged_at"] == info["merged_at"]
        assert "collections" not in ra["info"]
        # OUT episode = input episode + offset
        ep = read_all(s, ["episode"])["episode"]
        with rs.open(b) as sb:
            np.testing.assert_array_equal(ep[150:], read_all(sb, ["episode"])["episode"] + rb["episode_offset"])
        assert ep[150:].min() > ep[:150].max()
        # the inputs' collection records, concatenated and tagged with their input
        assert [(c["seed"], c["input"]) for c in info["collections"]] == [(0, 0), (7, 0), (3, 1)]
        # new rows after a merge start a fresh episode id
        assert s.next_episode > ep.max()


def test_merging_a_merged_store_nests_provenance(tmp_path):
    ins = [make_store(tmp_path / f"{k}.zarr", 100 * i, 10) for i, k in enumerate("abc")]
    merge(tmp_path / "ab.zarr", ins[:2])
    merge(tmp_path / "abc.zarr", [tmp_path / "ab.zarr", ins[2]])
    check_merged(tmp_path / "abc.zarr", [tmp_path / "ab.zarr", ins[2]])
    with rs.open(tmp_path / "abc.zarr") as s:
        first = s.info["merged_from"][0]
        assert [r["path"] for r in first["info"]["merged_from"]] == [str(p) for p in ins[:2]]


def test_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    ins = [make_store(tmp_path / "a.zarr", 0, 60, capacity=40, chunk_rows=16),
           make_store(tmp_path / "b.zarr", 100, 45, codecs={"obs": "zstd:3"})]
    merge(tmp_path / "o1.zarr", ins, block_rows=9)
    merge(tmp_path / "o2.zarr", ins, block_rows=9)
    f1, f2 = store_files(tmp_path / "o1.zarr"), store_files(tmp_path / "o2.zarr")
    assert f1.keys() == f2.keys()
    assert [k for k in f1 if f1[k] != f2[k]] == []
    # the rows do not depend on the block size either
    merge(tmp_path / "o3.zarr", ins, block_rows=1000)
    with rs.open(tmp_path / "o1.zarr") as s1, rs.open(tmp_path / "o3.zarr") as s3:
        r1, r3 = read_all(s1), read_all(s3)
    for name in r1:
        np.testing.assert_array_equal(r1[name], r3[name], err_msg=name)


# --------------------------------------------------------------------------------------
# environments
# --------------------------------------------------------------------------------------
def test_different_envs_refused_unless_allowed(tmp_path):
    a = make_store(tmp_path / "a.zarr", 0, 10, env_id="EnvA-v0")
    b = make_store(tmp_path / "b.zarr", 10, 10, env_id="EnvB-v0")
    with pytest.raises(rs.EnvError, match="EnvB-v0.*EnvA-v0.*allow_different_env=True") as e:
        merge(tmp_path / "out.zarr", [a, b])
    assert str(a) in str(e.value) and str(b) in str(e.value)
    assert not (tmp_path / "out.zarr").exists()
    merge(tmp_path / "out.zarr", [a, b], allow_different_env=True)
    with rs.open(tmp_path / "out.zarr") as s:
        assert s.env_info == {"id": None, "kwargs": {}, "mixed": True}
        assert [r["env"]["id"] for r in s.info["merged_from"]] == ["EnvA-v0", "EnvB-v0"]
    # same id, different kwargs: different dynamics, refused too
    c, d = tmp_path / "c.zarr", tmp_path / "d.zarr"
    collect("FrozenLake-v1", c, steps=20, seed=0, env_kwargs={"is_slippery": False})
    collect("FrozenLake-v1", d, steps=20, seed=0, env_kwargs={"is_slippery": True})
    with pytest.raises(rs.EnvError, match="is_slippery"):
        merge(tmp_path / "cd.zarr", [c, d])


# --------------------------------------------------------------------------------------
# refusals: nothing written
# --------------------------------------------------------------------------------------
def test_incompatible_fields_refused(tmp_path):
    a = make_store(tmp_path / "a.zarr", 0, 10)
    b = make_store(tmp_path / "b.zarr", 0, 10, obs_space=Box(-1e6, 1e6, (4,), np.float32))
    c = make_store(tmp_path / "c.zarr", 0, 10, extra=[("label", "int64")])
    d = make_store(tmp_path / "d.zarr", 0, 10, extra=[("label", "int32")])
    out = tmp_path / "out.zarr"
    with pytest.raises(rs.SchemaError) as e:
        merge(out, [a, b])
    msg = str(e.value)
    assert str(a) in msg and str(b) in msg
    assert "field 'obs' shape (3,) vs (4,)" in msg and "observation space" in msg
    with pytest.raises(rs.SchemaError, match=r"field\(s\) \['label'\] only in .*c.zarr"):
        merge(out, [a, c])
    with pytest.raises(rs.SchemaError, match="field 'label' dtype int64 vs int32"):
        merge(out, [c, d])
    assert not out.exists() and leftovers(tmp_path) == []


def test_incompatible_spaces_refused(tmp_path):
    a = make_store(tmp_path / "a.zarr", 0, 10)
    low = np.full(3, -1e6, np.float32)
    low[2] = -5.0
    b = make_store(tmp_path / "b.zarr", 0, 10, obs_space=Box(low, 1e6, (3,), np.float32))
    c = make_store(tmp_path / "c.zarr", 0, 10, act_space=Discrete(5))
    out = tmp_path / "out.zarr"
    with pytest.raises(rs.SchemaError, match=r"observation space .*low\[2\] is -1000000.0 vs -5.0"):
        merge(out, [a, b])
    with pytest.raises(rs.SchemaError, match=r"action space Discrete\(4\) vs Discrete\(5\)"):
        merge(out, [a, c])
    assert not out.exists() and leftovers(tmp_path) == []


def test_out_exists_refused(tmp_path):
    a = make_store(tmp_path / "a.zarr", 0, 10)
    out = make_store(tmp_path / "out.zarr", 50, 5)
    before = digest(out)
    with pytest.raises(rs.StoreExistsError, match=str(out)):
        merge(out, [a])
    assert digest(out) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(rs.StoreExistsError, match="file"):
        merge(tmp_path / "file", [a])
    (tmp_path / "empty").mkdir()  # an empty directory is fine, as for create()
    merge(tmp_path / "empty", [a])
    check_merged(tmp_path / "empty", [a])


def test_missing_input(tmp_path):
    a = make_store(tmp_path / "a.zarr", 0, 10)
    with pytest.raises(rs.NotAStoreError, match="nope.zarr"):
        merge(tmp_path / "out.zarr", [a, tmp_path / "nope.zarr"])
    with pytest.raises(rs.SchemaError, match="at least one input"):
        merge(tmp_path / "out.zarr", [])
    assert not (tmp_path / "out.zarr").exists() and leftovers(tmp_path) == []


def test_failure_part_way_leaves_nothing(tmp_path, monkeypatch):
    ins = [make_store(tmp_path / "a.zarr", 0, 40), make_store(tmp_path / "b.zarr", 100, 40)]
    calls = []
    real = rs.ReplayStore.extend

    def failing(self, batch):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(self, batch)

    monkeypatch.setattr(rs.ReplayStore, "extend", failing)
    with pytest.raises(OSError, match="No space"):
        merge(tmp_path / "out.zarr", ins, block_rows=10)
    assert not (tmp_path / "out.zarr").exists() and leftovers(tmp_path) == []


# (a ring input written by another process while it is merged: tests/test_torn_reads.py)


# --------------------------------------------------------------------------------------
# appending
# --------------------------------------------------------------------------------------
def test_append(tmp_path):
    a, b, c = (make_store(tmp_path / f"{k}.zarr", 100 * i, 20 + i) for i, k in enumerate("abc"))
    out = tmp_path / "out.zarr"
    merge(out, [a], append=True)  # a missing OUT is created
    stats = merge(out, [b, c], append=True)
    assert (stats.rows, stats.size) == (43, 63)
    check_merged(out, [a, b, c])
    with rs.open(out) as s:
        assert [r["out_rows"] for r in s.info["merged_from"]] == [[0, 20], [20, 41], [41, 63]]
    with pytest.raises(rs.SchemaError, match="capacity"):
        merge(out, [a], append=True, capacity=5)
    with pytest.raises(rs.SchemaError, match="chunking and codecs"):
        merge(out, [a], append=True, codecs="zstd")
    with pytest.raises(rs.SchemaError, match="merged into itself"):
        merge(out, [a, out], append=True)
    with rs.open(out) as s:
        assert len(s) == 63


def test_append_to_a_store_with_its_own_rows(tmp_path):
    out = make_store(tmp_path / "out.zarr", 0, 12)
    a = make_store(tmp_path / "a.zarr", 100, 12)
    merge(out, [a], append=True)
    with rs.open(out) as s:
        ep = read_all(s, ["episode"])["episode"]
        assert len(ep) == 24 and not set(ep[12:]) & set(ep[:12])
        assert s.env_info == {"id": "Env-v0"}


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------
def test_cli_merge(tmp_path):
    a = make_store(tmp_path / "a.zarr", 0, 25)
    b = make_store(tmp_path / "b.zarr", 100, 25)
    out = tmp_path / "out.zarr"
    r = run("merge", out, a, b, "--no-progress")
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("merged 2 stores (50 rows, ") and str(out) in lines[0]
    check_merged(out, [a, b])
    r = run("merge", out, a, "--append", "--no-progress", "--capacity", 1000)
    assert_error(r, str(out), "capacity")
    r = run("merge", out, a, "--append", "--no-progress")
    assert r.exit_code == 0 and "(75 rows)" in r.output
    r = run("merge", tmp_path / "z.zarr", a, "--codecs", "zstd:3", "--chunk-rows", 64, "--no-progress")
    assert r.exit_code == 0, r.output
    with rs.open(tmp_path / "z.zarr") as s:
        assert s.schema["obs"].codec == "zstd:3" and s.schema["obs"].chunk_rows == 64


def test_cli_errors(tmp_path):
    a = make_store(tmp_path / "a.zarr", 0, 10)
    b = make_store(tmp_path / "b.zarr", 0, 10, obs_space=Box(-1e6, 1e6, (4,), np.float32))
    e = make_store(tmp_path / "e.zarr", 0, 10, env_id="Other-v0")
    out = tmp_path / "out.zarr"
    assert_error(run("merge", a, b), str(a), "already exists", "--append")
    assert_error(run("merge", out, a, b), str(a), str(b), "field 'obs' shape (3,) vs (4,)")
    assert_error(run("merge", out, a, tmp_path / "nope.zarr"), "nope.zarr")
    assert_error(run("merge", out, a, e), "Other-v0", "--allow-different-env")
    assert_error(run("merge", out, a, "--codecs", "bogus"), "bogus")
    assert not out.exists() and leftovers(tmp_path) == []
    r = run("merge", out)
    assert r.exit_code == 2 and "INPUTS" in r.output


def test_cli_help_has_an_example():
    r = run("merge", "--help")
    assert r.exit_code == 0 and "Example: replaystore merge" in r.output

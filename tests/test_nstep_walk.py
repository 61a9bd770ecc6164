"""The compiled n-step walk (NStepReader on memory-mapped window fields) against the numpy
gather and against the documented float64 sum, bit for bit: on unbounded stores and rings
that wrapped, one env and interleaved envs (links), with rows in the write buffer, while a
ring evicts and commits map new chunks, in a reader of a ring another process writes (no
torn rows), and on a compressed store (which takes the gather).

Rows are made from their global id ``g`` (two envs interleaved, episodes of 9 and 5
steps), so the expected window of any row follows from ``g`` and the rows held.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import replaystore as rs
from replaystore.sampling.nstep import NStepReader

LENGTHS = (9, 5)  # episode length of env 0 and env 1
FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "episode", "step")


def reward_of(g: np.ndarray) -> np.ndarray:
    """Irregular float32 rewards (sums of them round differently in each order)."""
    g = np.asarray(g, np.int64)
    return ((g * 2654435761) % 100003 / 7.3 - 6000.0).astype(np.float32) / np.float32(3.0)


def rows_of(g: np.ndarray, envs: int = 2) -> dict[str, np.ndarray]:
    """Rows ``g`` of ``envs`` interleaved envs; obs ``[g, g]``, next_obs ``[g + 0.5, ...]``; an
    episode ends terminated (even episode ids) or truncated (odd ones)."""
    g = np.asarray(g, np.int64)
    env, j = g % envs, g // envs
    length = np.asarray(LENGTHS)[env] if envs == 2 else np.full(len(g), LENGTHS[0])
    ep, st = envs * (j // length) + env, j % length
    end = st == length - 1
    obs = np.stack([g, g], axis=1).astype(np.float64)
    return {"obs": obs, "next_obs": obs + 0.5, "action": (g % 3).astype(np.int64), "reward": reward_of(g),
            "terminated": end & (ep // envs % 2 == 0), "truncated": end & (ep // envs % 2 == 1),
            "episode": ep, "step": st}


def expected(g0: np.ndarray, hi: int, n: int, gamma: float, envs: int = 2) -> dict[str, np.ndarray]:
    """The documented window of rows ``g0`` (the store holds ids below ``hi``): ``m`` rows
    ``g0, g0 + envs, ...`` up to the episode's end, ``n`` or the newest row; the return summed
    as documented (``acc = 0.0``, ``acc += gamma**k * float64(r)``, in order)."""
    powers = gamma ** np.arange(n + 1, dtype=np.float64)
    first = rows_of(g0, envs)
    length = np.asarray(LENGTHS)[g0 % envs] if envs == 2 else np.full(len(g0), LENGTHS[0])
    m = np.minimum(n, length - first["step"])
    m = np.minimum(m, (hi - 1 - g0) // envs + 1)
    acc = np.zeros(len(g0))
    for k in range(n):
        acc += np.where(k < m, powers[k] * reward_of(g0 + envs * k).astype(np.float64), 0.0)
    last = rows_of(g0 + envs * (m - 1), envs)
    return {"reward": acc.astype(np.float32), "n_steps": m, "discount": powers.astype(np.float32)[m],
            "next_obs": last["next_obs"], "terminated": last["terminated"], "truncated": last["truncated"],
            "obs": first["obs"], "episode": first["episode"], "step": first["step"], "action": first["action"]}


def create(path: Path, *, capacity=None, chunk_rows=4096, codecs=None) -> rs.ReplayStore:
    """A new store, open for appending with a write buffer of 512 rows (chunks of 4096 rows:
    page-aligned, so mapped as one array each)."""
    rs.create(path, gym.spaces.Box(-np.inf, np.inf, (2,), np.float64), gym.spaces.Discrete(3),
              capacity=capacity, chunk_rows=chunk_rows, codecs=codecs).close()
    return rs.open(path, "a", buffer_rows=512, fsync=False)


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for f in a:
        assert a[f].dtype == b[f].dtype and a[f].shape == b[f].shape, f
        assert np.array_equal(a[f], b[f]), f


def assert_expected(batch: dict, store: rs.ReplayStore, idx: np.ndarray, n: int, gamma: float, envs: int = 2):
    lo, hi = store.id_range
    want = expected(idx + lo, hi, n, gamma, envs)
    for f, v in want.items():
        assert np.array_equal(batch[f], v.astype(batch[f].dtype)), f
    assert batch["reward"].dtype == np.float32 and batch["n_steps"].dtype == np.int64


def readers(store, n, gamma):
    """(the walk's reader, the gather's reader) of all fields."""
    return NStepReader(store, FIELDS, n, gamma), NStepReader(store, FIELDS, n, gamma, readahead=True)


@pytest.mark.parametrize("envs", [1, 2])
@pytest.mark.parametrize("capacity", [None, 5000, 8192])
def test_walk_gives_the_gathers_bits_and_the_documented_sum(tmp_path, envs, capacity):
    """(A ring of 8192 rows fills its two chunks exactly: a window at the wrap must not read
    past the map.)"""
    store = create(tmp_path / "s.zarr", capacity=capacity)
    store.extend(rows_of(np.arange(13000), envs))
    store.flush()
    store.extend(rows_of(np.arange(13000, 13100), envs))  # rows in the write buffer too
    assert store.buffered == 100 and (capacity is None or store.id_range[0] > 0)
    rng = np.random.default_rng(0)
    for n, gamma in ((3, 0.99), (5, 1 / 3), (2, 1.0), (4, 0.0), (1, 0.5)):
        walk, gather = readers(store, n, gamma)
        for idx in (np.arange(len(store)), rng.integers(0, len(store), 300), np.array([len(store) - 1])):
            a, b = walk.read(idx), gather.read(idx)
            assert_same(a, b)
            assert_expected(a, store, idx, n, gamma, envs)
        assert walk.walked == 3 and walk.gathered == 0 and gather.gathered == 3
        if envs == 2 and n > 1:
            assert walk.links is not None  # interleaved episodes: followed by their links


def test_mapped_arrays_follow_commits_and_a_ring_evicting(tmp_path):
    """A ring written a few rows at a time, committed now and then (each commit may map a new
    chunk or wrap), sampled in between: the walk's mapped arrays and links stay current."""
    store = create(tmp_path / "ring.zarr", capacity=9000)
    # (readahead=False: "auto" gathers for a while when walks run slow, which is how a cold
    # disk looks, and also how a busy CPU looks; every batch here must be walked)
    s = rs.UniformSampler(store, 48, n_step=3, gamma=0.9, seed=0, readahead=False)
    plain = rs.UniformSampler(store, 48, seed=0)
    gather = NStepReader(store, s.fields, 3, 0.9, readahead=True)
    rng = np.random.default_rng(1)
    g = checks = with_buffer = 0
    while g < 30000:
        k = int(rng.integers(1, 80))
        store.extend(rows_of(np.arange(g, g + k)))
        g += k
        if rng.random() < 0.3:
            store.flush()
        idx = plain.sample_indices()  # the rows the n-step sampler draws
        batch = s.sample()
        assert_same(batch, gather.read(idx))
        assert_expected(batch, store, idx, 3, 0.9)
        checks += 1
        with_buffer += store.buffered > 0
    assert store.id_range[0] > 20000  # the ring wrapped, three times
    assert s.reader.walked == checks and with_buffer > checks // 2
    assert s.reader.links is not None and s.reader.links.base > 0  # evicted rows' links dropped


def test_a_compressed_store_takes_the_gather_with_the_same_bits(tmp_path):
    plain, packed = create(tmp_path / "a.zarr"), create(tmp_path / "b.zarr", codecs="zstd:3")
    for st in (plain, packed):
        st.extend(rows_of(np.arange(5000)))
        st.flush()
    idx = np.random.default_rng(2).integers(0, 5000, 400)
    walk, gather = NStepReader(plain, FIELDS, 4, 0.97), NStepReader(packed, FIELDS, 4, 0.97)
    assert_same(walk.read(idx), gather.read(idx))
    assert walk.walked == 1 and gather.walked == 0 and gather.gathered == 1


WRITER = """
import sys, time, numpy as np, replaystore as rs
sys.path.insert(0, {here!r})
from test_nstep_walk import rows_of
from pathlib import Path
store = rs.open({path!r}, "a", fsync=False)
g = store.total
print("ready", flush=True)
while not Path({stop!r}).exists():
    store.extend(rows_of(np.arange(g, g + 211)))
    g += 211
    store.flush()
    time.sleep(0.0005)
store.close()
"""


def test_a_ring_another_process_writes_never_gives_a_torn_window(tmp_path):
    path, stop = tmp_path / "live.zarr", tmp_path / "stop"
    st = create(path, capacity=4096)
    st.extend(rows_of(np.arange(4096)))
    st.close()
    env = {**os.environ, "PYTHONPATH": str(Path(rs.__file__).resolve().parents[1])}
    code = WRITER.format(here=str(Path(__file__).resolve().parent), path=str(path), stop=str(stop))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        store = rs.open(path)
        first = store.total
        s = rs.UniformSampler(store, 128, n_step=4, gamma=0.8, seed=0)
        batches = full = rows = 0
        # 2.5 s of reading, and on a busy machine on (for at most a minute) until the ring has
        # turned over twice and more than 20 batches were checked: what is asserted below
        t_end, t_cap = time.monotonic() + 2.5, time.monotonic() + 60
        while time.monotonic() < t_end or (
                (store.total - first <= 2 * 4096 or batches <= 20) and time.monotonic() < t_cap):
            store.refresh()
            b = s.sample()
            g0 = b["obs"][:, 0].astype(np.int64)  # the drawn row's id, from its obs
            # every field of the batch agrees with the rows of ids g0 (none torn, none crossed):
            # the window may end early only at the newest row, so check it with the m it has
            for m in np.unique(b["n_steps"]):
                sel = b["n_steps"] == m
                want = expected(g0[sel], int(g0[sel].max()) + 2 * int(m) + 1000, int(m), 0.8)
                assert (want["n_steps"] == m).all(), "a window stopped before its episode's end"
                for f, v in want.items():
                    if f not in ("n_steps", "discount"):
                        assert np.array_equal(b[f][sel], v.astype(b[f].dtype)), f
            full += int((b["n_steps"] == expected(g0, 2**62, 4, 0.8)["n_steps"]).sum())
            rows += len(g0)
            batches += 1
        moved = store.refresh().total - first
        assert moved > 2 * 4096 and batches > 20, (moved, batches)  # the ring turned over while read
        assert full > 0.9 * rows  # (only windows at the newest rows are cut)
        assert s.reader.walked > 0
        store.close()
    finally:
        stop.touch()
        proc.communicate(timeout=60)
    assert proc.returncode == 0

"""Torn-free reads of a ring that another process is writing, on every read path.

A real writer process appends to a small ring (2,000 rows, 64-row chunks, a commit every
write) for as long as the test reads. Every field of row ``g`` (the ``g``-th row ever
appended) is a function of ``g``, so a row whose fields come from two different rows
(torn: the writer overwrote part of it while it was copied) is caught, and so is a
range whose rows are not consecutive. Each path is read for a fixed time budget and must
return no torn row.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import replaystore as rs

CAPACITY = 2000
CHUNK_ROWS = 64
OBS_DIM = 256  # wide rows: a write takes long enough for reads to overlap it
ACTIONS = 1 << 20  # action = g % ACTIONS
EPISODE = 50  # episode = g // EPISODE, step = g % EPISODE
BUDGET = float(os.environ.get("RS_TORN_SECONDS", "2.5"))  # seconds of reading per path

# The writer: appends batches of 1..1,500 rows (each evicts and overwrites as many of the
# 2,000), committing each, until the stop file appears.
WRITER = r"""
import os, time
import numpy as np
import replaystore as rs
OBS_DIM, ACTIONS, EPISODE = {consts}
{rows_src}
path, stop = {path!r}, {stop!r}
store = rs.open(path, "a", fsync=False, buffer_rows=1024)
rng = np.random.default_rng({seed})
g = store.total
t_end = time.monotonic() + 120
print("ready", flush=True)
while not os.path.exists(stop) and time.monotonic() < t_end:
    n = int(rng.integers(1, 1500))
    store.extend(rows_for(np.arange(g, g + n)))
    store.flush()
    g += n
store.close()
print(g, flush=True)
"""


def rows_for(g: np.ndarray) -> dict[str, np.ndarray]:
    """The content of global rows ``g``: every field a function of the row's id."""
    g = np.asarray(g, dtype=np.int64)
    obs = np.repeat(g[:, None].astype(np.float64), OBS_DIM, axis=1)
    step = g % EPISODE
    return {
        "obs": obs, "next_obs": obs + 1, "action": g % ACTIONS,
        "reward": (g % (1 << 24)).astype(np.float32), "terminated": step == EPISODE - 1,
        "truncated": np.zeros(len(g), bool), "episode": g // EPISODE, "step": step, "gid": g,
    }


def torn_mask(rows: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose fields are not all from one row (True = torn)."""
    want = rows_for(rows["gid"])
    ok = np.ones(len(rows["gid"]), bool)
    for name, w in want.items():
        got = rows[name]
        ok &= (got.reshape(len(got), -1) == w.reshape(len(w), -1)).all(axis=1)
    return ~ok


class Tally:
    """Rows read, torn rows, and rows out of order (ranges that are not consecutive)."""

    def __init__(self) -> None:
        self.rows = self.torn = self.disorder = self.calls = 0

    def add(self, rows: dict[str, np.ndarray], *, consecutive: bool = False,
            logical: np.ndarray | None = None) -> None:
        g = rows["gid"]
        self.calls += 1
        self.rows += len(g)
        self.torn += int(torn_mask(rows).sum())
        if consecutive and len(g) > 1:
            self.disorder += int((np.diff(g) != 1).sum())
        if logical is not None and len(g):
            # one state: global id - logical row is the same for every row of the call
            self.disorder += int((g - logical != g[0] - logical[0]).sum())

    def __repr__(self) -> str:
        return f"{self.torn} torn and {self.disorder} out of order of {self.rows:,} rows in {self.calls:,} reads"


@pytest.fixture(scope="module")
def live_ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], rs.ReplayStore]]:
    """A ring being appended to by a writer process (one for the module, started once);
    yields a function opening readers of it. When the writer has stopped, the ring verifies."""
    tmp = tmp_path_factory.mktemp("torn")
    path = tmp / "ring.zarr"
    st = rs.create(path, gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64),
                   gym.spaces.Discrete(ACTIONS), capacity=CAPACITY, chunk_rows=CHUNK_ROWS,
                   extra_fields=[("gid", "int64")])
    st.extend(rows_for(np.arange(CAPACITY)))
    st.close()
    stop = tmp / "stop"
    pkg_root = str(Path(rs.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": pkg_root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = WRITER.format(consts=(OBS_DIM, ACTIONS, EPISODE), rows_src=inspect.getsource(rows_for),
                         path=str(path), stop=str(stop), seed=12)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    readers: list[rs.ReplayStore] = []
    try:
        assert proc.stdout.readline().strip() == "ready"

        def open_reader() -> rs.ReplayStore:
            readers.append(rs.open(path))
            return readers[-1]

        yield open_reader
    finally:
        stop.touch()
        out, _ = proc.communicate(timeout=60)
        for r in readers:
            r.close()
    assert proc.returncode == 0, out
    report = rs.verify(path)
    assert report.ok, "\n".join(report.lines())


def _run(store: rs.ReplayStore, budget: float, step: Callable[[], None]) -> None:
    """Call ``step`` for ``budget`` seconds; the writer must have gone round the ring."""
    first = store.refresh().total
    t_end = time.monotonic() + budget
    while time.monotonic() < t_end:
        step()
    moved = store.refresh().total - first
    assert moved > 2 * CAPACITY, f"the writer wrote only {moved} rows: the test read a still ring"


def test_read_random_indices(live_ring):
    store = live_ring()
    rng = np.random.default_rng(0)
    tally = Tally()
    calls = [0]

    def step():
        calls[0] += 1
        if calls[0] % 4 == 0:
            store.refresh()
        idx = np.sort(rng.integers(0, len(store), 1024))
        tally.add(store.read(idx), logical=idx)

    _run(store, BUDGET, step)
    assert tally.rows > 0
    assert tally.torn == 0 and tally.disorder == 0, tally


@pytest.mark.parametrize("how", ["read_range", "slice"])
def test_read_range_and_slices(live_ring, how):
    store = live_ring()
    rng = np.random.default_rng(1)
    tally = Tally()

    def step():
        store.refresh()
        n = len(store)
        a = int(rng.integers(0, n // 2))
        b = int(rng.integers(a + 1, n + 1))
        rows = store.read_range(a, b) if how == "read_range" else store[a:b]
        assert 0 < len(rows["gid"]) <= b - a
        tally.add(rows, consecutive=True)

    _run(store, BUDGET, step)
    assert tally.rows > 0
    assert tally.torn == 0 and tally.disorder == 0, tally


def test_single_rows(live_ring):
    store, probe = live_ring(), live_ring()
    rng = np.random.default_rng(2)
    tally = Tally()

    def step():
        # let the writer run ahead, then read: the first reads are torn and retried, and
        # the newest rows are the ones a retry against the next state must not tear
        t_wait = time.monotonic() + 1
        while probe.refresh().total - store.total < CAPACITY and time.monotonic() < t_wait:
            time.sleep(0.002)
        for k in range(8):
            n = len(store)
            i = n - 1 - int(rng.integers(0, 100)) if k == 0 else int(rng.integers(0, n))
            row = store[i]
            tally.add({k: np.asarray(v)[None] for k, v in row.items()})

    _run(store, BUDGET, step)
    assert tally.rows > 0
    assert tally.torn == 0, tally


def test_iter_prefetch_with_refresh(live_ring):
    store = live_ring()
    sampler = rs.UniformSampler(store, batch_size=512, seed=3)
    tally = Tally()
    batches = sampler.iter(prefetch=3)

    def step():
        tally.add(next(batches))
        for _ in range(4):
            store.refresh()  # from the consumer, while the producer thread reads ahead

    try:
        _run(store, BUDGET, step)
    finally:
        batches.close()
    assert tally.rows > 0
    assert tally.torn == 0, tally


def test_sample_with_refresh(live_ring):
    """(Right before issue 12 too: kept as a regression test.)"""
    store = live_ring()
    sampler = rs.UniformSampler(store, batch_size=512, seed=4)
    tally = Tally()

    def step():
        store.refresh()
        tally.add(sampler.sample())

    _run(store, BUDGET, step)
    assert tally.rows > 0
    assert tally.torn == 0, tally


def test_to_pandas_and_episodes(live_ring):
    store = live_ring()
    tally = Tally()
    bad_episodes = [0]
    names = ["gid", "action", "reward", "terminated", "truncated", "episode", "step"]

    def step():
        store.refresh()
        df = store.to_pandas(fields=names)
        rows = {k: df[k].to_numpy() for k in names}
        rows["obs"] = np.repeat(rows["gid"][:, None].astype(np.float64), OBS_DIM, axis=1)
        rows["next_obs"] = rows["obs"] + 1  # (to_pandas leaves out wide fields: not checked)
        tally.add(rows, consecutive=True)
        ep = store.episodes()
        whole = ep.iloc[1:-1]  # (the first may have lost its start, the last be running)
        g0 = whole["episode"].to_numpy() * EPISODE
        want = ((g0[:, None] + np.arange(EPISODE)) % (1 << 24)).astype(np.float32).sum(axis=1, dtype=np.float64)
        bad_episodes[0] += int(((whole["length"] != EPISODE) | (whole["return"] != want)
                                | ~whole["complete"]).sum())
        bad_episodes[0] += int((np.diff(ep["first_row"].to_numpy()[1:]) != EPISODE).sum())

    _run(store, BUDGET, step)
    assert tally.rows > 0
    assert tally.torn == 0 and tally.disorder == 0 and bad_episodes[0] == 0, (tally, bad_episodes[0])


def test_read_ids_exact_rows_or_an_error(tmp_path):
    path = tmp_path / "ring.zarr"
    with rs.create(path, gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64),
                   gym.spaces.Discrete(ACTIONS), capacity=100, chunk_rows=CHUNK_ROWS,
                   extra_fields=[("gid", "int64")]) as st:
        st.extend(rows_for(np.arange(250)))
    store = rs.open(path)
    assert store.id_range == (150, 250)
    rows = store.read_ids(170, 230)
    assert rows["gid"].tolist() == list(range(170, 230)) and not torn_mask(rows).any()
    with pytest.raises(rs.RowIndexError, match="ids 140..159 are not all held"):
        store.read_ids(140, 160)
    with pytest.raises(rs.RowIndexError):
        store.read_ids(240, 251)
    store.close()


def test_merge_from_a_ring_being_written(live_ring, tmp_path):
    """``merge`` reads its input by global id: a merged ring holds whole, consecutive rows,
    or the merge stops with StoreLockedError (the writer overtook it) and leaves no OUT."""
    from replaystore.merge import merge

    src = live_ring()
    outcomes = {"merged": 0, "refused": 0}
    tally = Tally()
    t_end = time.monotonic() + BUDGET
    k = 0
    while time.monotonic() < t_end or not outcomes["merged"] + outcomes["refused"]:
        out = tmp_path / f"out{k}.zarr"
        k += 1
        try:
            merge(out, [src.path], block_rows=97)
        except rs.StoreLockedError as e:
            assert "overwrote rows" in str(e)
            assert not out.exists()
            outcomes["refused"] += 1
            continue
        with rs.open(out) as s:
            rows = s.read_range(0, len(s))
        ep = rows["episode"]  # (renumbered by merge: check the rest)
        rows["episode"] = rows["gid"] // EPISODE
        tally.add(rows, consecutive=True)
        assert len(np.unique(ep)) == len(np.unique(rows["episode"]))
        outcomes["merged"] += 1
    assert tally.torn == 0 and tally.disorder == 0, (tally, outcomes)

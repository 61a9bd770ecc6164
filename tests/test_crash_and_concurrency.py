"""Crash safety (SIGKILL at random moments) and one writer with concurrent readers."""

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

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

import crashtest  # noqa: E402


def test_crash_harness_20_kills(tmp_path):
    res = crashtest.run(20, seed=7, workdir=tmp_path)
    assert res["kills"] == 20
    assert res["failures"] == []
    assert res["rows_lost"] == 0
    assert res["rows_checked"] > 0
    assert res["wraps"] >= 2  # the ring wrapped around while being killed


WRITER = """
import sys, numpy as np, replaystore as rs
sys.path.insert(0, {tools!r})
from crashtest import row_values
store = rs.open({path!r}, "a", buffer_rows=64, fsync=False)
g = store.total
deadline = {rows}
while g < deadline:
    store.extend(row_values(np.arange(g, g + 64)))
    g += 64
    store.flush()
store.close()
"""


@pytest.mark.parametrize("capacity", [None, 3000])
def test_reader_never_sees_torn_rows(tmp_path, capacity):
    path = tmp_path / "s.zarr"
    store = rs.create(path, gym.spaces.Box(-1e9, 1e9, (4,), np.float32), gym.spaces.Discrete(3),
                      capacity=capacity, extra_fields=[("check", "int64")], chunk_rows=4096)
    store.extend(crashtest.row_values(np.arange(1000)))
    store.close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(tools=str(TOOLS), path=str(path), rows=150_000)],
        env={**os.environ})
    reader = rs.open(path)
    sampler = rs.UniformSampler(reader, batch_size=256, seed=0)
    rows_read = torn = 0
    seen_totals = set()
    t0 = time.time()
    try:
        # read for as long as the writer writes (and at least 100k rows)
        while (rows_read < 100_000 or writer.poll() is None) and time.time() - t0 < 90:
            reader.refresh()
            seen_totals.add(reader.total)
            batch = sampler.sample()
            g = batch["check"] * pow(2654435761, -1, 2**31) % 2**31  # invert check -> row id
            want = crashtest.row_values(g)
            ok = np.ones(len(g), bool)
            for k, v in want.items():
                ok &= np.all(batch[k].reshape(len(g), -1) == v.reshape(len(g), -1), axis=1)
            torn += int((~ok).sum())
            rows_read += len(g)
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert rows_read >= 100_000
    assert len(seen_totals) > 10, "the writer and the reader did not overlap"
    assert torn == 0

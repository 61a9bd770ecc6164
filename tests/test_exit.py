"""A store left open for appending at exit: the interpreter exits, the rows are committed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import replaystore as rs


@pytest.mark.parametrize("codecs", [None, "zstd:3"])
def test_a_store_left_open_is_committed_at_exit_and_the_exit_does_not_hang(tmp_path, codecs):
    path = tmp_path / "s.zarr"
    code = textwrap.dedent(f"""
        import numpy as np, gymnasium as gym, replaystore as rs
        s = rs.create({str(path)!r}, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), codecs={codecs!r})
        b = {{"obs": np.zeros((10, 3), np.float32), "action": np.zeros(10, int), "reward": np.arange(10.0),
              "next_obs": np.zeros((10, 3), np.float32), "terminated": np.zeros(10, bool),
              "truncated": np.zeros(10, bool)}}
        s.extend(b)
        s.flush()
        s.extend(b)  # buffered, never flushed nor closed by the script
    """)
    # (before the fix, a compressed store's close from __del__ at exit hung forever)
    res = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    with rs.open(path) as s:
        assert len(s) == 20 and s.read_range(0, 20, "reward")["reward"].tolist() == list(range(10)) * 2
    assert rs.verify(path).ok

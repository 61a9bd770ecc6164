"""The README's examples run as written, and its on-disk layout reads a store with plain zarr."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import zarr

import replaystore as rs

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return [textwrap.dedent(b) for b in blocks]


def test_ten_line_example_runs(tmp_path, capsys, monkeypatch):
    block = python_blocks()[0]
    assert "rs.create" in block and "to_pandas" in block
    assert len(block.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert "obs_0" in capsys.readouterr().out


def test_layout_section_reads_a_ring_with_plain_zarr(tmp_path, monkeypatch):
    store = rs.create(tmp_path / "buf.zarr", gym.spaces.Box(-100, 100, (3,)), gym.spaces.Discrete(2),
                      capacity=7)
    n = 20
    obs = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    store.extend({"obs": obs, "action": np.arange(n) % 2, "reward": np.arange(n, dtype=np.float32),
                  "next_obs": obs + 1, "terminated": np.zeros(n, bool), "truncated": np.zeros(n, bool)})
    store.close()
    monkeypatch.chdir(tmp_path)
    block = next(b for b in python_blocks() if "zarr.open_group" in b)
    scope = {"zarr": zarr, "np": np}
    exec(compile(block, "README.md", "exec"), scope)
    assert np.array_equal(scope["obs"], obs[-7:])


def test_plain_zarr_and_tensorstore_read_every_field(tmp_path):
    import tensorstore as ts

    store = rs.create(tmp_path / "s.zarr", gym.spaces.Box(0, 255, (4, 4), np.uint8), gym.spaces.Discrete(3),
                      extra_fields=[("label", "int16")], codecs={"label": "zstd:3"})
    rng = np.random.default_rng(0)
    n = 5000
    o = rng.integers(0, 256, (n + 1, 4, 4), dtype=np.uint8)
    store.extend({"obs": o[:-1], "next_obs": o[1:], "action": rng.integers(0, 3, n),
                  "reward": rng.standard_normal(n).astype(np.float32), "terminated": rng.random(n) < 0.1,
                  "truncated": np.zeros(n, bool), "label": rng.integers(-5, 5, n)})
    expected = store.read_range(0, n)
    store.close()
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    for name, values in expected.items():
        assert np.array_equal(g[name][:], values), name
        t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "s.zarr" / name)}},
                    read=True).result()
        assert np.array_equal(t.read().result(), values), name

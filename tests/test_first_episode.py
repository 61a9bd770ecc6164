"""``create(first_episode=E)``: a store whose episode ids start at ``E`` (stores filled side
by side get disjoint ids), kept across reopening, and bad values refused."""

import gymnasium as gym
import numpy as np
import pytest

import replaystore as rs
from replaystore.collect import Collector

BASE = 3 << 32


def _rows(n, done_every):
    t = np.arange(n)
    return {"obs": t % 4, "action": t % 2, "reward": np.ones(n), "next_obs": (t + 1) % 4,
            "terminated": (t + 1) % done_every == 0, "truncated": np.zeros(n, bool)}


def test_episode_ids_start_at_first_episode_and_continue_after_reopen(tmp_path):
    path = tmp_path / "s.zarr"
    s = rs.create(path, gym.spaces.Discrete(4), gym.spaces.Discrete(2), first_episode=BASE)
    s.extend(_rows(6, 3))
    s.close()
    s = rs.open(path, "a")
    s.extend(_rows(3, 3))
    s.close()
    ep = rs.open(path).read_range(0, 9, "episode")["episode"]
    assert ep.tolist() == [BASE] * 3 + [BASE + 1] * 3 + [BASE + 2] * 3


def test_collected_episodes_of_two_stores_are_disjoint(tmp_path):
    eps = []
    for i in range(2):
        with Collector("CartPole-v1", seed=i) as c:
            s = rs.create(tmp_path / f"{i}.zarr", c.observation_space, c.action_space,
                          first_episode=i << 32)
            c.run(s, steps=300)
            eps.append(set(s.read_range(0, len(s), "episode")["episode"].tolist()))
            s.close()
    assert min(eps[1]) >= 1 << 32 > max(eps[0])
    assert not eps[0] & eps[1]


@pytest.mark.parametrize("bad", [-1, 2**62, 1.5, True, "3"])
def test_bad_first_episode_is_refused_before_anything_is_written(tmp_path, bad):
    path = tmp_path / "s.zarr"
    with pytest.raises(rs.SchemaError, match="first_episode"):
        rs.create(path, gym.spaces.Discrete(4), gym.spaces.Discrete(2), first_episode=bad)
    assert not path.exists()

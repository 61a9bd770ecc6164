"""The online loop's fast paths give what the general ones give: the batches a sampler
reads from a ring being appended (1-D fields by indexing, wider ones by ``take``, the
ring's wrap by one modulo) are exactly the rows ``store.read`` returns for the same draws,
and the trainer's grading (transition matrices built once) is exactly
``policy_value_gap``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import replaystore as rs
from replaystore.agents import QLearningAgent, policy_value_gap


def _row(g: int, box: bool) -> dict:
    obs = np.array([g, -g], np.float32) if box else g % 50
    nxt = np.array([g + 1, -g], np.float32) if box else (g + 1) % 50
    return {"obs": obs, "action": g % 4, "reward": float(g), "next_obs": nxt,
            "terminated": g % 13 == 12, "truncated": g % 29 == 28}


@pytest.mark.parametrize("box", [False, True], ids=["discrete", "box"])
@pytest.mark.parametrize(("capacity", "chunk_rows", "buffer_rows", "every"), [
    (500, 128, 64, 1), (500, 128, 4096, 1),  # buffered rows gathered from the write buffer
    (8192, 4096, 2048, 8), (8192, 4096, 8191, 8),  # page-aligned chunks: buffered in place
])  # (commits often, or rarely)
def test_online_batches_are_the_rows_store_read_gives(tmp_path, box, buffer_rows, capacity,
                                                      chunk_rows, every):
    """Append one row, sample one batch, for three times the capacity (the ring wraps
    three times): each batch (every ``every``-th checked) equals ``store.read`` of the
    indices a twin sampler (same seed) draws, field by field, dtype included."""
    obs_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32) if box else gym.spaces.Discrete(50)
    store = rs.create(tmp_path / "s.zarr", obs_space, gym.spaces.Discrete(4), capacity=capacity,
                      chunk_rows=chunk_rows, buffer_rows=buffer_rows)
    fields = ["obs", "action", "reward", "next_obs", "terminated", "truncated"]
    sampler = rs.UniformSampler(store, 32, seed=3, fields=fields, readahead=False)
    twin = rs.UniformSampler(store, 32, seed=3, fields=fields, readahead=False)
    for g in range(3 * capacity):
        store.append(**_row(g, box))
        batch = sampler.sample()
        idx = twin.sample_indices()
        if g % every:
            continue
        want = store.read(idx, fields=fields)
        assert list(batch) == fields
        for name in fields:
            assert batch[name].dtype == want[name].dtype
            np.testing.assert_array_equal(batch[name], want[name], err_msg=f"{name} at row {g}")
        if g % 97 == 0:  # (whole rows: reward holds the row's id)
            ids = batch["reward"].astype(np.int64)
            assert ids.min() >= max(0, g - capacity + 1) and ids.max() <= g
            np.testing.assert_array_equal(batch["action"], ids % 4)
    store.close()


@pytest.mark.parametrize(("env_id", "kwargs"), [("Taxi-v3", {}), ("FrozenLake-v1", {"is_slippery": True}),
                                                ("CliffWalking-v0", {"max_episode_steps": 500})])
def test_trainer_gap_is_policy_value_gap_exactly(tmp_path, env_id, kwargs):
    ids = [i for i in (env_id.replace("v3", "v4"), env_id.replace("v0", "v1"), env_id) if i in gym.registry]
    env = gym.make(ids[0], **kwargs)
    agent = QLearningAgent.from_spaces(env.observation_space, env.action_space, gamma=0.95)
    store = rs.create(tmp_path / "b.zarr", env.observation_space, env.action_space, capacity=100)
    trainer = rs.OnlineTrainer(env, agent, store, learning_starts=10, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(4):
        agent.q[:] = rng.standard_normal(agent.q.shape)
        assert trainer.gap() == policy_value_gap(env, agent.greedy_policy(), 0.95)["rel_gap"]
    store.close()

"""The online loop with prioritized replay and fractional update rates."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import zarr

import replaystore as rs
from replaystore.agents import Agent, QLearningAgent
from replaystore.errors import AgentConfigError
from replaystore.online.loop import PrioritizedFactory


def cliff(tmp_path, name="buf.zarr", capacity=20_000):
    env = gym.make("CliffWalking-v1", max_episode_steps=500)
    agent = QLearningAgent.from_spaces(env.observation_space, env.action_space, gamma=0.99)
    store = rs.create(tmp_path / name, env.observation_space, env.action_space, capacity=capacity)
    return env, agent, store


def test_prioritized_replay_learns_the_optimum_and_keeps_its_priorities(tmp_path):
    env, agent, store = cliff(tmp_path)
    run = rs.OnlineTrainer(env, agent, store, batch_size=32, learning_starts=500, commit_every=2000,
                           sampler=PrioritizedFactory(0.6, 0.4), seed=0)
    result = run.train(steps=20_000, eval_every=20_000, eval_episodes=1)
    assert result.evaluations[-1]["gap"] < 0.01
    assert isinstance(run.sampler, rs.PrioritizedSampler)
    p = run.sampler.priority(np.arange(*store.id_range))
    assert p.std() > 0 and p.min() > 0  # (TD errors were written back, eps keeps them positive)
    store.close()
    arr = zarr.open_array(str(tmp_path / "buf.zarr" / "_priority"), mode="r")
    assert arr.attrs["replaystore"]["priorities"]["clean"]
    # resumed later: the saved priorities come back
    env, agent, _ = cliff(tmp_path, "other.zarr")
    store = rs.open(tmp_path / "buf.zarr", "a")
    run = rs.OnlineTrainer(env, agent, store, batch_size=32, learning_starts=500, commit_every=2000,
                           sampler=PrioritizedFactory(0.6, 0.4), seed=0)
    run.train(steps=20_000, resume=True)  # (already done: loads the state, runs nothing)
    np.testing.assert_allclose(rs.PrioritizedSampler(store, 8, alpha=0.6).priority(np.arange(*store.id_range)),
                               p, rtol=1e-5)
    store.close()


@pytest.mark.parametrize("ups", [0.5, 0.25, 1.5, 2])
def test_fractional_updates_per_step_spread_evenly(tmp_path, ups):
    env, agent, store = cliff(tmp_path)
    run = rs.OnlineTrainer(env, agent, store, batch_size=8, learning_starts=100, updates_per_step=ups,
                           commit_every=700, seed=0)
    result = run.train(steps=3000)
    # learning steps are the 99th .. 2999th (2901 of them): floor(2901 * ups) updates
    assert result.updates == int(np.floor(2901 * ups))
    store.close()


def test_prioritized_replay_needs_the_agents_td_errors(tmp_path):
    class NoTD(Agent):
        def act(self, obs, *, epsilon=0.0, rng=None):
            return 0

        def update(self, batch):
            return 0.0

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

        def save(self, path):
            pass

        @classmethod
        def load(cls, path):
            return cls()

    env, _, store = cliff(tmp_path)
    run = rs.OnlineTrainer(env, NoTD(), store, learning_starts=10, sampler=PrioritizedFactory(), seed=0)
    with pytest.raises(AgentConfigError, match=r"NoTD.update leaves no batch\['td_error'\]"):
        run.train(steps=50)
    store.close()


def test_learn_command_with_prioritized_replay(tmp_path):
    from conftest import run_cli

    r = run_cli("learn", "CliffWalking-v1", "--buffer", tmp_path / "b.zarr", "--capacity", 5000, "--steps", 4000,
                "--learning-starts", 200, "--prioritized", "--updates-per-step", 0.5, "--out", tmp_path / "q.npz",
                "--no-progress")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b.zarr" / "_priority" / "zarr.json").is_file()
    r = run_cli("learn", "CliffWalking-v1", "--buffer", tmp_path / "c.zarr", "--capacity", 5000, "--steps", 100,
                "--prioritized", "--balanced-by", "action", "--out", tmp_path / "q2.npz")
    assert r.exit_code != 0 and "--balanced-by and --prioritized are two samplers" in r.output


def test_the_tabular_agent_uses_an_n_step_batchs_discount():
    agent = QLearningAgent(3, 1, alpha=1.0, gamma=0.5, alpha_schedule="constant")
    agent.q[:] = [[0.0], [8.0], [0.0]]
    batch = {"obs": np.array([0]), "action": np.array([0]), "reward": np.array([1.0]),
             "next_obs": np.array([1]), "terminated": np.array([False]),
             "discount": np.array([0.125], np.float32), "n_steps": np.array([3])}
    agent.update(batch)
    assert agent.q[0, 0] == 1.0 + 0.125 * 8.0  # (gamma**3, not gamma)

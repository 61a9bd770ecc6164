"""The online loop (replaystore.online): it learns, stores what it saw, samples any way,
refuses to resume a different run, and runs from the command line."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import replaystore as rs
from replaystore.agents import QLearningAgent, policy_value_gap
from replaystore.cli import main
from replaystore.online import BalancedFactory, LinearSchedule, OnlineTrainer, run_dir_of

CLIFF = ("CliffWalking-v1", {"max_episode_steps": 500})


def make_run(tmp_path, env_id, env_kwargs=None, *, gamma=0.99, capacity=50_000, name="buf.zarr", **kw):
    env = gym.make(env_id, **(env_kwargs or {}))
    agent = QLearningAgent.from_spaces(env.observation_space, env.action_space, gamma=gamma)
    store = rs.create(tmp_path / name, env.observation_space, env.action_space, capacity=capacity)
    opts = dict(batch_size=32, learning_starts=500, commit_every=1000, seed=0)
    opts.update(kw)
    return env, agent, store, OnlineTrainer(env, agent, store, **opts)


# -- schedules -----------------------------------------------------------------------------------
def test_linear_schedule_values():
    s = LinearSchedule(1.0, 0.05, fraction=0.5)
    assert s.value(0, 1000) == 1.0
    assert s.value(250, 1000) == pytest.approx(0.525)
    assert s.value(500, 1000) == 0.05 and s.value(999, 1000) == 0.05
    np.testing.assert_allclose(s.values(0, 1000, total=1000), [s.value(t, 1000) for t in range(1000)])
    fixed = LinearSchedule(0.5, 0.0, steps=10)          # steps wins over the run length
    assert fixed.value(5, 10**6) == pytest.approx(0.25) and fixed.value(10, 7) == 0.0
    assert LinearSchedule.from_dict(s.to_dict()) == s
    with pytest.raises(rs.AgentConfigError, match="fraction"):
        LinearSchedule(1.0, 0.0, fraction=2.0)


# -- learning ------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id, env_kwargs, steps", [("Taxi-v4", {}, 50_000), (*CLIFF, 8_000)])
def test_learns_the_optimal_policy(tmp_path, env_id, env_kwargs, steps):
    env, agent, store, run = make_run(tmp_path, env_id, env_kwargs, learning_starts=1_000)
    result = run.train(steps=steps, eval_every=steps // 2, eval_episodes=3)
    assert store.total == steps == result.steps
    gap = policy_value_gap(env, agent.greedy_policy(), 0.99)["rel_gap"]
    assert gap < (0.01 if env_id.startswith("Taxi") else 1e-9)  # (Taxi: the 1%, at 50k)
    assert result.evaluations[-1]["step"] == steps and result.evaluations[-1]["gap"] == pytest.approx(gap, abs=1e-12)
    assert sum(n for _, _, n in result.episodes) <= steps
    assert [e[0] for e in result.episodes] == sorted(e[0] for e in result.episodes)
    assert result.td_errors and all(t["updates"] > 0 for t in result.td_errors)
    assert set(result.to_dict()) >= {"steps", "seconds", "steps_per_second", "episodes", "evaluations",
                                     "td_errors"}


def test_slippery_frozenlake_gap_is_small(tmp_path):
    env, agent, store, run = make_run(tmp_path, "FrozenLake-v1", {"map_name": "4x4", "is_slippery": True})
    run.train(steps=20_000)
    gap = policy_value_gap(env, agent.greedy_policy(), 0.99)["rel_gap"]
    assert gap < 0.01


def test_terminated_and_truncated_are_stored_apart(tmp_path):
    # a 40-step limit cuts most episodes; falling off the cliff does not end one, the goal does
    env, agent, store, run = make_run(tmp_path, "CliffWalking-v1", {"max_episode_steps": 40},
                                      learning_starts=200)
    result = run.train(steps=6_000)
    d = store.read_range(0, len(store), fields=["terminated", "truncated", "episode", "step"])
    assert d["truncated"].any() and d["terminated"].any()
    ends = np.flatnonzero(d["terminated"] | d["truncated"]) + 1
    assert ends.tolist() == [s for s, _, _ in result.episodes]
    lengths = [n for _, _, n in result.episodes]
    assert all(n <= 40 for n in lengths)
    assert all((n == 40) == bool(d["truncated"][s - 1] and not d["terminated"][s - 1])
               for s, _, n in result.episodes if n == 40 or d["truncated"][s - 1])
    # a new episode starts after each end
    assert (d["step"][ends[:-1]] == 0).all()


def test_balanced_and_weighted_samplers(tmp_path):
    env, agent, store, run = make_run(tmp_path, "CliffWalking-v1", {"max_episode_steps": 25},
                                      sampler=BalancedFactory("truncated"), learning_starts=300)
    run.train(steps=3_000)
    assert type(run.sampler).__name__ == "BalancedSampler" and store.total == 3_000
    # about 1 row in 25 is truncated; balanced by it, half of every batch is
    n = sum(int(store.read(run.sampler.sample_indices(), fields=["truncated"])["truncated"].sum())
            for _ in range(20))
    assert 200 < n < 440

    env2 = gym.make("Taxi-v4")
    agent2 = QLearningAgent.from_spaces(env2.observation_space, env2.action_space)
    store2 = rs.create(tmp_path / "w.zarr", env2.observation_space, env2.action_space, capacity=10_000)
    store2.extend({"obs": np.zeros(10, np.int64), "action": np.arange(10) % 6, "reward": np.zeros(10),
                   "next_obs": np.zeros(10, np.int64), "terminated": np.zeros(10, bool),
                   "truncated": np.zeros(10, bool)})
    weighted = rs.WeightedSampler(store2, weights="action", batch_size=16, seed=1)
    run2 = OnlineTrainer(env2, agent2, store2, sampler=weighted, learning_starts=1, commit_every=500, seed=0)
    result = run2.train(steps=1_500)
    assert run2.sampler is weighted and store2.total == 1_510 and result.updates == 1_500
    assert (weighted.sample()["action"] > 0).all()  # weight 0 rows are never drawn


def test_default_sampler_reads_only_the_agents_fields(tmp_path):
    _, agent, _, run = make_run(tmp_path, "Taxi-v4", learning_starts=10)
    run.train(steps=100)
    assert sorted(run.sampler.sample()) == sorted(agent.batch_fields)


# -- resuming ------------------------------------------------------------------------------------
def test_resume_with_other_settings_is_an_error(tmp_path):
    env, agent, store, run = make_run(tmp_path, "Taxi-v4", learning_starts=100, commit_every=500)
    run.train(steps=1_000)
    store.close()
    assert (run_dir_of(tmp_path / "buf.zarr")).is_dir()

    def again(gamma=0.99, steps=1_000, **kw):
        env = gym.make("Taxi-v4")
        agent = QLearningAgent.from_spaces(env.observation_space, env.action_space, gamma=gamma)
        with rs.open(tmp_path / "buf.zarr", "a") as store:
            opts = dict(batch_size=32, learning_starts=100, commit_every=500, seed=0)
            opts.update(kw)
            return OnlineTrainer(env, agent, store, **opts).train(steps=steps, resume=True)

    with pytest.raises(rs.RunMismatchError, match=r"agent\.gamma: saved 0\.99, given 0\.9"):
        again(gamma=0.9)
    with pytest.raises(rs.RunMismatchError, match="steps: saved 1000, given 2000"):
        again(steps=2_000)
    with pytest.raises(rs.RunMismatchError, match="batch_size"):
        again(batch_size=16)
    with pytest.raises(rs.RunMismatchError, match="epsilon"):
        again(epsilon=0.1)
    with pytest.raises(rs.RunMismatchError, match="sampler"):
        again(sampler=BalancedFactory("action"))
    assert isinstance(rs.RunMismatchError("x"), ValueError)
    result = again()  # the same settings: nothing left to do
    assert result.resumed_from == 1_000 and result.steps_this_call == 0
    # without resume=True a saved run is never overwritten
    env, agent = gym.make("Taxi-v4"), QLearningAgent(500, 6)
    with rs.open(tmp_path / "buf.zarr", "a") as store, pytest.raises(rs.RunMismatchError, match="resume"):
        OnlineTrainer(env, agent, store, commit_every=500).train(steps=1_000)


def test_commit_every_must_fit_the_write_buffer(tmp_path):
    with pytest.raises(rs.SamplerError, match=r"write buffer \(500 rows\)"):
        make_run(tmp_path, "Taxi-v4", capacity=500, commit_every=500)
    # by default: 10,000 steps, or less for a small ring
    *_, run = make_run(tmp_path, "Taxi-v4", name="b2.zarr", capacity=800, commit_every=None)
    assert run.commit_every == 799
    *_, run = make_run(tmp_path, "Taxi-v4", name="b3.zarr", capacity=10**6, commit_every=None)
    assert run.commit_every == 10_000


# -- command line --------------------------------------------------------------------------------
def test_cli_learn_then_evaluate(tmp_path):
    runner = CliRunner()
    args = ["learn", *CLIFF[:1], "--env-kwargs", '{"max_episode_steps": 500}', "--buffer",
            str(tmp_path / "cliff.zarr"), "--capacity", "20000", "--steps", "10000", "--out",
            str(tmp_path / "q.npy"), "--seed", "0", "--gamma", "0.99", "--learning-starts", "500",
            "--commit-every", "500", "--eval-every", "5000", "--eval-episodes", "2",
            "--log", str(tmp_path / "curves.csv"), "--no-progress"]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "10,000 env steps" in r.output and "gap to the optimal value 0.0000%" in r.output
    agent = QLearningAgent.load(tmp_path / "q.npy")
    assert agent.gamma == 0.99 and agent.q.shape == (48, 4)
    r = runner.invoke(main, ["evaluate", "CliffWalking-v1", str(tmp_path / "q.npy"), "--episodes", "3"])
    assert r.exit_code == 0 and "mean return -13.000" in r.output, r.output
    with open(tmp_path / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    kinds = {row["kind"] for row in rows}
    assert kinds == {"episode", "eval", "td"}
    assert [row["step"] for row in rows if row["kind"] == "eval"] == ["5000", "10000"]
    # the same command again: the buffer exists, so it is an error, on one line
    r = runner.invoke(main, args)
    assert r.exit_code == 1 and r.output.startswith("Error:") and "--resume" in r.output
    assert len(r.output.strip().splitlines()) == 1
    # --resume with another gamma: one line naming the setting
    r = runner.invoke(main, [*args, "--resume", "--gamma", "0.9"])
    assert r.exit_code == 1 and "agent.gamma" in r.output and len(r.output.strip().splitlines()) == 1
    # --resume of a finished run: nothing to do, the store is unchanged
    r = runner.invoke(main, [*args, "--resume"])
    assert r.exit_code == 0 and "resumed at step 10,000" in r.output, r.output
    with rs.open(tmp_path / "cliff.zarr") as store:
        assert store.total == 10_000
        assert store.info["online_run"]["step"] == 10_000

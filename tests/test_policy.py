"""The Policy / Agent interfaces and the saved-policy registry, as the collector, the
trainer and ``evaluate`` use them: user-written policies and agents, paths of saved
policies, and the errors when something does not fit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium.spaces import Discrete

import replaystore as rs
from replaystore.agents import Agent, QLearningAgent
from replaystore.collect import CollectorConfigError, collect
from replaystore.policy import (
    Policy,
    UnknownPolicyError,
    load_policy,
    register_loader,
    registered_formats,
)
from replaystore.training import OfflineTrainer, evaluate

LAKE = "FrozenLake-v1"
DET = {"is_slippery": False}
RIGHT_DOWN = [2, 2, 1, 0, 1, 0, 1, 0, 2, 2, 1, 0, 0, 2, 2, 0]  # a shortest path on the 4x4 lake


class TablePolicy(Policy, saved_format="tests.TablePolicy", suffixes=(".policy",)):
    """A fixed action per Discrete observation, saved as JSON."""

    def __init__(self, actions: list[int]) -> None:
        self.actions = list(actions)
        self.seen: list[Any] = []

    def act(self, obs, *, epsilon=0.0, rng=None):
        self.seen.append(obs)
        if epsilon > 0 and rng is not None and rng.random() < epsilon:
            return int(rng.integers(4))
        return self.actions[int(obs)]

    def check_spaces(self, observation_space, action_space) -> None:
        if not isinstance(observation_space, Discrete) or observation_space.n != len(self.actions):
            raise rs.SpaceError(f"needs Discrete({len(self.actions)}) observations, got "
                                f"{observation_space}")

    def describe(self) -> dict[str, Any]:
        return {"kind": "table", "states": len(self.actions)}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"format": self.saved_format, "actions": self.actions}))

    @classmethod
    def load_saved(cls, path) -> TablePolicy:
        return cls(json.loads(Path(path).read_text())["actions"])


def read_all(path) -> dict[str, np.ndarray]:
    with rs.open(path) as store:
        return store.read_range(0, len(store))


# ---------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------
def test_registry_knows_the_q_table_format():
    assert registered_formats()["replaystore.QLearningAgent"] == (".npz", ".npy")
    assert registered_formats()["tests.TablePolicy"] == (".policy",)


def test_importing_the_collector_registers_the_agents():
    code = ("from replaystore.collect import collect\n"
            "from replaystore.policy import registered_formats\n"
            "import sys\n"
            "assert 'replaystore.QLearningAgent' in registered_formats()\n"
            "assert 'click' not in sys.modules, 'only the CLI imports click'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_load_saved_and_bare_q_tables(tmp_path):
    agent = QLearningAgent(16, 4, gamma=0.7)
    agent.q[:] = np.random.default_rng(1).random((16, 4))
    agent.save(tmp_path / "Q.npy")
    back = load_policy(tmp_path / "Q.npy")
    assert isinstance(back, QLearningAgent) and back.gamma == 0.7
    np.testing.assert_array_equal(back.q, agent.q)
    bare = tmp_path / "bare.npy"
    np.save(bare, agent.q)
    table = load_policy(str(bare))
    assert isinstance(table, QLearningAgent)
    np.testing.assert_array_equal(table.greedy_policy(), agent.greedy_policy())
    # a bare table has no recorded offsets: it takes the spaces' own
    table.check_spaces(Discrete(16, start=3), Discrete(4))
    assert table.act(3) == agent.act(0)


def test_unknown_paths_name_the_path(tmp_path):
    with pytest.raises(UnknownPolicyError, match="no registered loader") as ei:
        load_policy(tmp_path / "weights.bin")
    assert str(tmp_path / "weights.bin") in str(ei.value)
    assert "replaystore.QLearningAgent (.npz, .npy)" in str(ei.value)
    assert isinstance(ei.value, rs.ReplayStoreError) and isinstance(ei.value, ValueError)
    q = tmp_path / "Q.npy"
    np.save(q, np.zeros((2, 2)))
    q.with_suffix(".json").write_text(json.dumps({"format": "someone.Else"}))
    with pytest.raises(UnknownPolicyError, match="'someone.Else'"):
        load_policy(q)
    with pytest.raises(rs.NotAStoreError, match="nothere.npy"):
        load_policy(tmp_path / "nothere.npy")


def test_register_loader_checks_its_arguments():
    with pytest.raises(ValueError):
        register_loader("", lambda p: None)
    with pytest.raises(ValueError, match="start with"):
        register_loader("x.Y", lambda p: None, suffixes=("npy",))


# ---------------------------------------------------------------------------------------
# the collector takes any Policy, or a path, without knowing the agents
# ---------------------------------------------------------------------------------------
def test_collect_with_a_user_policy_and_its_saved_file(tmp_path):
    pol = TablePolicy(RIGHT_DOWN)
    stats = collect(LAKE, tmp_path / "a", episodes=3, num_envs=2, policy=pol, env_kwargs=DET)
    assert stats.mean_return == 1.0
    assert all(np.ndim(o) == 0 for o in pol.seen)  # not batched: one observation at a time
    with rs.open(tmp_path / "a") as store:
        rec = store.info["collections"][0]["policy"]
    assert rec == {"kind": "table", "source": repr(pol), "states": 16, "epsilon": 0.0}
    saved = tmp_path / "walk.policy"
    pol.save(saved)
    collect(LAKE, tmp_path / "b", steps=40, policy=saved, epsilon=0.5, env_kwargs=DET)
    with rs.open(tmp_path / "b") as store:
        rec = store.info["collections"][0]["policy"]
    assert rec["source"] == str(saved) and rec["epsilon"] == 0.5
    rows = read_all(tmp_path / "b")
    greedy = np.asarray(RIGHT_DOWN)[rows["obs"]]
    assert 0 < np.mean(rows["action"] != greedy) < 0.6  # its own epsilon explores


def test_collect_refuses_what_does_not_fit(tmp_path):
    with pytest.raises(rs.SpaceError, match=r"needs Discrete\(4\) observations, got Discrete\(16\)") as ei:
        collect(LAKE, tmp_path / "s", steps=5, policy=TablePolicy([0] * 4))
    assert str(ei.value).startswith("policy <")  # named by its repr
    assert not (tmp_path / "s").exists()
    with pytest.raises(CollectorConfigError, match="weights.bin"):
        collect(LAKE, tmp_path / "s", steps=5, policy=tmp_path / "weights.bin")
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------
# the trainer and evaluate talk to the Agent interface only
# ---------------------------------------------------------------------------------------
class MeanReward(Agent):
    """Learns the mean reward per action by minibatches; no sweeps."""

    gamma = 0.5

    def __init__(self) -> None:
        self.total = np.zeros(4)
        self.count = np.zeros(4)

    def act(self, obs, *, epsilon=0.0, rng=None):
        return int(np.argmax(self.total / np.maximum(self.count, 1)))

    def update(self, batch: Mapping[str, np.ndarray]) -> float:
        before = self.total / np.maximum(self.count, 1)
        np.add.at(self.total, batch["action"], batch["reward"])
        np.add.at(self.count, batch["action"], 1)
        return float(np.abs(self.total / np.maximum(self.count, 1) - before).max())

    def state_dict(self):
        return {"total": self.total.copy(), "count": self.count.copy()}

    def load_state_dict(self, state):
        self.total, self.count = state["total"].copy(), state["count"].copy()

    def save(self, path):
        np.save(path, self.total)

    @classmethod
    def load(cls, path):
        agent = cls()
        agent.total = np.load(path)
        return agent


class SweepingMean(MeanReward):
    def update_many(self, batches: Iterable[Mapping[str, np.ndarray]]) -> float:
        return max((self.update(b) for b in batches), default=0.0)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lake") / "fl.zarr"
    collect(LAKE, path, steps=1500, seed=0, env_kwargs=DET)
    return path


def test_trainer_uses_only_the_agent_interface(lake):
    with rs.open(lake) as store:
        agent = MeanReward()
        assert not agent.supports_sweeps and agent.convergence_scale() == 1.0
        with pytest.raises(rs.SamplerError, match="update_many"):
            OfflineTrainer(store, agent)
        res = OfflineTrainer(store, agent, batch_size=100).train(updates=20)
        assert res.updates == 20 and agent.count.sum() == 2000
        sweeper = SweepingMean()
        assert sweeper.supports_sweeps
        res = OfflineTrainer(store, sweeper).train(updates=2)
        assert res.transitions == 2 * len(store) and sweeper.count.sum() == 2 * len(store)
        # the same sweep again changes nothing: converged after the second
        res = OfflineTrainer(store, SweepingMean()).train(tol=1e-12, max_updates=5)
        assert res.converged and res.updates == 2 and "max |dQ|" in res.stop_reason


def test_space_errors_become_the_callers_errors(lake, tmp_path):
    with rs.open(lake) as store:
        with pytest.raises(rs.SamplerError, match="store: Q-table shape \\(4, 4\\)") as ei:
            OfflineTrainer(store, QLearningAgent(4, 4))
        assert str(lake) in str(ei.value)
    with pytest.raises(rs.EnvError, match="Discrete"):
        evaluate("CartPole-v1", QLearningAgent(4, 2), episodes=1)
    # evaluate takes any Policy, or the path of a saved one
    pol = TablePolicy(RIGHT_DOWN)
    assert evaluate(LAKE, pol, episodes=3, env_kwargs=DET)["success_rate"] == 1.0
    pol.save(tmp_path / "walk.policy")
    assert evaluate(LAKE, tmp_path / "walk.policy", episodes=3, env_kwargs=DET)["mean_length"] == 6.0


def test_policy_certificate_is_the_tabular_agents():
    agent = QLearningAgent(3, 2)
    agent.q[:] = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    agent.visits[:2] = 1
    assert agent.policy_certified(0.49) and not agent.policy_certified(0.5)
    agent.visits[2] = 1  # a visited state that still ties blocks it
    assert not agent.policy_certified(0.0)
    assert not Agent.policy_certified(agent, 0.0)  # the interface's default: never

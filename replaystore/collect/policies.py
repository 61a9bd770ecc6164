"""What chooses the actions of a collection run.

Each source maps a batch of observations (the vector env's format) to a batch of
actions: :class:`RandomActions` (the env's action space, seeded), :class:`CallableActions`
(any ``policy(obs) -> action``), :class:`PolicyActions` (any
:class:`~replaystore.policy.Policy`, e.g. a saved agent, one ``q.npz`` written by ``train`` or
``learn``, read with :func:`~replaystore.policy.load_policy`, which reads the older ``q.npy``
layouts too). :func:`make_actions` picks one.
The collector knows policies only through :mod:`replaystore.policy`, never the agents.
"""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import SyncVectorEnv
from gymnasium.vector.utils import concatenate, create_empty_array, iterate

from ..errors import SpaceError
from ..policy import Policy, UnknownPolicyError, load_policy
from .config import TAG_ACTIONS, TAG_EPSILON, CollectorConfigError, derived_seed

__all__ = ["ActionSource", "RandomActions", "CallableActions", "PolicyActions", "PolicyLike",
           "make_actions"]

#: what ``collect(policy=...)`` takes
PolicyLike = str | os.PathLike | Policy | Callable[[Any], Any]

POLICY_KINDS = ("'random', a callable policy(obs) -> action, a replaystore.policy.Policy (e.g. "
                "a QLearningAgent) or the path of a saved policy (e.g. a q.npz written by train/learn)")


class ActionSource(ABC):
    """Actions for a vector step; ``resetting[i]`` says env ``i`` is about to be reset
    (its action is ignored)."""

    @abstractmethod
    def __call__(self, obs: Any, resetting: np.ndarray) -> Any:
        """A batch of ``num_envs`` actions for the batch ``obs``."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-ready record of the policy (``info["collections"][i]["policy"]``)."""


class RandomActions(ActionSource):
    """Uniform actions from the vector env's action space, seeded from ``seed``."""

    def __init__(self, envs: SyncVectorEnv, seed: int) -> None:
        self.space = envs.action_space
        self.space.seed(int(derived_seed(seed, TAG_ACTIONS).generate_state(1)[0]))

    def __call__(self, obs: Any, resetting: np.ndarray) -> Any:
        return self.space.sample()

    def describe(self) -> dict[str, Any]:
        return {"kind": "random"}


class CallableActions(ActionSource):
    """``fn(obs) -> action`` once per env (or once per step on the batch, ``batched``),
    each action replaced by a uniform one with probability ``epsilon``."""

    def __init__(
        self, fn: Callable, envs: SyncVectorEnv, *, batched: bool, epsilon: float, seed: int
    ) -> None:
        self.fn = fn
        self.batched = batched
        self.epsilon = epsilon
        self.n = envs.num_envs
        self.obs_space = envs.observation_space
        self.single_action_space = envs.single_action_space
        self.action_space = envs.action_space
        self.rng = np.random.default_rng(derived_seed(seed, TAG_EPSILON))
        self.explore_space = None
        self.last: list[Any] | None = None
        if epsilon > 0:
            self.explore_space = copy.deepcopy(envs.single_action_space)
            self.explore_space.seed(int(derived_seed(seed, TAG_ACTIONS).generate_state(1)[0]))

    def __call__(self, obs: Any, resetting: np.ndarray) -> Any:
        if self.batched:
            actions = self.fn(obs)
            if self.epsilon <= 0:
                return actions
            items = list(iterate(self.action_space, actions))
        else:
            # an env about to be reset (its action is ignored) does not ask the policy:
            # a single-observation policy only sees observations it acts on
            last = self.last
            items = [
                last[i] if last is not None and resetting[i] else self.fn(o)
                for i, o in enumerate(iterate(self.obs_space, obs))
            ]
        if self.epsilon > 0:
            assert self.explore_space is not None
            explore = self.rng.random(self.n) < self.epsilon
            items = [self.explore_space.sample() if e else a for e, a in zip(explore, items, strict=True)]
        self.last = items
        out = create_empty_array(self.single_action_space, self.n)
        return concatenate(self.single_action_space, items, out)

    def describe(self) -> dict[str, Any]:
        fn = self.fn
        name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        module = getattr(fn, "__module__", None) or type(fn).__module__
        return {
            "kind": "callable",
            "name": f"{module}.{name}",
            "batched": self.batched,
            "epsilon": self.epsilon,
        }


class PolicyActions(ActionSource):
    """A :class:`~replaystore.policy.Policy` acting with ``epsilon`` (its own exploration),
    on the whole batch when it says ``batched_act`` (or ``batched``), else env by env."""

    def __init__(self, policy: Policy, source: str, envs: SyncVectorEnv, *, epsilon: float,
                 seed: int, batched: bool) -> None:
        self.policy = policy
        self.source = source
        self.epsilon = epsilon
        self.rng = np.random.default_rng(derived_seed(seed, TAG_EPSILON))
        self.per_env = None
        if not (policy.batched_act or batched):
            self.per_env = CallableActions(self.act_one, envs, batched=False, epsilon=0.0, seed=seed)

    def act_one(self, obs: Any) -> Any:
        return self.policy.act(obs, epsilon=self.epsilon, rng=self.rng)

    def __call__(self, obs: Any, resetting: np.ndarray) -> Any:
        if self.per_env is not None:
            return self.per_env(obs, resetting)
        return self.policy.act(obs, epsilon=self.epsilon, rng=self.rng)

    def describe(self) -> dict[str, Any]:
        desc = dict(self.policy.describe())
        kind = desc.pop("kind", "policy")
        return {"kind": kind, "source": self.source, **desc, "epsilon": self.epsilon}


def _load(path: str | os.PathLike[str]) -> Policy:
    try:
        return load_policy(path)
    except UnknownPolicyError as e:
        raise CollectorConfigError(f"policy must be {POLICY_KINDS}: {e}") from None


def make_actions(policy: PolicyLike, envs: SyncVectorEnv, *, epsilon: float, seed: int,
                 batched: bool) -> ActionSource:
    """The action source for ``policy``: ``"random"``, a :class:`Policy`, the path of a
    saved policy, or a callable. A policy that does not fit the env's spaces raises
    :class:`~replaystore.errors.SpaceError` naming it (its path, or its repr)."""
    if isinstance(policy, str) and policy == "random":
        return RandomActions(envs, seed)
    if isinstance(policy, Policy):
        source = repr(policy)
    elif isinstance(policy, str | os.PathLike):
        source = str(Path(policy))
        policy = _load(policy)
    elif callable(policy):
        return CallableActions(policy, envs, batched=bool(batched), epsilon=epsilon, seed=seed)
    else:
        raise CollectorConfigError(
            f"policy must be {POLICY_KINDS}, got {type(policy).__name__} {policy!r}"
        )
    try:
        policy.check_spaces(envs.single_observation_space, envs.single_action_space)
    except SpaceError as e:
        raise SpaceError(f"policy {source}: {e}") from None
    return PolicyActions(policy, source, envs, epsilon=epsilon, seed=seed, batched=bool(batched))

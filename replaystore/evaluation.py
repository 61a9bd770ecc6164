"""Evaluating a policy: run it in a fresh environment and report returns and successes.

:func:`evaluate` is what ``replaystore evaluate`` and the trainers' ``eval_every`` run;
:func:`check_fits` says, before a long job, whether a policy can act in a store's or an
environment's spaces.

>>> import numpy as np
>>> from replaystore.agents import QLearningAgent
>>> agent = QLearningAgent(16, 4)
>>> evaluate("FrozenLake-v1", agent, episodes=3, env_kwargs={"is_slippery": False})["success_rate"]
0.0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from .envs import make_env
from .errors import EnvError, SpaceError
from .policy import Policy, load_policy

__all__ = ["evaluate", "check_fits"]


def check_fits(where: str, observation_space: Any, action_space: Any, policy: Policy,
               error: type[Exception]) -> None:
    """``policy.check_spaces`` with its :class:`SpaceError` re-raised as ``error`` naming
    ``where`` (a store: :class:`SamplerError`; an environment: :class:`EnvError`). Spaces
    a store does not record (``None``) are not checked."""
    if observation_space is None or action_space is None:
        return
    try:
        policy.check_spaces(observation_space, action_space)
    except SpaceError as e:
        raise error(f"{where}: {e}") from None


def evaluate(
    env: str | gym.Env,
    agent: Policy | str | os.PathLike[str],
    *,
    episodes: int = 100,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    epsilon: float = 0.0,
    max_steps: int | None = None,
) -> dict[str, float]:
    """Run ``agent`` greedily (or epsilon-greedy) for ``episodes`` and report the results.

    ``agent`` is any :class:`~replaystore.policy.Policy`, or the path of a saved one
    (read with :func:`~replaystore.policy.load_policy`, e.g. a ``q.npz`` written by
    ``train``). Returns
    ``mean_return``, ``std_return``, ``success_rate`` and ``mean_length``. An episode
    counts as a success when the environment says so (``info["is_success"]``) or,
    failing that, when it *terminated* on a positive reward (FrozenLake: reached the goal;
    Taxi: delivered the passenger). Episodes are seeded ``seed, seed+1, ...``.
    """
    if not isinstance(episodes, int) or episodes <= 0:
        raise EnvError(f"episodes must be a positive int, got {episodes!r}")
    policy = agent if isinstance(agent, Policy) else load_policy(agent)
    own = isinstance(env, str)
    if not own and not isinstance(env, gym.Env):
        raise EnvError(f"evaluate needs an env id or a gymnasium Env, got {env!r}")
    env = make_env(env, env_kwargs) if own else env
    try:
        check_fits(f"environment {env.spec.id if env.spec else env}", env.observation_space,
                   env.action_space, policy, EnvError)
        rng = np.random.default_rng(seed)
        limit = max_steps or (env.spec.max_episode_steps if env.spec else None) or 10_000
        runs = [_episode(env, policy, seed + ep, epsilon, rng, limit) for ep in range(episodes)]
    finally:
        if own:
            env.close()
    returns, lengths, successes = zip(*runs, strict=True)
    return {
        "episodes": episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "success_rate": float(np.mean(successes)),
        "mean_length": float(np.mean(lengths)),
    }


def _episode(env: gym.Env, policy: Policy, seed: int, epsilon: float, rng: np.random.Generator,
             limit: int) -> tuple[float, int, bool]:
    """Return, length and success of one episode."""
    obs, info = env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs, epsilon=epsilon, rng=rng))
        total += float(reward)
        steps += 1
        if terminated or truncated or steps >= limit:
            if "is_success" in info:
                return total, steps, bool(info["is_success"])
            return total, steps, bool(terminated) and float(reward) > 0

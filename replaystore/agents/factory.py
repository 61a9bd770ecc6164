"""Agents by name, as the commands choose them (``--agent q | dqn | cql``).

>>> import gymnasium as gym
>>> type(make_agent("q", gym.spaces.Discrete(4), gym.spaces.Discrete(2), gamma=0.9)).__name__
'QLearningAgent'
>>> agent_path("cp-dqn", "dqn")
PosixPath('cp-dqn.pt')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym

from replaystore.agents.base import Agent
from replaystore.agents.dqn import DiscreteCQLAgent, DQNAgent
from replaystore.agents.qlearning import QLearningAgent
from replaystore.errors import AgentConfigError

__all__ = ["AGENT_KINDS", "make_agent", "agent_path", "is_deep"]

#: ``q``: tabular Q-learning; ``dqn``: deep Q-learning; ``cql``: discrete CQL (offline)
AGENT_KINDS = ("q", "dqn", "cql")
_DEEP = {"dqn": DQNAgent, "cql": DiscreteCQLAgent}


def is_deep(kind: str) -> bool:
    return kind in _DEEP


def make_agent(kind: str, observation_space: gym.Space, action_space: gym.Space, *, gamma: float,
               alpha: float = 1.0, alpha_schedule: str = "visits", seed: int = 0,
               **deep: Any) -> Agent:
    """An agent of ``kind`` sized for the spaces. ``deep`` keywords (``lr``, ``hidden``,
    ``target_update``, ``cql_alpha``) go to the deep agents; ``None`` values are left out."""
    if kind == "q":
        return QLearningAgent.from_spaces(observation_space, action_space, gamma=gamma, alpha=alpha,
                                          alpha_schedule=alpha_schedule)
    if kind not in _DEEP:
        raise AgentConfigError(f"agent must be one of {', '.join(AGENT_KINDS)}; got {kind!r}")
    kw = {k: v for k, v in deep.items() if v is not None}
    if kind != "cql":
        kw.pop("cql_alpha", None)
    return _DEEP[kind].from_spaces(observation_space, action_space, gamma=gamma, seed=seed, **kw)


def agent_path(path: str | os.PathLike[str], kind: str) -> Path:
    """Where an agent of ``kind`` is saved: a deep agent's name without a suffix gets ``.pt``."""
    p = Path(path)
    if is_deep(kind) and not p.suffix:
        return p.with_name(p.name + ".pt")
    return p

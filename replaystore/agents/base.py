"""The :class:`Agent` interface: a policy that learns from batches of stored transitions.

The offline trainer (``replaystore.training``) talks to agents only through this class:
``update`` for minibatches, ``update_many`` for sweeps over the whole store (optional),
``convergence_scale`` and ``policy_certified`` to decide when to stop, ``save``/``load``
and ``state_dict``/``load_state_dict`` to keep the result.

>>> import numpy as np
>>> class Mean(Agent):
...     '''Learns the mean reward; always takes action 0.'''
...     def __init__(self):
...         self.value, self.n = 0.0, 0
...     def act(self, obs, *, epsilon=0.0, rng=None):
...         return 0
...     def update(self, batch):
...         r = np.asarray(batch["reward"], float)
...         old, self.n = self.value, self.n + len(r)
...         self.value += (r.sum() - len(r) * old) / self.n
...         return float(abs(self.value - old))
...     def state_dict(self):
...         return {"value": self.value, "n": self.n}
...     def load_state_dict(self, state):
...         self.value, self.n = float(state["value"]), int(state["n"])
...     def save(self, path):
...         raise NotImplementedError
...     @classmethod
...     def load(cls, path):
...         raise NotImplementedError
>>> agent = Mean()
>>> agent.update({"reward": [1.0, 3.0]}), agent.supports_sweeps, agent.policy_certified(0.0)
(2.0, False, False)
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from replaystore.errors import AgentConfigError
from replaystore.policy import Policy

__all__ = ["Agent"]


class Agent(Policy):
    """A :class:`~replaystore.policy.Policy` trained from batches of transitions.

    Required: :meth:`act`, :meth:`update`, :meth:`state_dict`, :meth:`load_state_dict`,
    :meth:`save` and :meth:`load`. Optional hooks, with defaults the trainer relies on:
    :meth:`update_many` (sweep training), :attr:`batch_fields` (which fields a
    sampler reads for :meth:`update`), :attr:`gamma` / :meth:`convergence_scale` (when
    a change is small enough to stop), :meth:`policy_certified` (stop early because the
    greedy policy cannot change any more), :meth:`check_save_path`.
    """

    #: discount factor; 0 for agents without one (their changes need no scaling)
    gamma: float = 0.0

    #: the batch fields :meth:`update` reads (a sampler then reads only these); ``None``:
    #: every stored field
    batch_fields: tuple[str, ...] | None = None

    @abstractmethod
    def update(self, batch: Mapping[str, np.ndarray]) -> float:
        """Learn from one batch (a dict of aligned arrays, e.g. ``obs``, ``action``,
        ``reward``, ``next_obs``, ``terminated``, ``truncated``). Returns how much the
        agent changed: the largest ``|Delta Q|``, or a loss."""

    def update_many(self, batches: Iterable[Mapping[str, np.ndarray]]) -> float:
        """One update from several batches taken together, as if concatenated (the
        trainer's sweep mode passes every stored row, block by block). Optional: the
        default raises ``NotImplementedError`` and :attr:`supports_sweeps` is false."""
        raise NotImplementedError(
            f"{type(self).__name__} has no update_many(batches): sweep training needs it; "
            "train in minibatches (batch_size=...) instead"
        )

    @property
    def supports_sweeps(self) -> bool:
        """True when this class implements :meth:`update_many`."""
        return type(self).update_many is not Agent.update_many

    def convergence_scale(self) -> float:
        """Factor turning the change an update returned into a bound on how far the agent
        still is from its fixed point: ``gamma / (1 - gamma)`` (the value-iteration
        bound), 1 for ``gamma == 1``.

        >>> from replaystore.agents import QLearningAgent
        >>> QLearningAgent(2, 2, gamma=0.9).convergence_scale()
        9.000000000000002
        """
        gamma = float(self.gamma)
        return gamma / (1.0 - gamma) if gamma < 1.0 else 1.0

    def policy_certified(self, bound: float) -> bool:
        """True when the agent's greedy policy provably cannot change any more, given
        that its values are within ``bound`` of their fixed point. Default: never."""
        return False

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (copies, not views)."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    @abstractmethod
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the agent to ``path`` (plus any sidecar files)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike[str]) -> Agent:
        """Read an agent written by :meth:`save`."""

    @classmethod
    def load_saved(cls, path: str | os.PathLike[str]) -> Policy:
        """The saved-policy loader (:func:`replaystore.policy.load_policy`): :meth:`load`."""
        return cls.load(path)

    def check_save_path(self, path: str | os.PathLike[str]) -> None:
        """Raise :class:`~replaystore.errors.AgentConfigError` before a long run when
        :meth:`save` could not write ``path``. The default checks that its directory
        exists."""
        parent = Path(path).resolve().parent
        if not parent.is_dir():
            raise AgentConfigError(f"{path}: directory {parent} does not exist")

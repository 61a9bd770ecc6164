"""Tabular Q-learning trained from batches of stored transitions.

The agent keeps a dense ``(n_states, n_actions)`` float64 Q-table and a matching table of
visit counts. :meth:`QLearningAgent.update` applies one batched Q-learning step:

* the targets ``r + gamma * max_a' Q(s', a')`` are computed from the Q-table as it was
  *before* the batch (a synchronous update);
* a transition with ``terminated=True`` does not bootstrap (target ``r``); a transition that
  was only ``truncated`` (a time limit cut) does bootstrap, since the episode could have
  gone on;
* when one ``(s, a)`` occurs ``k`` times in a batch, its ``k`` TD errors are averaged (with
  ``np.bincount``) and the step is taken once, so duplicates never overshoot the targets;
  the visit count ``n(s, a)`` grows by ``k``.

Learning-rate schedules (``alpha_schedule``), where ``k`` is the number of copies of
``(s, a)`` in the batch and ``n`` its visit count including them:

``"visits"`` (default)
    rescaled linear: ``alpha * k / (k + (1 - gamma) * (n - k))``. For ``k = 1`` this is the
    per-visit rate ``alpha / (1 + (1 - gamma) * (n - 1))`` (Wainwright 2019; Li et al.
    2021), which forgets the early, badly bootstrapped targets on the time scale of the
    horizon ``1 / (1 - gamma)`` while still averaging out transition noise. The step goes
    to zero, so on a fixed data set the Q-table converges (to the optimal Q of the
    empirical MDP the data define), also on stochastic environments. For ``gamma = 1``
    it is the constant schedule.
``"polynomial"``
    ``alpha * (k / n) ** alpha_power``; for ``k = 1`` the classic ``alpha / n**power``.
    With ``alpha = alpha_power = 1`` the Q-value is the exact running mean of its targets.
``"constant"``
    ``alpha``. Converges on deterministic environments; on stochastic ones it keeps
    fluctuating with amplitude ~ ``sqrt(alpha)``.

The default ``"visits"`` with ``alpha = 1`` was chosen by experiment (compare with
``tools/optimality_prototype.py --schedule ...``): at equal numbers of sampled transitions
it got the
Q-table closest to the empirical optimum, for gamma 0.9 and 0.99 alike, where
``"polynomial"`` (power 0.6-0.9) lagged badly at gamma 0.99 and ``"constant"`` never
settled on the stochastic environments.

>>> import numpy as np
>>> agent = QLearningAgent(2, 2, alpha=1.0, gamma=0.9, alpha_schedule="constant")
>>> batch = {
...     "obs": np.array([0, 1]), "action": np.array([1, 0]),
...     "reward": np.array([1.0, 2.0]), "next_obs": np.array([1, 0]),
...     "terminated": np.array([False, True]),
... }
>>> agent.update(batch)
2.0
>>> agent.q.tolist()
[[0.0, 1.0], [2.0, 0.0]]
>>> agent.greedy_policy().tolist()
[1, 0]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from replaystore.agents.base import Agent
from replaystore.agents.qtable_files import (
    AGENT_SUFFIXES,
    check_agent_path,
    read_agent_file,
    write_agent_file,
)
from replaystore.agents.small_batch import update_small
from replaystore.errors import (
    AgentConfigError,
    CorruptStoreError,
    FormatVersionError,
    ReplayStoreError,
    SchemaError,
    SpaceError,
)

__all__ = ["AgentConfigError", "QLearningAgent", "ALPHA_SCHEDULES", "FORMAT_VERSION"]

FORMAT_VERSION = 1
"""Version of the saved agent's metadata and of :meth:`QLearningAgent.state_dict` (the file
is one ``.npz``; the older three-file layout carried the same version)."""

ALPHA_SCHEDULES = ("visits", "polynomial", "constant")

_REQUIRED_FIELDS = ("obs", "action", "reward", "next_obs", "terminated")
_OPTIONAL_FIELDS = ("truncated",)


def _require_discrete(observation_space: Any, action_space: Any) -> None:
    from gymnasium.spaces import Discrete

    for role, space in (("observation", observation_space), ("action", action_space)):
        if not isinstance(space, Discrete):
            raise SpaceError(
                f"{role} space {space!r} is not Discrete; "
                "tabular Q-learning needs Discrete observations and actions"
            )


class QLearningAgent(Agent, saved_format="replaystore.QLearningAgent", suffixes=AGENT_SUFFIXES):
    """Tabular Q-learning over ``n_states`` x ``n_actions``.

    Args:
        n_states: number of (0-based) states.
        n_actions: number of (0-based) actions.
        alpha: base learning rate in ``(0, 1]``.
        gamma: discount in ``[0, 1]``.
        alpha_schedule: ``"visits"`` (rescaled linear decay per (s, a)), ``"polynomial"``
            or ``"constant"``; see the module docstring.
        alpha_power: exponent of the ``"polynomial"`` schedule, in ``(0, 1]``.
        q_init: initial value of every Q-table entry.

    >>> agent = QLearningAgent(3, 2)
    >>> agent.q.shape, agent.alpha_schedule
    ((3, 2), 'visits')
    """

    #: ``act`` takes an array of observations and returns an array of actions
    batched_act = True
    #: what :meth:`update` reads (``truncated`` does not change the rule)
    batch_fields = _REQUIRED_FIELDS

    def __init__(
        self,
        n_states: int,
        n_actions: int,
        *,
        alpha: float = 1.0,
        gamma: float = 0.99,
        alpha_schedule: str = "visits",
        alpha_power: float = 0.8,
        q_init: float = 0.0,
    ) -> None:
        for name, value in (("n_states", n_states), ("n_actions", n_actions)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise AgentConfigError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 < alpha <= 1.0:
            raise AgentConfigError(f"alpha must be in (0, 1], got {alpha!r}")
        if not 0.0 <= gamma <= 1.0:
            raise AgentConfigError(f"gamma must be in [0, 1], got {gamma!r}")
        if alpha_schedule not in ALPHA_SCHEDULES:
            raise AgentConfigError(
                f"alpha_schedule must be one of {ALPHA_SCHEDULES}, got {alpha_schedule!r}"
            )
        if not 0.0 < alpha_power <= 1.0:
            raise AgentConfigError(f"alpha_power must be in (0, 1], got {alpha_power!r}")
        if not math.isfinite(q_init):
            raise AgentConfigError(f"q_init must be finite, got {q_init!r}")
        self.n_states = int(n_states)
        self.n_actions = int(n_actions)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.alpha_schedule = alpha_schedule
        self.alpha_power = float(alpha_power)
        self.q_init = float(q_init)
        # Offsets of gymnasium Discrete spaces whose ``start`` is not 0.
        self.obs_start = 0
        self.action_start = 0
        self.q = np.full((self.n_states, self.n_actions), self.q_init, dtype=np.float64)
        self.visits = np.zeros((self.n_states, self.n_actions), dtype=np.int64)
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None  # (see small_batch.py)
        # a table read from a bare .npy has no recorded offsets: check_spaces adopts them
        self._starts_from_spaces = False

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_spaces(cls, observation_space: Any, action_space: Any, **hp: Any) -> QLearningAgent:
        """Build an agent for two ``gymnasium.spaces.Discrete`` spaces.

        A ``Discrete(n, start=k)`` space is handled by offsetting: the agent takes and
        returns values ``k .. k+n-1`` and stores them at rows/columns ``0 .. n-1``.

        >>> from gymnasium.spaces import Box, Discrete
        >>> agent = QLearningAgent.from_spaces(Discrete(4, start=1), Discrete(2))
        >>> agent.act(4)
        0
        >>> QLearningAgent.from_spaces(Box(0, 1, (2,)), Discrete(2))
        Traceback (most recent call last):
        ...
        replaystore.errors.SpaceError: observation space Box(0.0, 1.0, (2,), float32) is not \
Discrete; tabular Q-learning needs Discrete observations and actions
        """
        _require_discrete(observation_space, action_space)
        agent = cls(int(observation_space.n), int(action_space.n), **hp)
        agent.obs_start = int(observation_space.start)
        agent.action_start = int(action_space.start)
        return agent

    def check_spaces(self, observation_space: Any, action_space: Any) -> None:
        """Raise :class:`~replaystore.errors.SpaceError` unless both spaces are
        ``Discrete`` with this Q-table's shape and this agent's offsets (``start``).

        A table read from a bare ``.npy`` file (no sidecar, so no recorded offsets) takes
        the spaces' offsets instead.

        >>> from gymnasium.spaces import Discrete
        >>> QLearningAgent(4, 4).check_spaces(Discrete(16), Discrete(4))
        Traceback (most recent call last):
        ...
        replaystore.errors.SpaceError: Q-table shape (4, 4) does not match the spaces \
Discrete(16) x Discrete(4), which need shape (16, 4)
        """
        _require_discrete(observation_space, action_space)
        want = (int(observation_space.n), int(action_space.n))
        if tuple(self.q.shape) != want:
            raise SpaceError(
                f"Q-table shape {tuple(self.q.shape)} does not match the spaces "
                f"{observation_space!r} x {action_space!r}, which need shape {want}"
            )
        starts = (int(observation_space.start), int(action_space.start))
        if self._starts_from_spaces:
            self.obs_start, self.action_start = starts
            self._starts_from_spaces = False
        elif (self.obs_start, self.action_start) != starts:
            raise SpaceError(
                f"agent offsets (obs_start, action_start)={(self.obs_start, self.action_start)} "
                f"do not match the spaces {observation_space!r} and {action_space!r}, which "
                f"start at {starts}"
            )

    # ------------------------------------------------------------------ learning

    def _indices(self, batch: Mapping[str, Any], field: str, n: int, start: int) -> np.ndarray:
        values = np.asarray(batch[field])
        if values.dtype.kind not in "iu":
            raise SchemaError(
                f"field {field!r} must hold integers, got dtype {values.dtype} "
                f"(shape {values.shape})"
            )
        idx = values.reshape(-1).astype(np.int64) - start
        # one pass: negative indices wrap to huge unsigned values
        if idx.size and np.any(idx.view(np.uint64) >= n):
            bad = values.reshape(-1)[(idx < 0) | (idx >= n)][0]
            raise SchemaError(
                f"field {field!r} must be in [{start}, {start + n - 1}], got {bad} "
                f"(min {values.min()}, max {values.max()})"
            )
        return idx

    def _check_batch(self, batch: Mapping[str, Any]) -> int:
        missing = [f for f in _REQUIRED_FIELDS if f not in batch]
        if missing:
            raise SchemaError(
                f"batch is missing field(s) {missing}; expected {list(_REQUIRED_FIELDS)} "
                f"(+ optional {list(_OPTIONAL_FIELDS)}), got {sorted(batch)}"
            )
        shape = np.shape(batch["obs"])
        for field in (*_REQUIRED_FIELDS, *(f for f in _OPTIONAL_FIELDS if f in batch)):
            if np.shape(batch[field]) != shape:
                raise SchemaError(
                    f"field {field!r} has shape {np.shape(batch[field])}, expected {shape} "
                    "(the shape of 'obs'); all fields of a batch need one row per transition"
                )
        for field in ("terminated", *(f for f in _OPTIONAL_FIELDS if f in batch)):
            dtype = np.asarray(batch[field]).dtype
            if dtype != np.bool_:
                raise SchemaError(f"field {field!r} must have dtype bool, got {dtype}")
        reward = np.asarray(batch["reward"])
        if reward.dtype.kind not in "iuf":
            raise SchemaError(f"field 'reward' must be numeric, got dtype {reward.dtype}")
        return int(np.prod(shape, dtype=np.int64))

    def update(self, batch: Mapping[str, np.ndarray]) -> float:
        """Apply one batched Q-learning step and return the largest ``|Delta Q|``.

        ``batch`` needs the fields ``obs``, ``action``, ``reward``, ``next_obs``,
        ``terminated`` (bool) and may hold ``truncated`` (bool); all of one shape. Out of
        range indices raise :class:`~replaystore.errors.SchemaError`. A batch of a
        prioritized sampler (``index``, ``weight``) scales each row's TD error by its weight
        and gets ``td_error`` (``|TD error|`` per row) for the priority update.

        >>> import numpy as np
        >>> agent = QLearningAgent(1, 1, alpha=0.5, alpha_schedule="constant")
        >>> agent.update({"obs": np.array([0, 0]), "action": np.array([0, 0]),
        ...               "reward": np.array([1.0, 3.0]), "next_obs": np.array([0, 0]),
        ...               "terminated": np.array([True, True])})
        1.0
        """
        weight = batch.get("weight")  # (prioritized replay: importance weights, td_error wanted)
        if weight is None and "index" not in batch and "discount" not in batch:
            fast = update_small(self, batch)  # (the compiled step, for batches as samplers give them)
            if fast is not None:
                return fast
        size = self._check_batch(batch)
        if size == 0:
            return 0.0
        flat, td = self._td(batch)
        if isinstance(batch, dict):
            batch["td_error"] = np.abs(td)
        if weight is not None:
            td = td * np.asarray(weight, np.float64).reshape(-1)
        n_cells = self.n_states * self.n_actions
        if n_cells <= 4 * size + 1024:
            counts = np.bincount(flat, minlength=n_cells)
            sums = np.bincount(flat, weights=td, minlength=n_cells)
            cells = np.flatnonzero(counts)
            k = counts[cells]
            mean_td = sums[cells] / k
        else:  # large tables: avoid O(n_cells) work per batch
            cells, inverse, k = np.unique(flat, return_inverse=True, return_counts=True)
            mean_td = np.bincount(inverse, weights=td, minlength=cells.size) / k
        return self._apply(cells, k, mean_td)

    def _update_small(self, batch: Mapping[str, Any]) -> float | None:
        return update_small(self, batch)

    def update_many(self, batches: Iterable[Mapping[str, np.ndarray]]) -> float:
        """One Q-learning step from several batches taken together, as if concatenated.

        Targets use the Q-table from before all of them and TD errors are averaged per
        ``(s, a)`` across all of them: a whole store can be one step, read block by block.
        With ``alpha=1`` and the ``"constant"`` schedule a step over every stored row is
        one exact Bellman backup of the MDP the data define.

        >>> import numpy as np
        >>> agent = QLearningAgent(1, 1, alpha=1.0, alpha_schedule="constant")
        >>> half = lambda r: {"obs": np.array([0]), "action": np.array([0]), "reward": np.array([r]),
        ...                   "next_obs": np.array([0]), "terminated": np.array([True])}
        >>> agent.update_many([half(1.0), half(3.0)]), agent.q.tolist()
        (2.0, [[2.0]])
        """
        n_cells = self.n_states * self.n_actions
        counts = np.zeros(n_cells, np.int64)
        sums = np.zeros(n_cells, np.float64)
        q_before = self.q.copy()
        for batch in batches:
            if self._check_batch(batch) == 0:
                continue
            flat, td = self._td(batch, q=q_before)
            counts += np.bincount(flat, minlength=n_cells)
            sums += np.bincount(flat, weights=td, minlength=n_cells)
        if not counts.any():
            return 0.0
        cells = np.flatnonzero(counts)
        k = counts[cells]
        return self._apply(cells, k, sums[cells] / k)

    def _td(self, batch: Mapping[str, Any], q: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Flat (s, a) cell and TD error of every row of a validated batch."""
        s = self._indices(batch, "obs", self.n_states, self.obs_start)
        a = self._indices(batch, "action", self.n_actions, self.action_start)
        s2 = self._indices(batch, "next_obs", self.n_states, self.obs_start)
        r = np.asarray(batch["reward"], dtype=np.float64).reshape(-1)
        terminated = np.asarray(batch["terminated"]).reshape(-1)
        # ``truncated`` does not change the rule: a cut episode still bootstraps.
        q = self.q if q is None else q
        bootstrap = np.where(terminated, 0.0, q[s2].max(axis=1))
        disc = batch.get("discount")  # (n-step batches: gamma ** steps taken, per row)
        gamma = self.gamma if disc is None else np.asarray(disc, np.float64).reshape(-1)
        td = r + gamma * bootstrap - q[s, a]
        return s * self.n_actions + a, td

    def _apply(self, cells: np.ndarray, k: np.ndarray, mean_td: np.ndarray) -> float:
        visits = self.visits.reshape(-1)
        visits[cells] += k
        delta = self._step_size(k, visits[cells]) * mean_td
        self.q.reshape(-1)[cells] += delta
        return float(np.abs(delta).max())

    def _step_size(self, k: np.ndarray, n: np.ndarray) -> np.ndarray | float:
        """Learning rate for cells seen ``k`` times in this batch and ``n`` times in all."""
        if self.alpha_schedule == "visits":
            return self.alpha * k / (k + (1.0 - self.gamma) * (n - k))
        if self.alpha_schedule == "polynomial":
            return self.alpha * (k / n) ** self.alpha_power
        return self.alpha

    # ------------------------------------------------------------------ acting

    def greedy_policy(self) -> np.ndarray:
        """Greedy action for every state index, shape ``(n_states,)``.

        Entry ``i`` is the action (in action-space values, ``action_start`` included) for
        observation ``obs_start + i``. Ties go to the lowest action index.

        >>> agent = QLearningAgent(2, 3)
        >>> agent.q[1, 2] = 1.0
        >>> agent.greedy_policy().tolist()
        [0, 2]
        """
        return np.argmax(self.q, axis=1) + self.action_start

    def policy_certified(self, bound: float) -> bool:
        """True when no further sweep can change the greedy policy.

        After a sweep with largest change ``dq``, value-iteration theory bounds the
        distance to the fixed point by ``bound = dq * gamma / (1 - gamma)``. If in every
        state the best action's value exceeds the runner-up's by more than ``2 * bound``,
        the greedy policy is already that of the fixed point. Only states the data never
        shows (terminal or unreachable ones) may stay tied; a visited state whose actions
        still tie (its values have not propagated yet) blocks the certificate.

        >>> agent = QLearningAgent(2, 2)
        >>> agent.q[:] = [[1.0, 0.0], [0.0, 0.0]]     # state 1 never seen: may tie
        >>> agent.visits[0] = 1
        >>> agent.policy_certified(0.4), agent.policy_certified(0.6)
        (True, False)
        """
        q = self.q
        if q.shape[1] < 2 or not np.isfinite(bound):
            return False
        top2 = np.partition(q, q.shape[1] - 2, axis=1)[:, -2:]
        lead = top2[:, 1] - top2[:, 0]
        unseen = self.visits.sum(axis=1) == 0
        return bool(np.all(lead[~unseen] > 2 * bound))

    def describe(self) -> dict[str, Any]:
        """``{"kind": "qtable", "shape": [n_states, n_actions]}`` (for collection records)."""
        return {"kind": "qtable", "shape": list(self.q.shape)}

    def act(
        self,
        obs: int | np.ndarray,
        *,
        epsilon: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> int | np.ndarray:
        """Epsilon-greedy action(s) for ``obs`` (an int or an array of observations).

        With probability ``epsilon`` the action is uniform over all actions (drawn from
        ``rng``), otherwise greedy; greedy ties go to the lowest action index, so acting is
        deterministic given ``rng``. ``rng`` may be omitted only when ``epsilon == 0``.

        >>> import numpy as np
        >>> agent = QLearningAgent(2, 4)
        >>> agent.act(1)
        0
        >>> agent.act(np.array([0, 1]), epsilon=1.0, rng=np.random.default_rng(0)).shape
        (2,)
        """
        if not 0.0 <= epsilon <= 1.0:
            raise AgentConfigError(f"epsilon must be in [0, 1], got {epsilon!r}")
        if epsilon > 0.0 and not isinstance(rng, np.random.Generator):
            raise AgentConfigError(
                f"epsilon={epsilon} needs an explicit rng=np.random.Generator, got {rng!r}"
            )
        t = type(obs)
        if (t is int or t is np.int64) and 0 <= obs - self.obs_start < self.n_states:
            # one observation (the online loop's case): the same draws, without arrays
            action = int(self.q[obs - self.obs_start].argmax())
            if epsilon > 0.0:
                explore = rng.random(1)[0] < epsilon
                other = rng.integers(0, self.n_actions, 1)[0]
                if explore:
                    action = int(other)
            return action + self.action_start
        idx = self._indices({"obs": obs}, "obs", self.n_states, self.obs_start)
        greedy = np.argmax(self.q[idx], axis=1)
        if epsilon > 0.0:
            assert rng is not None
            explore = rng.random(idx.size) < epsilon
            greedy = np.where(explore, rng.integers(0, self.n_actions, idx.size), greedy)
        actions = greedy + self.action_start
        if np.ndim(obs) == 0:
            return int(actions[0])
        return actions.reshape(np.shape(obs))

    # ------------------------------------------------------------------ state

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments (plus space offsets) as JSON-ready values."""
        return {
            "n_states": self.n_states,
            "n_actions": self.n_actions,
            "alpha": self.alpha,
            "gamma": self.gamma,
            "alpha_schedule": self.alpha_schedule,
            "alpha_power": self.alpha_power,
            "q_init": self.q_init,
            "obs_start": self.obs_start,
            "action_start": self.action_start,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: hyperparameters, Q-table and visit counts (copies).

        >>> a = QLearningAgent(2, 2, gamma=0.5)
        >>> a.q[0, 1] = 3.0
        >>> b = QLearningAgent(2, 2)
        >>> b.load_state_dict(a.state_dict())
        >>> b.q[0, 1], b.gamma
        (np.float64(3.0), 0.5)
        """
        return {
            "format_version": FORMAT_VERSION,
            **self.hyperparameters(),
            "q": self.q.copy(),
            "visits": self.visits.copy(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (hyperparameters included)."""
        version = state.get("format_version")
        if version != FORMAT_VERSION:
            raise FormatVersionError(
                f"agent state has format_version {version!r}, expected {FORMAT_VERSION}"
            )
        keys = ("n_states", "n_actions", "alpha", "gamma", "alpha_schedule", "alpha_power")
        missing = [k for k in (*keys, "q_init", "q", "visits") if k not in state]
        if missing:
            raise SchemaError(f"agent state is missing key(s) {missing}")
        fresh = type(self)(
            int(state["n_states"]),
            int(state["n_actions"]),
            alpha=float(state["alpha"]),
            gamma=float(state["gamma"]),
            alpha_schedule=str(state["alpha_schedule"]),
            alpha_power=float(state["alpha_power"]),
            q_init=float(state["q_init"]),
        )
        shape = (fresh.n_states, fresh.n_actions)
        q = np.asarray(state["q"])
        visits = np.asarray(state["visits"])
        if q.shape != shape or q.dtype.kind != "f":
            raise SchemaError(f"'q' must be a float array of shape {shape}, got "
                              f"{q.dtype} {q.shape}")
        if visits.shape != shape or visits.dtype.kind not in "iu":
            raise SchemaError(f"'visits' must be an int array of shape {shape}, got "
                              f"{visits.dtype} {visits.shape}")
        fresh.q = q.astype(np.float64, copy=True)
        fresh.visits = visits.astype(np.int64, copy=True)
        fresh.obs_start = int(state.get("obs_start", 0))
        fresh.action_start = int(state.get("action_start", 0))
        self.__dict__.update(fresh.__dict__)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the agent to the one file ``path`` (``q.npz`` by convention), atomically.

        A numpy ``.npz`` holding ``q`` (float64 ``(n_states, n_actions)``), ``visits``
        (int64) and ``meta`` (JSON: format name and version, hyperparameters, offsets); see
        :mod:`replaystore.agents.qtable_files`. The name must end in ``.npz`` (or ``.npy``,
        which gets the same content). An existing file is replaced (the ``train`` and
        ``learn`` commands refuse that without ``--overwrite``).
        """
        meta = {"format": self.saved_format, "format_version": FORMAT_VERSION,
                **self.hyperparameters()}
        write_agent_file(check_agent_path(path), meta, self.q, self.visits)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QLearningAgent:
        """Read an agent written by :meth:`save`, or one of the older layouts.

        Also reads the three files ``Q.npy`` + ``Q.json`` + ``Q.visits.npy`` older versions
        wrote, and a bare ``Q.npy`` table (zero visit counts, default hyperparameters,
        offsets taken from the spaces on the first :meth:`check_spaces`). A missing file
        raises :class:`~replaystore.errors.NotAStoreError`, an unreadable or inconsistent
        one :class:`~replaystore.errors.CorruptStoreError`, both naming the path.

        >>> import tempfile, pathlib
        >>> agent = QLearningAgent(3, 2, gamma=0.9)
        >>> agent.q[2, 1] = 7.0
        >>> with tempfile.TemporaryDirectory() as d:
        ...     agent.save(pathlib.Path(d) / "q.npz")
        ...     back = QLearningAgent.load(pathlib.Path(d) / "q.npz")
        >>> back.q[2, 1], back.gamma
        (np.float64(7.0), 0.9)
        """
        meta, arrays = read_agent_file(path, str(cls.saved_format), FORMAT_VERSION)
        if meta is None:  # a bare table
            q = arrays["q"]
            agent = cls(int(q.shape[0]), int(q.shape[1]))
            agent.q = q
            agent._starts_from_spaces = True
            return agent
        agent = cls(1, 1)
        try:
            agent.load_state_dict({**meta, **arrays})
        except ReplayStoreError as exc:
            raise CorruptStoreError(f"{str(Path(path))!r}: {exc}") from exc
        return agent

    @classmethod
    def load_saved(cls, path: str | os.PathLike[str]) -> QLearningAgent:
        """The saved-policy loader (:func:`replaystore.policy.load_policy`): :meth:`load`,
        so every command reads the same files."""
        return cls.load(path)

    def check_save_path(self, path: str | os.PathLike[str]) -> None:
        """Raise :class:`~replaystore.errors.AgentConfigError` unless :meth:`save` can
        write ``path`` (a name ending in ``.npz`` or ``.npy`` in an existing directory)."""
        check_agent_path(path)
        super().check_save_path(path)

    def __repr__(self) -> str:
        return (
            f"QLearningAgent(n_states={self.n_states}, n_actions={self.n_actions}, "
            f"alpha={self.alpha}, gamma={self.gamma}, alpha_schedule={self.alpha_schedule!r}, "
            f"alpha_power={self.alpha_power}, q_init={self.q_init})"
        )

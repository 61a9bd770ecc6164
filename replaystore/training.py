"""Offline training: replay sampled batches from a store into an agent, and evaluate it.

The trainer never touches the environment while learning; it only evaluates the greedy
policy in a fresh environment when asked (``eval_every``).

>>> import tempfile, replaystore as rs
>>> from replaystore.collect import collect
>>> from replaystore.agents import QLearningAgent
>>> path = tempfile.mkdtemp() + "/fl.zarr"
>>> _ = collect("FrozenLake-v1", path, steps=2000, seed=0, env_kwargs={"is_slippery": False})
>>> store = rs.open(path)
>>> agent = QLearningAgent.from_spaces(store.observation_space, store.action_space, gamma=0.9,
...                                    alpha_schedule="constant")
>>> result = OfflineTrainer(store, agent).train()  # full sweeps until the Q-table settles
>>> result.converged
True
>>> evaluate("FrozenLake-v1", agent, episodes=10, seed=0, env_kwargs={"is_slippery": False})["success_rate"]
1.0
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from .errors import EnvError, SamplerError
from .sampling import BalancedSampler, Sampler, UniformSampler
from .storage.store import ReplayStore

__all__ = ["OfflineTrainer", "TrainResult", "evaluate", "make_env", "EnvError", "TRAIN_FIELDS"]

TRAIN_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


def make_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None, **make_kwargs: Any) -> gym.Env:
    """``gym.make`` with errors turned into :class:`EnvError` naming the id and kwargs."""
    try:
        return gym.make(env_id, **dict(env_kwargs or {}), **make_kwargs)
    except gym.error.Error as e:
        raise EnvError(f"environment {env_id!r}: {e}") from None
    except TypeError as e:
        raise EnvError(f"environment {env_id!r} does not accept env kwargs {dict(env_kwargs or {})}: {e}") from None


@dataclass
class TrainResult:
    """What a training run did: updates, transitions replayed, convergence, evaluations."""

    updates: int
    transitions: int
    seconds: float
    converged: bool
    stop_reason: str
    last_max_dq: float
    evaluations: list[dict] = field(default_factory=list)

    @property
    def transitions_per_second(self) -> float:
        return self.transitions / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict:
        return {**asdict(self), "transitions_per_second": self.transitions_per_second}


def evaluate(
    env: str | gym.Env,
    agent: Any,
    *,
    episodes: int = 100,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    epsilon: float = 0.0,
    max_steps: int | None = None,
) -> dict[str, float]:
    """Run ``agent`` greedily (or epsilon-greedy) for ``episodes`` and report the results.

    Returns ``mean_return``, ``std_return``, ``success_rate`` and ``mean_length``. An
    episode counts as a success when the environment says so (``info["is_success"]``) or,
    failing that, when it *terminated* on a positive reward (FrozenLake: reached the goal;
    Taxi: delivered the passenger). Episodes are seeded ``seed, seed+1, ...``.
    """
    if not isinstance(episodes, int) or episodes <= 0:
        raise EnvError(f"episodes must be a positive int, got {episodes!r}")
    own = isinstance(env, str)
    if not own and not isinstance(env, gym.Env):
        raise EnvError(f"evaluate needs an env id or a gymnasium Env, got {env!r}")
    env = make_env(env, env_kwargs) if own else env
    _check_agent_fits(env, agent)
    rng = np.random.default_rng(seed)
    limit = max_steps or getattr(env.spec, "max_episode_steps", None) or 10_000
    returns, lengths, successes = [], [], []
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            total, steps, success = 0.0, 0, False
            while True:
                action = agent.act(obs, epsilon=epsilon, rng=rng)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                steps += 1
                if terminated or truncated or steps >= limit:
                    if "is_success" in info:
                        success = bool(info["is_success"])
                    else:
                        success = bool(terminated) and float(reward) > 0
                    break
            returns.append(total)
            lengths.append(steps)
            successes.append(success)
    finally:
        if own:
            env.close()
    return {
        "episodes": episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "success_rate": float(np.mean(successes)),
        "mean_length": float(np.mean(lengths)),
    }


def _check_fits(where: str, obs: Any, act: Any, agent: Any, error: type[Exception]) -> None:
    """A tabular agent needs Discrete spaces of exactly its Q-table's shape."""
    n_s, n_a = getattr(agent, "n_states", None), getattr(agent, "n_actions", None)
    if n_s is None or obs is None:
        return
    if not isinstance(obs, gym.spaces.Discrete) or not isinstance(act, gym.spaces.Discrete):
        raise error(
            f"{where}: observation space {obs} / action space {act} are not Discrete; "
            "the tabular Q-learning agent needs Discrete observations and actions"
        )
    if (int(obs.n), int(act.n)) != (n_s, n_a):
        raise error(
            f"{where}: has {int(obs.n)} states x {int(act.n)} actions but the Q-table has "
            f"shape ({n_s}, {n_a})"
        )


def _check_agent_fits(env: gym.Env, agent: Any) -> None:
    where = f"environment {env.spec.id if env.spec else env}"
    _check_fits(where, env.observation_space, env.action_space, agent, EnvError)


class OfflineTrainer:
    """Replays stored transitions into an agent's ``update``.

    Two modes:

    * **sweeps** (``batch_size=None``, the default): every update replays every stored
      row once (read block by block, so the store may exceed RAM) through
      ``agent.update_many``. With ``alpha=1`` and a constant step this is one exact
      Bellman backup of the MDP the data define, so training converges quickly and
      exactly—the right default for tabular Q-learning on a fixed dataset.
    * **minibatches** (``batch_size=B``): each update is a batch from a seeded
      :class:`UniformSampler` (or a :class:`BalancedSampler` when ``balanced_by`` is
      given, or any ``sampler``); use a decaying step (``alpha_schedule="visits"``).
    """

    def __init__(
        self,
        store: ReplayStore,
        agent: Any,
        *,
        sampler: Sampler | None = None,
        batch_size: int | None = None,
        seed: int | None = 0,
        balanced_by: str | None = None,
        sweep_block: int = 1 << 20,
    ) -> None:
        self.store = store
        self.agent = agent
        self._check_store()
        if sampler is None and batch_size is None and balanced_by:
            batch_size = 256
        if sampler is None and batch_size is not None:
            if balanced_by:
                sampler = BalancedSampler(store, by=balanced_by, batch_size=batch_size, seed=seed,
                                          fields=TRAIN_FIELDS)
            else:
                sampler = UniformSampler(store, batch_size=batch_size, seed=seed, fields=TRAIN_FIELDS)
        self.sampler = sampler
        self.sweep_block = int(sweep_block)
        self.updates = 0

    @property
    def mode(self) -> str:
        return "sweeps" if self.sampler is None else "minibatches"

    def _sweep(self) -> float:
        store = self.store
        n = len(store)
        if n == 0:
            from .errors import EmptyStoreError

            raise EmptyStoreError(f"{store.path}: cannot train on an empty store")
        blocks = (store.read_range(a, min(n, a + self.sweep_block), fields=TRAIN_FIELDS)
                  for a in range(0, n, self.sweep_block))
        return float(self.agent.update_many(blocks))

    def _check_store(self) -> None:
        _check_fits(f"{self.store.path}: store", self.store.observation_space, self.store.action_space,
                    self.agent, SamplerError)

    def train(
        self,
        updates: int | None = None,
        *,
        epochs: float | None = None,
        tol: float = 1e-6,
        window: int | None = None,
        max_updates: int = 500_000,
        eval_env: str | gym.Env | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        eval_every: int | None = None,
        eval_episodes: int = 100,
        eval_seed: int = 10_000,
        log_csv: str | Path | None = None,
        progress: bool = False,
        callback: Callable[[int, float], None] | None = None,
        prefetch: int = 2,
    ) -> TrainResult:
        """Run updates: exactly ``updates``, or ``epochs`` passes over the store, or (the
        default, both ``None``) until the Q-table stops changing.

        "Stops changing" means the largest change of any Q entry, scaled by
        ``gamma / (1 - gamma)`` (the classic value-iteration bound on how far the table
        still is from its fixed point), stayed below ``tol`` for ``window`` consecutive
        updates (1 in sweep mode, 200 with minibatches). ``max_updates`` caps the run;
        hitting it is reported in ``stop_reason`` with ``converged=False``.
        """
        if updates is not None and epochs is not None:
            raise SamplerError("give updates or epochs, not both")
        if updates is not None and (not isinstance(updates, int) or updates < 0):
            raise SamplerError(f"updates must be a non-negative int, got {updates!r}")
        sweeping = self.sampler is None
        batch = len(self.store) if sweeping else self.sampler.batch_size
        if window is None:
            window = 1 if sweeping else 200
        gamma = float(getattr(self.agent, "gamma", 0.0))
        scale = gamma / (1.0 - gamma) if gamma < 1.0 else 1.0
        if epochs is not None:
            if epochs <= 0:
                raise SamplerError(f"epochs must be positive, got {epochs!r}")
            updates = math.ceil(epochs * len(self.store) / max(1, batch))
        until_converged = updates is None
        target = max_updates if until_converged else updates
        eval_env = eval_env if eval_every else None
        log = _CsvLog(log_csv) if log_csv else None
        result = TrainResult(0, 0, 0.0, False, "", math.nan)
        quiet_for = 0
        t0 = time.perf_counter()
        bar = _progress(target, progress, "converging" if until_converged else "training")
        try:
            if sweeping:
                it = iter(range(target))
            else:
                it = self.sampler.iter(target, prefetch=prefetch) if target else iter(())
            for batch_rows in it:
                dq = self._sweep() if sweeping else float(self.agent.update(batch_rows))
                self.updates += 1
                result.updates += 1
                result.transitions += batch
                result.last_max_dq = dq
                quiet_for = quiet_for + 1 if dq * scale < tol else 0
                certified = sweeping and until_converged and _policy_certified(self.agent, dq * scale)
                if callback is not None:
                    callback(result.updates, dq)
                row = None
                if eval_env is not None and result.updates % eval_every == 0:
                    ev = evaluate(eval_env, self.agent, episodes=eval_episodes, seed=eval_seed,
                                  env_kwargs=env_kwargs)
                    row = {"update": result.updates, **ev}
                    result.evaluations.append(row)
                if log is not None and (row is not None or result.updates % 100 == 0):
                    log.write({"update": result.updates, "transitions": result.transitions,
                               "max_dq": dq, "seconds": time.perf_counter() - t0,
                               **({k: row[k] for k in ("mean_return", "success_rate", "mean_length")}
                                  if row else {})})
                bar.update(1)
                if certified:
                    result.converged = True
                    result.stop_reason = (
                        "converged: the greedy policy is final (every state's best action leads "
                        f"by more than twice the remaining Q error bound {dq * scale:.2g})"
                    )
                    break
                if until_converged and quiet_for >= window:
                    result.converged = True
                    result.stop_reason = (
                        f"converged: max |dQ| * gamma/(1-gamma) < {tol:g} for {window} consecutive "
                        "update" + ("s" if window > 1 else "")
                    )
                    break
        finally:
            bar.close()
            if log is not None:
                log.close()
        result.seconds = time.perf_counter() - t0
        if not result.stop_reason:
            if until_converged:
                result.stop_reason = (
                    f"hit the cap of {max_updates} updates before the Q-table stopped changing "
                    f"(last max |dQ| {result.last_max_dq:.3g}, tol {tol:g}); raise max_updates or "
                    "tol" + ("" if sweeping else ", or train in sweeps (no batch size)")
                )
            else:
                result.stop_reason = f"ran the requested {result.updates} updates"
        return result


def _policy_certified(agent: Any, bound: float) -> bool:
    """True when no further sweep can change the greedy policy.

    After a sweep with largest change ``dq``, value-iteration theory bounds the distance
    to the fixed point by ``bound = dq * gamma / (1 - gamma)``. If in every state the best
    action's value exceeds the runner-up's by more than ``2 * bound``, the greedy policy
    is already that of the fixed point. States the data never shows as an observation
    (terminal or unreachable ones) do not count.
    """
    q = getattr(agent, "q", None)
    if q is None or q.shape[1] < 2 or not np.isfinite(bound):
        return False
    top2 = np.partition(q, q.shape[1] - 2, axis=1)[:, -2:]
    lead = top2[:, 1] - top2[:, 0]
    visits = getattr(agent, "visits", None)
    # only states the data never shows (terminal or unreachable ones) may stay tied; a
    # visited state whose actions still tie (e.g. its values have not propagated yet)
    # blocks the certificate
    unseen = (visits.sum(axis=1) == 0) if visits is not None else (np.ptp(q, axis=1) == 0)
    return bool(np.all(lead[~unseen] > 2 * bound))


class _CsvLog:
    COLUMNS = ("update", "transitions", "max_dq", "seconds", "mean_return", "success_rate", "mean_length")

    def __init__(self, path: str | Path) -> None:
        self.f = open(path, "w", newline="")  # noqa: SIM115
        self.w = csv.DictWriter(self.f, fieldnames=self.COLUMNS)
        self.w.writeheader()

    def write(self, row: dict) -> None:
        self.w.writerow(row)

    def close(self) -> None:
        self.f.close()


class _progress:
    """A click progress bar on stderr when asked for (and a no-op otherwise)."""

    def __init__(self, total: int, on: bool, label: str) -> None:
        self.bar = None
        if on:
            import click

            self.bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

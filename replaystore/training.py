"""Offline training: replay sampled batches from a store into an agent, and evaluate it.

The trainer never touches the environment while learning; it only evaluates the greedy
policy in a fresh environment when asked (``eval_every``). It talks to the agent through
:class:`~replaystore.agents.Agent` only.

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

:func:`train_store` is the whole job of ``replaystore train`` (open, choose the mode and
step-size schedule, train, save) in one call.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from .agents import Agent, QLearningAgent
from .envs import check_env_id, make_env
from .errors import EmptyStoreError, EnvError, SamplerError, SpaceError
from .policy import Policy, load_policy
from .progress import Progress, as_progress
from .sampling import BalancedSampler, Sampler, UniformSampler
from .storage import TRANSITION_FIELDS, ReplayStore
from .storage import open as open_store

__all__ = ["OfflineTrainer", "TrainResult", "TrainReport", "train_store", "evaluate", "make_env",
           "check_env_id", "EnvError", "TRAIN_FIELDS"]

TRAIN_FIELDS = TRANSITION_FIELDS


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
    (read with :func:`~replaystore.policy.load_policy`, e.g. a ``Q.npy``). Returns
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


@dataclass(frozen=True)
class _Plan:
    """How long a run goes and when it stops."""

    target: int            # updates to run (the cap when running until converged)
    until_converged: bool
    window: int            # consecutive quiet updates that mean "converged"
    rows: int              # transitions replayed per update
    scale: float           # the agent's convergence scale
    tol: float
    max_updates: int


class OfflineTrainer:
    """Replays stored transitions into an agent's ``update``.

    Two modes:

    * **sweeps** (``batch_size=None``, the default): every update replays every stored
      row once (read block by block, so the store may exceed RAM) through
      ``agent.update_many``. With ``alpha=1`` and a constant step this is one exact
      Bellman backup of the MDP the data define, so training converges quickly and
      exactly—the right default for tabular Q-learning on a fixed dataset. The agent must
      support sweeps (:attr:`Agent.supports_sweeps`).
    * **minibatches** (``batch_size=B``): each update is a batch from a seeded
      :class:`UniformSampler` (or a :class:`BalancedSampler` when ``balanced_by`` is
      given, or any ``sampler``); use a decaying step (``alpha_schedule="visits"``).
    """

    def __init__(
        self,
        store: ReplayStore,
        agent: Agent,
        *,
        sampler: Sampler | None = None,
        batch_size: int | None = None,
        seed: int | None = 0,
        balanced_by: str | None = None,
        sweep_block: int = 1 << 20,
    ) -> None:
        self.store = store
        self.agent = agent
        check_fits(f"{store.path}: store", store.observation_space, store.action_space, agent,
                   SamplerError)
        if sampler is None and batch_size is None and balanced_by:
            batch_size = 256
        if sampler is None and batch_size is not None:
            if balanced_by:
                sampler = BalancedSampler(store, by=balanced_by, batch_size=batch_size, seed=seed,
                                          fields=TRAIN_FIELDS)
            else:
                sampler = UniformSampler(store, batch_size=batch_size, seed=seed, fields=TRAIN_FIELDS)
        if sampler is None and not agent.supports_sweeps:
            raise SamplerError(
                f"{type(agent).__name__} has no update_many(batches), which sweep training "
                "needs; give batch_size= (or a sampler) to train in minibatches"
            )
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
            raise EmptyStoreError(f"{store.path}: cannot train on an empty store")
        blocks = (store.read_range(a, min(n, a + self.sweep_block), fields=TRAIN_FIELDS)
                  for a in range(0, n, self.sweep_block))
        return float(self.agent.update_many(blocks))

    def _plan(self, updates: int | None, epochs: float | None, tol: float, window: int | None,
              max_updates: int) -> _Plan:
        if updates is not None and epochs is not None:
            raise SamplerError("give updates or epochs, not both")
        if updates is not None and (not isinstance(updates, int) or updates < 0):
            raise SamplerError(f"updates must be a non-negative int, got {updates!r}")
        sweeping = self.sampler is None
        rows = len(self.store) if self.sampler is None else self.sampler.batch_size
        if epochs is not None:
            if epochs <= 0:
                raise SamplerError(f"epochs must be positive, got {epochs!r}")
            updates = math.ceil(epochs * len(self.store) / max(1, rows))
        return _Plan(
            target=max_updates if updates is None else updates,
            until_converged=updates is None,
            window=window if window is not None else (1 if sweeping else 200),
            rows=rows,
            scale=self.agent.convergence_scale(),
            tol=tol,
            max_updates=max_updates,
        )

    def _batches(self, target: int, prefetch: int) -> Iterator[Any]:
        """What each update consumes: ``None`` (a sweep) or a sampled batch."""
        if self.sampler is None:
            return itertools.repeat(None, target)
        return self.sampler.iter(target, prefetch=prefetch) if target else iter(())

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
        progress: bool | Progress = False,
        callback: Callable[[int, float], None] | None = None,
        prefetch: int = 2,
    ) -> TrainResult:
        """Run updates: exactly ``updates``, or ``epochs`` passes over the store, or (the
        default, both ``None``) until the Q-table stops changing.

        "Stops changing" means the largest change of any Q entry, scaled by the agent's
        :meth:`~Agent.convergence_scale` (``gamma / (1 - gamma)``, the classic
        value-iteration bound on how far the table still is from its fixed point), stayed
        below ``tol`` for ``window`` consecutive updates (1 in sweep mode, 200 with
        minibatches); in sweep mode a run also stops when the agent certifies that its
        greedy policy is final (:meth:`~Agent.policy_certified`). ``max_updates`` caps the
        run; hitting it is reported in ``stop_reason`` with ``converged=False``.
        ``progress`` is ``True`` (a line on stderr) or a :class:`~replaystore.progress.Progress`.
        """
        plan = self._plan(updates, epochs, tol, window, max_updates)
        evaluating = eval_env is not None and bool(eval_every)
        result = TrainResult(0, 0, 0.0, False, "", math.nan)
        quiet_for = 0
        t0 = time.perf_counter()
        label = "converging" if plan.until_converged else "training"
        with _CsvLog.open(log_csv) as log, as_progress(progress).task(plan.target, label) as bar:
            for batch in self._batches(plan.target, prefetch):
                dq = self._sweep() if batch is None else float(self.agent.update(batch))
                self.updates += 1
                result.updates += 1
                result.transitions += plan.rows
                result.last_max_dq = dq
                quiet_for = quiet_for + 1 if dq * plan.scale < plan.tol else 0
                if callback is not None:
                    callback(result.updates, dq)
                row = None
                if evaluating and result.updates % eval_every == 0:
                    ev = evaluate(eval_env, self.agent, episodes=eval_episodes, seed=eval_seed,
                                  env_kwargs=env_kwargs)
                    row = {"update": result.updates, **ev}
                    result.evaluations.append(row)
                if log is not None and (row is not None or result.updates % 100 == 0):
                    log.write_update(result, dq, time.perf_counter() - t0, row)
                bar.update(1, dq=dq)
                result.stop_reason = self._converged(plan, dq, quiet_for)
                if result.stop_reason:
                    result.converged = True
                    break
        result.seconds = time.perf_counter() - t0
        if not result.stop_reason:
            result.stop_reason = self._unfinished(plan, result)
        return result

    def _converged(self, plan: _Plan, dq: float, quiet_for: int) -> str:
        """Why the run may stop after this update ("" if it goes on)."""
        if not plan.until_converged:
            return ""
        bound = dq * plan.scale
        if self.sampler is None and self.agent.policy_certified(bound):
            return ("converged: the greedy policy is final (every state's best action leads "
                    f"by more than twice the remaining Q error bound {bound:.2g})")
        if quiet_for >= plan.window:
            return (f"converged: max |dQ| * gamma/(1-gamma) < {plan.tol:g} for {plan.window} "
                    "consecutive update" + ("s" if plan.window > 1 else ""))
        return ""

    def _unfinished(self, plan: _Plan, result: TrainResult) -> str:
        if not plan.until_converged:
            return f"ran the requested {result.updates} updates"
        return (f"hit the cap of {plan.max_updates} updates before the Q-table stopped changing "
                f"(last max |dQ| {result.last_max_dq:.3g}, tol {plan.tol:g}); raise max_updates or "
                "tol" + ("" if self.sampler is None else ", or train in sweeps (no batch size)"))


@dataclass
class TrainReport:
    """What :func:`train_store` did: the run, the trained agent and where it was saved."""

    path: str
    out: str | None
    mode: str
    result: TrainResult
    agent: QLearningAgent

    def lines(self) -> list[str]:
        """The report ``replaystore train`` prints."""
        res = self.result
        unit = "sweeps" if self.mode == "sweeps" else "updates"
        lines = [f"{res.updates:,} {unit} ({res.transitions:,} transitions, "
                 f"{res.transitions_per_second:,.0f}/s): {res.stop_reason}"]
        lines += [f"  update {ev['update']:>8,}: mean return {ev['mean_return']:.3f}, "
                  f"success {ev['success_rate']:.2%}" for ev in res.evaluations[-3:]]
        if self.out is not None:
            lines.append(f"saved Q-table {self.agent.q.shape} to {self.out}")
        return lines


def train_store(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    updates: int | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    balanced_by: str | None = None,
    alpha: float = 1.0,
    alpha_schedule: str = "auto",
    gamma: float = 0.99,
    seed: int = 0,
    tol: float = 1e-6,
    max_updates: int = 500_000,
    eval_every: int | None = None,
    eval_episodes: int = 100,
    env_id: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    log_csv: str | os.PathLike[str] | None = None,
    progress: bool | Progress = False,
    trust_env_id: bool = False,
) -> TrainReport:
    """Train a tabular Q-learning agent on the store at ``path`` and save it to ``out``.

    Full sweeps by default; minibatches when ``batch_size`` or ``balanced_by`` is given.
    ``alpha_schedule="auto"`` means ``"constant"`` for sweeps (each one an exact Bellman
    backup) and ``"visits"`` for minibatches. Evaluations (``eval_every``) run in the
    store's env (its recorded id and kwargs) unless ``env_id`` / ``env_kwargs`` say
    otherwise. ``out`` (a ``.npy`` name) is checked before training starts. A store is
    data: its recorded id is not made in the ``module:Env-v0`` form (which imports
    ``module``) unless ``trust_env_id=True`` (``--trust-env-id``); an ``env_id`` you pass
    yourself is always trusted (see :func:`check_env_id`).

    >>> import tempfile, pathlib
    >>> from replaystore.collect import collect
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = collect("FrozenLake-v1", d / "fl.zarr", steps=500, env_kwargs={"is_slippery": False})
    >>> report = train_store(d / "fl.zarr", d / "q.npy", gamma=0.9)
    >>> report.mode, report.result.converged, report.lines()[-1] == f"saved Q-table (16, 4) to {d / 'q.npy'}"
    ('sweeps', True, True)
    """
    sweeps = batch_size is None and not balanced_by
    if alpha_schedule == "auto":
        alpha_schedule = "constant" if sweeps else "visits"
    with open_store(path, mode="r") as store:
        agent = QLearningAgent.from_spaces(store.observation_space, store.action_space, alpha=alpha,
                                           gamma=gamma, alpha_schedule=alpha_schedule)
        own_id = bool(env_id)
        env_id = env_id or store.env_info.get("id")
        kwargs = dict(env_kwargs) if env_kwargs is not None else store.env_info.get("kwargs", {})
        if eval_every and not env_id:
            raise EnvError(f"{path}: eval_every (--eval-every) needs an env id (env_id=, --env "
                           "ENV_ID): the store does not record its env id")
        if eval_every:
            env_id = check_env_id(env_id, source=path, trusted=own_id or trust_env_id)
        if out is not None:
            agent.check_save_path(out)
        trainer = OfflineTrainer(store, agent, batch_size=batch_size, seed=seed,
                                 balanced_by=balanced_by)
        result = trainer.train(updates=updates, epochs=epochs, tol=tol, max_updates=max_updates,
                               eval_env=env_id if eval_every else None, env_kwargs=kwargs,
                               eval_every=eval_every, eval_episodes=eval_episodes, log_csv=log_csv,
                               progress=progress)
    if out is not None:
        agent.save(out)
    return TrainReport(str(path), None if out is None else str(out), trainer.mode, result, agent)


class _CsvLog:
    COLUMNS = ("update", "transitions", "max_dq", "seconds", "mean_return", "success_rate", "mean_length")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.f = open(path, "w", newline="")  # noqa: SIM115
        self.w = csv.DictWriter(self.f, fieldnames=self.COLUMNS)
        self.w.writeheader()

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | os.PathLike[str] | None) -> Iterator[_CsvLog | None]:
        """A log at ``path`` for the block (``None``: no log)."""
        log = cls(path) if path else None
        try:
            yield log
        finally:
            if log is not None:
                log.f.close()

    def write_update(self, result: TrainResult, dq: float, seconds: float, row: dict | None) -> None:
        self.w.writerow({"update": result.updates, "transitions": result.transitions, "max_dq": dq,
                         "seconds": seconds,
                         **({k: row[k] for k in ("mean_return", "success_rate", "mean_length")}
                            if row else {})})

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

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from .agents import Agent
from .agents.factory import agent_path, is_deep, make_agent
from .agents.qtable_files import refuse_existing
from .envs import check_env_id, make_env
from .errors import EmptyStoreError, EnvError, SamplerError
from .evaluation import check_fits, evaluate
from .interrupts import interrupts_between_steps
from .progress import Progress, as_progress
from .sampling import BalancedSampler, Sampler, UniformSampler
from .storage import TRANSITION_FIELDS, ReplayStore
from .storage import open as open_store
from .train_report import (
    TrainInterrupted,
    TrainLog,
    TrainReport,
    TrainResult,
    count_rows,
)

__all__ = ["OfflineTrainer", "TrainResult", "TrainReport", "TrainInterrupted", "train_store",
           "evaluate", "check_fits", "make_env", "check_env_id", "EnvError", "TRAIN_FIELDS"]

TRAIN_FIELDS = TRANSITION_FIELDS

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
        log_every: int | None = None,
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

        ``eval_every=K`` evaluates the greedy policy in ``eval_env`` (required then) every
        K updates and once more at the end. ``log_csv`` gets a row per sweep, or per
        ``log_every`` minibatch updates (default 1000), plus one at every evaluation and at
        the end (columns: :data:`replaystore.train_report.COLUMNS`). ``progress`` is ``True``
        (a line on stderr) or a :class:`~replaystore.progress.Progress`: it counts sweeps
        (showing the bound) or updates (showing ``max |dQ|``). Ctrl-C raises
        :class:`TrainInterrupted` (a ``KeyboardInterrupt``) holding the result so far,
        after logging the last update; it takes effect when the current update (sweep,
        evaluation) is done, so the agent holds whole updates (a second Ctrl-C stops at once).
        """
        plan = self._plan(updates, epochs, tol, window, max_updates)
        if eval_every is not None:
            if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
                raise SamplerError(f"eval_every must be a positive int, got {eval_every!r}")
            if eval_env is None:
                raise EnvError(f"eval_every={eval_every} needs eval_env= (an env id or a gymnasium "
                               "Env) to evaluate in")
        sweeping = self.sampler is None
        every = 1 if sweeping else (log_every or 1000)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise SamplerError(f"log_every must be a positive int, got {log_every!r}")
        result = TrainResult(0, 0, 0.0, False, "", math.nan)
        quiet_for = 0
        t0 = time.perf_counter()

        def evaluate_now() -> dict:
            ev = evaluate(eval_env, self.agent, episodes=eval_episodes, seed=eval_seed,
                          env_kwargs=env_kwargs)
            row = {"update": result.updates, **ev}
            result.evaluations.append(row)
            return row

        def log_row(log: TrainLog | None, dq: float, ev: dict | None) -> None:
            if log is not None:
                log.write(update=result.updates, transitions=result.transitions,
                          sweep=result.updates if sweeping else None, max_dq=dq,
                          bound=dq * plan.scale if sweeping else None,
                          seconds=time.perf_counter() - t0, evaluation=ev)

        total, label = self._bar(plan, sweeping)
        with (TrainLog.open(log_csv) as log, as_progress(progress).task(total, label) as bar,
              interrupts_between_steps() as interrupted):
            try:
                for batch in self._batches(plan.target, prefetch):
                    dq = self._sweep() if batch is None else float(self.agent.update(batch))
                    self.updates += 1
                    result.updates += 1
                    result.transitions += plan.rows
                    result.last_max_dq = dq
                    quiet_for = quiet_for + 1 if dq * plan.scale < plan.tol else 0
                    if callback is not None:
                        callback(result.updates, dq)
                    result.stop_reason = self._converged(plan, dq, quiet_for)
                    last = bool(result.stop_reason) or result.updates >= plan.target
                    ev = None
                    if eval_every and (result.updates % eval_every == 0 or last):
                        ev = evaluate_now()
                    if ev is not None or last or result.updates % every == 0:
                        log_row(log, dq, ev)
                    bar.update(1, **({"bound": dq * plan.scale} if sweeping else {}), dq=dq)
                    if interrupted():
                        raise KeyboardInterrupt
                    if result.stop_reason:
                        result.converged = True
                        break
            except KeyboardInterrupt as exc:
                result.seconds = time.perf_counter() - t0
                result.interrupted = True
                result.stop_reason = f"interrupted (Ctrl-C) after {result.updates} updates"
                if log is not None and result.updates and log.last_update != result.updates:
                    log_row(log, result.last_max_dq, None)
                raise TrainInterrupted(result) from exc
        result.seconds = time.perf_counter() - t0
        if not result.stop_reason:
            result.stop_reason = self._unfinished(plan, result)
        return result

    @staticmethod
    def _bar(plan: _Plan, sweeping: bool) -> tuple[int | None, str]:
        """What the progress bar counts: sweeps until the bound is below tol (how many is
        not known ahead), a requested number of sweeps or updates, or updates up to the cap."""
        if sweeping:
            if plan.until_converged:
                return None, f"sweeps until bound < {plan.tol:g}"
            return plan.target, "sweeps"
        if plan.until_converged:
            return plan.target, "updates until converged, at most"
        return plan.target, "updates"

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
    log_every: int | None = None,
    progress: bool | Progress = False,
    trust_env_id: bool = False,
    overwrite: bool = False,
    agent: str = "q",
    lr: float | None = None,
    cql_alpha: float | None = None,
) -> TrainReport:
    """Train a tabular Q-learning agent on the store at ``path`` and save it to ``out``.

    ``agent="dqn"`` / ``"cql"`` trains a :class:`~replaystore.agents.DQNAgent` /
    :class:`~replaystore.agents.DiscreteCQLAgent` instead, in minibatches (``batch_size``
    256 unless given; ``updates`` 50,000 unless given), saved as one ``.pt`` file.

    Full sweeps by default; minibatches when ``batch_size`` or ``balanced_by`` is given.
    ``alpha_schedule="auto"`` means ``"constant"`` for sweeps (each one an exact Bellman
    backup) and ``"visits"`` for minibatches. Evaluations (``eval_every``) run in the
    store's env (its recorded id and kwargs) unless ``env_id`` / ``env_kwargs`` say
    otherwise. ``out`` is the saved agent, one ``.npz`` file
    (:meth:`QLearningAgent.save`); it and ``log_csv`` (see :mod:`replaystore.train_report`)
    are checked before training starts, and existing files are not replaced unless
    ``overwrite=True``. Ctrl-C saves the agent trained so far to ``out`` and raises
    :class:`TrainInterrupted` (its ``report`` says where). A store is data: its recorded
    id is not made in the ``module:Env-v0`` form (which imports ``module``) unless
    ``trust_env_id=True`` (``--trust-env-id``); an ``env_id`` you pass yourself is always
    trusted (see :func:`check_env_id`).

    >>> import tempfile, pathlib
    >>> from replaystore.collect import collect
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = collect("FrozenLake-v1", d / "fl.zarr", steps=500, env_kwargs={"is_slippery": False})
    >>> report = train_store(d / "fl.zarr", d / "q.npz", gamma=0.9)
    >>> report.mode, report.result.converged, report.lines()[-1].endswith(f"to {d / 'q.npz'}")
    ('sweeps', True, True)
    """
    kind = agent
    if is_deep(kind):
        batch_size = batch_size or 256
        if updates is None and epochs is None:
            updates = 50_000
        if out is not None:
            out = agent_path(out, kind)
    sweeps = batch_size is None and not balanced_by
    if alpha_schedule == "auto":
        alpha_schedule = "constant" if sweeps else "visits"
    with open_store(path, mode="r") as store:
        agent = make_agent(kind, store.observation_space, store.action_space, alpha=alpha, gamma=gamma,
                           alpha_schedule=alpha_schedule, seed=seed, lr=lr, cql_alpha=cql_alpha)
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
        refuse_existing(out, overwrite)
        refuse_existing(log_csv, overwrite)
        trainer = OfflineTrainer(store, agent, batch_size=batch_size, seed=seed,
                                 balanced_by=balanced_by)

        def report(result: TrainResult) -> TrainReport:
            return TrainReport(str(path), None if out is None else str(out), trainer.mode, result,
                               agent, None if log_csv is None else str(log_csv), count_rows(log_csv))

        try:
            result = trainer.train(updates=updates, epochs=epochs, tol=tol, max_updates=max_updates,
                                   eval_env=env_id if eval_every else None, env_kwargs=kwargs,
                                   eval_every=eval_every, eval_episodes=eval_episodes,
                                   eval_seed=10_000 + seed,  # (seed 0: the trainer's default)
                                   log_csv=log_csv, log_every=log_every, progress=progress)
        except TrainInterrupted as exc:
            if out is not None:
                agent.save(out)
            exc.report = report(exc.result)
            raise
    if out is not None:
        agent.save(out)
    return report(result)

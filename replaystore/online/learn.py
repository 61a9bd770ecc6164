"""``replaystore learn`` in one call: make the env, the store and the agent, run the
online loop (or resume it), save the agent.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> report = learn("CliffWalking-v1", d / "buf.zarr", capacity=10_000, steps=8_000, out=d / "q.npz",
...                env_kwargs={"max_episode_steps": 500}, learning_starts=500, commit_every=500)
>>> report.result.steps, report.gap < 1e-9
(8000, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..agents.factory import agent_path, make_agent
from ..agents.qtable_files import refuse_existing
from ..envs import make_env
from ..errors import RunMismatchError
from ..progress import Progress
from ..storage import create
from ..storage import open as open_store
from .loop import BalancedFactory, OnlineResult, OnlineTrainer, PrioritizedFactory, run_dir_of
from .schedules import LinearSchedule

__all__ = ["learn", "LearnReport", "DEFAULTS"]

#: the loop's settings by agent where they differ (``None`` arguments take these): the
#: textbook tabular loop, and the tuned rl-baselines3-zoo settings of DQN on CartPole-v1
DEFAULTS = {
    "q": {"batch_size": 32, "epsilon_end": 0.05, "epsilon_fraction": 0.5},
    "dqn": {"batch_size": 64, "epsilon_end": 0.04, "epsilon_fraction": 0.16},
}


@dataclass
class LearnReport:
    """What :func:`learn` did: the run, the final greedy policy's gap, where things are."""

    env_id: str
    buffer: str
    out: str | None
    result: OnlineResult
    rows: int
    gap: float | None
    log: str | None = None

    def lines(self) -> list[str]:
        r = self.result
        resumed = "" if r.resumed_from is None else f" (resumed at step {r.resumed_from:,})"
        tail = [ret for _, ret, _ in r.episodes[-100:]]
        lines = [f"learned {self.env_id} online for {r.steps:,} env steps{resumed}: "
                 f"{r.steps_this_call:,} steps in {r.seconds:.1f}s ({r.steps_per_second:,.0f} steps/s), "
                 f"{len(r.episodes):,} episodes"
                 + (f", mean return of the last {len(tail)} {np.mean(tail):.3f}" if tail else "")]
        evs = r.evaluations
        shown = evs if len(evs) <= 10 else evs[-5:]
        if len(shown) < len(evs):
            lines.append(f"the last {len(shown)} of {len(evs)} evaluations"
                         + (f" (every one is in {self.log})" if self.log else " (--log FILE keeps every one)"))
        lines += [f"step {ev['step']:,}: mean return {ev['mean_return']:.3f}"
                  + ("" if ev.get("gap") is None else f", gap to optimal {max(0.0, ev['gap']):.2%}")
                  for ev in shown]
        if self.gap is not None:
            lines.append(f"greedy policy: gap to the optimal value {max(0.0, self.gap):.4%}")
        lines.append(f"buffer {self.buffer}: {self.rows:,} rows committed")
        if self.out is not None:
            lines.append(f"saved the agent to {self.out}")
        return lines


def learn(
    env_id: str,
    buffer: str | os.PathLike[str],
    *,
    capacity: int,
    steps: int,
    out: str | os.PathLike[str] | None = None,
    seed: int = 0,
    gamma: float = 0.99,
    alpha: float = 1.0,
    alpha_schedule: str = "visits",
    env_kwargs: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    updates_per_step: int = 1,
    learning_starts: int = 1_000,
    epsilon_start: float = 1.0,
    epsilon_end: float | None = None,
    epsilon_fraction: float | None = None,
    commit_every: int | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 100,
    balanced_by: str | None = None,
    log: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool | Progress = False,
    overwrite: bool = False,
    agent: str = "q",
    lr: float | None = None,
    hidden: tuple[int, ...] | None = None,
    target_update: int | None = None,
    prioritized: bool = False,
    priority_alpha: float = 0.6,
    priority_beta: float = 0.4,
) -> LearnReport:
    """Learn tabular Q-learning online in ``env_id`` through the ring buffer ``buffer``.

    A new run creates ``buffer`` (a ring of ``capacity`` rows; it must not exist).
    ``resume=True`` continues the run saved in ``buffer`` (its run state in
    ``<buffer>.run/``) with the same settings, or starts one if there is none.
    ``balanced_by`` samples class-balanced (a field or ``"reward_sign"``). The agent is
    saved to ``out``, one ``.npz`` file (:meth:`QLearningAgent.save`), checked before the
    run starts: an existing ``out`` is refused unless ``overwrite=True`` or the run resumes
    (``resume=True`` with a saved run in ``buffer``), which may replace its own output.

    ``prioritized=True`` replays with a :class:`~replaystore.sampling.PrioritizedSampler`
    (``priority_alpha``, ``priority_beta``; priorities saved with the buffer).

    ``agent="dqn"`` learns a :class:`~replaystore.agents.DQNAgent` instead (``lr``,
    ``hidden``, ``target_update`` are its settings; ``alpha`` is unused); it is saved as one
    ``.pt`` file (``out`` without a suffix gets ``.pt``).
    """
    if prioritized and balanced_by:
        raise RunMismatchError("balanced_by and prioritized are two samplers; choose one",
                               cli="--balanced-by and --prioritized are two samplers; choose one")
    kind = agent
    settings = DEFAULTS["q" if kind == "q" else "dqn"]
    batch_size = settings["batch_size"] if batch_size is None else batch_size
    epsilon_end = settings["epsilon_end"] if epsilon_end is None else epsilon_end
    epsilon_fraction = settings["epsilon_fraction"] if epsilon_fraction is None else epsilon_fraction
    kwargs = dict(env_kwargs or {})
    env = make_env(env_id, kwargs)
    try:
        agent = make_agent(kind, env.observation_space, env.action_space, gamma=gamma, alpha=alpha,
                           alpha_schedule=alpha_schedule, seed=seed, lr=lr, hidden=hidden,
                           target_update=target_update)
        if out is not None:
            out = agent_path(out, kind)
            agent.check_save_path(out)
        path = Path(buffer)
        exists = (path / "zarr.json").exists()
        if exists and not resume:
            saved = run_dir_of(path).is_dir()
            why = f"{path}: the buffer exists" + (" and holds a run" if saved else "")
            raise RunMismatchError(why + ("; resume it with resume=True" if saved else "; choose a new path"),
                                   cli=why + ("; resume it with --resume" if saved else
                                              "; choose a new --buffer"))
        refuse_existing(out, overwrite or (resume and exists and run_dir_of(path).is_dir()))
        if exists:
            store = open_store(path, mode="a")
            if store.capacity != capacity:
                store.close()
                raise RunMismatchError(f"{path}: the buffer is a ring of capacity {store.capacity}, "
                                       f"not {capacity} (--capacity)")
        else:
            store = create(path, env.observation_space, env.action_space, capacity=capacity,
                           env_id=env_id)
            store.update_info(env={"id": env_id, "kwargs": kwargs})
        with store:
            trainer = OnlineTrainer(
                env, agent, store, batch_size=batch_size, updates_per_step=updates_per_step,
                learning_starts=learning_starts, seed=seed, commit_every=commit_every,
                epsilon=LinearSchedule(epsilon_start, epsilon_end, fraction=epsilon_fraction),
                sampler=(BalancedFactory(balanced_by) if balanced_by else
                         PrioritizedFactory(priority_alpha, priority_beta) if prioritized else None))
            result = trainer.train(steps, eval_every=eval_every, eval_episodes=eval_episodes, log=log,
                                   progress=progress, resume=resume)
            gap = trainer.gap()
            rows = store.total
    finally:
        env.close()
    if out is not None:
        agent.save(out)
    return LearnReport(env_id, str(buffer), None if out is None else str(out), result, rows, gap,
                       None if log is None else str(log))

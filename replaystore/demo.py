"""The main job, end to end, on the bundled dataset: train offline, evaluate, grade.

:func:`run_demo` reads a store that records its env (the bundled FrozenLake dataset by
default), trains a tabular Q-learning agent in full sweeps until its greedy policy is
final, evaluates it in the env, and compares it with the exact optimum (value iteration
on the env's own transition table). ``replaystore demo`` prints its report.

>>> import tempfile, pathlib
>>> from replaystore.collect import collect
>>> path = pathlib.Path(tempfile.mkdtemp()) / "fl.zarr"
>>> _ = collect("FrozenLake-v1", path, steps=2000, env_kwargs={"is_slippery": False})
>>> report = run_demo(path, episodes=10)
>>> [line.split()[0] for line in report.lines()]
['dataset', 'FrozenLake-v1', 'train', 'evaluate', 'optimum', 'done']
>>> report.evaluation["success_rate"]
1.0
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .agents import QLearningAgent, policy_value_gap
from .envs import check_env_id, make_env
from .errors import EmptyStoreError, EnvError
from .storage import open as open_store
from .training import OfflineTrainer, TrainResult, evaluate

__all__ = ["run_demo", "DemoReport", "DATA_DIR", "DEMO_STORE"]

#: the bundled data, next to the package in a source checkout
#: the bundled dataset ships inside the package (package data; ``data/`` at the top of a
#: source checkout is a link to it)
DATA_DIR = Path(__file__).resolve().parent / "data"
DEMO_STORE = DATA_DIR / "frozenlake-4x4-slippery.zarr"


@dataclass
class DemoReport:
    """What :func:`run_demo` found; :meth:`lines` is the report ``replaystore demo`` prints."""

    data: str
    env_id: str
    env_kwargs: dict[str, Any]
    gamma: float
    agent: QLearningAgent
    training: TrainResult
    evaluation: dict[str, float]
    gap: dict[str, float]
    saved: str | None
    seconds: float
    report_lines: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return list(self.report_lines)


def run_demo(
    data: str | os.PathLike[str] = DEMO_STORE,
    *,
    gamma: float = 0.95,
    seed: int = 0,
    episodes: int = 1000,
    out: str | os.PathLike[str] | None = None,
    echo: Callable[[str], None] | None = None,
    trust_env_id: bool = False,
) -> DemoReport:
    """Train on the store ``data``, evaluate for ``episodes`` episodes, grade the policy
    against the optimum at discount ``gamma``; save the Q-table to ``out`` if given
    (checked before any work). Each report line is also passed to ``echo`` as soon as it
    is known (the CLI prints them as they come). The env is the one the store records; a
    store is data, so a recorded ``module:Env-v0`` id (which imports ``module``) is
    refused with :class:`EnvError` before any work unless ``trust_env_id=True``
    (``--trust-env-id``; see :func:`~replaystore.envs.check_env_id`)."""
    t0 = time.perf_counter()
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if echo is not None:
            echo(line)

    with open_store(data, mode="r") as store:
        env_id = store.env_info.get("id")
        kwargs = dict(store.env_info.get("kwargs", {}))
        if not env_id:
            raise EnvError(f"{data}: the store does not record the env id it was collected from")
        env_id = check_env_id(env_id, source=data, trusted=trust_env_id, env_option=None)
        if len(store) == 0:
            raise EmptyStoreError(f"{data}: the store holds no transitions")
        agent = QLearningAgent.from_spaces(store.observation_space, store.action_space, gamma=gamma,
                                           alpha=1.0, alpha_schedule="constant")
        if out is not None:
            agent.check_save_path(out)
        ep = store.episodes()
        say(f"dataset   {data}")
        say(f"          {env_id} {json.dumps(kwargs)}: {len(store):,} transitions, "
            f"{len(ep):,} episodes, behaviour return {ep['return'].mean():.3f}")
        res = OfflineTrainer(store, agent, seed=seed).train(progress=False)
    say(f"train     {res.updates:,} full sweeps ({res.transitions:,} transitions replayed, "
        f"{res.transitions_per_second:,.0f}/s); {res.stop_reason}")
    ev = evaluate(env_id, agent, episodes=episodes, seed=seed, env_kwargs=kwargs)
    say(f"evaluate  {episodes} episodes: mean return {ev['mean_return']:.3f}, "
        f"success rate {ev['success_rate']:.1%}, mean length {ev['mean_length']:.1f}")
    env = make_env(env_id, kwargs)
    try:
        gap = policy_value_gap(env, agent.greedy_policy(), gamma)
    finally:
        env.close()
    say(f"optimum   V*={gap['v_star']:.4f}, greedy policy V={gap['v_pi']:.4f} "
        f"(gives up {gap['rel_gap']:.2%} of the optimal value at gamma={gamma})")
    if out is not None:
        agent.save(out)
        say(f"saved     {out}")
    seconds = time.perf_counter() - t0
    say(f"done in {seconds:.1f}s")
    return DemoReport(str(data), env_id, kwargs, gamma, agent, res, ev, gap,
                      None if out is None else str(out), seconds, lines)

"""The main job, end to end, on the bundled dataset: bundled data -> train offline -> evaluate.

:func:`run_demo` reads a store that records its env (by default the bundled FrozenLake
dataset, collected earlier by a random policy: the demo collects nothing), trains a tabular
Q-learning agent offline in full sweeps over the stored transitions until its greedy
policy is final, evaluates that policy in the env (mean *undiscounted* return over N
episodes), and compares it with the exact optimum (value iteration on the env's own
transition table: the *discounted* value of the start state at ``gamma``).
``replaystore demo`` prints its report; ``--report DIR`` also writes it to
``DIR/report.txt`` with its pictures (:data:`PICTURES`).

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
from .agents.qtable_files import refuse_existing
from .envs import check_env_id, make_env
from .errors import EmptyStoreError, EnvError, StoreExistsError
from .plot import EXTRA_HINT, missing_matplotlib
from .storage import open as open_store
from .training import OfflineTrainer, TrainResult, evaluate

__all__ = ["run_demo", "DemoReport", "DATA_DIR", "DEMO_STORE", "PICTURES", "REPORT_FILES"]

#: the bundled dataset ships inside the package (package data; ``data/`` at the top of a
#: source checkout is a link to it)
DATA_DIR = Path(__file__).resolve().parent / "data"
DEMO_STORE = DATA_DIR / "frozenlake-4x4-slippery.zarr"
#: the pictures ``--report DIR`` draws: file name -> what it shows
PICTURES = {
    "learning-curve.png": "evaluations and max |dQ| against sweeps",
    "data.png": "the dataset's returns, episode lengths and action balance",
    "policy.png": "the greedy policy over the state values",
}
#: every file ``--report DIR`` writes (the rest of DIR is never touched)
REPORT_FILES = ("report.txt", "train-log.csv", *PICTURES)
#: sweeps between two evaluations drawn on the learning curve (``--report`` only)
CURVE_EVAL_EVERY = 5


@dataclass
class DemoReport:
    """What :func:`run_demo` found; :meth:`lines` is the report ``replaystore demo`` prints
    (and ``report.txt`` holds); ``files`` are the files written into ``report_dir``."""

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
    report_dir: str | None = None
    files: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return list(self.report_lines)


def _check_report_dir(report_dir: Path, overwrite: bool) -> None:
    """Refuse a ``report_dir`` that is not a directory, or one already holding a report
    file, unless ``overwrite`` (then only the report's own files are replaced)."""
    if report_dir.exists() and not report_dir.is_dir():
        raise NotADirectoryError(f"{report_dir}: the report goes into a directory; this is a file")
    if not report_dir.parent.is_dir():
        raise FileNotFoundError(f"{report_dir}: the report's parent directory does not exist")
    there = [n for n in REPORT_FILES if (report_dir / n).exists()]
    if there and not overwrite:
        raise StoreExistsError(
            f"{report_dir}: already holds a demo report ({', '.join(there)}); pass overwrite=True "
            "to replace its files, or choose another directory",
            cli=f"{report_dir}: already holds a demo report ({', '.join(there)}); use --overwrite "
                "to replace its files, or choose another directory")


def _collected_by(info: dict[str, Any]) -> str:
    """``"collected earlier by a random policy"`` from the store's collection records."""
    kinds = [str((c.get("policy") or {}).get("kind", "?")) for c in info.get("collections", [])
             if isinstance(c, dict)]
    if not kinds:
        return "collected earlier"
    return "collected earlier by a " + " then a ".join(dict.fromkeys(kinds)) + " policy"


def run_demo(
    data: str | os.PathLike[str] = DEMO_STORE,
    *,
    gamma: float = 0.95,
    seed: int = 0,
    episodes: int = 1000,
    out: str | os.PathLike[str] | None = None,
    echo: Callable[[str], None] | None = None,
    trust_env_id: bool = False,
    report_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> DemoReport:
    """Train on the store ``data``, evaluate for ``episodes`` episodes, grade the policy
    against the optimum at discount ``gamma``; save the Q-table to ``out`` if given
    (checked before any work). Each report line is also passed to ``echo`` as soon as it
    is known (the CLI prints them as they come). The env is the one the store records; a
    store is data, so a recorded ``module:Env-v0`` id (which imports ``module``) is
    refused with :class:`EnvError` before any work unless ``trust_env_id=True``
    (``--trust-env-id``; see :func:`~replaystore.envs.check_env_id`).

    ``report_dir``: also write the report there as ``report.txt``, the per-sweep training
    log as ``train-log.csv`` (the greedy policy is then also evaluated every
    :data:`CURVE_EVAL_EVERY` sweeps, which changes nothing of the training) and the
    pictures :data:`PICTURES`. The directory is created if missing; one that already holds
    any of :data:`REPORT_FILES` is refused unless ``overwrite=True`` (other files in it are
    never touched). Without matplotlib the pictures are skipped, and a line says how to
    get them (also without ``report_dir``)."""
    t0 = time.perf_counter()
    lines: list[str] = []
    rdir = None if report_dir is None else Path(report_dir)
    if rdir is not None:
        _check_report_dir(rdir, overwrite)

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
            refuse_existing(out, overwrite)
        if rdir is not None:
            rdir.mkdir(exist_ok=True)
        ep = store.episodes()
        say(f"dataset   {data}")
        say(f"          {env_id} {json.dumps(kwargs)}: {len(store):,} transitions, "
            f"{len(ep):,} episodes, {_collected_by(store.info)}; their mean return "
            f"{ep['return'].mean():.3f} (undiscounted)")
        log = None if rdir is None else rdir / "train-log.csv"
        curve_episodes = min(episodes, 200)
        res = OfflineTrainer(store, agent, seed=seed).train(
            progress=False, log_csv=log, eval_env=env_id if log else None, env_kwargs=kwargs,
            eval_every=CURVE_EVAL_EVERY if log else None, eval_episodes=curve_episodes,
            eval_seed=seed + 10_000)
        say(f"train     offline on the stored transitions only (no new env steps): "
            f"{res.updates:,} full sweeps ({res.transitions:,} transitions replayed, "
            f"{res.transitions_per_second:,.0f}/s{', evaluations included' if log else ''}); "
            f"{res.stop_reason}")
        ev = evaluate(env_id, agent, episodes=episodes, seed=seed, env_kwargs=kwargs)
        say(f"evaluate  greedy policy in {env_id}: mean undiscounted return {ev['mean_return']:.3f} "
            f"over {episodes} episodes, success rate {ev['success_rate']:.1%}, "
            f"mean length {ev['mean_length']:.1f}")
        env = make_env(env_id, kwargs)
        try:
            gap = policy_value_gap(env, agent.greedy_policy(), gamma)
            say(f"optimum   discounted value of the start state (gamma={gamma}): optimal "
                f"V*={gap['v_star']:.4f}, greedy policy V={gap['v_pi']:.4f} (gives up "
                f"{gap['rel_gap']:.2%} of the optimal value)")
            if out is not None:
                agent.save(out)
                say(f"saved     {out}")
            files = [] if rdir is None else _pictures(rdir, store, agent, env, env_id,
                                                        curve_episodes, say)
            if rdir is None and missing_matplotlib() is not None:
                say(f"pictures  need matplotlib: {EXTRA_HINT}, then replaystore demo --report DIR")
        finally:
            env.close()
    seconds = time.perf_counter() - t0
    say(f"done in {seconds:.1f}s")
    if rdir is not None:
        (rdir / "report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        files = ["report.txt", "train-log.csv", *files]
    return DemoReport(str(data), env_id, kwargs, gamma, agent, res, ev, gap,
                      None if out is None else str(out), seconds, lines,
                      None if rdir is None else str(rdir), files)


def _pictures(rdir: Path, store: Any, agent: QLearningAgent, env: Any, env_id: str, evals: int,
              say: Callable[[str], None]) -> list[str]:
    """Draw :data:`PICTURES` into ``rdir`` (a policy picture only for a grid world); the
    names written. Without matplotlib: none, and a line saying how to get them."""
    from .plot import GRID_ENVS, plot_policy, plot_store, plot_train_log

    why = missing_matplotlib()
    if why is not None:
        say(f"report    {rdir}: report.txt and train-log.csv; pictures skipped: {why}")
        return []
    name = Path(str(store.path)).name
    plot_train_log([rdir / "train-log.csv"], rdir / "learning-curve.png", labels=[name],
                   title=f"{env_id}: offline training on {name} (greedy policy evaluated "
                         f"every {CURVE_EVAL_EVERY} sweeps, {evals} episodes each)")
    plot_store(store, rdir / "data.png")
    drawn = ["learning-curve.png", "data.png"]
    if type(env.unwrapped).__name__ in GRID_ENVS:
        plot_policy(agent, env, rdir / "policy.png")
        drawn.append("policy.png")
    say(f"report    {rdir}: report.txt, train-log.csv, {', '.join(drawn)}")
    return drawn

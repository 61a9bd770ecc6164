"""Training sweeps: many offline training runs (a grid of hyperparameters x seeds) from one
store, one Dask task each, collected into one table (needs the ``dask`` extra:
``pip install "replaystore[dask]"``).

Each task is one :func:`~replaystore.training.train_store` run (what ``replaystore train``
does) on a worker: it opens the store read-only itself (tasks get the path, never a store
object), trains with its seed and parameters, evaluates the greedy policy in the store's
env as ``train --eval-every`` does at the end of a run (``evaluate_episodes`` episodes,
seeded ``10_000 + seed`` like ``train``'s evaluations) and sends back a few numbers. A task
whose worker dies is run again by Dask; a task that raises is retried ``retries`` times.
The table's rows are in grid order, seeds innermost, whatever the number of workers, and
every column but :data:`TIMING_COLUMNS` is the same on 1 or 100 workers.

Example (a local cluster of 2 worker processes; call it under ``if __name__ == "__main__":``
in a script, since the workers are spawned)::

    table = sweep("fl.zarr", agent="q", grid={"gamma": [0.9, 0.99]}, seeds=range(5),
                  train_kwargs={"batch_size": 256, "updates": 20_000}, workers=2)
    summarize(table)        # mean and std over the seeds of each combination, best first

>>> parse_seeds("0-2,5")
[0, 1, 2, 5]
>>> check_grid("q", {"gamma": [0.9, 0.99], "alpha": [0.5]})
{'gamma': [0.9, 0.99], 'alpha': [0.5]}
"""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .agents.factory import AGENT_KINDS
from .agents.qlearning import ALPHA_SCHEDULES
from .agents.qtable_files import refuse_existing
from .envs import check_env_id
from .errors import (
    AgentConfigError,
    EnvError,
    InteropError,
    MissingExtraError,
    SchedulerError,
)
from .progress import Progress, as_progress
from .storage import open as open_store

__all__ = ["sweep", "summarize", "parse_seeds", "check_grid", "write_table", "plot_sweep",
           "sweep_params", "SchedulerError", "RESULT_COLUMNS", "TIMING_COLUMNS", "TABLE_FORMATS",
           "DASK_HINT"]

#: how to get Dask
DASK_HINT = 'pip install "replaystore[dask]"'
#: ``agent=`` may also be written this way (``qlearning`` is the tabular agent ``q``)
AGENT_ALIASES = {"qlearning": "q"}
#: what each task reports, after the agent, the grid's parameters and the seed
RESULT_COLUMNS = ("mode", "updates", "transitions", "converged", "final_max_dq", "mean_return",
                  "std_return", "success_rate", "mean_length", "train_seconds", "worker_seconds")
#: the columns that depend on the machine and its load (the others are reproducible)
TIMING_COLUMNS = ("train_seconds", "worker_seconds")
#: what :func:`write_table` writes, by file suffix
TABLE_FORMATS = ("csv", "json", "parquet")
# ``eval_every`` that evaluates once, at the end of the run (train_store evaluates at its last update)
_FINAL_ONLY = 1 << 62

# parameters a grid (or train_kwargs) may set, and what their values must be
_INT, _REAL = "a whole number >= 1", "a number"
_CHECKS: dict[str, tuple[str, Any]] = {
    "gamma": ("a number in [0, 1]", lambda v: _real(v) and 0 <= v <= 1),
    "alpha": ("a number in (0, 1]", lambda v: _real(v) and 0 < v <= 1),
    "alpha_schedule": (f"one of {', '.join(ALPHA_SCHEDULES)} (or auto)",
                       lambda v: v in (*ALPHA_SCHEDULES, "auto")),
    "batch_size": (_INT, lambda v: _int(v) and v >= 1),
    "updates": (_INT, lambda v: _int(v) and v >= 1),
    "max_updates": (_INT, lambda v: _int(v) and v >= 1),
    "epochs": ("a number > 0", lambda v: _real(v) and v > 0),
    "tol": ("a number >= 0", lambda v: _real(v) and v >= 0),
    "lr": ("a number > 0", lambda v: _real(v) and v > 0),
    "cql_alpha": ("a number >= 0", lambda v: _real(v) and v >= 0),
}
_BY_AGENT = {"q": ("alpha", "alpha_schedule"), "dqn": ("lr",), "cql": ("lr", "cql_alpha")}
_COMMON = ("gamma", "batch_size", "updates", "epochs", "tol", "max_updates")
# fixed settings of every run that are not hyperparameters of a grid
_FIXED = ("balanced_by", "env_id", "env_kwargs", "trust_env_id")


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _plain(v: Any) -> Any:
    """numpy scalars as Python numbers (what the table and train_store get)."""
    if _int(v):
        return int(v)
    return float(v) if _real(v) else v


def _kind(agent: str) -> str:
    kind = AGENT_ALIASES.get(agent, agent)
    if kind not in AGENT_KINDS:
        raise AgentConfigError(f"agent must be one of {', '.join(AGENT_KINDS)} (or qlearning); "
                               f"got {agent!r}")
    return kind


def sweep_params(agent: str) -> tuple[str, ...]:
    """The hyperparameters a grid may vary for ``agent`` (``q``/``qlearning``, ``dqn``, ``cql``).

    >>> sweep_params("dqn")
    ('gamma', 'batch_size', 'updates', 'epochs', 'tol', 'max_updates', 'lr')
    """
    return _COMMON + _BY_AGENT[_kind(agent)]


def _where(path: Any) -> str:
    return f"{path}: " if path is not None else ""


def check_grid(agent: str, grid: Mapping[str, Sequence[Any]], *, path: Any = None,
               fixed: Mapping[str, Any] | None = None) -> dict[str, list[Any]]:
    """``grid`` checked for ``agent`` (every name one of :func:`sweep_params`, every list
    non-empty without repeats, every value of the right type and range), as plain lists;
    :class:`AgentConfigError` naming the parameter otherwise. ``fixed`` are the other
    settings of every run (``train_kwargs``), checked the same way and against the grid."""
    kind, where, allowed = _kind(agent), _where(path), sweep_params(agent)
    out: dict[str, list[Any]] = {}
    if not isinstance(grid, Mapping):
        raise AgentConfigError(f"{where}grid must map parameter names to lists of values, got "
                               f"{type(grid).__name__}")
    for name, values in grid.items():
        opt = f"--param {name}"
        if name == "seed":
            raise AgentConfigError(f"{where}the seeds are not a sweep parameter: give them as seeds=",
                                   cli=f"{where}{opt}: the seeds are given by --seeds, not --param")
        if name not in allowed:
            what = f"the sweep parameters of a {kind} agent are {', '.join(allowed)}"
            raise AgentConfigError(f"{where}unknown sweep parameter {name!r}: {what}",
                                   cli=f"{where}{opt}: unknown parameter; {what}")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | range):
            raise AgentConfigError(f"{where}sweep parameter {name!r}: expected a list of values, "
                                   f"got {values!r}")
        values = [_plain(v) for v in values]
        if not values:
            raise AgentConfigError(f"{where}sweep parameter {name!r}: no values (give at least one)",
                                   cli=f"{where}{opt}: no values (give at least one: {name}=V1,V2)")
        _check_values(name, values, where, opt, "sweep parameter")
        out[name] = values
    fixed = dict(fixed or {})
    for name, value in fixed.items():
        if name not in allowed and name not in _FIXED:
            raise AgentConfigError(f"{where}train_kwargs: unknown setting {name!r} for a {kind} "
                                   f"agent (expected {', '.join(allowed + _FIXED)})")
        if name in out:
            raise AgentConfigError(f"{where}{name!r} is both a sweep parameter and a fixed setting",
                                   cli=f"{where}{name} is given both by --param and by its own "
                                       "option; give one")
        if name in _CHECKS:
            _check_values(name, [_plain(value)], where, f"--{name.replace('_', '-')}", "setting")
        elif value is not None and not isinstance(value, Mapping if name == "env_kwargs" else
                                                  bool if name == "trust_env_id" else str):
            raise AgentConfigError(f"{where}train_kwargs: {name}={value!r} has the wrong type")
    if ("updates" in out or "updates" in fixed) and ("epochs" in out or "epochs" in fixed):
        raise AgentConfigError(f"{where}give updates or epochs, not both")
    return out


def _check_values(name: str, values: list[Any], where: str, opt: str, label: str) -> None:
    what, ok = _CHECKS[name]
    for v in values:
        if not ok(v):
            raise AgentConfigError(f"{where}{label} {name!r}: {v!r} is not {what}",
                                   cli=f"{where}{opt}: {v!r} is not {what}")
    if len(set(values)) != len(values):
        raise AgentConfigError(f"{where}{label} {name!r}: a value is given twice in "
                               f"{values}", cli=f"{where}{opt}: a value is given twice")


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """Seeds from ``"0-4"`` (both ends included), ``"0,1,2"`` or both (``"0-2,7"``), or a
    list of ints: non-negative, each once; :class:`AgentConfigError` otherwise."""
    if isinstance(text, str):
        seeds: list[Any] = []
        for part in text.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not m:
                raise AgentConfigError(f"seeds {text!r}: {part.strip()!r} is not a seed or a range "
                                       "like 0-4 (non-negative whole numbers)",
                                       cli=f"--seeds {text!r}: {part.strip()!r} is not a seed or a "
                                           "range like 0-4 (non-negative whole numbers)")
            lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
            if hi < lo:
                raise AgentConfigError(f"seeds {text!r}: the range {lo}-{hi} is empty (write it "
                                       f"{hi}-{lo})", cli=f"--seeds {text!r}: the range {lo}-{hi} "
                                       f"is empty (write it {hi}-{lo})")
            seeds += range(lo, hi + 1)
    else:
        seeds = list(text)
    if not seeds:
        raise AgentConfigError("seeds: none given (give at least one)", cli="--seeds: none given")
    bad = [s for s in seeds if not _int(s) or s < 0]
    if bad:
        raise AgentConfigError(f"seeds: {bad[0]!r} is not a non-negative int")
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        twice = next(s for s in seeds if seeds.count(s) > 1)
        raise AgentConfigError(f"seeds: seed {twice} is given twice", cli=f"--seeds: seed {twice} is "
                               "given twice")
    return seeds


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise MissingExtraError(f"training sweeps run on Dask, which is not installed ({e}): "
                                f"{DASK_HINT}") from None
    return distributed


def _task_path(path: str | os.PathLike[str]) -> str:
    """The store's path as every worker should open it (a local path made absolute)."""
    text = os.fspath(path)
    return text if "://" in text else os.path.abspath(text)


def _preflight(path: str, kind: str, fixed: Mapping[str, Any], episodes: int | None) -> None:
    """What would make every task fail, said once before any is submitted."""
    with open_store(path, mode="r") as store:
        if not episodes:
            return
        own = bool(fixed.get("env_id"))
        env_id = fixed.get("env_id") or store.env_info.get("id")
        if not env_id:
            raise EnvError(f"{path}: the store does not record its env id, so the runs cannot "
                           "be evaluated: give env_id= in train_kwargs (--env ENV_ID)",
                           cli=f"{path}: the store does not record its env id, so the runs cannot "
                               "be evaluated: give --env ENV_ID (or --eval-episodes 0)")
        check_env_id(env_id, source=path, trusted=own or bool(fixed.get("trust_env_id")))


def run_one(path: str, agent: str, params: Mapping[str, Any], seed: int,
            train_kwargs: Mapping[str, Any], evaluate_episodes: int | None) -> dict[str, Any]:
    """One task of a sweep (on a worker): train on the store at ``path`` and evaluate."""
    from .training import train_store

    t0 = time.perf_counter()
    ev_kw = ({"eval_every": _FINAL_ONLY, "eval_episodes": evaluate_episodes} if evaluate_episodes
             else {})
    report = train_store(path, None, agent=agent, seed=seed, progress=False,
                         **{**train_kwargs, **params}, **ev_kw)
    res = report.result
    ev = res.evaluations[-1] if res.evaluations else {}
    return {"mode": report.mode, "updates": res.updates, "transitions": res.transitions,
            "converged": res.converged, "final_max_dq": float(res.last_max_dq),
            **{k: float(ev.get(k, math.nan)) for k in ("mean_return", "std_return", "success_rate",
                                                       "mean_length")},
            "train_seconds": res.seconds, "worker_seconds": time.perf_counter() - t0}


@contextlib.contextmanager
def _client(client: Any, scheduler: str | None, workers: int | None, tasks: int) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    distributed = _import_distributed()
    if scheduler:
        try:
            own = distributed.Client(scheduler, timeout="20s")
        except OSError as e:
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        with own:
            yield own
        return
    n = workers if workers is not None else max(1, min(tasks, os.cpu_count() or 1))
    with (distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=":0") as cluster,
          distributed.Client(cluster) as own):
        yield own


def sweep(
    path: str | os.PathLike[str],
    *,
    agent: str = "q",
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int] | str,
    train_kwargs: Mapping[str, Any] | None = None,
    evaluate_episodes: int | None = 100,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    retries: int = 3,
    progress: bool | Progress = False,
) -> pd.DataFrame:
    """Train ``agent`` on the store at ``path`` once per combination of ``grid`` values and
    seed, one Dask task each, and return one row per run (see the module docstring).

    ``grid`` maps parameters of :func:`~replaystore.training.train_store` (those of
    :func:`sweep_params`: ``gamma``, ``alpha``, ``batch_size``, ``updates``...) to lists of
    values; ``train_kwargs`` are the settings every run shares (the same names, and
    ``balanced_by``, ``env_id``, ``env_kwargs``, ``trust_env_id``). ``seeds``: ints or
    text like ``"0-4"``. ``evaluate_episodes=None`` (or 0) skips the evaluation. The
    runs go to ``client`` (a ``distributed.Client``), else to the scheduler at
    ``scheduler`` (``"tcp://host:8786"``; the store's path must be readable there), else
    to a ``LocalCluster`` of ``workers`` processes (default: one per core, at most one per
    run) started and closed here. Columns: ``agent``, the grid's names, ``seed``, then
    :data:`RESULT_COLUMNS`. Bad grids, seeds or settings raise before any task is sent.
    """
    kind = _kind(agent)
    fixed = dict(train_kwargs or {})
    grid = check_grid(kind, grid, path=path, fixed=fixed)
    fixed = {k: _plain(v) for k, v in fixed.items()}
    seeds = parse_seeds(seeds)
    if evaluate_episodes is not None and (not _int(evaluate_episodes) or evaluate_episodes < 0):
        raise AgentConfigError(f"{_where(path)}evaluate_episodes must be a whole number >= 0 "
                               f"(0 or None: no evaluation), got {evaluate_episodes!r}")
    if workers is not None and (not _int(workers) or workers < 1):
        raise AgentConfigError(f"workers must be a whole number >= 1, got {workers!r}",
                               cli=f"--workers: {workers!r} is not a whole number >= 1")
    if not _int(retries) or retries < 0:
        raise AgentConfigError(f"retries must be a whole number >= 0, got {retries!r}")
    distributed = _import_distributed()
    where = _task_path(path)
    _preflight(where, kind, fixed, evaluate_episodes)
    names = list(grid)
    runs = [(dict(zip(names, combo, strict=True)), seed)
            for combo in itertools.product(*grid.values()) for seed in seeds]
    rows: list[dict[str, Any] | None] = [None] * len(runs)
    uid = uuid.uuid4().hex[:12]
    with (_client(client, scheduler, workers, len(runs)) as c,
          as_progress(progress).task(len(runs), "training runs") as bar):
        futures = {c.submit(run_one, where, kind, params, seed, fixed, evaluate_episodes,
                            retries=retries, pure=False, key=f"replaystore-sweep-{uid}-{i}"): i
                   for i, (params, seed) in enumerate(runs)}
        best = -math.inf
        try:
            for fut in distributed.as_completed(futures):
                i = futures[fut]
                try:
                    result = fut.result()
                except distributed.KilledWorker as e:
                    params, seed = runs[i]
                    raise SchedulerError(f"{path}: the run {params} seed {seed} killed its worker "
                                         f"every time it was tried ({e})") from None
                rows[i] = {"agent": kind, **runs[i][0], "seed": runs[i][1], **result}
                if math.isfinite(result["mean_return"]):
                    best = max(best, result["mean_return"])
                bar.update(1, **({"best": best} if math.isfinite(best) else {}))
        finally:
            pending = [f for f in futures if not f.done()]
            if pending:
                c.cancel(pending)
    return pd.DataFrame(rows, columns=["agent", *names, "seed", *RESULT_COLUMNS])


def _params_of(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in ("agent", "seed", *RESULT_COLUMNS)]


def summarize(table: pd.DataFrame, *, sort: bool = True) -> pd.DataFrame:
    """One row per parameter combination of a :func:`sweep` table: the number of seeds,
    the mean and (sample) standard deviation over the seeds of the mean return, and the
    means of the success rate, updates, final max |dQ| and worker seconds; best mean
    return first (``sort=False``: grid order).

    >>> t = pd.DataFrame({"agent": "q", "gamma": [0.9, 0.9, 0.99, 0.99], "seed": [0, 1, 0, 1],
    ...                   "mean_return": [0.5, 0.7, 0.8, 0.8], "success_rate": 0.5, "updates": 10,
    ...                   "final_max_dq": 0.1, "worker_seconds": 1.0})
    >>> s = summarize(t)
    >>> s["gamma"].tolist(), s["return_mean"].round(3).tolist(), s["return_std"].round(3).tolist()
    ([0.99, 0.9], [0.8, 0.6], [0.0, 0.141])
    """
    params = _params_of(table)
    keys = params or (lambda _: 0)
    g = table.groupby(keys, sort=False, dropna=False)
    out = g.agg(seeds=("seed", "size"), return_mean=("mean_return", "mean"),
                return_std=("mean_return", "std"), success_rate=("success_rate", "mean"),
                updates=("updates", "mean"), final_max_dq=("final_max_dq", "mean"),
                worker_seconds=("worker_seconds", "mean"))
    out = out.reset_index(drop=not params)
    if sort:
        out = out.sort_values("return_mean", ascending=False, kind="stable", na_position="last")
    return out.reset_index(drop=True)


def table_format(out: str | os.PathLike[str]) -> str:
    """``csv``, ``json`` or ``parquet`` from the suffix of ``out``; :class:`InteropError` otherwise."""
    fmt = Path(out).suffix.lower().lstrip(".")
    if fmt not in TABLE_FORMATS:
        raise InteropError(f"{out}: a sweep table is written as .csv, .json or .parquet (from the "
                           f"file name); got {Path(out).suffix or 'no suffix'!r}")
    return fmt


def write_table(table: pd.DataFrame, out: str | os.PathLike[str], *,
                overwrite: bool = False) -> Path:
    """Write ``table`` to ``out`` (CSV, JSON records or Parquet by suffix) atomically; an
    existing file is refused unless ``overwrite``. Parquet needs the ``parquet`` extra."""
    out = Path(out)
    fmt = table_format(out)
    refuse_existing(out, overwrite)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise MissingExtraError(f"{out}: writing Parquet needs pyarrow ({e}): "
                                    'pip install "replaystore[parquet]"') from None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if fmt == "csv":
            table.to_csv(tmp, index=False)
        elif fmt == "json":
            table.to_json(tmp, orient="records", indent=1)
        else:
            table.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def plot_sweep(table: pd.DataFrame, out: str | os.PathLike[str], *, title: str | None = None) -> Any:
    """Draw a :func:`sweep` table into the picture ``out`` (``.png``/``.svg``, the ``plot``
    extra): a panel per grid parameter, its values along x, the mean return over the seeds
    (and over the other parameters' values) with the seeds' spread (+-1 std bars, every
    run a faint dot); a line per value of one other parameter when there are two."""
    from .plot.common import new_figure, out_format, save_figure

    out_format(out)
    params = _params_of(table) or ["seed"]
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig = new_figure(4.2 * cols, 3.4 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, p in zip(axes, params, strict=False):
        values = list(dict.fromkeys(table[p]))
        x = {v: k for k, v in enumerate(values)}
        others = [q for q in params if q != p and q != "seed"]
        split = others[0] if len(others) == 1 and table[others[0]].nunique() <= 6 else None
        groups = table.groupby(split, sort=False) if split else [(None, table)]
        for n, (label, part) in enumerate(groups):
            color = f"C{n % 10}"
            ax.plot([x[v] for v in part[p]], part["mean_return"], ".", color=color, alpha=0.3)
            per = part.groupby(p, sort=False)["mean_return"]
            m, s = per.mean(), per.std().fillna(0.0)
            ax.errorbar([x[v] for v in m.index], m.to_numpy(), yerr=s.to_numpy(), fmt="o-",
                        color=color, capsize=3,
                        label=f"{split}={label[0] if isinstance(label, tuple) else label}"
                        if split else "mean over seeds ± std")
        ax.set_xticks(range(len(values)), [f"{v:g}" if _real(v) else str(v) for v in values])
        ax.set_xlabel(p)
        ax.set_ylabel("greedy policy mean return")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    for ax in axes[len(params):]:
        ax.set_visible(False)
    seeds, combos = table["seed"].nunique(), len(table) // max(1, table["seed"].nunique())
    fig.suptitle(title or f"sweep: {combos} combination{'s' if combos != 1 else ''} x {seeds} "
                          f"seed{'s' if seeds != 1 else ''}")
    save_figure(fig, out)
    return fig

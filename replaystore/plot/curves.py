"""Learning curves from a training log CSV, of either kind, told apart by the header:

* ``replaystore learn --log`` (online, :data:`replaystore.online.curves.COLUMNS`): up to
  three panels share the x axis (env steps): episode returns (faint points and a moving
  average), evaluations (mean return; the exact gap to the optimal value in %, dashed, on
  a second axis) and the TD/update magnitude (log scale);
* ``replaystore train --log`` (offline, one row per sweep): see :mod:`.trainlog`.

Several logs are several runs on the same axes, with a legend. A log is data: a file
that is not one raises :class:`~replaystore.errors.CurveLogError` naming the file and the line.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "run.csv").write_text("kind,step,return,length,mean_return,success_rate,gap,td,updates\\n"
...                                "episode,12,-3.0,12,,,,,\\ntd,20,,,,,,0.5,10\\n")
>>> log_kind(d / "run.csv")
'online'
>>> fig = plot_curves([d / "run.csv"], d / "run.png", title="demo")
>>> (d / "run.png").read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n", len(fig.axes)
(True, 2)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CurveLogError, CurveLogNotFoundError
from ..online.curves import COLUMNS
from .common import new_figure, out_format, save_figure
from .trainlog import TRAIN_LOG_COLUMNS, plot_train_log

__all__ = ["plot_curves", "read_curves", "log_kind"]

_KINDS = {"episode": ("return",), "eval": ("mean_return",), "td": ("td",)}
_WHAT = "a CSV written by replaystore learn --log or replaystore train --log"


def _num(path: Path, line: int, row: dict[str, str], col: str, *, required: bool = True,
         finite: bool = True) -> float:
    text = (row.get(col) or "").strip()
    if not text and not required:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise CurveLogError(f"{path}: line {line}: column {col!r} of a {row['kind']!r} row "
                            f"should be a number, got {text!r}") from None
    if finite and not math.isfinite(value):
        raise CurveLogError(f"{path}: line {line}: column {col!r} should be finite, got {text!r}")
    return value


def log_kind(path: str | os.PathLike[str]) -> str:
    """``"online"`` (``learn --log``) or ``"offline"`` (``train --log``), from the header of
    the CSV ``path``; :class:`CurveLogError` if it is neither."""
    path = Path(path)
    if not path.is_file():
        raise CurveLogNotFoundError(f"{path}: no such learning-curves log ({_WHAT})")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
    except UnicodeDecodeError:
        raise CurveLogError(f"{path}: not a learning-curves log: not a UTF-8 text file") from None
    except csv.Error as e:
        raise CurveLogError(f"{path}: not a readable CSV file ({e})") from None
    if all(c in header for c in COLUMNS):
        return "online"
    if all(c in header for c in TRAIN_LOG_COLUMNS):
        return "offline"
    missing = [c for c in COLUMNS if c not in header]
    raise CurveLogError(
        f"{path}: not a learning-curves log: the header should have the columns "
        f"{','.join(COLUMNS)} (replaystore learn --log) or {','.join(TRAIN_LOG_COLUMNS)} "
        f"(replaystore train --log); missing {','.join(missing)} of the first")


def read_curves(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The curves of one online log (``learn --log``) as arrays: ``episode_step``,
    ``episode_return``, ``eval_step``, ``eval_return``, ``eval_gap`` (NaN where unknown),
    ``td_step``, ``td``."""
    path = Path(path)
    if not path.is_file():
        raise CurveLogNotFoundError(f"{path}: no such learning-curves log (a CSV written by "
                                    "replaystore learn --log)")
    cols: dict[str, list[float]] = {k: [] for k in ("episode_step", "episode_return", "eval_step",
                                                    "eval_return", "eval_gap", "td_step", "td")}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise CurveLogError(
                    f"{path}: not a learning-curves log (replaystore learn --log): the header "
                    f"should have the columns {','.join(COLUMNS)}; missing {','.join(missing)}")
            for row in reader:
                line = reader.line_num
                kind = (row.get("kind") or "").strip()
                if kind not in _KINDS:
                    raise CurveLogError(f"{path}: line {line}: kind should be one of "
                                        f"episode, eval, td; got {kind!r}")
                step = _num(path, line, row, "step")
                if step < 0 or step != int(step):
                    raise CurveLogError(f"{path}: line {line}: step should be a whole number "
                                        f">= 0, got {row['step']!r}")
                if kind == "episode":
                    cols["episode_step"].append(step)
                    cols["episode_return"].append(_num(path, line, row, "return"))
                elif kind == "eval":
                    cols["eval_step"].append(step)
                    cols["eval_return"].append(_num(path, line, row, "mean_return"))
                    cols["eval_gap"].append(_num(path, line, row, "gap", required=False))
                else:
                    cols["td_step"].append(step)
                    cols["td"].append(_num(path, line, row, "td", required=False, finite=False))
    except UnicodeDecodeError:
        raise CurveLogError(f"{path}: not a learning-curves log: not a UTF-8 text file") from None
    except csv.Error as e:
        raise CurveLogError(f"{path}: not a readable CSV file ({e})") from None
    if not cols["episode_step"] and not cols["eval_step"] and not cols["td_step"]:
        raise CurveLogError(f"{path}: the learning-curves log has no rows to draw (no episode "
                            "ended yet)")
    return {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def plot_curves(csv_paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
                out: str | os.PathLike[str], *, labels: Sequence[str] | None = None,
                smooth: int | None = None, title: str | None = None) -> Any:
    """Draw the logs ``csv_paths`` (one run each, all of one kind: ``learn --log`` or
    ``train --log``, told by the header) into the picture ``out`` (``.png`` or ``.svg``);
    return the matplotlib ``Figure`` (9 inches wide, 2.8 per panel + 0.6 high).
    ``smooth``: episodes in the moving average of an online log (default: about a tenth
    of the episodes, 1 to 100); ``labels``: one legend name per log (default: the file
    names)."""
    paths = [csv_paths] if isinstance(csv_paths, (str, os.PathLike)) else list(csv_paths)
    if not paths:
        raise CurveLogError(f"no learning-curves log given ({_WHAT})")
    if labels is not None and len(labels) != len(paths):
        raise CurveLogError(f"labels: {len(labels)} given for {len(paths)} log(s); give one per log")
    if smooth is not None and smooth < 1:
        raise CurveLogError(f"smooth: the moving average needs a window of at least 1 episode, "
                            f"got {smooth}")
    out_format(out)
    kinds = [log_kind(p) for p in paths]
    names = list(labels) if labels is not None else [Path(p).stem for p in paths]
    if len(set(kinds)) > 1:
        raise CurveLogError(f"{paths[kinds.index('offline')]}: a train --log CSV cannot be drawn "
                            f"with the learn --log CSV {paths[kinds.index('online')]} (different "
                            "x axes: updates and env steps); draw them separately")
    if kinds[0] == "offline":
        return plot_train_log(paths, out, labels=names, title=title)
    runs = [read_curves(p) for p in paths]
    panels = [k for k, key in (("episode", "episode_step"), ("eval", "eval_step"), ("td", "td_step"))
              if any(len(r[key]) for r in runs)]
    fig = new_figure(9, 2.8 * len(panels) + 0.6)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    ax = dict(zip(panels, axes, strict=True))
    many = len(runs) > 1
    gap_ax = None
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        color = f"C{i % 10}"
        if len(run["episode_step"]):
            w = smooth or max(1, min(100, len(run["episode_step"]) // 10))
            a = ax["episode"]
            a.scatter(run["episode_step"], run["episode_return"], s=6, color=color, alpha=0.35,
                      linewidths=0)
            a.plot(run["episode_step"], _moving_average(run["episode_return"], w), color=color,
                   label=f"{name} (mean of {w} episodes)" if many else f"mean of {w} episodes")
        if len(run["eval_step"]):
            a = ax["eval"]
            a.plot(run["eval_step"], run["eval_return"], "o-", color=color, markersize=3,
                   label=name if many else "greedy mean return")
            gap = run["eval_gap"]
            if np.isfinite(gap).any():
                if gap_ax is None:
                    gap_ax = a.twinx()
                    gap_ax.set_yscale("symlog", linthresh=0.1)
                    gap_ax.set_ylabel("gap to optimal, % (dashed)")
                known = np.isfinite(gap)
                gap_ax.plot(run["eval_step"][known], 100 * np.maximum(gap[known], 0.0), "s--",
                            color=color, markersize=3, alpha=0.8)
        if len(run["td_step"]):
            keep = np.isfinite(run["td"]) & (run["td"] > 0)
            ax["td"].plot(run["td_step"][keep], run["td"][keep], color=color,
                          label=name if many else "mean update magnitude")
    ylabels = {"episode": "episode return", "eval": "eval mean return", "td": "TD / update size"}
    for k, a in ax.items():
        a.set_ylabel(ylabels[k])
        a.grid(True, alpha=0.3)
        if k == "td":
            a.set_yscale("log")
        if k == panels[0] or not many:
            a.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("env steps")
    if title:
        fig.suptitle(title)
    save_figure(fig, out)
    return fig

"""Learning curves of an offline run: the CSV ``replaystore train --log`` writes (one row
per sweep, or per ``--log-every`` minibatch updates; columns :data:`TRAIN_LOG_COLUMNS`).

Two panels share the x axis (updates): the greedy policy's evaluations (mean undiscounted
return, and the success rate dashed on a second axis), drawn when the log has any, and
``max |dQ|`` of each update with, in sweep mode, the bound on the Q-table's remaining
error ``max |dQ| * gamma / (1 - gamma)`` (dashed; training stops when it is small), log scale.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "m.csv").write_text(",".join(TRAIN_LOG_COLUMNS) + "\\n"
...                              "1,100,1,0.5,9.5,0.01,,,\\n2,200,2,0.1,1.9,0.02,0.7,0.7,12\\n")
>>> log = read_train_log(d / "m.csv")
>>> log["update"].tolist(), log["mean_return"].tolist()[1], log["sweeps"]
([1.0, 2.0], 0.7, True)
>>> len(plot_train_log([d / "m.csv"], d / "m.png").axes)  # eval, its twin, max |dQ|
3
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
from .common import new_figure, out_format, save_figure

__all__ = ["TRAIN_LOG_COLUMNS", "read_train_log", "plot_train_log"]

#: the columns of ``replaystore train --log`` (read by name; more columns are ignored)
TRAIN_LOG_COLUMNS = ("update", "transitions", "sweep", "max_dq", "bound", "seconds", "mean_return",
                     "success_rate", "mean_length")
_NUMBERS = ("update", "transitions", "sweep", "max_dq", "bound", "seconds", "mean_return",
            "success_rate", "mean_length")
_REQUIRED = ("update", "max_dq")


def read_train_log(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The columns of one ``train --log`` CSV as float arrays (NaN where a cell is empty),
    and ``sweeps``: whether every row is a full sweep (its ``sweep`` cell is filled)."""
    path = Path(path)
    if not path.is_file():
        raise CurveLogNotFoundError(f"{path}: no such training log (a CSV written by "
                                    "replaystore train --log)")
    cols: dict[str, list[float]] = {c: [] for c in _NUMBERS}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in TRAIN_LOG_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise CurveLogError(f"{path}: not a training log (replaystore train --log): the "
                                    f"header should have the columns {','.join(TRAIN_LOG_COLUMNS)}; "
                                    f"missing {','.join(missing)}")
            for row in reader:
                for c in _NUMBERS:
                    text = (row.get(c) or "").strip()
                    if not text:
                        if c in _REQUIRED:
                            raise CurveLogError(f"{path}: line {reader.line_num}: column {c!r} "
                                                "should be a number, got an empty cell")
                        cols[c].append(math.nan)
                        continue
                    try:
                        cols[c].append(float(text))
                    except ValueError:
                        raise CurveLogError(f"{path}: line {reader.line_num}: column {c!r} should "
                                            f"be a number or empty, got {text!r}") from None
                u = cols["update"][-1]
                if not math.isfinite(u) or u < 0 or u != int(u):
                    raise CurveLogError(f"{path}: line {reader.line_num}: update should be a "
                                        f"whole number >= 0, got {row['update']!r}")
    except UnicodeDecodeError:
        raise CurveLogError(f"{path}: not a training log: not a UTF-8 text file") from None
    except csv.Error as e:
        raise CurveLogError(f"{path}: not a readable CSV file ({e})") from None
    if not cols["update"]:
        raise CurveLogError(f"{path}: the training log has no rows to draw (no update logged yet)")
    out: dict[str, Any] = {c: np.asarray(v, dtype=np.float64) for c, v in cols.items()}
    out["sweeps"] = bool(np.isfinite(out["sweep"]).all())
    return out


def plot_train_log(csv_paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                   labels: Sequence[str] | None = None, title: str | None = None) -> Any:
    """Draw the ``train --log`` CSVs ``csv_paths`` (one run each) into the picture ``out``
    (``.png`` or ``.svg``); return the ``Figure`` (9 inches wide, 2.8 per panel + 0.6 high)."""
    out_format(out)
    paths = list(csv_paths)
    runs = [read_train_log(p) for p in paths]
    names = list(labels) if labels is not None else [Path(p).stem for p in paths]
    many = len(runs) > 1
    has_eval = any(np.isfinite(r["mean_return"]).any() for r in runs)
    n = 2 if has_eval else 1
    fig = new_figure(9, 2.8 * n + 0.6)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    ev_ax, dq_ax = (axes[0], axes[1]) if has_eval else (None, axes[0])
    rate_ax = None
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        color = f"C{i % 10}"
        x = run["update"]
        known = np.isfinite(run["mean_return"])
        if ev_ax is not None and known.any():
            ev_ax.plot(x[known], run["mean_return"][known], "o-", color=color, markersize=3,
                       label=name if many else "mean return (undiscounted)")
            rate = np.isfinite(run["success_rate"]) & known
            if rate.any():
                if rate_ax is None:
                    rate_ax = ev_ax.twinx()
                    rate_ax.set_ylabel("success rate, % (dashed)")
                    rate_ax.set_ylim(-5, 105)
                rate_ax.plot(x[rate], 100 * run["success_rate"][rate], "s--", color=color,
                             markersize=3, alpha=0.7, label=f"{name}: success rate" if many else
                             "success rate, % (right axis)")
        dq = run["max_dq"]
        keep = np.isfinite(dq) & (dq > 0)
        dq_ax.plot(x[keep], dq[keep], color=color, label=f"{name}: max |ΔQ|" if many else
                   "max |ΔQ| of the update")
        bound = run["bound"]
        keep = np.isfinite(bound) & (bound > 0)
        if keep.any():
            dq_ax.plot(x[keep], bound[keep], "--", color=color, alpha=0.7,
                       label=f"{name}: bound" if many else "bound on Q error, max |ΔQ|·γ/(1−γ)")
    if ev_ax is not None:
        ev_ax.set_ylabel("greedy policy\nmean return")
        lo, hi = ev_ax.get_ylim()
        if rate_ax is not None and lo >= -0.1 and hi <= 1.1:  # returns in [0, 1]: one scale
            ev_ax.set_ylim(-0.05, 1.05)
        ev_ax.grid(True, alpha=0.3)
        handles = ev_ax.get_legend_handles_labels()
        if rate_ax is not None:
            more = rate_ax.get_legend_handles_labels()
            handles = (handles[0] + more[0], handles[1] + more[1])
        ev_ax.legend(*handles, loc="best", fontsize="small")
    dq_ax.set_yscale("log")
    dq_ax.set_ylabel("max |ΔQ| (log)")
    dq_ax.grid(True, alpha=0.3)
    dq_ax.legend(loc="best", fontsize="small")
    sweeps = all(r["sweeps"] for r in runs)
    dq_ax.set_xlabel("updates (full sweeps over the store)" if sweeps else "updates (minibatches)")
    fig.suptitle(title or ("offline training: " + ", ".join(names)))
    save_figure(fig, out)
    return fig

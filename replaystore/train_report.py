"""What an offline training run reports: :class:`TrainResult`, :class:`TrainReport` (what
``replaystore train`` prints), :class:`TrainInterrupted` (Ctrl-C) and the metrics CSV
(:class:`TrainLog`, ``replaystore train --log``).

The CSV has one row per sweep in sweep mode, one row per ``log_every`` minibatch updates (and at every
evaluation and at the end) in minibatch mode, with the columns :data:`COLUMNS`:

``update``        updates done so far (in sweep mode every update is one sweep)
``transitions``   transitions replayed so far
``sweep``         the sweep number (empty in minibatch mode)
``max_dq``        the largest ``|Delta Q|`` of that update
``bound``         ``max_dq * gamma / (1 - gamma)``, the bound on the Q-table's remaining
                  error that sweep mode stops on (empty in minibatch mode: no such bound)
``seconds``       since training started
``mean_return``, ``success_rate``, ``mean_length``
                  the evaluation at that update (empty when the row has none)

Every row is flushed as it is written, so the file can be read (or plotted) while
training runs, and it holds every row up to an interruption.

>>> import tempfile, pathlib, csv
>>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
>>> with TrainLog.open(path) as log:
...     log.write(update=1, transitions=10, sweep=1, max_dq=0.5, bound=4.5, seconds=0.1)
>>> row = next(csv.DictReader(path.open()))
>>> row["sweep"], row["bound"], row["mean_return"]
('1', '4.5', '')
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .agents import QLearningAgent

__all__ = ["COLUMNS", "EVAL_COLUMNS", "TrainLog", "TrainResult", "TrainReport", "TrainInterrupted",
           "count_rows", "SHOWN_EVALUATIONS"]

#: the columns of the CSV, in order (``replaystore plot`` reads them by name)
COLUMNS = ("update", "transitions", "sweep", "max_dq", "bound", "seconds", "mean_return",
           "success_rate", "mean_length")
#: the columns filled from an evaluation
EVAL_COLUMNS = ("mean_return", "success_rate", "mean_length")


class TrainLog:
    """A metrics CSV at ``path`` (created or replaced), its header written at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self.f = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self.w = csv.DictWriter(self.f, fieldnames=COLUMNS)
        self.w.writeheader()
        self.f.flush()
        #: rows written so far, and the update of the last one (``None``: none yet)
        self.rows = 0
        self.last_update: int | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | os.PathLike[str] | None) -> Iterator[TrainLog | None]:
        """A log at ``path`` for the block (``None``: no log); closed however the block ends."""
        log = cls(path) if path else None
        try:
            yield log
        finally:
            if log is not None:
                log.f.close()

    def write(self, *, update: int, transitions: int, sweep: int | None, max_dq: float,
              bound: float | None, seconds: float,
              evaluation: Mapping[str, Any] | None = None) -> None:
        """One row (``None`` and a missing evaluation leave their cells empty), flushed."""
        row: dict[str, Any] = {"update": update, "transitions": transitions,
                               "sweep": "" if sweep is None else sweep, "max_dq": max_dq,
                               "bound": "" if bound is None else bound, "seconds": round(seconds, 6)}
        if evaluation:
            row.update({k: evaluation[k] for k in EVAL_COLUMNS})
        self.w.writerow(row)
        self.f.flush()
        self.rows += 1
        self.last_update = update


#: evaluations ``TrainReport.lines`` lists one by one; more are summarised (all are in the log)
SHOWN_EVALUATIONS = 10


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
    #: the run was stopped by Ctrl-C (KeyboardInterrupt) after ``updates`` updates
    interrupted: bool = False

    @property
    def transitions_per_second(self) -> float:
        return self.transitions / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict:
        return {**asdict(self), "transitions_per_second": self.transitions_per_second}


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a training run; ``result`` is what it did until then (and, from
    :func:`train_store`, ``report`` says where the agent trained so far was saved).

    It is a :class:`KeyboardInterrupt`, so code that does not catch it stops as usual.
    """

    def __init__(self, result: TrainResult) -> None:
        super().__init__(f"interrupted after {result.updates} updates")
        self.result = result
        self.report: TrainReport | None = None

    def line(self) -> str:
        """What ``replaystore train`` prints."""
        out = None if self.report is None else self.report.out
        saved = ("saved the agent trained so far to " + out) if out else "nothing was saved"
        return f"interrupted after {self.result.updates:,} updates: {saved}"


@dataclass
class TrainReport:
    """What :func:`train_store` did: the run, the trained agent and where it was saved."""

    path: str
    out: str | None
    mode: str
    result: TrainResult
    agent: QLearningAgent
    log: str | None = None
    log_rows: int = 0

    def lines(self) -> list[str]:
        """The report ``replaystore train`` prints: the run, every evaluation (or, past
        :data:`SHOWN_EVALUATIONS`, the last few and where the others are), the files."""
        res = self.result
        unit = "sweeps" if self.mode == "sweeps" else "updates"
        lines = [f"{res.updates:,} {unit} ({res.transitions:,} transitions, "
                 f"{res.transitions_per_second:,.0f}/s): {res.stop_reason}"]
        evs = res.evaluations
        shown = evs if len(evs) <= SHOWN_EVALUATIONS else evs[-5:]
        if evs:
            where = f" (every one is in {self.log})" if self.log else " (--log FILE keeps every one)"
            lines.append(f"{len(evs)} evaluations of the greedy policy" if shown is evs else
                         f"the last {len(shown)} of {len(evs)} evaluations{where}")
        lines += [f"  update {ev['update']:>8,}: mean return {ev['mean_return']:.3f}, "
                  f"success {ev['success_rate']:.2%}, mean length {ev['mean_length']:.1f}"
                  for ev in shown]
        if self.log is not None:
            lines.append(f"wrote {self.log_rows:,} rows of metrics to {self.log}")
        if self.out is not None:
            q = getattr(self.agent, "q", None)
            what = (f"Q-table {q.shape[0]}x{q.shape[1]}, visit counts, hyperparameters" if isinstance(q, np.ndarray)
                    else f"{type(self.agent).__name__}: networks, optimizer, settings")
            lines.append(f"saved the agent ({what}) to {self.out}")
        return lines


def count_rows(log_csv: str | os.PathLike[str] | None) -> int:
    """Data rows of the metrics CSV just written (0 without one)."""
    if log_csv is None:
        return 0
    with open(log_csv, encoding="utf-8") as f:
        return max(0, sum(1 for _ in f) - 1)

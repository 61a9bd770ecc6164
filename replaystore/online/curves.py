"""Learning curves of an online run, and their CSV log.

Three kinds of rows, told apart by the ``kind`` column:

* ``episode``: an episode ended at env step ``step`` with ``return`` and ``length``;
* ``eval``: the greedy policy was evaluated at ``step``: ``mean_return``,
  ``success_rate`` and the exact relative ``gap`` to the optimal value (empty when the
  environment has no transition table);
* ``td``: ``updates`` updates ran in the window ending at ``step``; ``td`` is the mean of
  what ``agent.update`` returned (for Q-learning the largest ``|Delta Q|`` of a batch,
  for a deep agent its loss).

The log is rewritten from the run state when a run resumes (so rows after the last commit
of a killed run never appear twice) and appended to afterwards.

>>> import tempfile, pathlib
>>> c = Curves()
>>> c.episodes.append((12, -3.0, 12)); c.td.append({"step": 20, "td": 0.5, "updates": 10})
>>> path = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
>>> log = CurveLog(path, c); log.close()
>>> path.read_text().splitlines()[1].split(",")[:4]
['episode', '12', '-3.0', '12']
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Curves", "CurveLog", "COLUMNS"]

COLUMNS = ("kind", "step", "return", "length", "mean_return", "success_rate", "gap", "td", "updates")


@dataclass
class Curves:
    """Episodes ``(step, return, length)``, evaluations and TD windows (dicts)."""

    episodes: list[tuple[int, float, int]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    td: list[dict[str, Any]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        """For the run state: episodes as arrays (compact), the rest as JSON."""
        ep = self.episodes
        return {"episode_step": np.array([e[0] for e in ep], np.int64),
                "episode_return": np.array([e[1] for e in ep], np.float64),
                "episode_length": np.array([e[2] for e in ep], np.int64),
                "evaluations": list(self.evaluations), "td": list(self.td)}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Curves:
        eps = list(zip(np.asarray(s["episode_step"]).tolist(), np.asarray(s["episode_return"]).tolist(),
                       np.asarray(s["episode_length"]).tolist(), strict=True))
        return cls(eps, list(s["evaluations"]), list(s["td"]))

    def rows(self, ep_from: int = 0, ev_from: int = 0, td_from: int = 0) -> list[dict[str, Any]]:
        """CSV rows of the curves from these positions on, in step order (at one step:
        episode, then td, then eval; the order a run writes them)."""
        out = [(s, 0, {"kind": "episode", "step": s, "return": r, "length": n})
               for s, r, n in self.episodes[ep_from:]]
        out += [(t["step"], 1, {"kind": "td", "step": t["step"], "td": t["td"], "updates": t["updates"]})
                for t in self.td[td_from:]]
        out += [(e["step"], 2, {"kind": "eval", "step": e["step"], "mean_return": e["mean_return"],
                                "success_rate": e["success_rate"],
                                "gap": "" if e.get("gap") is None else e["gap"]})
                for e in self.evaluations[ev_from:]]
        out.sort(key=lambda x: (x[0], x[1]))
        return [r for _, _, r in out]


class CurveLog:
    """A CSV file holding exactly the rows of ``curves`` (rewritten atomically when
    opened), then appended to with :meth:`write_new`; :meth:`sync` makes it durable."""

    def __init__(self, path: str | os.PathLike[str], curves: Curves) -> None:
        self.path = Path(path)
        self.curves = curves
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(curves.rows())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.f = open(self.path, "a", newline="")  # noqa: SIM115
        self.w = csv.DictWriter(self.f, fieldnames=COLUMNS)
        self._mark()

    def _mark(self) -> None:
        c = self.curves
        self._at = (len(c.episodes), len(c.evaluations), len(c.td))

    def write_new(self) -> None:
        """Append the rows added to the curves since the last call."""
        rows = self.curves.rows(*self._at)
        if rows:
            self.w.writerows(rows)
        self._mark()

    def sync(self) -> None:
        self.write_new()
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        if not self.f.closed:
            self.write_new()
            self.f.close()

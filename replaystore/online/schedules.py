"""Schedules: a value (e.g. the exploration rate) as a function of the step of a run.

A schedule holds no state: its value at ``step`` depends only on ``step`` and the run's
length, so a resumed run continues on the same curve, and it describes itself as JSON
(:meth:`LinearSchedule.to_dict`) so a resumed run can check it is the same schedule.

>>> eps = LinearSchedule(1.0, 0.05, fraction=0.5)
>>> [round(eps.value(t, 1000), 3) for t in (0, 250, 500, 900)]
[1.0, 0.525, 0.05, 0.05]
>>> LinearSchedule.from_dict(eps.to_dict()) == eps
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AgentConfigError

__all__ = ["LinearSchedule", "as_schedule"]


@dataclass(frozen=True)
class LinearSchedule:
    """From ``start`` to ``end`` linearly over the first ``steps`` steps (or the first
    ``fraction`` of the run when ``steps`` is None), then ``end``.

    >>> LinearSchedule(0.5, 0.1, steps=4).values(0, 6, total=100).round(3).tolist()
    [0.5, 0.4, 0.3, 0.2, 0.1, 0.1]
    """

    start: float
    end: float
    fraction: float = 1.0
    steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end", "fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise AgentConfigError(f"LinearSchedule {name} must be a finite number, got {v!r}")
        if not 0.0 <= self.fraction <= 1.0:
            raise AgentConfigError(f"LinearSchedule fraction must be in [0, 1], got {self.fraction!r}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int)
                                       or self.steps < 0):
            raise AgentConfigError(f"LinearSchedule steps must be a non-negative int or None, "
                                   f"got {self.steps!r}")
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))
        object.__setattr__(self, "fraction", float(self.fraction))

    def decay_steps(self, total: int) -> int:
        """Steps the decay lasts in a run of ``total`` steps (at least 1)."""
        n = self.steps if self.steps is not None else int(self.fraction * total)
        return max(1, int(n))

    def value(self, step: int, total: int) -> float:
        """The value at ``step`` (0-based) of a run of ``total`` steps."""
        t = min(1.0, step / self.decay_steps(total))
        return (1.0 - t) * self.start + t * self.end

    def values(self, first: int, stop: int, *, total: int) -> np.ndarray:
        """Values at steps ``first .. stop-1``, as one float64 array."""
        t = np.minimum(1.0, np.arange(first, stop, dtype=np.float64) / self.decay_steps(total))
        return (1.0 - t) * self.start + t * self.end

    def to_dict(self) -> dict[str, Any]:
        """JSON description; :meth:`from_dict` reads it back."""
        return {"kind": "linear", "start": self.start, "end": self.end,
                "fraction": self.fraction, "steps": self.steps}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearSchedule:
        if d.get("kind") != "linear":
            raise AgentConfigError(f"not a linear schedule description: {d!r}")
        return cls(d["start"], d["end"], fraction=d["fraction"], steps=d["steps"])


def as_schedule(value: LinearSchedule | float) -> LinearSchedule:
    """A schedule, or a number as the constant schedule of that value.

    >>> as_schedule(0.1).value(10, 100)
    0.1
    """
    if isinstance(value, LinearSchedule):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AgentConfigError(f"expected a LinearSchedule or a number, got {value!r}")
    return LinearSchedule(float(value), float(value))

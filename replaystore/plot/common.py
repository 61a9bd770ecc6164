"""What every picture shares: a matplotlib ``Figure`` made lazily (no pyplot, Agg only),
and writing it atomically as PNG or SVG, chosen by the file name.

Pictures have a fixed size in inches and are written at :data:`DPI` dots per inch with no
tight cropping, so a ``w x h`` inch figure is exactly ``100*w x 100*h`` pixels as a PNG.

>>> out_format("curves.png"), out_format("policy.SVG")
('png', 'svg')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import MissingExtraError, PlotError

__all__ = ["DPI", "FORMATS", "new_figure", "out_format", "save_figure", "ACTION_NAMES",
           "missing_matplotlib", "EXTRA_HINT"]

#: dots per inch of every PNG (a 9 x 6 inch figure is 900 x 600 pixels)
DPI = 100
#: what :func:`save_figure` writes, by file suffix
FORMATS = ("png", "svg")

#: names of the actions of the grid worlds, by gymnasium env class
ACTION_NAMES = {
    "FrozenLakeEnv": ("left", "down", "right", "up"),
    "CliffWalkingEnv": ("up", "right", "down", "left"),
    "TaxiEnv": ("south", "north", "east", "west", "pickup", "dropoff"),
}


def out_format(out: str | os.PathLike[str]) -> str:
    """``"png"`` or ``"svg"`` from the suffix of ``out``; :class:`PlotError` otherwise."""
    fmt = Path(out).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise PlotError(f"{out}: a picture is written as .png or .svg (from the file name); "
                        f"got {Path(out).suffix or 'no suffix'!r}")
    return fmt


#: how to get matplotlib
EXTRA_HINT = "pip install 'replaystore[plot]'"


def missing_matplotlib() -> str | None:
    """Why pictures cannot be drawn here (matplotlib cannot be imported), or ``None``."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError as e:
        return f"matplotlib is not installed ({e}): {EXTRA_HINT}"
    return None


def new_figure(width: float, height: float) -> Any:
    """A bare matplotlib ``Figure`` of ``width`` x ``height`` inches (constrained layout);
    :class:`MissingExtraError` naming the ``plot`` extra when matplotlib is missing."""
    try:
        # a bare Figure (no pyplot) renders with Agg: no window, no global backend change
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtraError(f"drawing pictures needs matplotlib, which is not installed "
                                f"({e}): {EXTRA_HINT}") from None
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Any, out: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``out`` (PNG or SVG by suffix) atomically: a reader never sees a
    half-written picture, and a failed write leaves no file behind."""
    out = Path(out)
    fmt = out_format(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format=fmt, dpi=DPI)
        os.replace(tmp, out)
    except OSError as e:  # name the picture, not the temporary file
        raise type(e)(e.errno, e.strerror, str(out)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return out

"""The ``replaystore`` command line: a thin layer over the library.

Each command parses its arguments, makes one library call and prints what it returns.
Errors from replaystore (and bad files or arguments) become a one-line message and exit
code 1. Only this package imports click: long jobs get a :class:`ClickProgress` (a
click progress bar on stderr) as their ``progress=``. One module per stage of the flow:
``collect``, ``inspect`` (info, head, episodes, sample, verify), ``train`` (train,
evaluate, learn), ``plot``, ``share`` (pack, unpack, export, import, merge), ``sweep``
(training runs on Dask), ``demo``.
"""

from __future__ import annotations

from . import collect, demo, inspect, plot, share, sweep, train  # noqa: F401  (they register the commands)
from .common import ClickProgress, main

__all__ = ["main", "ClickProgress"]

"""Pictures (needs the ``plot`` extra: ``pip install 'replaystore[plot]'``), as PNG or SVG.

What :func:`plot` draws depends on its source (:func:`source_kind`):

* a training log CSV (``learn --log`` or ``train --log``, told by its header): learning
  curves (:func:`plot_curves`; several logs are several runs on the same axes);
* a store (a directory, a ``.zip`` or a URL): the histograms of episode returns and
  lengths and the class balance of a discrete field (:func:`plot_store`);
* a saved agent, with the env to draw it on: the greedy policy as arrows over a heat map
  of the state values on a grid world (:func:`plot_policy`).

matplotlib is imported only when a picture is drawn (a bare ``Figure``, Agg; no pyplot).

>>> import tempfile, pathlib
>>> from replaystore.collect import collect
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = collect("FrozenLake-v1", d / "fl.zarr", steps=500, env_kwargs={"is_slippery": False})
>>> source_kind(d / "fl.zarr"), source_kind("run.csv"), source_kind("q.npz")
('store', 'log', 'agent')
>>> _ = plot(d / "fl.zarr", d / "data.svg", by="action")
>>> (d / "data.svg").read_text()[:5]
'<?xml'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import NotAStoreError, PlotError
from .common import DPI, EXTRA_HINT, FORMATS, missing_matplotlib, out_format, save_figure
from .curves import log_kind, plot_curves, read_curves
from .data import class_counts, plot_store
from .policy import GRID_ENVS, TAXI_LOCATIONS, plot_policy
from .trainlog import TRAIN_LOG_COLUMNS, plot_train_log, read_train_log

__all__ = ["plot", "source_kind", "plot_curves", "read_curves", "log_kind", "plot_train_log",
           "read_train_log", "TRAIN_LOG_COLUMNS", "plot_store", "class_counts", "plot_policy",
           "GRID_ENVS", "TAXI_LOCATIONS", "DPI", "FORMATS", "out_format", "save_figure",
           "missing_matplotlib", "EXTRA_HINT"]

_SOURCES = "a store (directory, .zip or URL), a training log (.csv) or a saved agent (.npz)"


def source_kind(source: str | os.PathLike[str]) -> str:
    """``"store"`` (a URL, a directory or a ``.zip``), ``"log"`` (a ``.csv``) or ``"agent"``
    (anything else: read by :meth:`QLearningAgent.load`). Only the name and whether it is
    a directory are looked at."""
    text = str(source)
    if "://" in text or Path(text).is_dir() or text.lower().endswith(".zip"):
        return "store"
    if text.lower().endswith(".csv"):
        return "log"
    return "agent"


def plot(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
         out: str | os.PathLike[str], *, by: str | None = None, env: str | None = None,
         env_kwargs: Mapping[str, Any] | None = None, labels: Sequence[str] | None = None,
         smooth: int | None = None, passenger: int = 0, destination: int = 1,
         title: str | None = None) -> Any:
    """Draw ``sources`` into the picture ``out`` (``.png`` or ``.svg``) by their kind (see
    the module docstring) and return the matplotlib ``Figure``. ``by``: the store's field
    of the class balance (default ``action``); ``env``/``env_kwargs``: the env a saved
    agent is drawn on (required for an agent; you give the id, so it is made as given);
    ``labels``/``smooth``: for logs; ``passenger``/``destination``: Taxi's locations."""
    paths = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not paths:
        raise PlotError(f"nothing to draw: give {_SOURCES}")
    out_format(out)
    kinds = [source_kind(p) for p in paths]
    if len(paths) > 1 and set(kinds) != {"log"}:
        raise PlotError(f"{len(paths)} sources given: only training logs (.csv) can be drawn "
                        f"together; draw a store or an agent on its own")
    kind = kinds[0]
    _only(by is not None, "by", "--by", "a store", kind == "store", paths[0])
    _only(env is not None or env_kwargs is not None, "env", "--env", "a saved agent",
          kind == "agent", paths[0])
    _only(labels is not None or smooth is not None, "labels/smooth", "--label/--smooth",
          "training logs", kind == "log", paths[0])
    if kind == "log":
        return plot_curves(paths, out, labels=labels, smooth=smooth, title=title)
    if kind == "store":
        return plot_store(paths[0], out, by=by or "action", title=title)
    return _plot_agent(paths[0], env, env_kwargs, out, passenger, destination, title)


def _only(given: bool, name: str, option: str, what: str, fits: bool, source: Any) -> None:
    if given and not fits:
        raise PlotError(f"{source}: {name}= applies to {what} only ({source} is a "
                        f"{source_kind(source)})",
                        cli=f"{source}: {option} applies to {what} only ({source} is a "
                            f"{source_kind(source)})")


def _plot_agent(path: str | os.PathLike[str], env_id: str | None,
                env_kwargs: Mapping[str, Any] | None, out: str | os.PathLike[str], passenger: int,
                destination: int, title: str | None) -> Any:
    from ..agents import QLearningAgent
    from ..envs import make_env

    if not Path(path).exists():
        raise NotAStoreError(f"{path}: no such file or directory (expected {_SOURCES})")
    if not env_id:
        raise PlotError(f"{path}: a saved agent is drawn on a grid-world env: pass env= "
                        "(e.g. 'FrozenLake-v1', 'CliffWalking-v1', 'Taxi-v4')",
                        cli=f"{path}: a saved agent is drawn on a grid-world env: pass --env "
                            "(e.g. --env FrozenLake-v1, CliffWalking-v1, Taxi-v4)")
    agent = QLearningAgent.load(path)
    env = make_env(env_id, env_kwargs)
    try:
        return plot_policy(agent, env, out, passenger=passenger, destination=destination,
                           title=title)
    except PlotError as e:
        raise PlotError(f"{path}: {e}") from None
    finally:
        env.close()

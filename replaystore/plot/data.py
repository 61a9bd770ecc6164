"""A picture of a store's data: what its episodes returned, how long they were, and how
balanced its classes are (actions, or any discrete field).

Three panels side by side: the histogram of episode returns (undiscounted; one bar per
value when there are few distinct values, as in sparse-reward tasks), the histogram of
episode lengths, and the count of rows per class of ``by`` (default ``action``) with its
share in %, against a dashed line at the uniform share. Only complete episodes are counted
in the first two (a ring may have evicted the start of the oldest one).

>>> import tempfile, pathlib
>>> from replaystore.collect import collect
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = collect("FrozenLake-v1", d / "fl.zarr", steps=500, env_kwargs={"is_slippery": False})
>>> fig = plot_store(d / "fl.zarr", d / "data.png")
>>> [a.get_xlabel() for a in fig.axes]
['episode return (undiscounted)', 'episode length (steps)', 'action']
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import EmptyStoreError, PlotError
from ..storage import ReplayStore
from ..storage import open as open_store
from .common import ACTION_NAMES, new_figure, out_format, save_figure

__all__ = ["plot_store", "class_counts", "action_names"]

_BLOCK = 1 << 16
#: env-id stems (the part before ``-v``) of the grid worlds whose action names are known
_ENV_CLASSES = {"FrozenLake": "FrozenLakeEnv", "FrozenLake8x8": "FrozenLakeEnv",
                "CliffWalking": "CliffWalkingEnv", "Taxi": "TaxiEnv"}


def action_names(env_id: str | None) -> tuple[str, ...] | None:
    """Names of the actions of a known grid world by its env id (only the id's text is
    looked at: nothing is made or imported), else ``None``.

    >>> action_names("CliffWalking-v1")[:2], action_names("CartPole-v1")
    (('up', 'right'), None)
    """
    if not env_id:
        return None
    return ACTION_NAMES.get(_ENV_CLASSES.get(str(env_id).rsplit("-v", 1)[0], ""))


def class_counts(store: ReplayStore, by: str) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, counts)`` of the discrete field ``by`` over the store's rows (read a
    block at a time); :class:`PlotError` if ``by`` is not a scalar integer or bool field."""
    fields = {f.name: f for f in store.schema}
    discrete = [n for n, f in fields.items() if _discrete(f)]
    if by not in fields or not _discrete(fields[by]):
        what = "no such field" if by not in fields else (
            f"a {fields[by].dtype.name} field of shape {tuple(fields[by].shape)}")
        raise PlotError(f"{store.path}: by={by!r}: {what}; the class balance needs a discrete "
                        f"(integer or bool, one value per row) field: {', '.join(discrete)}",
                        cli=f"{store.path}: --by {by}: {what}; the class balance needs a discrete "
                            f"(integer or bool, one value per row) field: {', '.join(discrete)}")
    counts: dict[int, int] = {}
    for a in range(0, len(store), _BLOCK):
        values = store.read_range(a, min(len(store), a + _BLOCK), fields=[by])[by].reshape(-1)
        u, c = np.unique(values.astype(np.int64), return_counts=True)
        for k, n in zip(u.tolist(), c.tolist(), strict=True):
            counts[k] = counts.get(k, 0) + n
    classes = np.array(sorted(counts), dtype=np.int64)
    return classes, np.array([counts[k] for k in classes.tolist()], dtype=np.int64)


def _discrete(f: Any) -> bool:
    return (f.dtype.kind in "iub") and int(np.prod(f.shape, dtype=np.int64)) == 1


def _hist(ax: Any, values: np.ndarray, color: str, integer: bool) -> None:
    distinct = np.unique(values)
    step = np.min(np.diff(distinct)) if len(distinct) > 1 else 1.0
    if len(distinct) <= 12 and (distinct[-1] - distinct[0]) <= 24 * step:  # a few values on a grid
        counts = np.array([(values == v).sum() for v in distinct])
        width = 0.8 * step
        ax.bar(distinct, counts, width=width, color=color)
        for v, n in zip(distinct, counts, strict=True):
            ax.annotate(f"{n:,}", (v, n), ha="center", va="bottom", fontsize="small",
                        xytext=(0, 2), textcoords="offset points")
        ax.set_ylim(0, counts.max() * 1.12)
        ax.set_xticks(distinct, [f"{v:g}" for v in distinct])
    elif integer and distinct[-1] - distinct[0] <= 80:
        ax.hist(values, bins=np.arange(distinct[0], distinct[-1] + 2) - 0.5, color=color)
    else:
        ax.hist(values, bins=40, color=color)
    if len(distinct) > 12 or (distinct[-1] - distinct[0]) > 24 * step:
        ax.locator_params(axis="x", nbins=6)
    mean = float(values.mean())
    ax.axvline(mean, color="k", linestyle="--", linewidth=1, label=f"mean {mean:.3g}")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("episodes")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")


def _lengths(ax: Any, done: Any) -> None:
    """Stacked histogram of episode lengths: ended in a terminal state, or cut (time limit)."""
    length = done["length"].to_numpy(np.int64)
    cut = done["truncated"].to_numpy(bool)
    lo, hi = int(length.min()), int(length.max())
    bins = np.arange(lo, hi + 2) - 0.5 if hi - lo <= 80 else 40
    ax.hist([length[~cut], length[cut]], bins=bins, stacked=True, color=["C1", "0.6"],
            label=[f"terminated ({(~cut).sum():,})", f"truncated ({cut.sum():,})"])
    mean = float(length.mean())
    ax.axvline(mean, color="k", linestyle="--", linewidth=1, label=f"mean {mean:.3g}")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("episodes")
    ax.set_xlabel("episode length (steps)")
    ax.set_title("episode lengths, by how they ended")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def plot_store(source: str | os.PathLike[str] | ReplayStore, out: str | os.PathLike[str], *,
               by: str = "action", title: str | None = None) -> Any:
    """Draw the return and length histograms of the store ``source`` (a path or an open
    store) and its class balance by ``by`` into the picture ``out`` (``.png`` or ``.svg``);
    return the ``Figure`` (14 x 4.2 inches: 1400 x 420 pixels as a PNG)."""
    out_format(out)
    if isinstance(source, ReplayStore):
        return _draw(source, out, by, title)
    with open_store(source, mode="r") as store:
        return _draw(store, out, by, title)


def _draw(store: ReplayStore, out: str | os.PathLike[str], by: str, title: str | None) -> Any:
    if len(store) == 0:
        raise EmptyStoreError(f"{store.path}: the store holds no transitions: nothing to draw")
    classes, counts = class_counts(store, by)
    ep = store.episodes()
    done = ep[ep["complete"]] if ep["complete"].any() else ep
    env_id = store.env_info.get("id")
    fig = new_figure(14, 4.2)
    ret_ax, len_ax, bal_ax = fig.subplots(1, 3)
    _hist(ret_ax, done["return"].to_numpy(np.float64), "C0", integer=False)
    ret_ax.set_xlabel("episode return (undiscounted)")
    ret_ax.set_title(f"returns of {len(done):,} complete episodes")
    _lengths(len_ax, done)
    share = counts / counts.sum()
    names = action_names(env_id) if by == "action" else None
    ticks = [f"{names[c]}\n({c})" if names and 0 <= c < len(names) else str(c)
             for c in classes.tolist()]
    few = len(classes) <= 24  # one labelled bar per class; more: bars at the class values
    x = np.arange(len(classes)) if few else classes
    bal_ax.bar(x, counts, color="C2", width=0.8)
    if few:
        bal_ax.set_xticks(x, ticks, fontsize="small" if len(x) > 8 else None)
        for xi, n, s in zip(x, counts, share, strict=True):
            bal_ax.annotate(f"{s:.1%}", (xi, n), ha="center", va="bottom", fontsize="small",
                            xytext=(0, 2), textcoords="offset points")
    bal_ax.axhline(counts.sum() / len(counts), color="k", linestyle="--", linewidth=1,
                   label=f"uniform ({1 / len(counts):.1%} each)")
    bal_ax.set_ylim(0, counts.max() * 1.3)
    bal_ax.set_xlabel(by if few else f"{by} ({len(classes)} values seen)")
    bal_ax.set_ylabel("rows")
    bal_ax.set_title(f"class balance of {by!r} over {len(store):,} rows")
    bal_ax.legend(loc="upper right", fontsize="small")
    bal_ax.grid(True, axis="y", alpha=0.3)
    env = f"{env_id}" if env_id else "env not recorded"
    fig.suptitle(title or f"{store.path} ({env}): {len(store):,} transitions, {len(ep):,} episodes")
    save_figure(fig, out)
    return fig

"""Store rows and Minari episodes, one into the other (the mapping is in :mod:`.minari`).

:func:`scan_episodes` tells where each episode of a store lies; :class:`EpisodeCollector`
gathers the rows of chosen episodes from blocks read in store order and turns each one
into a minari ``EpisodeBuffer`` (:func:`episode_buffer`) once all its rows are in;
:func:`episode_rows` turns a Minari episode back into store rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import spaces as _spaces
from ..errors import InteropError

__all__: list[str] = []

#: the fields :func:`scan_episodes` reads
FLAGS = ["episode", "step", "terminated", "truncated"]


def scan_episodes(st: Any, step: int) -> pd.DataFrame:
    """One row per episode of the store (in order of first rows): first/last row, rows,
    first/last step, whether the last row ends it and how many rows end it."""
    n = len(st)
    parts = []
    for a in range(0, n, step):
        b = min(n, a + step)
        d = st.read_range(a, b, fields=FLAGS)
        df = pd.DataFrame({"episode": d["episode"], "row": np.arange(a, b, dtype=np.int64),
                           "step": d["step"], "done": d["terminated"] | d["truncated"]})
        g = df.groupby("episode", sort=False)
        parts.append(pd.DataFrame({
            "first_row": g["row"].first(), "last_row": g["row"].last(), "rows": g.size(),
            "first_step": g["step"].first(), "last_step": g["step"].last(),
            "last_done": g["done"].last(), "n_done": g["done"].sum(),
        }))
    if not parts:
        return pd.DataFrame(columns=["first_row", "last_row", "rows", "first_step", "last_step",
                                     "last_done", "n_done"])
    g = pd.concat(parts).groupby(level=0, sort=False)
    out = pd.DataFrame({
        "first_row": g["first_row"].first(), "last_row": g["last_row"].last(),
        "rows": g["rows"].sum(), "first_step": g["first_step"].first(),
        "last_step": g["last_step"].last(), "last_done": g["last_done"].last(),
        "n_done": g["n_done"].sum(),
    })
    return out.sort_values("first_row", kind="stable")


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise equality of two batches (NaN equals NaN)."""
    eq = a == b
    if a.dtype.kind in "fc":
        eq |= np.isnan(a) & np.isnan(b)
    return eq.reshape(len(a), -1).all(axis=1)


class EpisodeCollector:
    """Gathers the rows of the episodes ``good`` (rows of :func:`scan_episodes`, in export
    order) from blocks of fields ``names`` and hands out their episode buffers in that order.

    Episodes whose steps do not run 0..N-1 are left out (their ids in ``bad_steps``);
    ``mismatched`` counts rows whose ``next_obs`` is not the next row's ``obs``.
    """

    def __init__(self, good: pd.DataFrame, names: list[str], obs_space, act_space,
                 obs_leaves: list[str], act_leaves: list[str]) -> None:
        self.order = {int(e): k for k, e in enumerate(good.index)}
        self.need = {int(e): int(r) for e, r in zip(good.index, good["rows"], strict=True)}
        self.ids = np.fromiter(self.order, np.int64, len(self.order))
        self.names = names
        self.obs_space, self.act_space = obs_space, act_space
        self.obs_leaves, self.act_leaves = obs_leaves, act_leaves
        self.parts: dict[int, list[dict[str, np.ndarray]]] = {}
        self.got: dict[int, int] = {}
        self.ready: dict[int, Any] = {}
        self.next_k = 0
        self.bad_steps: list[int] = []
        self.mismatched = 0

    def add(self, d: dict[str, np.ndarray]) -> list:
        """Take one block of rows; return the buffers of the episodes now due, in order."""
        idx = np.flatnonzero(np.isin(d["episode"], self.ids))
        if len(idx):
            sub = d["episode"][idx]
            srt = np.argsort(sub, kind="stable")
            cuts = np.flatnonzero(np.diff(sub[srt])) + 1
            for grp in np.split(srt, cuts):
                rows = idx[grp]
                e = int(d["episode"][rows[0]])
                self.parts.setdefault(e, []).append({k: v[rows] for k, v in d.items()})
                self.got[e] = self.got.get(e, 0) + len(rows)
                if self.got[e] == self.need[e]:
                    self._finish(e)
        due = []
        while self.next_k in self.ready:
            buf = self.ready.pop(self.next_k)
            self.next_k += 1
            if buf is not None:
                due.append(buf)
        return due

    def _finish(self, e: int) -> None:
        chunks = self.parts.pop(e)
        ep = {k: np.concatenate([c[k] for c in chunks]) for k in self.names}
        buf, mism = episode_buffer(ep, self.obs_space, self.act_space, self.obs_leaves,
                                   self.act_leaves)
        if buf is None:
            self.bad_steps.append(e)
        else:
            self.mismatched += mism
        self.ready[self.order[e]] = buf


def episode_buffer(ep: dict[str, np.ndarray], obs_space, act_space, obs_leaves, act_leaves):
    """A minari EpisodeBuffer from an episode's rows, and how many rows' next_obs is not
    the next row's obs. ``(None, 0)`` when the steps do not run 0..N-1."""
    n = len(ep["reward"])
    if not np.array_equal(ep["step"], np.arange(n)):
        return None, 0
    obs = {}
    mismatch = np.zeros(max(n - 1, 0), bool)
    for name in obs_leaves:
        obs[name] = np.concatenate([ep[name], ep["next_" + name][-1:]])
        if n > 1:
            mismatch |= ~_same(ep["next_" + name][:-1], ep[name][1:])
    observations = _spaces.unflatten_value("obs", obs_space, obs, batched=True)
    actions = _spaces.unflatten_value("action", act_space, {k: ep[k] for k in act_leaves}, batched=True)
    from minari.data_collector import EpisodeBuffer

    buf = EpisodeBuffer(
        observations=observations, actions=actions, rewards=ep["reward"],
        terminations=ep["terminated"], truncations=ep["truncated"],
    )
    return buf, int(mismatch.sum())


def episode_rows(ep: Any, obs_space, act_space, src: Any) -> dict[str, np.ndarray]:
    """The store rows of the Minari episode ``ep`` of dataset ``src``."""
    n = len(ep.rewards)
    where = f"{src}: episode {ep.id}"
    try:
        obs = _spaces.flatten_value("obs", obs_space, ep.observations, batched=True)
        act = _spaces.flatten_value("action", act_space, ep.actions, batched=True)
    except ValueError as e:
        raise InteropError(f"{where}: {e}") from None
    for name, v in obs.items():
        if len(v) != n + 1:
            raise InteropError(f"{where}: {len(v)} observations ({name}) for {n} steps; a Minari "
                               "episode has one observation more than steps")
    for name, v in {**act, "terminations": ep.terminations, "truncations": ep.truncations}.items():
        if len(v) != n:
            raise InteropError(f"{where}: {len(v)} {name} for {n} rewards")
    rows: dict[str, np.ndarray] = {}
    for name, v in obs.items():
        rows[name] = v[:-1]
    rows.update(act)
    rows["reward"] = np.asarray(ep.rewards)
    for name, v in obs.items():
        rows["next_" + name] = v[1:]
    rows["terminated"] = np.asarray(ep.terminations)  # the store refuses anything but 0/1
    rows["truncated"] = np.asarray(ep.truncations)
    rows["episode"] = np.full(n, int(ep.id), np.int64)
    rows["step"] = np.arange(n, dtype=np.int64)
    return rows

"""Frame stacks read at sample time: each frame is stored once, a batch gets the last ``k``.

For a drawn row ``t`` (the sampler's distribution over ``t`` is unchanged) of episode
``e`` with step ``s``, the *stack* of ``t`` is the ``obs`` of the rows of episode ``e``
with steps ``s-k+1, ..., s`` (oldest first, so ``obs[:, -1]`` is row ``t``'s own frame).
A step before the episode's earliest stored row is replaced by that earliest frame:
the episode's first frame (step 0) is repeated, the Atari convention and gymnasium's
``FrameStackObservation(env, k, padding_type="reset")``. When a ring evicted the start
of the episode, its oldest frame still held is repeated (a stack never crosses into
another episode, nor reads a row being overwritten); a gap in ``step`` within an
episode counts as its start too. Episodes of vector envs interleave in the store: the
rows of an episode are followed by ``episode`` id (a backward link per row, built on
first need and extended as rows arrive); rows still in the writer's buffer count.

``next_obs`` is the stack shifted by one: ``obs`` frames ``s-k+2, ..., s`` then
``next_obs[t]``, so a time-limit truncation ends with the real final observation, never
the next episode's reset. With ``n_step=`` it is that of the n-step window's last row
``t+m-1``: frames up to it, then its ``next_obs``. ``Dict`` observations stack every
``obs.<key>`` field. The other fields are row ``t``'s (or the n-step reader's).

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> store = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(99), gym.spaces.Discrete(2))
>>> done = np.array([0, 0, 1, 0, 0], bool)  # an episode of 3 rows, then one of 2
>>> store.extend({"obs": [10, 11, 12, 20, 21], "action": np.zeros(5, int), "reward": np.ones(5),
...               "next_obs": [11, 12, 13, 21, 22], "terminated": done, "truncated": np.zeros(5, bool)})
>>> b = FrameStackReader(store, ["obs", "next_obs"], k=3).read(np.array([1, 2, 4]))
>>> b["obs"].tolist(), b["next_obs"].tolist()
([[10, 10, 11], [10, 11, 12], [20, 20, 21]], [[10, 11, 12], [11, 12, 13], [20, 21, 22]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import RowIndexError, SamplerError
from ..storage import ReplayStore
from .nstep import EpisodeLinks, NStepReader, id_range_ints

__all__ = ["FrameStackReader", "BackLinks", "check_frame_stack", "stacked_fields"]

#: fields read to find the rows of a stack
LINK_FIELDS = ("episode", "step")


def check_frame_stack(k: Any) -> int:
    """``k`` checked: an int >= 1 (1: no stacking)."""
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise SamplerError(f"frame_stack must be an int >= 1, got {k!r}")
    return int(k)


def stacked_fields(store: ReplayStore, fields: Sequence[str]) -> tuple[str, ...]:
    """The observation fields (``obs``, ``obs.<key>``) whose frames ``fields`` stack: those
    selected as ``obs...`` or as ``next_obs...``."""
    names = store.schema.names
    base = [f[len("next_"):] if f.startswith("next_obs") else f for f in fields
            if f == "obs" or f.startswith("obs.") or f == "next_obs" or f.startswith("next_obs.")]
    return tuple(f for f in dict.fromkeys(base) if f in names)


class BackLinks:
    """For each stored row (by global id), the global id of the previous stored row of
    its episode when that row's ``step`` is one less (-1: none, the row starts its episode
    as far as stacks go; an id below ``store.id_range[0]`` was evicted). Built from the
    ``episode`` and ``step`` fields when first asked, extended with the rows appended
    since on each :meth:`update` (call under the store's lock). The mirror image of
    :class:`~replaystore.sampling.nstep.EpisodeLinks`."""

    def __init__(self, store: ReplayStore) -> None:
        self.store = store
        self.base = 0  # global id of prv[0]
        self.hi: int | None = None  # rows [.., hi) are linked
        self.prv = np.empty(0, np.int64)
        self.last_e = np.empty(0, np.int64)  # episode ids seen (sorted) ...
        self.last_g = np.empty(0, np.int64)  # ... the newest row of each ...
        self.last_s = np.empty(0, np.int64)  # ... and its step

    def update(self) -> None:
        store = self.store
        lo, hi = store.id_range
        if self.hi is None:
            self.base = self.hi = lo
        start = max(self.hi, lo)  # (rows a ring evicted before they were linked: skipped)
        if start >= hi:
            return
        if lo - self.base > max(4096, (hi - self.base) // 2):  # drop evicted rows' links
            self.prv = self.prv[lo - self.base : self.hi - self.base].copy() if self.hi > lo else self.prv[:0]
            self.base = lo
            keep = self.last_g >= lo
            self.last_e, self.last_g, self.last_s = self.last_e[keep], self.last_g[keep], self.last_s[keep]
        need = hi - self.base
        if need > len(self.prv):
            grown = np.empty(max(need, 2 * len(self.prv), 1024), np.int64)
            grown[: len(self.prv)] = self.prv
            self.prv = grown
        ep, st = id_range_ints(store, start, hi, LINK_FIELDS)
        gid = np.arange(start, hi, dtype=np.int64)
        self.prv[start - self.base : hi - self.base] = -1
        if len(ep) > 1 and not (ep[1:] >= ep[:-1]).all():
            order = np.argsort(ep, kind="stable")  # rows grouped by episode, in id order
            ep, st, gid = ep[order], st[order], gid[order]
        same = ep[1:] == ep[:-1]
        go_on = same & (st[1:] == st[:-1] + 1)
        self.prv[gid[1:][go_on] - self.base] = gid[:-1][go_on]
        first = np.concatenate(([True], ~same))
        last = np.concatenate((~same, [True]))
        fe, fg, fs = ep[first], gid[first], st[first]
        p = np.searchsorted(self.last_e, fe)
        known = p < len(self.last_e)
        known[known] = self.last_e[p[known]] == fe[known]
        pk = p[known]
        on = fs[known] == self.last_s[pk] + 1
        self.prv[fg[known][on] - self.base] = self.last_g[pk][on]
        self.last_g[pk], self.last_s[pk] = gid[last][known], st[last][known]
        if not known.all():
            new = ~known
            self.last_e = np.insert(self.last_e, p[new], fe[new])
            self.last_g = np.insert(self.last_g, p[new], gid[last][new])
            self.last_s = np.insert(self.last_s, p[new], st[last][new])
        self.hi = hi

    def prev(self, gid: np.ndarray) -> np.ndarray:
        """Global id of the previous row of the episode of each row ``gid`` (-1: none)."""
        return self.prv[gid - self.base]


class FrameStackReader:
    """A sampler's batch reader giving ``k`` stacked frames (see the module docstring):
    each stacked field as ``(B, k, ...)``.

    The rows of a stack are found from ``episode``/``step`` read at ``t-k+1..t`` (one
    small gather: adjacent rows in a single-env store), following :class:`BackLinks` only
    for the rows whose episode continues elsewhere (vector envs); then one gather reads
    the frames. ``n_step``/``gamma`` compose: the other fields come from an
    :class:`NStepReader`. ``read`` returns ``None`` when a ring writer in another
    process overwrote rows meanwhile (draw again), like :meth:`BatchReader.read`."""

    def __init__(self, store: ReplayStore, fields: Sequence[str], k: int, *, n_step: int = 1,
                 gamma: float | None = None, readahead: bool | str = "auto") -> None:
        self.k = check_frame_stack(k)
        schema = store.schema
        for name in LINK_FIELDS:
            if name not in schema.names:
                raise SamplerError(f"{store.path}: frame_stack={self.k} needs the field {name!r}, "
                                   "which this store lacks")
        self.store, self.fields = store, tuple(fields)
        self.stacked = stacked_fields(store, self.fields)
        for f in self.fields:
            if (f == "next_obs" or f.startswith("next_obs.")) and f[len("next_"):] not in self.stacked:
                raise SamplerError(f"{store.path}: frame_stack={self.k} stacks {f!r} from the frames of the "
                                   f"field {f[len('next_'):]!r}, which this store lacks")
        if not self.stacked:
            raise SamplerError(
                f"{store.path}: frame_stack={self.k} stacks the observation fields ('obs', 'obs.<key>') and "
                f"their 'next_obs' counterparts, but the fields read are {list(self.fields)} and the store has "
                f"{list(schema.names)}")
        self.next_of = {f: "next_" + f for f in self.stacked if "next_" + f in self.fields}
        rest = [f for f in self.fields if f not in self.stacked]
        self.nstep = gamma is not None
        if self.nstep:
            self.inner = NStepReader(store, rest, n_step, gamma, readahead=readahead)
        else:  # (episode and step of row t come with the stacks' rows)
            rest = [f for f in rest if f not in LINK_FIELDS]
            self.inner = store.batch_reader(rest, readahead=readahead) if rest else None
        self.links_reader = store.batch_reader(LINK_FIELDS, readahead=readahead)
        self.frames = store.batch_reader(self.stacked, readahead=readahead)
        self.offs = np.arange(-(self.k - 1), 1, dtype=np.int64)  # column j is step s + offs[j]
        self.back: BackLinks | None = None
        from . import framekernels  # (numba: loaded with the first frame-stacking sampler only)

        self._kernels = framekernels
        self.fwd: EpisodeLinks | None = None

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray] | None:
        store = self.store
        with store.lock:
            try:
                return self._read(np.asarray(indices, np.int64))
            except RowIndexError:  # a ring writer in another process evicted rows being linked
                if store.mode == "r":
                    store.refresh()
                return None

    def _read(self, idx: np.ndarray) -> dict[str, np.ndarray] | None:
        B, k = len(idx), self.k
        inner = self.inner.read(idx) if self.inner is not None else {}
        if inner is None:
            return None
        found = self._positions(idx)
        if found is None:
            return None
        pos, ep, st = found
        if not self.nstep:
            inner = {**inner, **{f: v for f, v in (("episode", ep), ("step", st)) if f in self.fields}}
        take = pos.reshape(-1)
        lastpos = None
        if self.nstep and self.next_of:
            d = inner["n_steps"].astype(np.int64) - 1  # the window's last row is t + d steps on
            last = self._forward(idx, d, ep, st)
            if last is None:
                return None
            moved = np.flatnonzero(d)
            lastpos = pos[:, 1:].copy()
            if len(moved):
                got = self._positions(last[moved])
                if got is None:
                    return None
                lastpos[moved] = got[0][:, 1:]
            take = np.concatenate((take, lastpos.reshape(-1)))
        fr = self.frames.read(take)
        if fr is None:
            return None
        out: dict[str, np.ndarray] = {}
        stacks = {}
        for f in self.stacked:
            a = fr[f]
            shape = a.shape[1:]
            stacks[f] = a[: B * k].reshape(B, k, *shape)
            nxt = self.next_of.get(f)
            if nxt is not None:
                s = np.empty((B, k, *shape), a.dtype)
                s[:, :-1] = stacks[f][:, 1:] if lastpos is None else a[B * k :].reshape(B, k - 1, *shape)
                s[:, -1] = inner[nxt]
                stacks[nxt] = s
        for f in self.fields:
            out[f] = stacks[f] if f in stacks else inner[f]
        for f, v in inner.items():
            if f not in out:
                out[f] = v
        return out

    def _positions(self, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Logical rows ``(B, k)`` of the stacks ending at rows ``anchor`` (padded), with
        the anchors' ``episode`` and ``step``; None if a read was torn."""
        B, k = len(anchor), self.k
        pos = anchor[:, None] + self.offs  # (negative: before the oldest stored row)
        got = self.links_reader.read(np.maximum(pos, 0).reshape(-1))
        if got is None:
            return None
        ep = got["episode"].reshape(B, k)
        st = got["step"].reshape(B, k)
        e0, s0 = ep[:, -1].copy(), st[:, -1].copy()
        c0 = np.empty(B, np.int64)
        need = np.empty(B, np.bool_)
        self._kernels.stack_rows(pos, ep, st, c0, need)  # (pads the stacks that need no links)
        if need.any():  # the episode continues elsewhere (vector envs): follow its links
            self._follow(np.flatnonzero(need), pos, c0)
        return pos, e0, s0

    def _follow(self, r: np.ndarray, pos: np.ndarray, c0: np.ndarray) -> None:
        """Extend stacks ``r`` to the left by following their episodes' backward links
        (in memory: no read), and pad them."""
        if self.back is None:
            self.back = BackLinks(self.store)
        back = self.back
        back.update()
        self._kernels.follow_back(back.prv, back.base, self.store.id_range[0], pos, c0, r)

    def _forward(self, idx: np.ndarray, d: np.ndarray, e0: np.ndarray, s0: np.ndarray) -> np.ndarray | None:
        """Logical rows ``d`` steps after rows ``idx`` in their episodes (rows an n-step
        window reached); None if a read was torn."""
        size = len(self.store)
        guess = np.minimum(idx + d, size - 1)
        got = self.links_reader.read(guess)
        if got is None:
            return None
        miss = np.flatnonzero((got["episode"] != e0) | (got["step"] != s0 + d))
        if len(miss):
            links = getattr(self.inner, "links", None) if isinstance(self.inner, NStepReader) else None
            if links is None:
                if self.fwd is None:
                    self.fwd = EpisodeLinks(self.store)
                links = self.fwd
            links.update()
            lo = self.store.id_range[0]
            gid = idx[miss] + lo
            left = d[miss].copy()
            at = np.flatnonzero(left > 0)
            while len(at):  # (the window's rows: consecutive steps of one episode)
                gid[at] = links.next(gid[at])
                left[at] -= 1
                at = at[left[at] > 0]
            guess[miss] = gid - lo
        return guess

    def will_need(self, indices: np.ndarray) -> None:
        """Hint the kernel to read the pages of these rows (cold-cache mode only)."""
        self.frames.will_need(indices)
        if self.inner is not None:
            self.inner.will_need(indices)

    def close(self) -> None:
        """Nothing to release: files belong to the store's fields."""

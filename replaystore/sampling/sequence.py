"""Sequence sampling: windows of ``length`` consecutive rows of one episode.

A *window* is ``length`` consecutive rows of one episode (in the order they were
appended; episodes of vector envs interleave in the store, windows follow their
``episode`` ids). Full windows start at the rows whose position in their episode (its
``step``; 0 = the episode's first row) is a multiple of ``stride`` and end within the
rows stored so far. An episode shorter than ``length`` has one *padded* window from its
first row (``pad=True``; skipped with ``pad=False``). A window is valid while every row of
it is stored: a ring evicting an episode's first rows removes the windows that touch them.
Each batch is ``batch_size`` windows drawn uniformly, with replacement, over all valid
windows; every field has shape ``(B, length, ...)``, plus ``mask`` (``(B, length)``,
True for real rows) and ``index`` (the rows' global ids, see
:attr:`ReplayStore.id_range`; -1 where padded). Padded places repeat the window's last
real row.

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> store = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(9), gym.spaces.Discrete(2))
>>> done = np.array([0, 0, 0, 0, 1, 0, 1], bool)  # episodes of 5 and 2 rows
>>> store.extend({"obs": np.arange(7), "action": np.zeros(7, int), "reward": np.zeros(7),
...               "next_obs": np.arange(7), "terminated": done, "truncated": np.zeros(7, bool)})
>>> b = SequenceSampler(store, batch_size=4, length=3, seed=0).sample()
>>> b["obs"].shape, b["mask"].shape
((4, 3), (4, 3))
>>> {tuple(w) for w in b["index"].tolist()} <= {(0, 1, 2), (1, 2, 3), (2, 3, 4), (5, 6, -1)}
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import RowIndexError, SamplerError
from .base import Sampler

__all__ = ["SequenceSampler"]

#: rows of episode ids read at a time while indexing a store's episodes
_INGEST_ROWS = 1 << 20
#: times the index is brought up to date when a ring writer in another process evicts rows
_TRIES = 8


def _positive(name: str, v: Any) -> int:
    if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
        raise SamplerError(f"{name} must be a positive int, got {v!r}")
    return int(v)


class _Grow:
    """A growable int64 array (amortised O(1) appends)."""

    __slots__ = ("a", "n")

    def __init__(self, values: np.ndarray) -> None:
        self.a = np.array(values, np.int64)
        self.n = len(values)

    def extend(self, values: np.ndarray) -> None:
        m = self.n + len(values)
        if m > len(self.a):
            grown = np.empty(max(2 * m, 16), np.int64)
            grown[: self.n] = self.a[: self.n]
            self.a = grown
        self.a[self.n : m] = values
        self.n = m

    @property
    def view(self) -> np.ndarray:
        return self.a[: self.n]


class _Episodes:
    """Per-episode arrays, from index ``h`` on (older ones are evicted): episode id,
    global id of the first row seen, rows seen, the position in the episode (``step``) of
    the first row seen, and the count of windows while all rows seen are stored, with its
    running sum ``A``. Episodes whose rows are not one run of consecutive ids keep their
    ids in ``ids``. New episodes are added in order of episode id (the order of first
    appearance for ids the store or a collector hands out), so a sampler that watched a
    ring evict orders the episodes as one made afresh does; ``sfirst`` (the least
    ``first`` from each episode on, non-decreasing) finds the episodes that lost rows."""

    COLS = ("key", "first", "nrec", "base", "cnt", "A", "sfirst")

    def __init__(self) -> None:
        self.cols = {c: _Grow(np.empty(0, np.int64)) for c in self.COLS}
        self.ids: dict[int, _Grow] = {}
        self.where: dict[int, int] = {}  # episode id -> index
        self.h = 0

    def __getattr__(self, name: str) -> np.ndarray:
        cols = self.__dict__.get("cols")
        if cols is not None and name in cols:
            return cols[name].a
        raise AttributeError(name)

    @property
    def E(self) -> int:  # noqa: N802 - the number of episodes
        return self.cols["key"].n

    def last_id(self, e: np.ndarray) -> np.ndarray:
        out = self.first[e] + self.nrec[e] - 1
        for k, ee in enumerate(e.tolist()):
            g = self.ids.get(ee)
            if g is not None:
                out[k] = g.a[g.n - 1]
        return out

    def live_offset(self, e: np.ndarray, lo: int) -> np.ndarray:
        """Offset of each episode's first stored row among the rows seen."""
        out = np.clip(lo - self.first[e], 0, self.nrec[e])
        for k, ee in enumerate(e.tolist()):
            g = self.ids.get(ee)
            if g is not None:
                out[k] = np.searchsorted(g.view, lo)
        return out


class SequenceSampler(Sampler):
    """Windows of ``length`` consecutive rows of one episode, uniform over valid windows.

    ``stride`` spaces the windows' starts (positions in the episode that are multiples
    of it); ``pad=False`` skips episodes shorter than ``length``. See the module
    docstring for the exact definition. The episode index is built from the ``episode``
    and ``step`` fields once and extended as rows are appended, so a draw costs the same
    on a store of any size.

    >>> # s = rs.SequenceSampler(store, batch_size=16, length=64, seed=0)  # (16, 64, ...)
    """

    def __init__(self, store, batch_size: int, length: int, *, stride: int = 1, pad: bool = True,
                 seed=None, fields=None, readahead="auto", n_step: int = 1, gamma: float | None = None,
                 frame_stack: int = 1) -> None:
        if not (type(frame_stack) is int and frame_stack == 1):
            raise SamplerError(
                f"SequenceSampler does not stack frames (got frame_stack={frame_stack!r}): its windows "
                "already hold consecutive rows (batch['obs'][:, j-k+1:j+1] are the k frames up to row j); "
                "UniformSampler, BalancedSampler and WeightedSampler take frame_stack=")
        if not (type(n_step) is int and n_step == 1) or gamma is not None:
            raise SamplerError(
                f"SequenceSampler does not compute n-step returns (got n_step={n_step!r}, gamma={gamma!r}): "
                "its windows hold the rows themselves (discount batch['reward'] over batch['mask']); "
                "UniformSampler, BalancedSampler and WeightedSampler take n_step=")
        self.length = _positive("length", length)
        self.stride = _positive("stride", stride)
        if not isinstance(pad, bool | np.bool_):
            raise SamplerError(f"pad must be True or False, got {pad!r}")
        self.pad = bool(pad)
        super().__init__(store, batch_size, seed=seed, fields=fields, readahead=readahead)
        for name in ("mask", "index"):
            if name in self.fields:
                raise SamplerError(
                    f"{store.path}: field {name!r} clashes with the {name!r} a SequenceSampler adds; "
                    f"leave it out with fields=[...]")
        self.reader = _WindowReader(self.reader, self.length, store)
        self._ep = _Episodes()
        self._lo = self._hi = 0  # id range indexed
        self._gen: tuple | None = None
        self._zone = 0  # episodes h .. zone-1 have lost rows to a ring: counted exactly below
        self._zcum = self._zp0 = np.empty(0, np.int64)
        self._total = 0  # valid windows

    # -- the episode index ----------------------------------------------------------------
    def _refresh(self) -> None:
        store = self.store
        if store.version == self._gen:
            return
        # (the writer's own appends take no lock: rows are read by id, and the version is
        # taken first, so rows appended meanwhile are indexed by the next call)
        with store.lock:
            for tries in range(_TRIES):
                gen = store.version
                lo, hi = store.id_range
                try:
                    self._ingest_range(lo, hi)
                    break
                except RowIndexError:  # a ring writer evicted them meanwhile
                    if tries == _TRIES - 1:
                        raise
                    if store.mode == "r":
                        store.refresh()
            self._lo = lo
            self._evict(lo)
            self._total = self._windows()
            self._gen = gen

    def _ingest_range(self, lo: int, hi: int) -> None:
        """Index the rows with global ids ``[self._hi, hi)`` (those still stored)."""
        store = self.store
        self._hi = max(self._hi, lo)  # (rows a ring evicted before they were indexed: skipped)
        fields = ["episode", "step"]
        for a in range(self._hi, hi, _INGEST_ROWS):
            b = min(hi, a + _INGEST_ROWS)
            # by global id: committed rows, then (in the writer) rows still in its buffer
            total = store.total
            parts = []
            if a < total:
                parts.append(store.read_ids(a, min(b, total), fields))
            if b > total:
                parts.append({k: v[max(a, total) - total : b - total]
                              for k, v in store.buffered_rows(fields).items()})
            d = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in fields}
            self._ingest(a, np.asarray(d["episode"], np.int64), np.asarray(d["step"], np.int64))
            self._hi = b

    def _ingest(self, a: int, ep: np.ndarray, step: np.ndarray) -> None:
        E = self._ep
        gids = np.arange(a, a + len(ep), dtype=np.int64)
        if ep[0] == ep[-1] and (len(ep) < 3 or (ep == ep[0]).all()):  # one episode (online)
            uniq, order, bounds = ep[:1], np.arange(len(ep)), [0, len(ep)]
        else:
            uniq, inv = np.unique(ep, return_inverse=True)
            order = np.argsort(inv, kind="stable")  # rows grouped by episode, in id order
            bounds = np.concatenate(([0], np.cumsum(np.bincount(inv, minlength=len(uniq)))))
        changed = E.E
        new_rows: dict[str, Any] = {c: [] for c in ("key", "first", "nrec", "base")}
        for u in range(len(uniq)):  # (in order of episode id)
            g = gids[order[bounds[u] : bounds[u + 1]]]
            key = int(uniq[u])
            e = E.where.get(key)
            contiguous = int(g[-1]) - int(g[0]) == len(g) - 1
            if e is None:
                e = E.E + len(new_rows["key"])
                E.where[key] = e
                for c, v in zip(new_rows, (key, int(g[0]), len(g), int(step[g[0] - a])), strict=True):
                    new_rows[c].append(v)
                if not contiguous:
                    E.ids[e] = _Grow(g)
                continue
            changed = min(changed, e)
            n0, f0 = int(E.nrec[e]), int(E.first[e])
            ids = E.ids.get(e)
            if ids is None and not (contiguous and int(g[0]) == f0 + n0):
                ids = E.ids[e] = _Grow(np.arange(f0, f0 + n0, dtype=np.int64))
            if ids is not None:
                ids.extend(g)
            E.nrec[e] = n0 + len(g)
        if new_rows["key"]:
            k = len(new_rows["key"])
            first = np.asarray(new_rows["first"], np.int64)
            new_rows["sfirst"] = np.minimum.accumulate(first[::-1])[::-1]  # (all later than older ones)
            for c in E.COLS:
                E.cols[c].extend(np.asarray(new_rows[c], np.int64) if c in new_rows else np.zeros(k, np.int64))
        if changed < E.E:
            s = slice(changed, E.E)
            E.cnt[s] = self._count(E.base[s], E.nrec[s], np.zeros(E.E - changed, np.int64))
            prev = int(E.A[changed - 1]) if changed > 0 else 0
            E.A[s] = prev + np.cumsum(E.cnt[s])

    def _count(self, base: np.ndarray, nrec: np.ndarray, off: np.ndarray) -> np.ndarray:
        """Valid windows of episodes whose rows seen start at position ``base``, of which
        the first ``off`` are evicted."""
        s, n = self.stride, self.length
        if len(base) == 1:  # (the online case: one episode grew; numpy's per-call cost dominates)
            b0, n0, o0 = int(base[0]), int(nrec[0]), int(off[0])
            if b0 + n0 >= n:
                return np.array([max(0, (b0 + n0 - n) // s + (b0 + o0) // -s + 1)], np.int64)
            return np.array([int(self.pad and b0 + o0 == 0 and n0 > 0)], np.int64)
        end = base + nrec  # positions written so far
        p0 = -(-(base + off) // s) * s  # first start on the grid
        full = np.maximum(0, (end - n) // s - p0 // s + 1)
        padded = (end < n) & (base + off == 0) & (nrec > 0) if self.pad else np.zeros(len(base), bool)
        return np.where(end >= n, full, padded.astype(np.int64))

    def _evict(self, lo: int) -> None:
        E = self._ep
        h, end = E.h, E.E
        j = h + int(np.searchsorted(E.sfirst[h:end], lo))  # episodes h..j-1 may have lost rows
        if j > h:
            e = np.arange(h, j, dtype=np.int64)
            dead = E.last_id(e) < lo
            k = int(np.argmin(dead)) if not dead.all() else len(e)  # leading dead episodes
            for ee in range(h, h + k):
                del E.where[int(E.key[ee])]
                E.ids.pop(ee, None)
            h = E.h = h + k
            e = e[k:]
            off = E.live_offset(e, lo)
            cnt = np.where(dead[k:], 0, self._count(E.base[e], E.nrec[e], off))
            self._zcum = np.cumsum(cnt)
            s = self.stride
            self._zp0 = -(-(E.base[e] + off) // s) * s
        else:
            self._zcum = self._zp0 = np.empty(0, np.int64)
        self._zone = j
        if h > 4096 and 2 * h > end:
            self._compact()

    def _compact(self) -> None:
        """Drop the evicted episodes' entries (ids shift down by ``h``)."""
        E, h = self._ep, self._ep.h
        for c in E.COLS:
            g = E.cols[c]
            E.cols[c] = _Grow(g.view[h:])
        E.ids = {e - h: g for e, g in E.ids.items()}
        E.where = {k: e - h for k, e in E.where.items()}
        E.h = 0
        self._zone -= h

    # -- drawing --------------------------------------------------------------------------
    def _windows(self) -> int:
        E = self._ep
        z = self._zone
        rest = int(E.A[E.E - 1] - (E.A[z - 1] if z > 0 else 0)) if E.E > z else 0
        return (int(self._zcum[-1]) if len(self._zcum) else 0) + rest

    def sample_indices(self) -> np.ndarray:
        """Logical rows of the next batch's windows, flat (``batch_size * length``); padded
        places repeat the last real row."""
        self._size()
        self._refresh()
        if not self._total:
            self._no_windows()
        return self._drawn_ahead().reshape(-1) - self._lo

    def _ahead_key(self) -> tuple:
        return self.store.version

    def _draw(self, rows: int) -> np.ndarray:
        """``rows`` windows as rows of global ids, ``(rows, length)`` (a block of them at
        once: numpy's per-call cost is paid per block)."""
        c = self._codes(rows)
        return self._rows(c[:, 0], c[:, 1]).reshape(rows, self.length)

    def _codes(self, rows: int) -> np.ndarray:
        """``rows`` windows as (episode index, offset of the first row among those seen)."""
        E = self._ep
        zc, z = self._zcum, self._zone
        zn = int(zc[-1]) if len(zc) else 0
        r = self.rng.integers(0, self._total, size=rows, dtype=np.int64)
        s = self.stride
        if not zn:  # (no episode has lost rows to a ring)
            base_a = int(E.A[z - 1]) if z > 0 else 0
            ra = r + base_a
            ee = z + np.searchsorted(E.A[z : E.E], ra, side="right")
            before = E.A[ee - 1] if z > 0 else np.where(ee > 0, E.A[ee - 1], 0)
            base = E.base[ee]
            return np.stack([ee, -(-base // s) * s + (ra - before) * s - base], axis=1)
        e = np.empty(rows, np.int64)
        p = np.empty(rows, np.int64)
        inz = r < zn
        if inz.any():
            rz = r[inz]
            k = np.searchsorted(zc, rz, side="right")
            e[inz] = E.h + k
            p[inz] = self._zp0[k] + (rz - np.where(k > 0, zc[k - 1], 0)) * self.stride
        out = ~inz
        if out.any():
            base_a = int(E.A[z - 1]) if z > 0 else 0
            ra = r[out] - zn + base_a
            ee = z + np.searchsorted(E.A[z : E.E], ra, side="right")
            before = np.where(ee > 0, E.A[np.maximum(ee - 1, 0)], 0)
            e[out] = ee
            p[out] = -(-E.base[ee] // s) * s + (ra - before) * s
        return np.stack([e, p - E.base[e]], axis=1)

    def _rows(self, e: np.ndarray, o: np.ndarray) -> np.ndarray:
        """Global ids of windows (episode index, first offset), flat; padded places repeat
        the last row seen."""
        E = self._ep
        n = self.length
        pos = np.minimum(o[:, None] + np.arange(n, dtype=np.int64), E.nrec[e][:, None] - 1)
        gid = E.first[e][:, None] + pos
        if E.ids:
            for k, ee in enumerate(e.tolist()):
                g = E.ids.get(ee)
                if g is not None:
                    gid[k] = g.a[pos[k]]
        return gid.reshape(-1)

    def _no_windows(self) -> None:
        E = self._ep
        live = np.arange(E.h, E.E, dtype=np.int64)
        longest = int((E.nrec[live] - E.live_offset(live, self._lo)).max()) if len(live) else 0
        why = ("pad=False skips episodes shorter than that" if not self.pad
               else "windows need every row of an episode from its start, and a ring evicted them")
        raise SamplerError(
            f"{self.store.path}: no window of length={self.length} (stride={self.stride}) to sample: "
            f"the longest stored episode has {longest} rows; {why}")

    # -- state ----------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"length": self.length, "stride": self.stride, "pad": self.pad}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        got = (state.get("length"), state.get("stride"), state.get("pad"))
        if got != (self.length, self.stride, self.pad):
            raise SamplerError(
                f"state_dict is from a SequenceSampler with (length, stride, pad) = {got}, "
                f"this one has {(self.length, self.stride, self.pad)}")

    def __repr__(self) -> str:
        return (f"SequenceSampler(store={str(self.store.path)!r}, batch_size={self.batch_size}, "
                f"length={self.length}, stride={self.stride}, pad={self.pad})")


class _WindowReader:
    """The sampler's batch reader, giving each field as ``(B, length, ...)`` plus ``mask``
    and ``index``. Padded places repeat the previous row's logical index, which no two
    rows of a window share, so the mask follows from the indices alone (the base class's
    prefetching reads flat indices it drew earlier)."""

    def __init__(self, inner, length: int, store) -> None:
        self.inner, self.length, self.store = inner, length, store

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray] | None:
        with self.store.lock:
            batch = self.inner.read(indices)
            lo = self.store.id_range[0]
        if batch is None:
            return None
        n = self.length
        idx = np.asarray(indices, np.int64).reshape(-1, n)
        out = {k: v.reshape(idx.shape[0], n, *v.shape[1:]) for k, v in batch.items()}
        mask = np.ones(idx.shape, bool)
        mask[:, 1:] = idx[:, 1:] != idx[:, :-1]
        out["mask"] = mask
        out["index"] = np.where(mask, idx + lo, -1)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

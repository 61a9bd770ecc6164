"""n-step returns: each drawn row with the discounted rewards of the next steps of its episode.

For a drawn row ``t`` (the sampler's distribution over ``t`` is unchanged) the *window*
is row ``t`` and the next rows of its episode: the next row of an episode is the next
stored row (by global id) with the same ``episode``; it continues the window while its
``step`` is one more than the previous row's. The window holds ``m`` rows, ``1 <= m <= n``:
it stops after the first row with ``terminated`` or ``truncated`` (the end of the
episode), at an episode's newest stored row (also rows still in the writer's buffer
count), and where steps do not continue. Episodes of vector envs interleave in the
store; their rows are followed by ``episode`` id (a per-episode link built once, on
first need, and extended as rows arrive). The batch then holds

* ``reward``: ``sum_{k<m} gamma**k * r[t+k]`` (summed in float64, given in the store's
  reward dtype, float32);
* ``next_obs`` (each ``next_obs.*`` field), ``terminated``, ``truncated``: those of the
  window's last row ``t+m-1`` (a time-limit truncation bootstraps from the episode's real
  final observation, never from the next episode's reset);
* ``discount``: ``gamma**m`` (the reward dtype), and ``n_steps``: ``m`` (int64);

so the target is ``reward + discount * max_a Q(next_obs, a)`` unless ``terminated``. Every
other field (``obs``, ``action``, ``episode``, ``step``, user fields) is row ``t``'s.

The sum is ``acc = 0.0``, then ``acc += gamma**k * float64(r[t+k])`` for ``k = 0 .. m-1``
in that order (``gamma**k`` from ``gamma ** np.arange(n + 1)``; every product and sum
rounded to float64, no fused multiply-add), then rounded once to the reward dtype. Where
the window fields are memory-mapped (uncompressed, local or unpacked) and the page cache
holds them, a compiled walk (:mod:`._nstep_kernels`) reads the windows in one call, from
the maps and the write buffer (no per-row cache: nothing to keep current as rows come and
go); otherwise (compressed fields, object stores, reads that wait for the disk) one numpy
gather of the ``(n, B)`` window rows does, with the same arithmetic: both give the same bits.

>>> import tempfile, numpy as np, gymnasium as gym, replaystore as rs
>>> store = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Discrete(9), gym.spaces.Discrete(2))
>>> done = np.array([0, 0, 0, 1, 0], bool)  # an episode of 4 rows, then one still running
>>> store.extend({"obs": np.arange(5), "action": np.zeros(5, int), "reward": np.ones(5),
...               "next_obs": np.arange(5) + 1, "terminated": done, "truncated": np.zeros(5, bool)})
>>> r = NStepReader(store, ["obs", "next_obs"], n=3, gamma=0.5).read(np.array([0, 2, 4]))
>>> r["reward"].tolist(), r["next_obs"].tolist(), r["n_steps"].tolist(), r["terminated"].tolist()
([1.75, 1.5, 1.0], [3, 4, 5], [3, 2, 1], [False, True, False])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import RowIndexError, SamplerError
from ..storage import ReplayStore

__all__ = ["NStepReader", "EpisodeLinks", "check_n_step", "ADDED_FIELDS"]

#: fields read for every row of a window
WINDOW_FIELDS = ("reward", "terminated", "truncated", "episode", "step")
#: fields an n-step batch adds
ADDED_FIELDS = ("discount", "n_steps")
#: seconds per row above which the compiled walk is taken to be waiting for the disk: the
#: reader then gathers windows through :class:`BatchReader` (which asks the kernel for
#: the pages of a batch at once) for :data:`_COLD_BATCHES` batches before trying again
_COLD_SECONDS_PER_ROW = 2e-6
_COLD_BATCHES = 256
_WALK_SECONDS = 5e-6  # (a walk's own cost, whatever the batch size: not the disk's)
_GATHER = object()  # (the walk cannot read a batch: the gather does)


def check_n_step(n_step: Any, gamma: Any) -> tuple[int, float | None]:
    """``(n_step, gamma)`` checked: ``n_step`` an int >= 1, ``gamma`` in ``[0, 1]`` (required
    when ``n_step > 1``; ``None`` with ``n_step == 1`` means plain batches)."""
    if not isinstance(n_step, int | np.integer) or isinstance(n_step, bool) or n_step < 1:
        raise SamplerError(f"n_step must be an int >= 1, got {n_step!r}")
    if gamma is None:
        if n_step > 1:
            raise SamplerError(f"n_step={int(n_step)} needs gamma= (the discount per step, in [0, 1])")
        return 1, None
    if (isinstance(gamma, bool | np.bool_) or not isinstance(gamma, int | float | np.integer | np.floating)
            or not 0.0 <= float(gamma) <= 1.0):  # (NaN fails the comparison)
        raise SamplerError(f"gamma must be a number in [0, 1], got {gamma!r}")
    return int(n_step), float(gamma)


def id_range_ints(store: ReplayStore, a: int, b: int, fields: Sequence[str]) -> tuple[np.ndarray, ...]:
    """The int64 ``fields`` of the rows with global ids ``[a, b)``, committed rows read in
    order, then rows still in this process's write buffer (what the episode links need)."""
    total = store.total
    parts = []
    if a < total:
        parts.append(store.read_ids(a, min(b, total), list(fields)))
    if b > total:
        buf = store.buffered_rows(list(fields))
        parts.append({f: buf[f][max(a, total) - total : b - total] for f in fields})
    return tuple(np.asarray(parts[0][f] if len(parts) == 1 else np.concatenate([x[f] for x in parts]), np.int64)
                 for f in fields)


class EpisodeLinks:
    """For each stored row (by global id), the global id of the next stored row of its
    episode (-1: none yet). Built from the ``episode`` field when first asked, extended
    with the rows appended since on each :meth:`update` (call under the store's lock)."""

    def __init__(self, store: ReplayStore) -> None:
        self.store = store
        self.base = 0  # global id of nxt[0]
        self.hi: int | None = None  # rows [.., hi) are linked
        self.nxt = np.empty(0, np.int64)
        self.last_e = np.empty(0, np.int64)  # episode ids seen (sorted) ...
        self.last_g = np.empty(0, np.int64)  # ... and the newest row of each

    def update(self) -> None:
        store = self.store
        lo, hi = store.id_range
        if self.hi is None:
            self.base = self.hi = lo
        start = max(self.hi, lo)  # (rows a ring evicted before they were linked: skipped)
        if start >= hi:
            return
        if lo - self.base > max(4096, (hi - self.base) // 2):  # drop evicted rows' links
            self.nxt = self.nxt[lo - self.base : self.hi - self.base].copy() if self.hi > lo else self.nxt[:0]
            self.base = lo
            keep = self.last_g >= lo
            self.last_e, self.last_g = self.last_e[keep], self.last_g[keep]
        need = hi - self.base
        if need > len(self.nxt):
            grown = np.empty(max(need, 2 * len(self.nxt), 1024), np.int64)
            grown[: len(self.nxt)] = self.nxt
            self.nxt = grown
        ep = self._episodes(start, hi)
        gid = np.arange(start, hi, dtype=np.int64)
        self.nxt[start - self.base : hi - self.base] = -1
        if len(ep) > 1 and not (ep == ep[0]).all():
            order = np.argsort(ep, kind="stable")  # rows grouped by episode, in id order
            ep, gid = ep[order], gid[order]
        same = ep[1:] == ep[:-1]
        self.nxt[gid[:-1][same] - self.base] = gid[1:][same]
        first = np.concatenate(([True], ~same))
        last = np.concatenate((~same, [True]))
        fe, fg, lg = ep[first], gid[first], gid[last]
        p = np.searchsorted(self.last_e, fe)
        known = p < len(self.last_e)
        known[known] = self.last_e[p[known]] == fe[known]
        prev = self.last_g[p[known]]
        live = prev >= self.base
        self.nxt[prev[live] - self.base] = fg[known][live]
        self.last_g[p[known]] = lg[known]
        if not known.all():
            new = ~known
            self.last_e = np.insert(self.last_e, p[new], fe[new])
            self.last_g = np.insert(self.last_g, p[new], lg[new])
        self.hi = hi

    def _episodes(self, a: int, b: int) -> np.ndarray:
        """``episode`` of the rows with global ids ``[a, b)``: committed, then buffered."""
        return id_range_ints(self.store, a, b, ("episode",))[0]

    def next(self, gid: np.ndarray) -> np.ndarray:
        """Global id of the next stored row of the episode of each row ``gid`` (-1: none)."""
        return self.nxt[gid - self.base]


class NStepReader:
    """A sampler's batch reader giving n-step rows (see the module docstring).

    The window fields (``reward``, ``terminated``, ``truncated``, ``episode``, ``step``) are
    walked by the compiled kernel straight from their memory maps (and the write buffer's
    rows), or else read by one gather at the ``n`` rows from each drawn row; the other
    fields are read once, at row ``t`` (``next_obs`` at the window's last row), so a batch
    touches about as many cache lines and pages as a plain one. Rows whose episode
    continues elsewhere (vector envs) are followed by :class:`EpisodeLinks`. ``read``
    returns ``None`` when a ring writer in another process overwrote rows meanwhile (draw
    again), like :meth:`BatchReader.read`. ``readahead=True`` always takes the gather (it
    asks the kernel for a batch's pages at once); ``"auto"`` takes it while the walk is
    slow enough to be waiting for the disk."""

    def __init__(self, store: ReplayStore, fields: Sequence[str], n: int, gamma: float, *,
                 readahead: bool | str = "auto") -> None:
        schema = store.schema
        for name in WINDOW_FIELDS:
            if name not in schema.names:
                raise SamplerError(f"{store.path}: n-step returns need the field {name!r}, which this store lacks")
        for name in ADDED_FIELDS:
            if name in fields:
                raise SamplerError(
                    f"{store.path}: field {name!r} clashes with the {name!r} n-step batches add; "
                    "leave it out with fields=[...]")
        self.store, self.n, self.gamma = store, int(n), float(gamma)
        self.fields = tuple(fields)
        rest = [f for f in self.fields if f not in WINDOW_FIELDS]
        nxt = tuple(f for f in rest if f == "next_obs" or f.startswith("next_obs."))
        row = tuple(f for f in rest if f not in nxt)
        self.window = store.batch_reader(WINDOW_FIELDS, readahead=readahead)
        self.at_row = store.batch_reader(row, readahead=readahead) if row else None
        self.at_last = store.batch_reader(nxt, readahead=readahead) if nxt else None
        self.powers = self.gamma ** np.arange(self.n + 1, dtype=np.float64)
        self.koff = np.arange(self.n, dtype=np.int64)[:, None]
        self.rdtype = store.schema["reward"].dtype
        self.discounts = self.powers.astype(self.rdtype)
        self.links: EpisodeLinks | None = None
        self.back = np.empty(0, np.int64)
        self._always = tuple(f for f in ("reward", "terminated", "truncated") if f not in self.fields)
        self.readahead = readahead
        # the walk gives episode/step as int64 and the flags as bool (the standard dtypes)
        self._walkable = readahead is not True and all(
            schema[f].dtype == np.dtype(t) for f, t in
            (("terminated", bool), ("truncated", bool), ("episode", np.int64), ("step", np.int64)))
        self._walk: Any = None  # (the compiled walk, NEEDS_LINKS): imported on first use (numba)
        self._cols_key: int | None = None  # committed rows the mapped arrays were taken at
        self._cols: tuple[np.ndarray, ...] | None = None
        self._nobuf = tuple(np.empty(0, schema[f].dtype) for f in WINDOW_FIELDS)
        self._nolinks = np.empty(0, np.int64)
        #: batches read by the compiled walk, and by the numpy gather (which way a store reads)
        self.walked = self.gathered = 0
        self._recent: list[float] = []  # seconds per row of the last walks
        self._cold_left = 0  # batches still to gather (the walk was waiting for the disk)

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
        if self._cold_left:
            self._cold_left -= 1
        elif self._walkable and len(idx):
            out = self._read_walk(idx)
            if out is not _GATHER:
                return out
        return self._read_gather(idx)

    def _remap(self, committed: int) -> None:
        """Take the window fields' memory-mapped arrays (by physical row) as of ``committed``
        rows ever committed (commits map new chunks): ``None`` if one is not mapped
        (compressed, object store), then the gather reads."""
        store = self.store
        if self._walk is None:
            from ._nstep_kernels import NEEDS_LINKS, walk  # noqa: PLC0415 - loads numba: on first use only
            self._walk = walk, NEEDS_LINKS
        views = [store.mapped_view(f) for f in WINDOW_FIELDS]
        if all(v is not None and v.array is not None for v in views):
            self._cols = tuple(v.array for v in views)
        elif committed == 0:  # (nothing committed yet: the rows are all in the write buffer)
            self._cols = tuple(a.copy() for a in self._nobuf)
            for a in self._cols:
                a.flags.writeable = False
        else:
            self._cols = None
        self._cols_key = committed

    def _read_walk(self, idx: np.ndarray) -> Any:
        """The batch by the compiled walk, ``None`` if torn, :data:`_GATHER` if the walk
        cannot read these rows (the gather does)."""
        store = self.store
        committed = store.total
        if committed != self._cols_key:
            self._remap(committed)
        cols = self._cols
        if cols is None:
            return _GATHER
        walk, needs_links = self._walk
        lo, hi = store.id_range
        if hi > committed:
            got = store.buffered_rows(WINDOW_FIELDS)
            bufs = tuple(got[f] for f in WINDOW_FIELDS)
        else:
            bufs = self._nobuf
        B = len(idx)
        reward = np.empty(B, self.rdtype)
        ints = np.empty((4, B), np.int64)  # m, last row, episode, step
        flags = np.empty((2, B), np.bool_)  # terminated, truncated
        links = self.links
        if links is not None:
            links.update()
            nxt, lbase, lhi = links.nxt, links.base, links.hi
        else:
            nxt, lbase, lhi = self._nolinks, 0, 0
        t0 = time.perf_counter()
        status = walk(idx, lo, hi, committed, store.capacity or 0, *cols, *bufs, nxt, lbase, lhi,
                      self.powers, self.n, reward, ints, flags)
        spent = time.perf_counter() - t0
        if status:
            if status == needs_links and links is None:  # windows go on elsewhere: link the episodes
                self.links = EpisodeLinks(store)
                return self._read_walk(idx)
            return _GATHER
        if self.readahead == "auto":
            recent = self._recent
            recent.append((spent - _WALK_SECONDS) / B)
            if len(recent) == 8:  # (decided once per 8 batches, on their median)
                if sorted(recent)[4] > _COLD_SECONDS_PER_ROW:
                    self._cold_left = _COLD_BATCHES
                recent.clear()
        m = ints[0]
        wide = self.at_row.read(idx) if self.at_row is not None else {}
        after = self.at_last.read(ints[1]) if self.at_last is not None else {}
        if wide is None or after is None:
            return None
        if store.torn(idx):  # (the walk's rows are at or after these: one check covers them)
            store.refresh()
            return None
        self.walked += 1
        return self._assemble(reward, flags[0], flags[1], ints[2], ints[3], wide, after, m)

    def _assemble(self, reward: np.ndarray, term: np.ndarray, trunc: np.ndarray, ep: np.ndarray,
                  st: np.ndarray, wide: dict, after: dict, m: np.ndarray) -> dict[str, np.ndarray]:
        made = {"reward": reward, "terminated": term, "truncated": trunc, "episode": ep, "step": st,
                **wide, **after}
        out = {f: made[f] for f in self.fields}
        for f in self._always:
            out[f] = made[f]
        out["discount"] = self.discounts[m]
        out["n_steps"] = m
        return out

    def _read_gather(self, idx: np.ndarray) -> dict[str, np.ndarray] | None:
        """The batch by one numpy gather of the ``(n, B)`` window rows."""
        store, n = self.store, self.n
        self.gathered += 1
        B = len(idx)
        size = len(store)
        pos = self.koff + idx  # (n, B): logical rows of the windows, if adjacent
        if B and int(idx.max()) + n > size:
            # past the newest row: clipped to it, so the row repeats and its step does not go on
            np.minimum(pos, size - 1, out=pos)
        w = self.window.read(pos.reshape(-1))
        if w is None:
            return None
        flat = w  # (k-major: row t's own values are the first B)
        w = {f: w[f].reshape(n, B) for f in WINDOW_FIELDS}
        rew, term, trunc, ep, st = w.values()
        other = ep != ep[0]  # rows of another episode
        ok = st - st[0] == self.koff
        ok &= ~other
        alive = ~(term | trunc)
        alive &= ok
        for j in range(1, n):  # the window goes on after row j (a loop over n: cheaper than accumulate)
            alive[j] &= alive[j - 1]
        inc = ok  # (row 0 is always in)
        inc[1:] &= alive[:-1]
        # windows that stopped at a row of another episode may go on further on (vector envs)
        amb = alive[:-1] & other[1:]
        if np.count_nonzero(amb):
            kc, r = np.nonzero(amb)
            if not self._follow(r, kc + 1, pos, flat, w, inc, ep[0], st[0]):
                return None
        m = inc.sum(axis=0)
        if len(self.back) != B:
            self.back = np.arange(B, dtype=np.int64) - B
        last = m * B
        last += self.back  # flat (k-major) place of each window's last row: (m - 1) * B + b
        acc = np.zeros(B)
        for j in range(n):  # (the walk's order: acc += gamma**j * r, each rounded to float64)
            acc += self.powers[j] * np.where(inc[j], rew[j], 0)
        wide = self.at_row.read(idx) if self.at_row is not None else {}
        after = self.at_last.read(pos.reshape(-1)[last]) if self.at_last is not None else {}
        if wide is None or after is None:
            return None
        return self._assemble(acc.astype(self.rdtype), flat["terminated"][last], flat["truncated"][last],
                              flat["episode"][:B], flat["step"][:B], wide, after, m)

    def _follow(self, r: np.ndarray, kc: np.ndarray, pos: np.ndarray, flat: dict[str, np.ndarray],
                w: dict[str, np.ndarray], inc: np.ndarray, ep0: np.ndarray, st0: np.ndarray) -> bool:
        """Extend windows ``r`` from place ``kc`` on by following their episodes' links
        (one vectorised step per place), filling ``pos``, the window rows (``flat``, ``w``:
        its ``(n, B)`` views) and ``inc``; False if a read was torn."""
        if self.links is None:
            self.links = EpisodeLinks(self.store)
        self.links.update()
        lo = self.store.id_range[0]
        gid = pos[kc - 1, r] + lo
        while len(r):
            gid = self.links.next(gid)
            f = gid >= 0
            r, kc, gid = r[f], kc[f], gid[f]
            if not len(r):
                break
            got = self.window.read(gid - lo)
            if got is None:
                return False
            ok = (got["step"] == st0[r] + kc) & (got["episode"] == ep0[r])
            r, kc, gid = r[ok], kc[ok], gid[ok]
            at = kc, r
            for name, v in got.items():
                flat[name][kc * len(st0) + r] = v[ok]
            pos[at], inc[at] = gid - lo, True
            more = ~(w["terminated"][at] | w["truncated"][at]) & (kc + 1 < self.n)
            r, kc, gid = r[more], kc[more] + 1, gid[more]
        return True

    def will_need(self, indices: np.ndarray) -> None:
        """Hint the kernel to read the pages of these rows' windows (cold-cache mode only)."""
        self.window.will_need(indices)
        if self.at_row is not None:
            self.at_row.will_need(indices)

    def close(self) -> None:
        """Nothing to release: files belong to the store's fields."""

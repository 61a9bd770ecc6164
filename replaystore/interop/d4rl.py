"""D4RL-style HDF5 files into stores.

The file holds flat datasets of ``N`` rows: ``observations``, ``actions``, ``rewards``,
``terminals`` and ``timeouts`` (``rewards``/``terminals``/``timeouts`` of shape ``(N,)`` or
``(N, 1)``; ``terminals``/``timeouts`` 0/1 or bool), and optionally ``next_observations``.
Other keys (``infos/...``, ``metadata/...``) are not imported (their names are kept in
``info["imported_from"]["ignored_keys"]``).

* ``terminals`` become ``terminated``, ``timeouts`` become ``truncated``; an episode ends
  after a row with either. Store episode ``k`` is the file's ``k``-th episode (counted
  from 0), ``step`` counts from 0 in each episode.
* With ``next_observations`` every row is imported as it is.
* Without it, ``next_obs`` of row ``t`` is ``observations[t + 1]`` within an episode. The
  last row of each episode (and the file's last row) has no next observation in the
  file, so it is **dropped**; a warning gives the count. The episode's remaining rows end
  neither terminated nor truncated, so ``store.episodes()`` counts them as unfinished.
  (D4RL's own ``qlearning_dataset`` pairs a terminal row with the first observation of
  the next episode; nothing here is made up.)
* Without ``timeouts`` episodes end only at terminals (a warning says so).
* Spaces are inferred from the data: ``Box(-inf, inf)`` of the file's dtype and row shape
  for floats (integer dtypes: the dtype's range), or
  ``Discrete(max - min + 1, start=min)`` for integer actions with ``discrete_actions=True``;
  pass ``observation_space=`` / ``action_space=`` to give them.

Rows are read in blocks, so files larger than RAM import with bounded memory.

A file from someone else is data: the imported datasets must be stored in the file itself.
Soft and external links, external raw storage and virtual datasets (all of which read
other files) are refused before anything is opened through them, and so are datasets
whose declared rows are not all stored (unwritten chunks, unallocated contiguous data: HDF5
would make them up from the fill value). Each refusal is an :class:`InteropError` naming
the file and the dataset, raised before ``out`` is created.

>>> import pytest; _ = pytest.importorskip("h5py", reason="needs replaystore[hdf5]")
>>> import tempfile, h5py, numpy as np, replaystore as rs
>>> d = tempfile.mkdtemp()
>>> with h5py.File(d + "/data.hdf5", "w") as f:
...     f["observations"] = np.arange(5, dtype=np.float32)[:, None]
...     f["actions"] = np.zeros((5, 1), np.float32)
...     f["rewards"] = np.ones(5, np.float32)
...     f["terminals"] = np.array([0, 1, 0, 0, 0])
...     f["timeouts"] = np.array([0, 0, 0, 0, 1])
>>> with pytest.warns(UserWarning, match="dropped 2 row"):  # rows 1 and 4: no next observation
...     stats = import_d4rl(d + "/data.hdf5", d + "/s.zarr")
>>> stats.rows, stats.episodes
(3, 2)
>>> rs.open(d + "/s.zarr").read_range(0, 3, fields="next_obs")["next_obs"].ravel().tolist()
[1.0, 3.0, 4.0]
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import DatasetNotFoundError, InteropError
from ..progress import Progress, as_progress
from ..storage import create, now_iso
from ..version import __version__
from ._common import InteropStats, discard_on_failure, require
from ._common import block_rows as _block_rows

__all__ = ["import_d4rl", "REQUIRED_KEYS", "MAX_ROW_BYTES"]

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
_OPTIONAL_KEYS = ("timeouts", "next_observations")
#: the largest row (of one dataset) an import reads: rows are read whole, in blocks
MAX_ROW_BYTES = 256 * 2**20


def _box(name: str, ds: Any, path: Path) -> gym.spaces.Box:
    dt = np.dtype(ds.dtype)
    shape = tuple(ds.shape[1:])
    if dt.kind == "f":
        return gym.spaces.Box(-np.inf, np.inf, shape, dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return gym.spaces.Box(info.min, info.max, shape, dt)
    if dt.kind == "b":
        return gym.spaces.Box(0, 1, shape, dt)
    raise InteropError(f"{path}: {name!r} has dtype {dt}; only numbers and booleans can be imported")


def _discrete(ds: Any, path: Path, step: int) -> gym.spaces.Discrete:
    dt = np.dtype(ds.dtype)
    if dt.kind not in "iu" or len(ds.shape) != 1:
        raise InteropError(
            f"{path}: discrete actions need integer 'actions' of shape (N,); got {dt} {ds.shape}"
        )
    lo, hi = None, None
    for a in range(0, ds.shape[0], step):
        v = ds[a : a + step]
        lo = int(v.min()) if lo is None else min(lo, int(v.min()))
        hi = int(v.max()) if hi is None else max(hi, int(v.max()))
    return gym.spaces.Discrete(hi - lo + 1, start=lo)


def _flags(f: Any, key: str, a: int, b: int, path: Path) -> np.ndarray:
    v = np.asarray(f[key][a:b]).reshape(b - a)
    if v.dtype == bool:
        return v
    bad = (v != 0) & (v != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InteropError(f"{path}: {key!r} row {a + i} is {v[i]!r}; expected 0/1 or true/false")
    return v.astype(bool)


def import_d4rl(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    discrete_actions: bool = False,
    env_id: str | None = None,
    env_kwargs: dict | None = None,
    overwrite: bool = False,
    chunk_rows: Any = None,
    codecs: Any = None,
    block_rows: int | None = None,
    progress: bool | Progress = False,
) -> InteropStats:
    """Create the store ``out`` from the D4RL-style HDF5 file ``src`` (see the module docstring).

    ``env_id`` / ``env_kwargs`` are recorded as the store's env (D4RL files do not say
    reliably). ``out`` must not exist unless ``overwrite=True``; if the import fails
    part-way the new store is removed. Needs h5py (``pip install "replaystore[hdf5]"``).
    Raises :class:`~replaystore.errors.InteropError` naming the file and the key for a
    file that lacks a key, has keys of different lengths or flags other than 0/1.

    Example::

        import_d4rl("hopper-medium-v2.hdf5", "hopper.zarr", env_id="Hopper-v4")
    """
    h5py = require("h5py", "hdf5", "import of D4RL HDF5 files")
    t0 = time.perf_counter()
    path, fh = _open_file(h5py, src)
    stats = InteropStats("import", "D4RL file", str(path), str(out))
    with fh as f:
        keys, n = _check_file(h5py, f, path)
        has_next, has_timeouts = "next_observations" in f, "timeouts" in f
        obs_space, act_space = _infer_spaces(f, path, observation_space, action_space,
                                             discrete_actions)
        if not has_timeouts:
            stats.note("no 'timeouts' in the file: episodes end only at terminals")
        provenance = _provenance(path, keys, n, has_next, has_timeouts)
        store = create(out, obs_space, act_space, env_id=env_id, info={"imported_from": provenance},
                       chunk_rows=chunk_rows, codecs=codecs, overwrite=overwrite)
        with discard_on_failure(store):
            if env_id:
                store.update_info(env={"id": env_id, "kwargs": dict(env_kwargs or {})})
            kept, rounded, episodes = _copy(f, store, path, n, has_next, has_timeouts,
                                             block_rows, progress)
            stats.rows = kept
            stats.episodes = episodes
            stats.dropped_rows = n - kept
            stats.columns = tuple(store.schema.names)
            for message in _notes(n - kept, rounded):
                stats.note(message)
            store.update_info({"imported_from": {**provenance, "rows": kept, "dropped_rows": n - kept,
                                                 "episodes": episodes, "notes": stats.notes}})
    stats.seconds = time.perf_counter() - t0
    return stats


def _open_file(h5py: Any, src: str | os.PathLike) -> tuple[Path, Any]:
    """``src`` as a Path, and the HDF5 file opened read-only."""
    path = Path(src)
    if not path.exists():
        raise DatasetNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise InteropError(f"{path}: is a directory, not an HDF5 file")
    try:
        fh = h5py.File(path, "r")
    except OSError as e:
        raise InteropError(f"{path}: not a readable HDF5 file ({e})") from None
    return path, fh


def _check_file(h5py: Any, f: Any, path: Path) -> tuple[list[str], int]:
    """The file's keys and row count, once its datasets are known to make transitions."""
    keys = sorted(f.keys())
    for key in REQUIRED_KEYS:
        if key not in f:
            raise InteropError(
                f"{path}: no {key!r} dataset; a D4RL-style file has {', '.join(REQUIRED_KEYS)} "
                f"(and optionally {', '.join(_OPTIONAL_KEYS)}); this one has {', '.join(keys) or 'nothing'}"
            )
    present = [k for k in (*REQUIRED_KEYS, *_OPTIONAL_KEYS) if k in f]
    for key in present:  # links first: opening an external link would read another file
        _check_link(h5py, f, key, path)
    for key in present:
        if not isinstance(f[key], h5py.Dataset) or len(f[key].shape) == 0:
            raise InteropError(f"{path}: {key!r} is not an array of rows")
        _check_storage(h5py, f[key], key, path)
    n = int(f["observations"].shape[0])
    for key in present:
        if f[key].shape[0] != n:
            raise InteropError(
                f"{path}: {key!r} has {f[key].shape[0]:,} rows but 'observations' has {n:,}; "
                "every key needs one row per transition"
            )
    for key in ("rewards", "terminals", "timeouts"):
        if key in f and f[key].shape[1:] not in ((), (1,)):
            raise InteropError(f"{path}: {key!r} has shape {f[key].shape}; expected (N,) or (N, 1)")
    if "next_observations" in f and f["next_observations"].shape != f["observations"].shape:
        raise InteropError(f"{path}: 'next_observations' has shape {f['next_observations'].shape}; "
                           f"'observations' has {f['observations'].shape}")
    if n == 0:
        raise InteropError(f"{path}: 'observations' has no rows; nothing to import")
    return keys, n


def _check_link(h5py: Any, f: Any, key: str, path: Path) -> None:
    """``key`` must be a dataset of this file itself: a soft or external link (which can
    lead into another file) is refused before anything is opened through it."""
    link = f.get(key, getlink=True)
    if not isinstance(link, h5py.HardLink):
        if isinstance(link, h5py.ExternalLink):
            what = f"an external link to {link.path!r} in file {link.filename!r}"
        elif isinstance(link, h5py.SoftLink):
            what = f"a soft link to {link.path!r}"
        else:
            what = f"a {type(link).__name__}"
        raise InteropError(f"{path}: {key!r} is {what}; only datasets stored in this file are imported")


def _check_storage(h5py: Any, ds: Any, key: str, path: Path) -> None:
    """Every byte of dataset ``key`` is stored in the file itself, before any row is read.

    Refused: external raw storage (rows read from another file), virtual datasets (rows
    mapped from other files), dtypes that are not plain numbers or booleans, rows larger
    than :data:`MAX_ROW_BYTES`, and storage the file does not hold: a contiguous
    dataset whose bytes are not all allocated within the file, or a chunked one with
    chunks never written (HDF5 would return the fill value for them). So the import
    writes no row that is not read from this file's own bytes: uncompressed, the rows
    are at most the file's size; compressed chunks expand by their filter's ratio only."""
    where = f"{path}: dataset {key!r}"
    plist = ds.id.get_create_plist()
    if plist.get_external_count() > 0:
        files = ", ".join(repr(e[0]) for e in (ds.external or [])[:3])
        raise InteropError(f"{where} keeps its data in external file(s) {files}; "
                           "only data stored in this file is imported")
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise InteropError(f"{where} is a virtual dataset (its rows come from other files); "
                           "only data stored in this file is imported")
    dt = ds.dtype
    if dt.kind not in "biuf" or dt.itemsize > 8 or dt.fields is not None or dt.subdtype is not None:
        raise InteropError(f"{where} has dtype {dt}; only numbers and booleans can be imported")
    shape = tuple(int(d) for d in ds.shape)
    row = dt.itemsize * math.prod(shape[1:])
    if row > MAX_ROW_BYTES:
        raise InteropError(f"{where} has rows of {row:,} bytes (shape {shape}); at most "
                           f"{MAX_ROW_BYTES:,} bytes per row are imported")
    nbytes = row * (shape[0] if shape else 1)
    file_size = os.path.getsize(path)
    if layout == h5py.h5d.CHUNKED:
        chunks = ds.chunks
        want = math.prod(-(-s // c) for s, c in zip(shape, chunks, strict=True))
        have = ds.id.get_num_chunks()
        if have < want:
            raise InteropError(
                f"{where} declares {shape[0]:,} rows (shape {shape}) but only {have:,} of its {want:,} "
                "chunks are stored in the file; rows the file does not hold are not imported"
            )
        stored = ds.id.get_storage_size()
    else:
        stored = ds.id.get_storage_size()
        offset = ds.id.get_offset() if layout == h5py.h5d.CONTIGUOUS else 0
        if stored < nbytes or (layout == h5py.h5d.CONTIGUOUS and (offset is None or offset + nbytes > file_size)):
            raise InteropError(
                f"{where} declares {shape[0]:,} rows ({nbytes:,} bytes) but the file ({file_size:,} "
                f"bytes) stores {stored:,} bytes of it; rows the file does not hold are not imported"
            )
    if stored > file_size:
        raise InteropError(f"{where} records {stored:,} bytes of storage in a file of {file_size:,} bytes; "
                           "the file is damaged")


def _infer_spaces(f: Any, path: Path, observation_space: gym.Space | None,
                  action_space: gym.Space | None, discrete_actions: bool) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces: as given, else inferred from the data."""
    scan = _block_rows(max(1, f["actions"].dtype.itemsize))
    obs_space = observation_space or _box("observations", f["observations"], path)
    if action_space is not None:
        act_space = action_space
    elif discrete_actions:
        act_space = _discrete(f["actions"], path, scan)
    else:
        act_space = _box("actions", f["actions"], path)
    return obs_space, act_space


def _provenance(path: Path, keys: list[str], n: int, has_next: bool, has_timeouts: bool) -> dict:
    """``info["imported_from"]`` as recorded when the store is created."""
    return {
        "format": "d4rl",
        "file": str(path.resolve()),
        "rows_in_file": n,
        "next_observations": has_next,
        "timeouts": has_timeouts,
        "ignored_keys": [k for k in keys if k not in (*REQUIRED_KEYS, *_OPTIONAL_KEYS)],
        "imported": now_iso(),
        "replaystore_version": __version__,
    }


def _notes(dropped: int, rounded: int) -> list[str]:
    """What the copy left out or changed, in words."""
    notes = []
    if dropped:
        notes.append(f"dropped {dropped:,} row(s) with no next observation in the file (the last "
                     "row of each episode: the file has no 'next_observations')")
    if rounded:
        notes.append(f"{rounded:,} reward(s) rounded to float32 (the store keeps float32 rewards)")
    return notes


def _copy(f: Any, store: Any, path: Path, n: int, has_next: bool, has_timeouts: bool,
          block_rows: int | None, progress: bool | Progress) -> tuple[int, int, int]:
    """Copy the rows block by block; returns (rows kept, rewards rounded, episodes)."""
    row = sum(int(np.prod(f[k].shape[1:], dtype=np.int64)) * f[k].dtype.itemsize
              for k in ("observations", "actions")) * (1 if has_next else 2) + 16
    step = _block_rows(row, block_rows, total=n)
    cur_ep, cur_step = 0, 0
    kept = rounded = episodes = 0
    last_seen = -1
    with as_progress(progress).task(n, "import d4rl") as bar:
        for a in range(0, n, step):
            b = min(n, a + step)
            m = b - a
            obs = f["observations"][a : min(n, b + (0 if has_next else 1))]
            act = f["actions"][a:b]
            rew, r = _rewards(f, a, b, path)
            rounded += r
            term = _flags(f, "terminals", a, b, path)
            tout = _flags(f, "timeouts", a, b, path) if has_timeouts else np.zeros(m, bool)
            done = term | tout
            ep, stp, cur_ep, cur_step = _number_rows(done, cur_ep, cur_step)
            if has_next:
                keep = np.arange(m)
                nxt = f["next_observations"][a:b]
            else:
                keep = np.flatnonzero(~done & (a + np.arange(m, dtype=np.int64) + 1 < n))
                nxt = obs[keep + 1]
            if len(keep):
                store.extend({
                    "obs": obs[keep], "action": act[keep], "reward": rew[keep], "next_obs": nxt,
                    "terminated": term[keep], "truncated": tout[keep], "episode": ep[keep],
                    "step": stp[keep],
                })
                ids = np.unique(ep[keep])
                episodes += int(np.count_nonzero(ids > last_seen))
                last_seen = int(ids[-1])
                kept += len(keep)
            bar.update(m)
    store.flush()
    return kept, rounded, episodes


def _rewards(f: Any, a: int, b: int, path: Path) -> tuple[np.ndarray, int]:
    """Rows ``a:b`` of 'rewards' (refused unless finite numbers), and how many of them
    float32 rounds."""
    rew = np.asarray(f["rewards"][a:b]).reshape(b - a)
    if rew.dtype.kind not in "fiu":
        raise InteropError(f"{path}: 'rewards' has dtype {rew.dtype}; expected numbers")
    bad = ~np.isfinite(rew.astype(np.float64))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InteropError(f"{path}: 'rewards' row {a + i} is {rew[i]}; rewards must be finite")
    rounded = 0
    if rew.dtype != np.float32:
        rounded = int(np.count_nonzero(rew.astype(np.float32).astype(np.float64)
                                       != rew.astype(np.float64)))
    return rew, rounded


def _number_rows(done: np.ndarray, cur_ep: int, cur_step: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Episode id and step of every row of a block of the file (before any row is dropped;
    ``done``: the rows that end an episode), and the episode and step the next block starts at."""
    d = done.astype(np.int64)
    ep = cur_ep + np.cumsum(d) - d
    idx = np.arange(len(done), dtype=np.int64)
    prev = np.maximum.accumulate(np.concatenate(([-1], np.where(done, idx, -1)[:-1])))
    stp = np.where(prev < 0, cur_step + idx, idx - prev - 1)
    cur_ep += int(d.sum())
    cur_step = 0 if done[-1] else int(stp[-1]) + 1
    return ep, stp, cur_ep, cur_step

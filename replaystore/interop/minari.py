"""Minari datasets to stores and back.

A Minari episode of ``N`` steps keeps ``N + 1`` observations ``obs[0..N]`` and ``N``
actions, rewards, terminations and truncations. A store keeps one row per step with both
observations, so row ``t`` of the episode is::

    obs = obs[t], action = actions[t], reward = rewards[t], next_obs = obs[t + 1],
    terminated = terminations[t], truncated = truncations[t], step = t

**Export** (:func:`export_minari`) writes the store's complete episodes, in the order of
their first rows (rows of interleaved episodes, e.g. from vector envs, are gathered per
episode). An episode is complete when its first row has ``step == 0``, its last row is
terminated or truncated and no row before it is. Other episodes are skipped, with one
warning that counts them: the oldest one of a ring whose first rows were evicted, the
ones still running at the end of the store, and any whose steps do not run 0, 1, 2, ...
A row's ``next_obs`` is kept only as the next row's ``obs`` (and, for the last row, as the
final observation); rows whose ``next_obs`` differs from the next row's ``obs`` are
counted in a warning. Extra fields are not exported. The dataset gets the store's
spaces, and the env spec of the store's env id and kwargs when that env can be made here.
Images are stored raw (no JPEG), so values round-trip exactly.

**Import** (:func:`import_minari`) creates a new store with the dataset's spaces; store
episode ``k`` is Minari episode ``k``, ``step`` counts from 0, the env id and kwargs come
from the dataset's env spec, and ``info["imported_from"]`` says where the rows came from.
Rewards are stored as float32 (a warning counts any that round). Step infos are not
imported.

``out`` / ``src`` is a dataset id such as ``"replaystore/lake-v0"`` (in the local Minari
directory, ``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``) or a path: anything that
starts with ``/``, ``.`` or ``~``, is a :class:`pathlib.Path`, or is not a valid dataset
id (``(namespace/)name-v<version>``). A path holds ``data/metadata.json`` as in the Minari
directory; ``minari.MinariDataset(path + "/data")`` reads it.

>>> import pytest; _ = pytest.importorskip("minari", reason="needs replaystore[minari]")
>>> import tempfile, gymnasium as gym, replaystore as rs, minari
>>> d = tempfile.mkdtemp()
>>> s = rs.create(d + "/s.zarr", gym.spaces.Discrete(4), gym.spaces.Discrete(2))
>>> s.extend({"obs": [0, 1, 2], "action": [1, 1, 0], "reward": [0.0, 0.0, 1.0],
...           "next_obs": [1, 2, 3], "terminated": [False, False, True],
...           "truncated": [False, False, False]})
>>> export_minari(s, d + "/lake-v0").episodes
1
>>> ep = minari.MinariDataset(d + "/lake-v0/data")[0]
>>> ep.observations.tolist(), ep.actions.tolist()
([0, 1, 2, 3], [1, 1, 0])
>>> back = import_minari(d + "/lake-v0", d + "/back.zarr")
>>> rs.open(d + "/back.zarr").read_range(0, 3, fields=["obs", "next_obs"])["next_obs"].tolist()
[1, 2, 3]
>>> s.close()
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from .. import __version__
from .. import spaces as _spaces
from ..errors import (
    DatasetNotFoundError,
    InteropError,
    MissingExtraError,
    StoreExistsError,
)
from ..storage.metadata import now_iso
from ._common import (
    InteropStats,
    Progress,
    discard_on_failure,
    opened_store,
    require,
    row_bytes,
)
from ._common import block_rows as _block_rows

__all__ = ["export_minari", "import_minari"]

_FLAGS = ["episode", "step", "terminated", "truncated"]


def _minari(what: str) -> Any:
    mn = require("minari", "minari", what)
    # minari's HDF5 storage needs h5py and Pillow, which minari itself does not install
    for module in ("h5py", "PIL"):
        require(module, "minari", what)
    return mn


# ---------------------------------------------------------------------------------------
# dataset ids and paths
# ---------------------------------------------------------------------------------------
def _dataset_id(target: Any) -> str | None:
    """``target`` as a Minari dataset id, or None if it names a path."""
    if isinstance(target, os.PathLike):
        return None
    s = str(target)
    if not s or s.startswith(("/", ".", "~")) or (os.sep != "/" and os.sep in s):
        return None
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(s)
    except (ValueError, TypeError):  # malformed, or no -v<version>
        return None
    return s


def _datasets_root() -> Path:
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path())


def _dataset_dir(target: Any) -> tuple[str | None, Path]:
    did = _dataset_id(target)
    if did is not None:
        return did, _datasets_root() / did
    # absolute: minari's storage mishandles relative paths (get_size joins them twice)
    return None, Path(os.path.expanduser(os.fspath(target))).absolute()


def _path_dataset_id(path: Path) -> str:
    """A valid dataset id for a dataset written to ``path`` (its name, made valid)."""
    from minari.dataset.minari_dataset import parse_dataset_id

    name = path.name
    try:
        parse_dataset_id(name)
        return name
    except (ValueError, TypeError):
        pass
    base = re.sub(r"[^-_\w]", "_", re.sub(r"-v\d+$", "", name)).strip("-_") or "dataset"
    return f"{base}-v0"


def _load(mn: Any, src: Any) -> tuple[Any, str | None, Path]:
    did, root = _dataset_dir(src)
    if did is not None:
        data = root / "data"
        if not data.is_dir():
            raise DatasetNotFoundError(
                f"{did}: no Minari dataset with this id in {_datasets_root()} (set "
                f"MINARI_DATASETS_PATH, or `minari download {did}`); to read a directory, "
                f"give its path (./{did})"
            )
    else:
        if (root / "data" / "metadata.json").is_file():
            data = root / "data"
        elif (root / "metadata.json").is_file():
            data = root
        elif not root.exists():
            raise DatasetNotFoundError(f"{root}: no such Minari dataset (no such file or directory)")
        else:
            raise InteropError(f"{root}: not a Minari dataset (no data/metadata.json in it)")
    try:
        ds = mn.MinariDataset(data)
    except ImportError as e:
        raise MissingExtraError(
            f"{src}: reading this Minari dataset needs {e.name or e}: pip install \"replaystore[minari]\""
        ) from None
    except (ValueError, KeyError, TypeError, AssertionError, OSError) as e:
        raise InteropError(f"{src}: cannot read the Minari dataset in {data}: {e}") from None
    return ds, did, data


# ---------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------
def _scan_episodes(st: Any, step: int) -> pd.DataFrame:
    """One row per episode of the store (in order of first rows): first/last row, rows,
    first/last step, whether the last row ends it and how many rows end it."""
    n = len(st)
    parts = []
    for a in range(0, n, step):
        b = min(n, a + step)
        d = st.read_range(a, b, fields=_FLAGS)
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


def _plural(k: int, word: str) -> str:
    return f"{k:,} {word}{'' if k == 1 else 's'}"


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise equality of two batches (NaN equals NaN)."""
    eq = a == b
    if a.dtype.kind in "fc":
        eq |= np.isnan(a) & np.isnan(b)
    return eq.reshape(len(a), -1).all(axis=1)


class _MinariWriter:
    """Writes episode buffers to a new Minari dataset (created on the first write)."""

    def __init__(self, mn: Any, did: str | None, path: Path, obs_space, act_space, env,
                 description: str, data_format: str) -> None:
        self.mn, self.did, self.path = mn, did, path
        self.obs_space, self.act_space, self.env = obs_space, act_space, env
        self.description, self.data_format = description, data_format
        self.dataset = None
        self.storage = None
        self.created = False

    def _jpeg_off(self, fn: Any) -> dict:
        import inspect

        # images raw: JPEG (minari's default for image spaces) would not round-trip
        return {"jpeg_encoding": False} if "jpeg_encoding" in inspect.signature(fn).parameters else {}

    def write(self, buffers: list) -> None:
        if not buffers:
            return
        if self.did is not None:
            if self.dataset is None:
                self.created = True
                with warnings.catch_warnings():
                    # author, permalink... are optional: minari warns about each one
                    warnings.filterwarnings("ignore", message=r".*(is set to None|env_spec is None)",
                                            category=UserWarning)
                    self.dataset = self.mn.create_dataset_from_buffers(
                        self.did, buffers, env=self.env, observation_space=self.obs_space,
                        action_space=self.act_space, description=self.description,
                        algorithm_name="replaystore export", data_format=self.data_format,
                        **self._jpeg_off(self.mn.create_dataset_from_buffers),
                    )
            else:
                self.dataset.update_dataset_from_buffer(buffers)
            return
        if self.storage is None:
            from minari.dataset.minari_storage import MinariStorage

            self.created = True
            self.path.mkdir()
            self.storage = MinariStorage.new(
                self.path / "data", observation_space=self.obs_space, action_space=self.act_space,
                env_spec=self.env.spec if self.env is not None else None, data_format=self.data_format,
                **self._jpeg_off(MinariStorage.new),
            )
            self.storage.update_metadata({
                "dataset_id": _path_dataset_id(self.path),
                "minari_version": self.mn.__version__,
                "description": self.description,
                "algorithm_name": "replaystore export",
            })
        self.storage.update_episodes(buffers)

    def abort(self) -> None:
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)


def _env_for_export(st: Any, stats: InteropStats) -> Any:
    env_id = st.env_info.get("id")
    if not env_id:
        return None
    kwargs = dict(st.env_info.get("kwargs") or {})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gym.make(env_id, **kwargs)
    except Exception as e:  # any failure to make it only costs the env spec
        stats.note(f"the dataset has no env spec: {env_id} {json.dumps(kwargs)} cannot be made here "
                   f"({type(e).__name__}: {e})")
        return None


def export_minari(
    store: Any,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    description: str | None = None,
    data_format: str = "hdf5",
    block_rows: int | None = None,
    progress: bool = False,
) -> InteropStats:
    """Write the complete episodes of ``store`` (a store or its path) as a Minari dataset.

    ``out`` is a dataset id in the local Minari directory or a path (see the module
    docstring); it must not exist unless ``overwrite=True``. Incomplete episodes are
    skipped with a warning; :class:`~replaystore.errors.InteropError` if no episode is
    complete. ``data_format`` is minari's storage: ``"hdf5"`` (default) or ``"arrow"``
    (needs pyarrow too). Needs ``pip install "replaystore[minari]"``.

    Example::

        export_minari("fl.zarr", "replaystore/frozenlake-v0")
        minari.load_dataset("replaystore/frozenlake-v0").total_episodes
    """
    mn = _minari("export to Minari")
    t0 = time.perf_counter()
    with opened_store(store) as st:
        stats = InteropStats("export", "Minari dataset", str(st.path), str(out))
        obs_space, act_space = st.observation_space, st.action_space
        if obs_space is None or act_space is None:
            raise InteropError(
                f"{st.path}: the store records no observation/action spaces (made with fields=...); "
                "a Minari dataset needs them"
            )
        obs_leaves = [n for n, _ in _spaces.flatten_space("obs", obs_space)]
        act_leaves = [n for n, _ in _spaces.flatten_space("action", act_space)]
        names = [*obs_leaves, *act_leaves, "reward", *("next_" + n for n in obs_leaves),
                 "terminated", "truncated", "episode", "step"]
        extra = [n for n in st.schema.names if n not in names]
        if extra:
            stats.note(f"extra field(s) {', '.join(extra)} not exported (a Minari dataset has no place for them)")
        did, path = _dataset_dir(out)
        if path.exists():
            if not overwrite:
                raise StoreExistsError(f"{out}: a Minari dataset already exists there ({path}); "
                                       "pass overwrite=True (--overwrite) to replace it")
            if not ((path / "data" / "metadata.json").is_file() or (path.is_dir() and not any(path.iterdir()))):
                raise StoreExistsError(f"{path}: exists and is not a Minari dataset; refusing to replace it")
        elif not path.parent.is_dir() and did is None:
            raise DatasetNotFoundError(f"{path}: directory {path.parent} does not exist")

        if len(st) == 0:
            raise InteropError(f"{st.path}: nothing to export to Minari: the store holds no rows")
        step = _block_rows(row_bytes(st, names), block_rows)
        eps = _scan_episodes(st, step)
        evicted = eps["first_step"] != 0
        unfinished = ~evicted & ~eps["last_done"].astype(bool)
        odd = ~evicted & ~unfinished & ((eps["n_done"] != 1) | (eps["last_step"] != eps["rows"] - 1))
        good = eps[~(evicted | unfinished | odd)]
        if not len(good):
            raise InteropError(
                f"{st.path}: nothing to export to Minari: none of its {_plural(len(eps), 'episode')} is "
                f"complete ({int(evicted.sum())} started before the oldest row, {int(unfinished.sum())} "
                "unfinished at the end)"
            )
        skipped = {"whose first rows a ring has evicted": evicted, "unfinished at the end of the store": unfinished,
                   "with steps that do not run 0, 1, 2, ... to one final terminated/truncated row": odd}
        order = {int(e): k for k, e in enumerate(good.index)}
        need = {int(e): int(r) for e, r in zip(good.index, good["rows"], strict=True)}
        good_ids = np.fromiter(order, np.int64, len(order))

        env = _env_for_export(st, stats)
        if path.exists():  # overwrite: checked above, replaced only now that there is data
            shutil.rmtree(path)
        writer = _MinariWriter(mn, did, path, obs_space, act_space, env,
                               description or f"exported by replaystore {__version__} from {st.path}",
                               data_format)
        parts: dict[int, list[dict[str, np.ndarray]]] = {}
        got: dict[int, int] = {}
        ready: dict[int, Any] = {}
        pending: list = []
        pending_rows = 0
        next_k = 0
        bad_steps: list[int] = []
        mismatched = 0
        exported_rows = 0
        n = len(st)
        try:
            with Progress(n, progress, "export minari") as bar:
                for a in range(0, n, step):
                    b = min(n, a + step)
                    d = st.read_range(a, b, fields=names)
                    idx = np.flatnonzero(np.isin(d["episode"], good_ids))
                    if len(idx):
                        sub = d["episode"][idx]
                        srt = np.argsort(sub, kind="stable")
                        cuts = np.flatnonzero(np.diff(sub[srt])) + 1
                        for grp in np.split(srt, cuts):
                            rows = idx[grp]
                            e = int(d["episode"][rows[0]])
                            parts.setdefault(e, []).append({k: v[rows] for k, v in d.items()})
                            got[e] = got.get(e, 0) + len(rows)
                            if got[e] == need[e]:
                                chunks = parts.pop(e)
                                ep = {k: np.concatenate([c[k] for c in chunks]) for k in names}
                                buf, mism = _episode_buffer(ep, obs_space, act_space, obs_leaves, act_leaves)
                                if buf is None:
                                    bad_steps.append(e)
                                else:
                                    mismatched += mism
                                ready[order[e]] = buf
                    while next_k in ready:
                        buf = ready.pop(next_k)
                        next_k += 1
                        if buf is not None:
                            pending.append(buf)
                            pending_rows += len(buf)
                    if pending_rows >= step:
                        writer.write(pending)
                        exported_rows += pending_rows
                        stats.episodes = (stats.episodes or 0) + len(pending)
                        pending, pending_rows = [], 0
                    bar.update(b - a)
                if not pending and not writer.created:
                    raise InteropError(f"{st.path}: nothing to export to Minari: no episode has steps 0, 1, 2, ...")
                writer.write(pending)
                exported_rows += pending_rows
                stats.episodes = (stats.episodes or 0) + len(pending)
        except BaseException:
            writer.abort()
            raise
        finally:
            if env is not None:
                env.close()
        stats.rows = exported_rows
        stats.out = f"{did} ({path})" if did is not None else str(path)
        stats.columns = tuple(names)
        reasons = [f"{int(mask.sum()):,} {why}" for why, mask in skipped.items() if mask.any()]
        rows_skipped = int(eps.loc[evicted | unfinished | odd, "rows"].sum())
        if bad_steps:
            reasons.append(f"{len(bad_steps):,} whose step counter skips")
            rows_skipped += sum(need[e] for e in bad_steps)
        stats.skipped_episodes = int((evicted | unfinished | odd).sum()) + len(bad_steps)
        stats.dropped_rows = rows_skipped
        if stats.skipped_episodes:
            stats.note(f"skipped {_plural(stats.skipped_episodes, 'incomplete episode')} "
                       f"({_plural(rows_skipped, 'row')}): {', '.join(reasons)}")
        if mismatched:
            stats.note(f"{_plural(mismatched, 'row')} had a next_obs that differs from the next row's obs; "
                       "Minari keeps one observation sequence, so those next_obs values are not exported")
    stats.seconds = time.perf_counter() - t0
    return stats


def _episode_buffer(ep: dict[str, np.ndarray], obs_space, act_space, obs_leaves, act_leaves):
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


# ---------------------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------------------
def _env_record(spec: Any, stats: InteropStats) -> dict:
    """``{"id", "kwargs"}`` to ``gym.make`` the dataset's env again (``{}`` without a spec)."""
    if spec is None:
        return {}
    kwargs = dict(spec.kwargs or {})
    try:
        registered = gym.spec(spec.id)
    except Exception:  # not registered here (its package is not installed)
        registered = None
    if spec.max_episode_steps is not None and (
            registered is None or registered.max_episode_steps != spec.max_episode_steps):
        kwargs["max_episode_steps"] = spec.max_episode_steps
    keep = {}
    for k, v in kwargs.items():
        try:
            keep[k] = json.loads(json.dumps(v, allow_nan=False))
        except (TypeError, ValueError):
            stats.note(f"env kwarg {k!r} is not JSON and was not recorded")
    return {"id": spec.id, "kwargs": keep}


def import_minari(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    chunk_rows: Any = None,
    codecs: Any = None,
    block_rows: int | None = None,
    progress: bool = False,
) -> InteropStats:
    """Create the store ``out`` from the Minari dataset ``src`` (a dataset id or a path).

    ``out`` must not exist unless ``overwrite=True`` (then the old store is replaced);
    ``chunk_rows`` / ``codecs`` as for :func:`replaystore.create`. If the import fails
    part-way, the new store is removed. Needs ``pip install "replaystore[minari]"``.

    Example::

        import_minari("D4RL/door/human-v2", "door.zarr")
    """
    from ..storage.create import create

    mn = _minari("import from Minari")
    t0 = time.perf_counter()
    ds, did, data = _load(mn, src)
    stats = InteropStats("import", "Minari dataset", str(did or data.parent), str(out))
    spec = ds.env_spec
    env = _env_record(spec, stats)
    provenance = {
        "format": "minari",
        "dataset_id": ds.id,
        "path": str(data),
        "minari_version": ds.minari_version,
        "episodes": int(ds.total_episodes),
        "steps": int(ds.total_steps),
        "env_spec": json.loads(spec.to_json()) if spec is not None else None,
        "imported": now_iso(),
        "replaystore_version": __version__,
    }
    obs_space, act_space = ds.observation_space, ds.action_space
    store = create(out, obs_space, act_space, env_id=env.get("id"), info={"imported_from": provenance},
                   chunk_rows=chunk_rows, codecs=codecs, overwrite=overwrite)
    with discard_on_failure(store):
        if env:
            store.update_info(env=env)
        step = _block_rows(row_bytes(store, store.schema.names), block_rows)
        block: list[dict[str, np.ndarray]] = []
        block_n = 0
        rounded = unfinished = empty = 0
        infos = False
        episodes = 0
        with Progress(int(ds.total_steps), progress, "import minari") as bar:
            for ep in ds.iterate_episodes():
                rows = _episode_rows(ep, obs_space, act_space, src)
                n = len(rows["reward"])
                if n == 0:
                    empty += 1
                    continue
                r = np.asarray(ep.rewards)
                if r.dtype != np.float32 and r.dtype.kind == "f":
                    r32 = r.astype(np.float32).astype(r.dtype)
                    rounded += int(np.count_nonzero((r32 != r) & ~(np.isnan(r) & np.isnan(r32))))
                if not (rows["terminated"][-1] or rows["truncated"][-1]):
                    unfinished += 1
                infos = infos or bool(ep.infos)
                block.append(rows)
                block_n += n
                episodes += 1
                if block_n >= step:
                    store.extend({k: np.concatenate([b[k] for b in block]) for k in block[0]})
                    bar.update(block_n)
                    block, block_n = [], 0
            if block:
                store.extend({k: np.concatenate([b[k] for b in block]) for k in block[0]})
                bar.update(block_n)
        store.flush()
        stats.rows = len(store)
        stats.episodes = episodes
        stats.columns = tuple(store.schema.names)
        if empty:
            stats.skipped_episodes = empty
            stats.note(f"skipped {_plural(empty, 'episode')} without steps")
        if unfinished:
            stats.note(f"{_plural(unfinished, 'episode')} end without termination or truncation "
                       "(kept; the store counts them as unfinished)")
        if rounded:
            stats.note(f"{_plural(rounded, 'reward')} rounded to float32 (the store keeps float32 rewards)")
        if infos:
            stats.note("step infos are not imported")
        store.update_info({"imported_from": {**provenance, "rows": stats.rows, "notes": stats.notes}})
    stats.seconds = time.perf_counter() - t0
    return stats


def _episode_rows(ep: Any, obs_space, act_space, src: Any) -> dict[str, np.ndarray]:
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

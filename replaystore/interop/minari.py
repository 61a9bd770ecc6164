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

import dataclasses
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

from .. import spaces as _spaces
from ..errors import (
    DatasetNotFoundError,
    InteropError,
    MissingExtraError,
    StoreExistsError,
)
from ..progress import Progress, as_progress
from ..storage import create, now_iso
from ..training import check_env_id
from ..version import __version__
from ._common import (
    InteropStats,
    discard_on_failure,
    opened_store,
    require,
    row_bytes,
)
from ._common import block_rows as _block_rows
from .minari_episodes import EpisodeCollector, episode_rows, scan_episodes

__all__ = ["export_minari", "import_minari"]


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
    _check_spaces_recorded(src, data)
    try:
        ds = mn.MinariDataset(data)
    except ImportError as e:
        raise MissingExtraError(
            f"{src}: reading this Minari dataset needs {e.name or e}: pip install \"replaystore[minari]\""
        ) from None
    except (ValueError, KeyError, TypeError, AssertionError, OSError) as e:
        raise InteropError(f"{src}: cannot read the Minari dataset in {data}: {e}") from None
    return ds, did, data


def _check_spaces_recorded(src: Any, data: Path) -> None:
    """:class:`InteropError` unless ``data/metadata.json`` records both spaces: without
    them minari makes the env from the dataset's env spec, whose entry point names a
    module to import (a dataset is data and must not run code)."""
    try:
        meta = json.loads((data / "metadata.json").read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise InteropError(f"{src}: cannot read {data / 'metadata.json'}: {e}") from None
    missing = [k for k in ("observation_space", "action_space")
               if not isinstance(meta, dict) or not isinstance(meta.get(k), str)]
    if missing:
        raise InteropError(f"{src}: {data / 'metadata.json'} does not record {' and '.join(missing)}; "
                           "minari would make the env of its env spec to get them, which imports "
                           "code the dataset names, so it is not read")


# ---------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------
def _plural(k: int, word: str) -> str:
    return f"{k:,} {word}{'' if k == 1 else 's'}"


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


def _env_for_export(st: Any, stats: InteropStats, trust_env_id: bool) -> Any:
    """The store's env, made for its spec (``None`` if it records none or it cannot be
    made here); :class:`EnvError` for a ``module:Env-v0`` id unless ``trust_env_id``."""
    env_id = st.env_info.get("id")
    if not env_id:
        return None
    env_id = check_env_id(env_id, source=st.path, trusted=trust_env_id, env_option=None)
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
    progress: bool | Progress = False,
    trust_env_id: bool = False,
) -> InteropStats:
    """Write the complete episodes of ``store`` (a store or its path) as a Minari dataset.

    ``out`` is a dataset id in the local Minari directory or a path (see the module
    docstring); it must not exist unless ``overwrite=True``. Incomplete episodes are
    skipped with a warning; :class:`~replaystore.errors.InteropError` if no episode is
    complete. ``data_format`` is minari's storage: ``"hdf5"`` (default) or ``"arrow"``
    (needs pyarrow too). Needs ``pip install "replaystore[minari]"``.

    The env spec comes from making the store's recorded env. A store is data: a recorded
    ``module:Env-v0`` id (which would import ``module``) is refused with
    :class:`~replaystore.errors.EnvError` before anything is written, unless
    ``trust_env_id=True`` (``--trust-env-id``; see :func:`replaystore.training.check_env_id`).

    Example::

        export_minari("fl.zarr", "replaystore/frozenlake-v0")
        minari.load_dataset("replaystore/frozenlake-v0").total_episodes
    """
    mn = _minari("export to Minari")
    t0 = time.perf_counter()
    with opened_store(store) as st:
        if st.env_info.get("id"):  # refused before any work (made only further down)
            check_env_id(st.env_info["id"], source=st.path, trusted=trust_env_id, env_option=None)
        stats = InteropStats("export", "Minari dataset", str(st.path), str(out))
        obs_space, act_space = _export_spaces(st)
        obs_leaves, act_leaves, names = _export_names(obs_space, act_space)
        extra = [n for n in st.schema.names if n not in names]
        if extra:
            stats.note(f"extra field(s) {', '.join(extra)} not exported (a Minari dataset has no place for them)")
        did, path = _check_export_target(out, overwrite)
        if len(st) == 0:
            raise InteropError(f"{st.path}: nothing to export to Minari: the store holds no rows")
        step = _block_rows(row_bytes(st, names), block_rows)
        eps, skipped, left_out = _select_episodes(st, step)
        collector = EpisodeCollector(eps[~left_out], names, obs_space, act_space, obs_leaves,
                                     act_leaves)
        env = _env_for_export(st, stats, trust_env_id)
        if path.exists():  # overwrite: checked above, replaced only now that there is data
            shutil.rmtree(path)
        writer = _MinariWriter(mn, did, path, obs_space, act_space, env,
                               description or f"exported by replaystore {__version__} from {st.path}",
                               data_format)
        try:
            stats.rows, stats.episodes = _write_episodes(st, writer, collector, names, step, progress)
        except BaseException:
            writer.abort()
            raise
        finally:
            if env is not None:
                env.close()
        stats.out = f"{did} ({path})" if did is not None else str(path)
        stats.columns = tuple(names)
        stats.skipped_episodes, stats.dropped_rows, notes = _export_summary(eps, skipped, left_out,
                                                                            collector)
        for message in notes:
            stats.note(message)
    stats.seconds = time.perf_counter() - t0
    return stats


def _export_spaces(st: Any) -> tuple[gym.Space, gym.Space]:
    obs_space, act_space = st.observation_space, st.action_space
    if obs_space is None or act_space is None:
        raise InteropError(
            f"{st.path}: the store records no observation/action spaces (made with fields=...); "
            "a Minari dataset needs them"
        )
    return obs_space, act_space


def _export_names(obs_space, act_space) -> tuple[list[str], list[str], list[str]]:
    """The store fields of the observation and action leaves, and every field exported."""
    obs_leaves = [n for n, _ in _spaces.flatten_space("obs", obs_space)]
    act_leaves = [n for n, _ in _spaces.flatten_space("action", act_space)]
    names = [*obs_leaves, *act_leaves, "reward", *("next_" + n for n in obs_leaves),
             "terminated", "truncated", "episode", "step"]
    return obs_leaves, act_leaves, names


def _check_export_target(out: Any, overwrite: bool) -> tuple[str | None, Path]:
    """The dataset id (None for a path) and directory ``out`` names, once it may be written."""
    did, path = _dataset_dir(out)
    if path.exists():
        if not overwrite:
            raise StoreExistsError(f"{out}: a Minari dataset already exists there ({path}); "
                                   "pass overwrite=True (--overwrite) to replace it")
        if not ((path / "data" / "metadata.json").is_file() or (path.is_dir() and not any(path.iterdir()))):
            raise StoreExistsError(f"{path}: exists and is not a Minari dataset; refusing to replace it")
    elif not path.parent.is_dir() and did is None:
        raise DatasetNotFoundError(f"{path}: directory {path.parent} does not exist")
    return did, path


def _select_episodes(st: Any, step: int) -> tuple[pd.DataFrame, dict[str, pd.Series], pd.Series]:
    """The store's episodes (:func:`scan_episodes`), the incomplete ones by reason, and all
    those left out; :class:`InteropError` if none is complete."""
    eps = scan_episodes(st, step)
    evicted = eps["first_step"] != 0
    unfinished = ~evicted & ~eps["last_done"].astype(bool)
    odd = ~evicted & ~unfinished & ((eps["n_done"] != 1) | (eps["last_step"] != eps["rows"] - 1))
    left_out = evicted | unfinished | odd
    if not len(eps[~left_out]):
        raise InteropError(
            f"{st.path}: nothing to export to Minari: none of its {_plural(len(eps), 'episode')} is "
            f"complete ({int(evicted.sum())} started before the oldest row, {int(unfinished.sum())} "
            "unfinished at the end)"
        )
    skipped = {"whose first rows a ring has evicted": evicted, "unfinished at the end of the store": unfinished,
               "with steps that do not run 0, 1, 2, ... to one final terminated/truncated row": odd}
    return eps, skipped, left_out


def _write_episodes(st: Any, writer: _MinariWriter, collector: EpisodeCollector, names: list[str],
                    step: int, progress: bool | Progress) -> tuple[int, int]:
    """Read the store block by block and write the collected episodes, about ``step`` rows
    at a time; returns the rows and episodes written."""
    pending: list = []
    pending_rows = 0
    rows = episodes = 0
    n = len(st)
    with as_progress(progress).task(n, "export minari") as bar:
        for a in range(0, n, step):
            b = min(n, a + step)
            for buf in collector.add(st.read_range(a, b, fields=names)):
                pending.append(buf)
                pending_rows += len(buf)
            if pending_rows >= step:
                writer.write(pending)
                rows += pending_rows
                episodes += len(pending)
                pending, pending_rows = [], 0
            bar.update(b - a)
        if not pending and not writer.created:
            raise InteropError(f"{st.path}: nothing to export to Minari: no episode has steps 0, 1, 2, ...")
        writer.write(pending)
        rows += pending_rows
        episodes += len(pending)
    return rows, episodes


def _export_summary(eps: pd.DataFrame, skipped: dict[str, pd.Series], left_out: pd.Series,
                    collector: EpisodeCollector) -> tuple[int, int, list[str]]:
    """Episodes and rows left out of the export, and the notes that say what and why."""
    reasons = [f"{int(mask.sum()):,} {why}" for why, mask in skipped.items() if mask.any()]
    rows_skipped = int(eps.loc[left_out, "rows"].sum())
    bad_steps = collector.bad_steps
    if bad_steps:
        reasons.append(f"{len(bad_steps):,} whose step counter skips")
        rows_skipped += sum(collector.need[e] for e in bad_steps)
    skipped_episodes = int(left_out.sum()) + len(bad_steps)
    notes = []
    if skipped_episodes:
        notes.append(f"skipped {_plural(skipped_episodes, 'incomplete episode')} "
                     f"({_plural(rows_skipped, 'row')}): {', '.join(reasons)}")
    if collector.mismatched:
        notes.append(f"{_plural(collector.mismatched, 'row')} had a next_obs that differs from the next row's obs; "
                     "Minari keeps one observation sequence, so those next_obs values are not exported")
    return skipped_episodes, rows_skipped, notes


# ---------------------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------------------
def _env_record(spec: Any, stats: InteropStats) -> dict:
    """``{"id", "kwargs"}`` to ``gym.make`` the dataset's env again (``{}`` without a spec)."""
    if spec is None:
        return {}
    kwargs = dict(spec.kwargs or {})
    try:  # a "module:Env-v0" id would import module: a dataset is data, so it is not looked up
        registered = gym.spec(spec.id) if ":" not in str(spec.id) else None
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
    progress: bool | Progress = False,
) -> InteropStats:
    """Create the store ``out`` from the Minari dataset ``src`` (a dataset id or a path).

    ``out`` must not exist unless ``overwrite=True`` (then the old store is replaced);
    ``chunk_rows`` / ``codecs`` as for :func:`replaystore.create`. If the import fails
    part-way, the new store is removed. Needs ``pip install "replaystore[minari]"``.

    Example::

        import_minari("D4RL/door/human-v2", "door.zarr")
    """
    mn = _minari("import from Minari")
    t0 = time.perf_counter()
    ds, did, data = _load(mn, src)
    stats = InteropStats("import", "Minari dataset", str(did or data.parent), str(out))
    spec = ds.env_spec
    env = _env_record(spec, stats)
    provenance = _import_provenance(ds, data, spec)
    obs_space, act_space = ds.observation_space, ds.action_space
    store = create(out, obs_space, act_space, env_id=env.get("id"), info={"imported_from": provenance},
                   chunk_rows=chunk_rows, codecs=codecs, overwrite=overwrite)
    with discard_on_failure(store):
        if env:
            store.update_info(env=env)
        step = _block_rows(row_bytes(store, store.schema.names), block_rows)
        counts = _copy_episodes(ds, store, src, obs_space, act_space, step, progress)
        store.flush()
        stats.rows = len(store)
        stats.episodes = counts.episodes
        stats.columns = tuple(store.schema.names)
        if counts.empty:
            stats.skipped_episodes = counts.empty
        for message in _import_notes(counts):
            stats.note(message)
        store.update_info({"imported_from": {**provenance, "rows": stats.rows, "notes": stats.notes}})
    stats.seconds = time.perf_counter() - t0
    return stats


def _import_provenance(ds: Any, data: Path, spec: Any) -> dict:
    """``info["imported_from"]`` as recorded when the store is created."""
    return {
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


@dataclasses.dataclass
class _ImportCounts:
    """What :func:`_copy_episodes` saw: episodes imported, without steps, ending neither
    terminated nor truncated, rewards float32 rounds, and whether any step had infos."""

    episodes: int = 0
    empty: int = 0
    unfinished: int = 0
    rounded: int = 0
    infos: bool = False


def _copy_episodes(ds: Any, store: Any, src: Any, obs_space, act_space, step: int,
                   progress: bool | Progress) -> _ImportCounts:
    """Append the dataset's episodes to ``store``, about ``step`` rows at a time."""
    counts = _ImportCounts()
    block: list[dict[str, np.ndarray]] = []
    block_n = 0
    with as_progress(progress).task(int(ds.total_steps), "import minari") as bar:
        for ep in ds.iterate_episodes():
            rows = episode_rows(ep, obs_space, act_space, src)
            n = len(rows["reward"])
            if n == 0:
                counts.empty += 1
                continue
            counts.rounded += _rounded(np.asarray(ep.rewards))
            if not (rows["terminated"][-1] or rows["truncated"][-1]):
                counts.unfinished += 1
            counts.infos = counts.infos or bool(ep.infos)
            block.append(rows)
            block_n += n
            counts.episodes += 1
            if block_n >= step:
                store.extend({k: np.concatenate([b[k] for b in block]) for k in block[0]})
                bar.update(block_n)
                block, block_n = [], 0
        if block:
            store.extend({k: np.concatenate([b[k] for b in block]) for k in block[0]})
            bar.update(block_n)
    return counts


def _rounded(r: np.ndarray) -> int:
    """How many of the rewards ``r`` change when stored as float32 (NaN stays NaN)."""
    if r.dtype != np.float32 and r.dtype.kind == "f":
        r32 = r.astype(np.float32).astype(r.dtype)
        return int(np.count_nonzero((r32 != r) & ~(np.isnan(r) & np.isnan(r32))))
    return 0


def _import_notes(counts: _ImportCounts) -> list[str]:
    """What the import left out or changed, in words."""
    notes = []
    if counts.empty:
        notes.append(f"skipped {_plural(counts.empty, 'episode')} without steps")
    if counts.unfinished:
        notes.append(f"{_plural(counts.unfinished, 'episode')} end without termination or truncation "
                     "(kept; the store counts them as unfinished)")
    if counts.rounded:
        notes.append(f"{_plural(counts.rounded, 'reward')} rounded to float32 (the store keeps float32 rewards)")
    if counts.infos:
        notes.append("step infos are not imported")
    return notes

"""Stores to Minari datasets (the mapping is described in :mod:`.minari`).

The dataset is built under a hidden name next to its directory and moved into place when
complete (:func:`replaystore.storage.jobs.job_output`): a failed or killed export leaves
no dataset (and, with ``overwrite``, the old one as it was).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import pandas as pd

from .. import spaces as _spaces
from ..envs import check_env_id
from ..errors import DatasetNotFoundError, InteropError, StoreExistsError
from ..progress import Progress, as_progress
from ..storage.jobs import job_output
from ..version import __version__
from ._common import InteropStats, opened_store, row_bytes
from ._common import block_rows as _block_rows
from .minari import dataset_dir, path_dataset_id, plural, require_minari
from .minari_episodes import EpisodeCollector, scan_episodes

__all__ = ["export_minari"]


class _MinariWriter:
    """Writes episode buffers to a new Minari dataset built in ``tmp`` (created on the first
    write); :func:`export_minari` moves it to its place once complete."""

    def __init__(self, mn: Any, did: str | None, path: Path, tmp: Path, obs_space, act_space, env,
                 description: str, data_format: str) -> None:
        self.mn, self.did, self.path, self.tmp = mn, did, path, tmp
        self.obs_space, self.act_space, self.env = obs_space, act_space, env
        self.description, self.data_format = description, data_format
        self.storage = None
        self.created = False

    def _jpeg_off(self, fn: Any) -> dict:
        import inspect

        # images raw: JPEG (minari's default for image spaces) would not round-trip
        return {"jpeg_encoding": False} if "jpeg_encoding" in inspect.signature(fn).parameters else {}

    def write(self, buffers: list) -> None:
        if not buffers:
            return
        if self.storage is None:
            from minari.dataset.minari_storage import MinariStorage

            self.created = True
            self.tmp.mkdir()
            self.storage = MinariStorage.new(
                self.tmp / "data", observation_space=self.obs_space, action_space=self.act_space,
                env_spec=self.env.spec if self.env is not None else None, data_format=self.data_format,
                **self._jpeg_off(MinariStorage.new),
            )
            # what minari.create_dataset_from_buffers records (author, permalink... are optional)
            self.storage.update_metadata({
                "dataset_id": self.did if self.did is not None else path_dataset_id(self.path),
                "minari_version": self.mn.__version__,
                "description": self.description,
                "algorithm_name": "replaystore export",
            })
        self.storage.update_episodes(buffers)


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
    ``trust_env_id=True`` (``--trust-env-id``; see :func:`replaystore.envs.check_env_id`).

    Example::

        export_minari("fl.zarr", "replaystore/frozenlake-v0")
        minari.load_dataset("replaystore/frozenlake-v0").total_episodes
    """
    mn = require_minari("export to Minari")
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
        if did is not None:
            _make_namespace(mn, did, path)
        with job_output(path, action="export", overwrite=overwrite) as tmp:
            writer = _MinariWriter(mn, did, path, tmp, obs_space, act_space, env,
                                   description or f"exported by replaystore {__version__} from {st.path}",
                                   data_format)
            try:
                # blocks of a few thousand rows: writing a Minari dataset is slow (~50 us a row)
                write_step = _block_rows(row_bytes(st, names), block_rows, total=len(st), least=4096)
                stats.rows, stats.episodes = _write_episodes(st, writer, collector, names, write_step,
                                                             progress)
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


def _make_namespace(mn: Any, did: str, path: Path) -> None:
    """The directory (and minari's namespace record) a dataset id ``ns/name-v0`` goes into."""
    from minari.dataset.minari_dataset import parse_dataset_id

    namespace = parse_dataset_id(did)[0]
    if namespace is not None:
        from minari.namespace import create_namespace, list_local_namespaces

        if namespace not in list_local_namespaces():
            create_namespace(namespace)
    path.parent.mkdir(parents=True, exist_ok=True)


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
    did, path = dataset_dir(out)
    if path.exists():
        if not overwrite:
            where = f"{out}: a Minari dataset already exists there ({path})"
            raise StoreExistsError(f"{where}; pass overwrite=True to replace it",
                                   cli=f"{where}; use --overwrite to replace it")
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
            f"{st.path}: nothing to export to Minari: none of its {plural(len(eps), 'episode')} is "
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
        notes.append(f"skipped {plural(skipped_episodes, 'incomplete episode')} "
                     f"({plural(rows_skipped, 'row')}): {', '.join(reasons)}")
    if collector.mismatched:
        notes.append(f"{plural(collector.mismatched, 'row')} had a next_obs that differs from the next row's obs; "
                     "Minari keeps one observation sequence, so those next_obs values are not exported")
    return skipped_episodes, rows_skipped, notes

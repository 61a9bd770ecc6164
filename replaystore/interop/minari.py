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
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..envs import env_defaults
from ..errors import DatasetNotFoundError, InteropError, MissingExtraError
from ..progress import Progress, as_progress
from ..storage import create, now_iso
from ..version import __version__
from ._common import (
    InteropStats,
    discard_on_failure,
    require,
    row_bytes,
    store_job,
)
from ._common import block_rows as _block_rows
from .minari_episodes import episode_rows

__all__ = ["export_minari", "import_minari"]


def require_minari(what: str) -> Any:
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


def dataset_dir(target: Any) -> tuple[str | None, Path]:
    did = _dataset_id(target)
    if did is not None:
        return did, _datasets_root() / did
    # absolute: minari's storage mishandles relative paths (get_size joins them twice)
    return None, Path(os.path.expanduser(os.fspath(target))).absolute()


def path_dataset_id(path: Path) -> str:
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
    did, root = dataset_dir(src)
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


def plural(k: int, word: str) -> str:
    return f"{k:,} {word}{'' if k == 1 else 's'}"


# ---------------------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------------------
def _env_record(spec: Any, stats: InteropStats) -> dict:
    """``{"id", "kwargs"}`` to ``gym.make`` the dataset's env again (``{}`` without a spec)."""
    if spec is None:
        return {}
    kwargs = dict(spec.kwargs or {})
    # {} for an id not registered here, and for a "module:Env-v0" id, which would import
    # module: a dataset is data, so it is not looked up. The kwargs stay explicit; they are
    # compared with the defaults filled in (replaystore.envs.env_differences), so a round
    # trip still merges with its source.
    defaults = env_defaults(spec.id)
    if spec.max_episode_steps is not None and defaults.get("max_episode_steps") != spec.max_episode_steps:
        kwargs["max_episode_steps"] = spec.max_episode_steps
    keep = {}
    for k, v in kwargs.items():
        try:
            keep[k] = json.loads(json.dumps(v, allow_nan=False))
        except (TypeError, ValueError):
            stats.note(f"env kwarg {k!r} is not JSON and was not recorded")
    return {"id": spec.id, "kwargs": keep}


@store_job
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

    ``out`` must not exist unless ``overwrite=True`` (then the old store is replaced once
    the new one is complete); ``chunk_rows`` / ``codecs`` as for :func:`replaystore.create`.
    The store is built under a hidden name next to ``out`` and moved into place at the end:
    a failed or killed import leaves ``out`` as it was. Needs ``pip install "replaystore[minari]"``.

    Example::

        import_minari("D4RL/door/human-v2", "door.zarr")
    """
    mn = require_minari("import from Minari")
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
            bar.update(n)  # reading and converting the episodes is the slow part: report each
            if block_n >= step:
                store.extend({k: np.concatenate([b[k] for b in block]) for k in block[0]})
                block, block_n = [], 0
        if block:
            store.extend({k: np.concatenate([b[k] for b in block]) for k in block[0]})
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
        notes.append(f"skipped {plural(counts.empty, 'episode')} without steps")
    if counts.unfinished:
        notes.append(f"{plural(counts.unfinished, 'episode')} end without termination or truncation "
                     "(kept; the store counts them as unfinished)")
    if counts.rounded:
        notes.append(f"{plural(counts.rounded, 'reward')} rounded to float32 (the store keeps float32 rewards)")
    if counts.infos:
        notes.append("step infos are not imported")
    return notes


from .minari_export import export_minari  # noqa: E402  (re-exported: the module docstring's API)

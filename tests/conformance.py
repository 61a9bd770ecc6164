"""What the conformance suites share: where each backend keeps a test's stores, the rows
they hold, and the capability check that decides which tests apply.

``test_conformance_store.py`` (:class:`StoreConformance`) and
``test_conformance_samplers.py`` (:class:`SamplerConformance`) are base classes of tests
that every backend must pass, in the manner of zarr-python's ``StoreTests``. A backend's
test classes only say where its stores live::

    class TestS3Store(StoreConformance):
        location = S3Location

A test that needs a capability calls :func:`requires`, which skips it when the backend's
flag (a class attribute of :class:`replaystore.storage.Backend`) is False; nothing checks
*which* backend it is. To add a backend: write a :class:`Location` subclass here and one
two-line subclass in each suite file.

Rows are self-identifying: row ``g`` (the ``g``-th row ever appended) has ``obs[0] == g``
and every other field is a function of ``g``, so :func:`expected_rows` knows what any
store written with :func:`rows` must hold, and :func:`ids_of` which rows a batch holds.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import expected_episodes, rows_of
from gymnasium.spaces import Box, Discrete

import replaystore as rs
from replaystore.storage import Backend, resolve_backend

try:
    import s3fs
    from moto.server import ThreadedMotoServer
except ImportError as e:  # pragma: no cover - the test extra installs both
    _S3_MISSING: str | None = f"s3:// needs s3fs and moto[server] (pip install -e '.[test]'): {e}"
else:
    _S3_MISSING = None

__all__ = ["OBS", "ACT", "EXTRA", "INFO", "ENV_ID", "FLAGS", "rows", "ids_of", "expected_rows", "final_episode",
           "Recipe", "UNBOUNDED", "RING", "RING_ZSTD", "Location", "LocalDir", "PackedZip", "MemoryFS",
           "S3Location", "BackendSuite", "requires", "take", "shared_location"]

OBS = Box(-1e7, 1e7, (3,), np.float32)
ACT = Discrete(4)
EXTRA = [("w", "float32"), ("tag", "int16", (2,))]
INFO = {"run": "conformance", "seed": 7, "nested": {"a": [1, 2], "b": None}}
ENV_ID = "Conformance-v0"

#: every capability flag of :class:`replaystore.storage.Backend`
FLAGS = ("writable", "memory_mappable", "in_place_writes", "hugepage_mappable", "has_lock",
         "has_live_floor", "has_checksums", "persistent_indexes")


# --------------------------------------------------------------------------------------
# self-identifying rows
# --------------------------------------------------------------------------------------
def _obs(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids, ids % 13, -2 * ids], axis=1).astype(np.float32)


def rows(start: int, n: int) -> dict[str, np.ndarray]:
    """Global rows ``start .. start+n-1`` as given to ``extend`` (episode/step left out).

    Actions are unbalanced (class 0 holds 60% of the rows, classes 1-3 about 13% each),
    rewards have both signs, episodes end by termination and by truncation, and ``weight``
    is positive (``0.5 .. 2.5``).
    """
    ids = np.arange(start, start + n, dtype=np.int64)
    return {
        "obs": _obs(ids),
        "action": np.where(ids % 10 < 6, 0, 1 + ids % 3).astype(np.int64),
        "reward": (((ids % 7) - 3) * 0.25).astype(np.float32),
        "next_obs": _obs(ids + 1),
        "terminated": ids % 37 == 36,
        "truncated": ids % 101 == 100,
        "w": (0.5 * (1 + ids % 5)).astype(np.float32),
        "tag": np.stack([ids % 300, -(ids % 77)], axis=1).astype(np.int16),
    }


FIELD_ORDER = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "episode",
               "step", "w", "tag")


def ids_of(batch: dict[str, np.ndarray]) -> np.ndarray:
    """Global row ids of the rows of a batch."""
    return batch["obs"][:, 0].astype(np.int64)


def expected_rows(total: int, capacity: int | None = None) -> dict[str, np.ndarray]:
    """Every readable row, in logical order and the schema's field order, of a store that was
    given ``rows(0, total)`` (in any number of sessions and batches): the newest
    ``capacity`` rows of a ring."""
    data = rows(0, total)
    data["episode"], data["step"], _ = expected_episodes(data["terminated"], data["truncated"])
    keep = total if capacity is None else min(total, capacity)
    return {name: data[name][total - keep:] for name in FIELD_ORDER}


def final_episode(total: int) -> tuple[int, int, int]:
    """``(episode, step, next_episode)`` after ``rows(0, total)``."""
    data = rows(0, total)
    return expected_episodes(data["terminated"], data["truncated"])[2]


def take(data: dict[str, np.ndarray], idx: Any) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in data.items()}


@dataclass(frozen=True)
class Recipe:
    """How a test store is written: one writer session per entry of ``sessions`` (the first
    creates the store, each later one reopens it with ``mode="a"``), each appending its
    rows with ``extend`` and the last few one at a time with ``append``; the second session
    also calls ``update_info``. Closing each session commits it; ``buffer_rows=None`` (the
    store's default: a chunk) also commits whenever that many rows are buffered."""

    sessions: tuple[int, ...] = (1200, 800)
    capacity: int | None = None
    codecs: str | None = None
    chunk_rows: int = 512
    buffer_rows: int | None = 4096

    @property
    def total(self) -> int:
        return sum(self.sessions)

    def expected(self) -> dict[str, np.ndarray]:
        return expected_rows(self.total, self.capacity)

    def create(self, path: Any, storage_options: dict | None = None, **kw: Any) -> rs.ReplayStore:
        """An empty store of this recipe's schema, open for appending."""
        return rs.create(path, OBS, ACT, capacity=self.capacity, extra_fields=EXTRA,
                         chunk_rows=self.chunk_rows, codecs=self.codecs, env_id=ENV_ID, info=INFO,
                         storage_options=storage_options, **kw)

    def write(self, path: Any, storage_options: dict | None = None) -> None:
        start = 0
        for k, n in enumerate(self.sessions):
            kw = {"fsync": False, "buffer_rows": self.buffer_rows}
            store = (self.create(path, storage_options, **kw) if k == 0
                     else rs.open(path, "a", storage_options=storage_options, **kw))
            with store:
                if k == 1:
                    store.update_info({"session": 2}, env={"kwargs": {"map": "4x4"}})
                singles = min(5, n)
                store.extend(rows(start, n - singles))
                for row in rows_of(rows(start + n - singles, singles)):
                    store.append(**row)
            start += n


UNBOUNDED = Recipe((1200, 800), chunk_rows=1024)
#: a ring that wrapped twice (its seam is at physical row 600, inside its second chunk):
#: keeps global rows 1600 .. 2599
RING = Recipe((1200, 1400), capacity=1000, buffer_rows=None)
#: the same ring with every field compressed
RING_ZSTD = Recipe(RING.sessions, capacity=1000, codecs="zstd:3")


# --------------------------------------------------------------------------------------
# locations: one per backend
# --------------------------------------------------------------------------------------
class Location:
    """Where one backend keeps the stores of a test (or of a test class). Subclasses say how
    to name a store (:meth:`url`) and, if the backend cannot be written, how to
    :meth:`build` one."""

    name = "?"
    storage_options: dict | None = None

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.tmp = tmp_path
        self._built: dict[Recipe, Any] = {}
        self._readers: dict[Recipe, rs.ReplayStore] = {}

    def url(self, name: str) -> Any:
        """A place of this backend for a store called ``name`` (nothing there yet)."""
        raise NotImplementedError

    def build(self, recipe: Recipe, name: str = "store") -> Any:
        """A store of this backend written by ``recipe``; returns what to open."""
        path = self.url(name)
        recipe.write(path, self.storage_options)
        return path

    def store(self, recipe: Recipe) -> Any:
        """The store of ``recipe``, built on first use (then shared: only read it)."""
        if recipe not in self._built:
            self._built[recipe] = self.build(recipe, f"shared{len(self._built)}")
        return self._built[recipe]

    def reader(self, recipe: Recipe) -> rs.ReplayStore:
        """The store of ``recipe`` open with ``mode="r"``, opened on first use (then shared)."""
        if recipe not in self._readers:
            self._readers[recipe] = self.open(self.store(recipe))
        return self._readers[recipe]

    def create(self, path: Any, recipe: Recipe = UNBOUNDED, **kw: Any) -> rs.ReplayStore:
        return recipe.create(path, self.storage_options, **kw)

    def open(self, path: Any, mode: str = "r", **kw: Any) -> rs.ReplayStore:
        return rs.open(path, mode, storage_options=self.storage_options, **kw)

    @cached_property
    def backend(self) -> Backend:
        """The backend of this location's stores (its flags say what tests apply)."""
        return resolve_backend(self.url("probe"), self.storage_options)

    def close(self) -> None:
        """Close the shared readers and remove what is left (local files go with ``tmp_path``)."""
        for store in self._readers.values():
            store.close()
        self.cleanup()

    def cleanup(self) -> None:
        pass


class LocalDir(Location):
    name = "local directory"

    def url(self, name: str) -> Path:
        return self.tmp / f"{name}.zarr"


class PackedZip(Location):
    """Read-only: stores are written in a local directory, packed with ``rs.pack``, and the
    directory removed, so only the zip is read."""

    name = "packed .zip"

    def url(self, name: str) -> Path:
        return self.tmp / f"{name}.zip"

    def build(self, recipe: Recipe, name: str = "store") -> Path:
        src = self.tmp / f"{name}-src.zarr"
        recipe.write(src)
        out = rs.pack(src, self.url(name))
        shutil.rmtree(src)
        return Path(out)

    @cached_property
    def backend(self) -> Backend:
        backend = resolve_backend(self.build(Recipe((10,)), "probe"))
        backend.close()
        return backend


class MemoryFS(Location):
    """fsspec's ``memory://`` file system, under a root unique to the test (removed after)."""

    name = "memory://"

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        super().__init__(tmp_path, request)
        self.root = f"memory://conformance-{uuid.uuid4().hex[:12]}"

    def url(self, name: str) -> str:
        return f"{self.root}/{name}.zarr"

    def cleanup(self) -> None:
        import fsspec

        fs = fsspec.filesystem("memory")
        if fs.exists(self.root):
            fs.rm(self.root, recursive=True)


S3_BUCKET = "conformance"
_s3_options: dict | None = None


def s3_server(config: pytest.Config) -> dict:
    """``storage_options`` of a loopback S3 API server (moto's ``ThreadedMotoServer``, as in
    ``test_remote``) with the bucket :data:`S3_BUCKET`, started on first use and stopped at
    the end of the run. One server for the whole run, not a fixture per module: moto keeps
    its buckets process-wide, so a second server would find the first one's bucket (and
    ``test_remote``'s fixture cannot be reused for the same reason; its bucket is another)."""
    global _s3_options
    if _S3_MISSING is not None:
        pytest.skip(_S3_MISSING)
    if _s3_options is None:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        opts = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
        fs = s3fs.S3FileSystem(**opts, skip_instance_cache=True)
        fs.mkdir(S3_BUCKET)

        def stop() -> None:
            global _s3_options
            try:
                fs.rm(S3_BUCKET, recursive=True)  # leave moto's process-wide state as found
            finally:
                server.stop()
                _s3_options = None

        config.add_cleanup(stop)
        _s3_options = opts
    return dict(_s3_options)


class S3Location(Location):
    """``s3://`` on the loopback S3 server (:func:`s3_server`), under a root unique to the
    location, with endpoint and credentials passed as ``storage_options``."""

    name = "s3://"

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        super().__init__(tmp_path, request)
        self.storage_options = s3_server(request.config)
        self.root = f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}"

    def url(self, name: str) -> str:
        return f"{self.root}/{name}.zarr"

    # no cleanup per location: the whole bucket goes when the server stops


# --------------------------------------------------------------------------------------
# the suites' common base
# --------------------------------------------------------------------------------------
def requires(where: Location | rs.ReplayStore, *flags: str) -> None:
    """Skip the calling test unless the backend of ``where`` (a :class:`Location`, or an open
    store) has every capability in ``flags``."""
    backend = where._backend if isinstance(where, rs.ReplayStore) else where.backend
    missing = [f for f in flags if not getattr(type(backend), f)]  # a typo raises
    if missing:
        pytest.skip(f"{type(backend).__name__}: {', '.join(missing)} is False")


_shared: dict[type[Location], Location] = {}


def shared_location(cls: type[Location], request: pytest.FixtureRequest) -> Location:
    """The one location of backend ``cls`` for the whole run, whose stores both suites share
    (:meth:`Location.store`, :meth:`Location.reader`): written once, then only read."""
    loc = _shared.get(cls)
    if loc is None:
        tmp = request.getfixturevalue("tmp_path_factory").mktemp("shared")
        loc = _shared[cls] = cls(tmp, request)

        def close() -> None:
            _shared.pop(cls, None)
            loc.close()

        request.config.add_cleanup(close)
    return loc


class BackendSuite:
    """Base of both suites. A subclass sets ``location`` to a :class:`Location` class.

    ``where`` is a location of the test's own, for the stores a test writes; ``shared`` the
    backend's location for the whole run (:func:`shared_location`), for stores that are
    only read, so each is written once (object stores are slow to write to)."""

    location: type[Location]

    @pytest.fixture
    def where(self, tmp_path: Path, request: pytest.FixtureRequest):
        loc = self.location(tmp_path, request)
        yield loc
        loc.close()

    @pytest.fixture(scope="class")
    def shared(self, request: pytest.FixtureRequest) -> Location:
        return shared_location(self.location, request)

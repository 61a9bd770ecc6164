"""Shared fixtures and helpers for the store tests.

Rows made here are *self-identifying*: row ``i`` (the global counter, counted over
everything ever written to a store) has ``reward == i`` and every other field is a
deterministic function of ``i``, so a row read back can be checked against the row that
was written without keeping the data around.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Tuple
from hypothesis import settings as _hyp_settings

import replaystore as rs
from replaystore.progress import Progress
from replaystore.spaces import flatten_space
from replaystore.storage.pack import RUNTIME_FILES


def _memory_temp_root(root: str = "/dev/shm", min_free: int = 4 << 30) -> str | None:
    """``root`` when it is a writable, executable tmpfs with ``min_free`` bytes free, else None.

    >>> _memory_temp_root("/nonexistent") is None
    True
    """
    try:
        with open("/proc/self/mounts") as f:
            mounts = {m[1]: (m[2], m[3].split(",")) for m in (ln.split() for ln in f) if len(m) > 3}
        kind, options = mounts[root]
        st = os.statvfs(root)
    except (OSError, KeyError):
        return None
    if kind != "tmpfs" or "noexec" in options or not os.access(root, os.W_OK | os.X_OK):
        return None
    return root if st.f_bavail * st.f_frsize >= min_free else None


# Every temporary directory of the tests (pytest's tmp_path, tempfile, and the subprocesses
# the tests start, which inherit TMPDIR) is on a tmpfs when there is one and TMPDIR names no
# other place. The store fsyncs each commit, and on this machine's virtual disk an fsync
# costs ~1 ms (more while other processes write): a run of the suite spent most of its
# time waiting on fsync. On a tmpfs fsync returns at once; nothing a test checks depends on
# the data reaching a disk (a SIGKILLed writer's page cache survives it either way).
# Set TMPDIR to run the tests on another file system.
if not os.environ.get("TMPDIR") and (_shm := _memory_temp_root()):
    os.environ["TMPDIR"] = _shm
    tempfile.tempdir = None  # (gettempdir() caches its first answer)

# Bytecode is cached (in the checkout's __pycache__ directories, which git ignores), so the
# interpreters the tests start share it. This machine's environment sets
# PYTHONDONTWRITEBYTECODE, so each of the hundreds of `python -m replaystore` subprocesses
# (and each spawned worker) compiled the package from source again, ~0.15 s of CPU apiece,
# and pytest rewrote every test module again on every run.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    sys.dont_write_bytecode = False

# One thread per process for torch's and the BLAS libraries' kernels (before torch is
# imported, at collection; the subprocesses inherit it), as Dask's workers do by default.
# The suite's tensors are small, and it runs on 2 workers, each starting processes of its
# own: threads that spin-wait for more threads than the cores made test_dqn's CQL test take
# 85 s instead of 8 on this 2-core machine.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto`` (pyproject's addopts): 2 for a whole run (the machines have 2
    cores; a run spends its time on CPU, in this process and in the ones its tests start),
    none when tests are named on the command line (a worker costs seconds to start)."""
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        return 0
    return min(2, len(os.sched_getaffinity(0)))


# deterministic property tests: CI and every developer see the same examples
_hyp_settings.register_profile("replaystore", derandomize=True, deadline=None, print_blob=True)
_hyp_settings.load_profile("replaystore")

# fields the store fills in or that every store has, besides obs/action/next_obs leaves
SCALAR_FIELDS = ("reward", "terminated", "truncated", "episode", "step")


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 API server on 127.0.0.1, with credentials and endpoint in the environment
    (the way a user points replaystore at MinIO or any S3-compatible store); a bucket
    ``replays``."""
    s3fs = pytest.importorskip("s3fs", reason="s3:// needs s3fs: pip install 'replaystore[s3]'")
    moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server]")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()
    # (moto keeps its buckets per process: another module's server may have made this one)
    s3fs.S3FileSystem().makedirs("replays", exist_ok=True)
    yield endpoint
    s3fs.S3FileSystem().rm("replays", recursive=True)  # (the bucket too: leave none for others)
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def tmp_store_path(tmp_path: Path) -> Path:
    """A path where a store can be created (does not exist yet)."""
    return tmp_path / "store.zarr"


# --------------------------------------------------------------------------------------
# self-identifying values
# --------------------------------------------------------------------------------------


def _leaf_values(space, idx: np.ndarray) -> np.ndarray:
    """A batch of values of leaf ``space`` for global row numbers ``idx`` (shape (n,))."""
    n = len(idx)
    if type(space) is Box:
        shape = space.shape
        size = int(np.prod(shape, dtype=np.int64))
        offs = np.arange(size, dtype=np.int64).reshape(shape)
        i = idx.reshape((n,) + (1,) * len(shape))
        dt = space.dtype
        if dt.kind == "f":
            low = space.low.astype(np.float64)
            high = space.high.astype(np.float64)
            low = np.where(np.isfinite(low), low, -1e3)
            high = np.where(np.isfinite(high), high, 1e3)
            span = high - low
            # i + offs/8 is exact in float16 only for small values: stay in [low, high]
            frac = ((i * 7 + offs) % 64) / 64.0
            vals = low + frac * span
            return vals.astype(dt)
        if dt.kind == "b":
            return ((i + offs) % 2).astype(bool)
        lo = space.low.astype(np.int64)
        hi = space.high.astype(np.int64)
        return (lo + (i + offs) % (hi - lo + 1)).astype(dt)
    if type(space) is Discrete:
        return (int(space.start) + idx % int(space.n)).astype(space.dtype)
    if type(space) is MultiDiscrete:
        nvec = space.nvec.astype(np.int64)
        start = space.start.astype(np.int64)
        offs = np.arange(nvec.size, dtype=np.int64).reshape(nvec.shape)
        i = idx.reshape((n,) + (1,) * nvec.ndim)
        return (start + (i + offs) % nvec).astype(space.dtype)
    if type(space) is MultiBinary:
        shape = space.shape
        size = int(np.prod(shape, dtype=np.int64))
        offs = np.arange(size, dtype=np.int64).reshape(shape)
        i = idx.reshape((n,) + (1,) * len(shape))
        return ((i >> (offs % 16)) & 1).astype(space.dtype)
    raise AssertionError(f"not a leaf space: {space!r}")


def make_batch(
    observation_space,
    action_space,
    start: int,
    n: int,
    *,
    term_every: int = 0,
    trunc_every: int = 0,
) -> dict[str, np.ndarray]:
    """``n`` self-identifying transitions for global rows ``start .. start+n-1``.

    Keys are the store's field names (composite spaces flattened: ``obs.pos``...).
    ``terminated`` is true on rows ``i % term_every == term_every - 1`` (never when 0),
    ``truncated`` likewise with ``trunc_every``. ``episode``/``step`` are not included.
    """
    idx = np.arange(start, start + n, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for name, leaf in flatten_space("obs", observation_space):
        out[name] = _leaf_values(leaf, idx)
    for name, leaf in flatten_space("action", action_space):
        out[name] = _leaf_values(leaf, idx)
    out["reward"] = idx.astype(np.float32)
    for name, leaf in flatten_space("obs", observation_space):
        out["next_" + name] = _leaf_values(leaf, idx + 1)
    out["terminated"] = (
        (idx % term_every == term_every - 1) if term_every else np.zeros(n, bool)
    )
    out["truncated"] = (
        (idx % trunc_every == trunc_every - 1) if trunc_every else np.zeros(n, bool)
    )
    return out


def rows_of(batch: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Split a batch into single rows (for ``store.append(**row)``)."""
    n = len(batch["reward"])
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


def expected_episodes(
    terminated, truncated, *, episode: int = 0, step: int = 0, next_episode: int = 1
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Reference model of episode/step auto-fill; returns (episode, step, final state)."""
    eps, steps = [], []
    for te, tr in zip(terminated, truncated, strict=True):
        eps.append(episode)
        steps.append(step)
        if te or tr:
            episode, next_episode, step = next_episode, next_episode + 1, 0
        else:
            step += 1
    return (
        np.array(eps, dtype=np.int64),
        np.array(steps, dtype=np.int64),
        (episode, step, next_episode),
    )


def read_all(store, fields=None) -> dict[str, np.ndarray]:
    return store.read_range(0, len(store), fields=fields)


def assert_batches_equal(got: dict, want: dict, fields=None) -> None:
    names = want.keys() if fields is None else fields
    for name in names:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert g.dtype == w.dtype, f"{name}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{name}: shape {g.shape} != {w.shape}"
        np.testing.assert_array_equal(g, w, err_msg=f"field {name!r}")


# A small standard store used by many tests.
STD_OBS = Box(-1e6, 1e6, (3,), np.float32)
STD_ACT = Discrete(4)


def std_batch(start: int, n: int, **kw) -> dict[str, np.ndarray]:
    return make_batch(STD_OBS, STD_ACT, start, n, **kw)


@pytest.fixture
def std_store(tmp_store_path):
    """An open (mode 'a') unbounded store with 10 committed rows and 3 buffered rows."""
    store = rs.create(tmp_store_path, STD_OBS, STD_ACT)
    store.extend(std_batch(0, 10, term_every=4))
    store.flush()
    store.extend(std_batch(10, 3, term_every=4))
    yield store
    store.close()


SPACE_CASES = {
    "box_f32": Box(-1.0, 1.0, (3,), np.float32),
    "box_f64_2d": Box(np.array([[-2.0, 0.0], [-np.inf, 1.0]]), np.array([[2.0, 5.0], [np.inf, 3.0]]), dtype=np.float64),
    "box_f16": Box(-4.0, 4.0, (2,), np.float16),
    "box_u8_image": Box(0, 255, (8, 8, 3), np.uint8),
    "box_i32": Box(-100, 100, (4,), np.int32),
    "box_i64_scalar": Box(-(2**40), 2**40, (), np.int64),
    "box_bool": Box(0, 1, (2,), bool),
    "discrete": Discrete(5),
    "discrete_start": Discrete(3, start=-2),
    "discrete_i32": Discrete(7, start=3, dtype=np.int32),
    "multidiscrete": MultiDiscrete([3, 4], start=[1, 0]),
    "multidiscrete_2d": MultiDiscrete(np.array([[2, 3], [4, 5]]), dtype=np.int32),
    "multibinary": MultiBinary(5),
    "multibinary_2d": MultiBinary([2, 3]),
    "dict": Dict({"pos": Box(-1.0, 1.0, (2,), np.float32), "goal": Discrete(4)}),
    "tuple": Tuple([Discrete(3, start=1), Box(0, 10, (2,), np.int16)]),
    "nested": Dict(
        {"cam": Box(0, 255, (4, 4), np.uint8), "state": Tuple([MultiBinary(3), Dict({"v": Box(-1, 1, (1,))})])}
    ),
}


# --------------------------------------------------------------------------------------
# command line and cross-location helpers
# --------------------------------------------------------------------------------------
def run_cli(*args: object):
    """Run a ``replaystore`` command in-process (click's CliRunner)."""
    from click.testing import CliRunner

    from replaystore.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def cli_one_line(r) -> str:
    """The single line a command printed (and no traceback)."""
    assert "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    return lines[0]


def assert_one_line_error(r, *needles: str) -> str:
    """A ``python -m replaystore`` subprocess result: exit code 1 (not a signal), one line
    ``Error: ...`` naming ``needles``, no traceback. Returns the line."""
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 1, (r.returncode, out[-2000:])
    assert "Traceback" not in out, out[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def lake_rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random FrozenLake-shaped transitions (Discrete(16) obs, Discrete(4) actions)."""
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 16, n)
    return dict(obs=obs, action=rng.integers(0, 4, n), reward=(obs == 15).astype("f4"),
                next_obs=rng.integers(0, 16, n), terminated=rng.random(n) < 0.05,
                truncated=rng.random(n) < 0.01)


def assert_same_samples_and_training(a, b, samplers, batches: int = 3) -> None:
    """Stores ``a`` and ``b`` (the same data in two places) give the same batches for every
    ``samplers`` factory and the same Q-table from offline training."""
    from replaystore.agents import QLearningAgent
    from replaystore.training import OfflineTrainer

    for make in samplers:
        sa, sb = make(a), make(b)
        for _ in range(batches):
            assert_batches_equal(sb.sample(), sa.sample())
    qs = []
    for st in (a, b):
        agent = QLearningAgent.from_spaces(st.observation_space, st.action_space, gamma=0.9)
        OfflineTrainer(st, agent, seed=0).train(progress=False)
        qs.append(agent.q)
    np.testing.assert_array_equal(qs[0], qs[1])


def store_files(root: Path) -> dict[str, bytes]:
    """Every file of a store directory (runtime files such as the lock left out) -> its bytes."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            key = p.relative_to(root).as_posix()
            if key not in RUNTIME_FILES:
                out[key] = p.read_bytes()
    return out


# --------------------------------------------------------------------------------------
# every store a test leaves behind must pass verify
# --------------------------------------------------------------------------------------

#: test modules that damage or craft stores on purpose (their stores are meant to fail)
DAMAGING_MODULES = frozenset({
    "test_verify", "test_verify_repair", "test_hardening", "test_crafted_stores", "test_fuzz",
    "test_crafted_imports", "test_env_ids_are_data",
})
#: single tests elsewhere that damage a store on purpose
DAMAGING_TESTS = frozenset({
    "test_bad_input.py::test_missing_chunk_file_is_a_clear_error",
    "test_cli.py::test_damaged_field_metadata",
    "test_store_errors.py::test_replaystore_attributes_not_an_object",
    "test_store_errors.py::test_missing_committed_state",
    "test_store_errors.py::test_damaged_field_metadata",
})


def _store_roots(root: Path, skip: frozenset[Path] | set[Path] = frozenset()):
    """Directories under ``root`` holding a replaystore store (not descending into one, nor
    into ``skip``; links, FIFOs and other odd files that tests plant are never opened)."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if "zarr.json" in filenames:
            meta = here / "zarr.json"
            st = os.lstat(meta)
            if stat.S_ISREG(st.st_mode) and st.st_size < (1 << 20):
                try:
                    text = meta.read_text()
                except (OSError, UnicodeDecodeError):
                    text = ""
                if '"replaystore"' in text and '"node_type": "group"' in text:
                    dirnames.clear()
                    yield here
                    continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and here / d not in skip]


_SEEN_TMP_PATHS: set[Path] = set()


def _verify_all(roots) -> list[str]:
    from replaystore.storage.verify import verify

    bad = []
    for store in roots:
        try:
            report = verify(store)
        except rs.ReplayStoreError as e:
            bad.append(f"{store}: {e}")
            continue
        if not report.ok:
            bad.append("\n".join(report.lines()))
    return bad


@pytest.fixture(autouse=True, scope="session")
def _shared_stores_verify(tmp_path_factory):
    """At the end of the session: every store in a directory made by ``tmp_path_factory``
    (module- and session-scoped fixtures; each test's ``tmp_path`` is checked after it)."""
    yield
    base = tmp_path_factory.getbasetemp()
    roots = list(_store_roots(base, skip=_SEEN_TMP_PATHS))
    bad = _verify_all(roots)
    assert not bad, "a store a shared fixture left behind fails verify:\n" + "\n".join(bad)


@pytest.fixture(autouse=True)
def _stores_left_behind_verify(request):
    """After each test that used ``tmp_path``: every store in it passes ``verify`` (unless
    the test module damages stores on purpose, or the test is marked ``damages_store``)."""
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if root is None:
        return
    _SEEN_TMP_PATHS.add(root)
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    test = f"{module}.py::{request.node.originalname}"
    if (module in DAMAGING_MODULES or test in DAMAGING_TESTS
            or request.node.get_closest_marker("damages_store")):
        return
    bad = _verify_all(_store_roots(root))
    assert not bad, "a store this test left behind fails verify:\n" + "\n".join(bad)


class Recorder(Progress):
    """A :class:`~replaystore.progress.Progress` that records every call (a real reporter
    the library reports to, for tests of what it reports)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def start(self, total, label):
        self.calls.append(("start", total, label))

    def update(self, n=1, **status):
        self.calls.append(("update", n, status))

    def close(self):
        self.calls.append(("close",))

    def done(self) -> int:
        return sum(c[1] for c in self.calls if c[0] == "update")

"""Files from strangers are data (issue 12, cases 11 and 12): crafted D4RL/HDF5 files,
Minari datasets, zips and stores given to ``import``, ``pack`` and ``unpack`` are refused
with a one-line ``ReplayStoreError`` naming the file and the dataset or member, before
anything is written at the output, and nothing outside them is read or followed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import STD_ACT, STD_OBS, assert_one_line_error, read_all, std_batch, store_files

import replaystore as rs
from replaystore.errors import InteropError
from replaystore.interop import import_d4rl
from replaystore.storage.files import MAX_JSON_BYTES, MAX_JSON_DEPTH

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 30
MEMORY_LIMIT = 6 << 30  # address space of each child command
FILE_LIMIT = 256 << 20  # and the largest file it may write
SECRET = b"SECRET-BYTES-FROM-OUTSIDE\n" * 64


def _limit_memory() -> None:
    """The child's bounds: address space, and the largest file it may write (a crafted
    file that made an import write gigabytes fails with EFBIG instead)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def _cli(*args: object, cwd: Path | None = None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``python3 -m replaystore ARGS`` in a child with a time and address-space limit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "replaystore", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or ROOT, env=env, preexec_fn=_limit_memory)


def _store(path: Path, rows: int = 300, **kw) -> Path:
    with rs.create(path, STD_OBS, STD_ACT, fsync=False, chunk_rows=128, **kw) as s:
        s.extend(std_batch(0, rows, term_every=7))
    return path


# --------------------------------------------------------------------------------------
# D4RL / HDF5
# --------------------------------------------------------------------------------------
@pytest.fixture
def h5py():
    return pytest.importorskip("h5py", reason='D4RL import needs pip install "replaystore[hdf5]"')


N = 40


def _plain(f, skip=(), n: int = N) -> None:
    """The datasets of a small valid D4RL file, except those in ``skip``."""
    rng = np.random.default_rng(0)
    data = {"observations": rng.standard_normal((n, 3)).astype(np.float32),
            "actions": rng.standard_normal((n, 2)).astype(np.float32),
            "rewards": rng.standard_normal(n).astype(np.float32),
            "terminals": (np.arange(n) % 9 == 8), "timeouts": np.zeros(n, bool)}
    for k, v in data.items():
        if k not in skip:
            f[k] = v


def _outside(tmp_path: Path, h5py) -> dict[str, Path]:
    """Files outside the D4RL file that a crafted one points at: raw bytes, another HDF5
    file with an 'observations' dataset, and a FIFO (opening it for reading blocks)."""
    raw = tmp_path / "outside" / "secret.bin"
    raw.parent.mkdir()
    raw.write_bytes(SECRET)
    other = raw.parent / "other.h5"
    with h5py.File(other, "w") as g:
        g["observations"] = np.full((N, 3), 7.0, np.float32)
    fifo = raw.parent / "fifo"
    os.mkfifo(fifo)
    return {"raw": raw, "other": other, "fifo": fifo}


def _craft(h5py, kind: str, f, out: dict[str, Path]) -> None:
    if kind == "external-storage":
        f.create_dataset("observations", (N, 3), "f4", external=[(str(out["raw"]), 0, N * 12)])
        _plain(f, skip=("observations",))
    elif kind == "external-storage-fifo":
        f.create_dataset("observations", (N, 3), "f4", external=[(str(out["fifo"]), 0, N * 12)])
        _plain(f, skip=("observations",))
    elif kind == "external-link":
        f["observations"] = h5py.ExternalLink(str(out["other"]), "/observations")
        _plain(f, skip=("observations",))
    elif kind == "external-link-fifo":
        f["observations"] = h5py.ExternalLink(str(out["fifo"]), "/observations")
        _plain(f, skip=("observations",))
    elif kind == "soft-link-outside":
        f["elsewhere"] = h5py.ExternalLink(str(out["other"]), "/")
        f["observations"] = h5py.SoftLink("/elsewhere/observations")
        _plain(f, skip=("observations",))
    elif kind == "virtual":
        layout = h5py.VirtualLayout((N, 3), "f4")
        layout[:] = h5py.VirtualSource(str(out["other"]), "observations", (N, 3))
        f.create_virtual_dataset("observations", layout)
        _plain(f, skip=("observations",))
    elif kind == "sparse-chunked":  # 1e10 declared rows, no chunk written: a tiny file
        n = 10**10
        for k, shape in (("observations", (n, 1)), ("actions", (n, 1)), ("rewards", (n,)),
                         ("terminals", (n,))):
            f.create_dataset(k, shape, "f4", chunks=(1 << 16, *shape[1:]))
    elif kind == "unallocated-contiguous":
        n = 10**9
        for k, shape in (("observations", (n, 1)), ("actions", (n, 1)), ("rewards", (n,)),
                         ("terminals", (n,))):
            f.create_dataset(k, shape, "f4")
    elif kind == "partly-written":  # the last chunk of the rewards never written
        _plain(f, skip=("rewards",))
        d = f.create_dataset("rewards", (N,), "f4", chunks=(8,))
        d[: N - 8] = 1.0
    elif kind == "string-observations":
        f["observations"] = np.array([b"abc"] * N)
        _plain(f, skip=("observations",))
    elif kind == "compound-rewards":
        f["rewards"] = np.zeros(N, dtype=[("a", "f4"), ("b", "i4")])
        _plain(f, skip=("rewards",))
    elif kind == "huge-rows":  # declared rows of 4 GiB each (chunks of zeros compress away)
        f.create_dataset("observations", (N, 1 << 30), "f4", chunks=(1, 1 << 20),
                         compression="gzip")
        _plain(f, skip=("observations",))
    else:
        raise AssertionError(kind)


D4RL_CASES = {
    "external-storage": ["'observations'", "external file", "secret.bin"],
    "external-storage-fifo": ["'observations'", "external file"],
    "external-link": ["'observations'", "external link", "other.h5"],
    "external-link-fifo": ["'observations'", "external link"],
    "soft-link-outside": ["'observations'", "soft link"],
    "virtual": ["'observations'", "virtual dataset"],
    "sparse-chunked": ["'observations'", "10,000,000,000 rows", "0 of its 152,588 chunks"],
    "unallocated-contiguous": ["'observations'", "1,000,000,000 rows", "stores 0 bytes"],
    "partly-written": ["'rewards'", "4 of its 5 chunks"],
    "string-observations": ["'observations'", "dtype |S3", "numbers and booleans"],
    "compound-rewards": ["'rewards'", "numbers and booleans"],
    "huge-rows": ["'observations'", "rows of 4,294,967,296 bytes"],
}


@pytest.mark.parametrize("kind", list(D4RL_CASES))
def test_crafted_d4rl_file_is_refused_before_anything_is_written(h5py, tmp_path, kind):
    out = _outside(tmp_path, h5py)
    src = tmp_path / "crafted.hdf5"
    with h5py.File(src, "w") as f:
        _craft(h5py, kind, f, out)
    assert src.stat().st_size < 1 << 20
    if "fifo" in kind or kind in ("external-storage", "sparse-chunked", "unallocated-contiguous",
                                  "huge-rows"):
        # in a bounded child process: a file that made the import open the FIFO, allocate
        # or write gigabytes fails the test (timeout, MemoryError, EFBIG) instead of
        # hanging the test run or filling the machine
        r = _cli("import", src, tmp_path / "out.zarr", "--from", "d4rl", "--no-progress")
        assert_one_line_error(r, str(src), *D4RL_CASES[kind])
    else:  # through the API: an InteropError naming the file and the dataset
        with warnings.catch_warnings(), pytest.raises(InteropError) as ei:
            warnings.simplefilter("ignore")
            import_d4rl(src, tmp_path / "out.zarr")
        msg = str(ei.value)
        assert "\n" not in msg and str(src) in msg and all(n in msg for n in D4RL_CASES[kind]), msg
    assert not (tmp_path / "out.zarr").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.hdf5", "outside"]


def test_a_valid_file_with_compressed_and_chunked_datasets_still_imports(h5py, tmp_path):
    src = tmp_path / "ok.hdf5"
    rng = np.random.default_rng(3)
    obs = rng.standard_normal((500, 4)).astype(np.float32)
    with h5py.File(src, "w") as f:
        f.create_dataset("observations", data=obs, compression="gzip", chunks=(64, 4))
        f.create_dataset("actions", data=np.zeros((500, 1), np.float32), compression="lzf")
        f.create_dataset("rewards", data=np.ones(500), chunks=(100,))
        f["terminals"] = np.arange(500) % 50 == 49
        f.create_dataset("next_observations", data=obs + 1, compression="gzip")
    stats = import_d4rl(src, tmp_path / "ok.zarr")
    assert stats.rows == 500
    got = read_all(rs.open(tmp_path / "ok.zarr"))
    np.testing.assert_array_equal(got["obs"], obs)
    np.testing.assert_array_equal(got["next_obs"], obs + 1)


# --------------------------------------------------------------------------------------
# Minari
# --------------------------------------------------------------------------------------
@pytest.fixture
def minari_ds(tmp_path, monkeypatch):
    mn = pytest.importorskip("minari", reason='Minari import needs pip install "replaystore[minari]"')
    pytest.importorskip("h5py")
    pytest.importorskip("PIL")
    from gymnasium.spaces import Discrete
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    eps = [EpisodeBuffer(observations=np.array([0, 1, 2]), actions=np.array([1, 0]),
                         rewards=np.array([0.0, 1.0]), terminations=np.array([False, True]),
                         truncations=np.array([False, False])) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mn.create_dataset_from_buffers("crafted/lake-v0", eps, observation_space=Discrete(4),
                                       action_space=Discrete(2))
    return tmp_path / "datasets" / "crafted" / "lake-v0"


_EVIL = "import pathlib; pathlib.Path(__file__).with_name('IMPORTED').write_text('ran')\n"


@pytest.mark.parametrize("craft", ["env-entry-point-no-spaces", "module-env-id", "deep-metadata",
                                   "garbage-space", "not-json"])
def test_crafted_minari_metadata_is_refused_or_imported_without_running_code(minari_ds, tmp_path, craft):
    meta_path = minari_ds / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    (minari_ds / "evilmod.py").write_text(_EVIL)
    spec = {"id": "evilmod:Evil-v0", "entry_point": "evilmod:Evil", "reward_threshold": None,
            "nondeterministic": False, "max_episode_steps": None, "order_enforce": True,
            "disable_env_checker": False, "kwargs": {}, "additional_wrappers": [],
            "vector_entry_point": None}
    if craft == "env-entry-point-no-spaces":
        meta.pop("observation_space")
        meta.pop("action_space")
        meta["env_spec"] = json.dumps(spec)
    elif craft == "module-env-id":
        meta["env_spec"] = json.dumps(spec)
    elif craft == "deep-metadata":
        meta["author"] = "@"
    elif craft == "garbage-space":
        meta["observation_space"] = json.dumps({"type": "Box", "shape": [10**12], "dtype": "float32",
                                                "low": 0, "high": 1})
    text = json.dumps(meta) if craft != "not-json" else "{not json"
    text = text.replace('"@"', _deep(50_000).decode())
    meta_path.write_text(text)
    out = tmp_path / "m.zarr"
    # cwd = the dataset: a module the dataset ships is importable, as in an unpacked download
    r = _cli("import", minari_ds, out, "--from", "minari", "--no-progress", cwd=minari_ds)
    assert not (minari_ds / "IMPORTED").exists(), "the dataset's module was imported"
    assert "Traceback" not in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    if r.returncode == 0:
        assert craft == "module-env-id", r.stdout
        np.testing.assert_array_equal(read_all(rs.open(out))["obs"], [0, 1, 0, 1])
    else:
        assert_one_line_error(r, str(minari_ds))
        assert not out.exists()


# --------------------------------------------------------------------------------------
# pack: never follows a link, only regular files
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["README.txt", "obs/c/0/0", "_extra_dir"])
@pytest.mark.parametrize("target", ["file", "dir", "dangling"])
def test_pack_refuses_a_symlink_inside_the_store(tmp_path, where, target):
    src = _store(tmp_path / "s.zarr")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    link = src / where
    if link.exists():
        link.unlink()
    dest = {"file": secret, "dir": tmp_path, "dangling": tmp_path / "nothing"}[target]
    link.symlink_to(dest)
    if (where, target) == ("README.txt", "file"):  # the case of the issue, by the CLI
        assert_one_line_error(_cli("pack", src, tmp_path / "s.zip", "--no-progress"), str(link), "symbolic link")
    with pytest.raises(rs.CorruptStoreError, match="symbolic link") as ei:
        rs.pack(src, tmp_path / "s.zip")
    assert str(link) in str(ei.value)
    assert not (tmp_path / "s.zip").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_pack_refuses_a_fifo_and_a_linked_zarr_json(tmp_path):
    src = _store(tmp_path / "s.zarr")
    os.mkfifo(src / "notes")  # (by the CLI: reading the FIFO would block for ever)
    assert_one_line_error(_cli("pack", src, tmp_path / "s.zip"), str(src / "notes"), "not a regular file")
    (src / "notes").unlink()
    meta = json.loads((src / "zarr.json").read_text())
    (tmp_path / "elsewhere.json").write_text(json.dumps(meta))
    (src / "zarr.json").unlink()
    (src / "zarr.json").symlink_to(tmp_path / "elsewhere.json")
    assert_one_line_error(_cli("pack", src, tmp_path / "s.zip"), "zarr.json", "symbolic link")
    assert not (tmp_path / "s.zip").exists()


def test_pack_and_unpack_remove_what_killed_runs_left(tmp_path):
    from replaystore.storage.pack import leftovers

    src = _store(tmp_path / "s.zarr")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)  # a process that has exited: its temporaries are leftovers
    zip_left = tmp_path / f".s.zip.pack-{pid}.tmp"
    zip_left.write_bytes(b"half a zip")
    dir_left = tmp_path / f".u.zarr.unpack-{pid}.tmp"
    (dir_left / "obs").mkdir(parents=True)
    (dir_left / "obs" / "zarr.json").write_text("{}")
    alive = tmp_path / f".x.zip.pack-{os.getppid()}.tmp"  # a live process's: kept
    alive.write_bytes(b"")
    assert leftovers(tmp_path) == sorted([zip_left, dir_left])
    z = rs.pack(src, tmp_path / "s.zip")
    assert not zip_left.exists() and not dir_left.exists() and alive.exists()
    dir_left.mkdir()
    rs.unpack(z, tmp_path / "u.zarr")
    assert not dir_left.exists() and leftovers(tmp_path) == []
    assert store_files(tmp_path / "u.zarr") == store_files(src)


def test_unpack_overwrite_restores_an_old_store_a_killed_swap_left_aside(tmp_path):
    """Where directories cannot be swapped atomically the old store is moved aside first;
    a kill between the two renames leaves it there, and the next run puts it back."""
    src = _store(tmp_path / "s.zarr")
    z = rs.pack(src, tmp_path / "s.zip")
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    old = _store(tmp_path / f".u.zarr.unpack-old-{dead}.tmp", rows=5)
    want = store_files(old)
    rs.pack(src, tmp_path / "other.zip")  # any pack/unpack into the directory cleans up
    assert store_files(tmp_path / "u.zarr") == want
    rs.unpack(z, tmp_path / "u.zarr", overwrite=True)
    assert store_files(tmp_path / "u.zarr") == store_files(src)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unpack_overwrite_refuses_a_store_being_written(tmp_path):
    src = _store(tmp_path / "s.zarr")
    z = rs.pack(src, tmp_path / "s.zip")
    dst = _store(tmp_path / "d.zarr", rows=5)
    want = store_files(dst)
    with rs.open(dst, mode="a"), pytest.raises(rs.StoreLockedError):
        rs.unpack(z, dst, overwrite=True)
    assert store_files(dst) == want


# --------------------------------------------------------------------------------------
# unpack: crafted zips
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_zip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("zips")
    return rs.pack(_store(d / "s.zarr"), d / "s.zip")


def _rezip(good: Path, out: Path, extra=(), *, method=zipfile.ZIP_STORED, drop=()) -> Path:
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename not in drop:
                dst.writestr(info.filename, src.read(info), method)
        for name, data, how in extra:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # duplicate names
                dst.writestr(name, data, how)
    return out


ZIP_CASES = {
    "dotdot": ([("../evil.txt", b"x", zipfile.ZIP_STORED)], ["'../evil.txt'", "outside the store"]),
    "absolute": ([("/tmp/evil.txt", b"x", zipfile.ZIP_STORED)], ["outside the store"]),
    "duplicate": ([("obs/zarr.json", b"{}", zipfile.ZIP_STORED)], ["'obs/zarr.json'", "twice"]),
    "file-then-dir": ([("README", b"x", zipfile.ZIP_STORED), ("README/x", b"y", zipfile.ZIP_STORED)],
                      ["'README/x'", "which is a file"]),
    "zip-bomb": ([("bomb.bin", b"\0" * (2 << 20), zipfile.ZIP_DEFLATED)], []),
    "bzip2": ([("notes.txt", b"hello" * 100, zipfile.ZIP_BZIP2)], ["'notes.txt'", "compression method 12"]),
}


@pytest.mark.parametrize("case", list(ZIP_CASES))
def test_unpack_refuses_crafted_zips_before_writing(good_zip, tmp_path, case):
    extra, needles = ZIP_CASES[case]
    z = _rezip(good_zip, tmp_path / "c.zip", extra)
    if case == "zip-bomb":  # a member claiming more than deflate can give from its bytes
        raw = bytearray(z.read_bytes())
        with zipfile.ZipFile(z) as zf:
            info = zf.getinfo("bomb.bin")
            start = zf.start_dir
        pos = raw.index(b"bomb.bin", start) - 46
        assert raw[pos: pos + 4] == b"PK\x01\x02"
        raw[pos + 24: pos + 28] = (3 << 30).to_bytes(4, "little")  # declared: 3 GiB
        raw[info.header_offset + 22: info.header_offset + 26] = (3 << 30).to_bytes(4, "little")
        z.write_bytes(bytes(raw))
        needles = ["'bomb.bin'", "zip bomb"]
    out = tmp_path / "out" / "u.zarr"
    out.parent.mkdir()
    r = _cli("unpack", z, out)
    assert_one_line_error(r, str(z), *needles)
    assert list(out.parent.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_unpack_of_a_member_with_a_bad_crc_leaves_nothing(good_zip, tmp_path):
    raw = bytearray(good_zip.read_bytes())
    with zipfile.ZipFile(good_zip) as zf:
        info = zf.getinfo("reward/c/0")
    n, e = int.from_bytes(raw[info.header_offset + 26: info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28: info.header_offset + 30], "little")
    raw[info.header_offset + 30 + n + e] ^= 0xFF  # flip a byte of the member's data
    z = tmp_path / "crc.zip"
    z.write_bytes(bytes(raw))
    out = tmp_path / "out" / "u.zarr"
    out.parent.mkdir()
    assert_one_line_error(_cli("unpack", z, out), "reward/c/0")
    assert list(out.parent.iterdir()) == []


# --------------------------------------------------------------------------------------
# declared sizes of per-field documents in zip and remote stores
# --------------------------------------------------------------------------------------
def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _field_doc_zip(good: Path, out: Path, how: str) -> Path:
    with zipfile.ZipFile(good) as src:
        doc = src.read("obs/zarr.json")
    if how == "huge":  # valid JSON, padded past the limit; deflated, the zip stays small
        data, method = doc + b" " * (MAX_JSON_BYTES + 1), zipfile.ZIP_DEFLATED
    else:  # nested far beyond the limit inside the attributes
        d = json.loads(doc)
        d["attributes"] = {"x": "@"}
        data = json.dumps(d).replace('"@"', _deep(50_000).decode()).encode()
        method = zipfile.ZIP_STORED
    return _rezip(good, out, [("obs/zarr.json", data, method)], drop=("obs/zarr.json",))


@pytest.mark.parametrize("how", ["huge", "deep"])
def test_field_zarr_json_in_a_zip_is_size_and_depth_checked(good_zip, tmp_path, how):
    z = _field_doc_zip(good_zip, tmp_path / f"{how}.zip", how)
    assert z.stat().st_size < 8 << 20
    msg = "at most" if how == "huge" else f"nested deeper than {MAX_JSON_DEPTH}"
    with pytest.raises(rs.CorruptStoreError, match=msg) as ei:
        rs.open(z)
    assert "obs/zarr.json" in str(ei.value)
    assert_one_line_error(_cli("info", z), "obs/zarr.json")
    if how == "huge":  # unpack refuses it from the member's declared size, writes nothing
        out = tmp_path / "u.zarr"
        assert_one_line_error(_cli("unpack", z, out), "obs/zarr.json", "at most")
        assert not out.exists()


def test_deep_field_zarr_json_of_an_unpacked_store_is_aassert_one_line_error(good_zip, tmp_path):
    """unpack copies bytes (the group document is checked, a field's is not parsed); the
    unpacked local store must then refuse the deep document when opened. (Fails until
    ``Backend.get_json`` parses with ``files.parse_json``: a RecursionError traceback.)"""
    z = _field_doc_zip(good_zip, tmp_path / "deep.zip", "deep")
    out = tmp_path / "u.zarr"
    r = _cli("unpack", z, out)
    assert r.returncode == 0, r.stderr
    assert_one_line_error(_cli("info", out), "obs/zarr.json", "nested deeper")


@pytest.mark.parametrize("how", ["huge", "deep", "deep-group"])
def test_documents_of_a_remote_store_are_size_and_depth_checked(tmp_path, how):
    fsspec = pytest.importorskip("fsspec")
    url = f"memory://crafted-{how}/s.zarr"
    with rs.create(url, STD_OBS, STD_ACT, chunk_rows=64) as s:
        s.extend(std_batch(0, 100))
    fs = fsspec.filesystem("memory")
    key = "zarr.json" if how == "deep-group" else "obs/zarr.json"
    doc = fs.cat_file(f"/crafted-{how}/s.zarr/{key}")
    if how == "huge":
        fs.pipe_file(f"/crafted-{how}/s.zarr/{key}", doc + b" " * (MAX_JSON_BYTES + 1))
    else:
        d = json.loads(doc)
        d["attributes"]["x"] = "@"
        fs.pipe_file(f"/crafted-{how}/s.zarr/{key}",
                     json.dumps(d).replace('"@"', _deep(50_000).decode()).encode())
    try:
        msg = "over" if how == "huge" else "nested deeper"
        with pytest.raises(rs.CorruptStoreError, match=msg) as ei:
            rs.open(url)
        assert key in str(ei.value) and "crafted" in str(ei.value)
    finally:
        fs.rm(f"/crafted-{how}", recursive=True)


def test_a_remote_store_of_normal_documents_reads_the_same(tmp_path):
    pytest.importorskip("fsspec")
    url = "memory://crafted-normal/s.zarr"
    local = _store(tmp_path / "s.zarr", rows=100)
    with rs.create(url, STD_OBS, STD_ACT, chunk_rows=128) as s:
        s.extend(std_batch(0, 100, term_every=7))
    with rs.open(url) as r, rs.open(local) as d:
        for k, v in read_all(d).items():
            np.testing.assert_array_equal(read_all(r)[k], v)
    import fsspec

    fsspec.filesystem("memory").rm("/crafted-normal", recursive=True)


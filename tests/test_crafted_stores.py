"""Stores and zips from strangers are data: crafted files end in a one-line
``ReplayStoreError`` (``CorruptStoreError`` naming the file and the field) or correct
data, never a signal, a hang, a traceback or an unbounded allocation (issue 12: a zip
member past the end of the file, crafted committed state, oversized or deeply nested
``zarr.json``, a ring on a read-only mount)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import STD_ACT, STD_OBS, assert_one_line_error, read_all, std_batch

import replaystore as rs
from replaystore.storage import files as _files
from replaystore.storage.files import MAX_JSON_BYTES, MAX_JSON_DEPTH

TIMEOUT = 120


def _store(path: Path, *, capacity=None, rows=10_000, chunk_rows=4096) -> Path:
    with rs.create(path, STD_OBS, STD_ACT, capacity=capacity, chunk_rows=chunk_rows, fsync=False) as s:
        s.extend(std_batch(0, rows, term_every=7, trunc_every=50))
    return path


def _cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replaystore", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------------------
# 1. a crafted .zip whose chunk member runs past the end of the file
# --------------------------------------------------------------------------------------


def _cd_entries(raw: bytes | bytearray, start_dir: int):
    """``(position, name)`` of every central directory entry."""
    pos = start_dir
    while raw[pos:pos + 4] == b"PK\x01\x02":
        nl, el, cl = struct.unpack_from("<3H", raw, pos + 28)
        yield pos, bytes(raw[pos + 46: pos + 46 + nl])
        pos += 46 + nl + el + cl


def _member_past_eof(path: Path, name: str) -> None:
    """Point member ``name`` at a forged copy of its local header, placed in the zip
    comment at the very end of the file, whose (page-aligned) data starts beyond EOF."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info, start_dir = zf.getinfo(name), zf.start_dir
    eocd = raw.rindex(b"PK\x05\x06")
    assert len(raw) == eocd + 22  # no comment yet
    head = bytearray(raw[info.header_offset: info.header_offset + 30])
    n = struct.unpack_from("<H", head, 26)[0]
    fname = bytes(raw[info.header_offset + 30: info.header_offset + 30 + n])
    at = len(raw)
    struct.pack_into("<H", head, 28, -(at + 30 + n) % 16384 or 16384)  # extra length
    hits = [pos for pos, nm in _cd_entries(raw, start_dir) if nm == fname]
    assert len(hits) == 1
    struct.pack_into("<L", raw, hits[0] + 42, at)  # the entry's local header offset
    comment = bytes(head) + fname
    struct.pack_into("<H", raw, eocd + 20, len(comment))
    path.write_bytes(bytes(raw) + comment)


def _last_member_cut(path: Path) -> str:
    """Cut the last member's data in half (the central directory moves up): its data then
    runs into the central directory. Returns the member's name."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.header_offset)
        start_dir = zf.start_dir
    n, e = struct.unpack_from("<2H", raw, info.header_offset + 26)
    cut = info.header_offset + 30 + n + e + info.compress_size // 2
    eocd_at = raw.rindex(b"PK\x05\x06")
    eocd = bytearray(raw[eocd_at:])
    struct.pack_into("<L", eocd, 16, cut)  # where the central directory starts
    path.write_bytes(raw[:cut] + raw[start_dir:eocd_at] + bytes(eocd))
    return info.filename


def _local_extra_grown(path: Path, name: str) -> None:
    """Grow member ``name``'s local extra-field length (keeping its data page-aligned):
    its data then starts later and runs past the end of the member data."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    e = struct.unpack_from("<H", raw, info.header_offset + 28)[0]
    assert e + 3 * 16384 < 65536
    struct.pack_into("<H", raw, info.header_offset + 28, e + 3 * 16384)
    path.write_bytes(bytes(raw))


_READ_ALL = textwrap.dedent("""
    import sys
    import replaystore as rs
    try:
        s = rs.open(sys.argv[1])
        if sys.argv[2] == "read":
            s.read(list(range(len(s))))
        else:
            rs.UniformSampler(s, batch_size=4096, seed=0).sample()
    except rs.CorruptStoreError as e:
        print(e)
        sys.exit(3)
    print("no error")
""")


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("packed")
    return rs.pack(_store(d / "s.zarr"), d / "s.zip")


@pytest.mark.parametrize("craft", ["past_eof", "cut_last", "extra_grown"])
def test_zip_member_past_the_end_is_a_corrupt_store_error(packed, tmp_path, craft):
    z = tmp_path / "bad.zip"
    shutil.copy(packed, z)
    if craft == "past_eof":
        member = "obs/c/2/0"
        _member_past_eof(z, member)
    elif craft == "cut_last":
        member = _last_member_cut(z)
    else:
        with zipfile.ZipFile(z) as zf:
            member = max(zf.infolist(), key=lambda i: i.header_offset).filename
        _local_extra_grown(z, member)
    assert "/c/" in member
    r = _cli("sample", z, "--batch-size", "4096")
    assert_one_line_error(r, str(z), repr(member))
    for how in ("read", "sample"):
        p = subprocess.run([sys.executable, "-c", _READ_ALL, str(z), how], capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert p.returncode == 3, (how, p.returncode, p.stdout, p.stderr[-2000:])
        assert member in p.stdout and str(z) in p.stdout
    # info reads some fields (episodes): it works or names the damaged member
    r = _cli("info", z)
    if r.returncode:
        assert_one_line_error(r, str(z), repr(member))


def test_untouched_zip_reads_the_same_as_the_directory(packed):
    with rs.open(packed) as z, rs.open(packed.with_suffix(".zarr")) as d:
        got, want = read_all(z), read_all(d)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


# --------------------------------------------------------------------------------------
# 2. crafted committed state and metadata values
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stores")
    return {"unbounded": _store(d / "u.zarr", rows=700, chunk_rows=256),
            "ring": _store(d / "r.zarr", capacity=500, rows=700, chunk_rows=256)}


def _crafted(stores, tmp_path, kind: str, edit) -> Path:
    p = tmp_path / f"{kind}.zarr"
    shutil.copytree(stores[kind], p)
    doc = json.loads((p / "zarr.json").read_text())
    edit(doc["attributes"]["replaystore"], doc["attributes"]["replaystore_state"])
    (p / "zarr.json").write_text(json.dumps(doc))
    return p


def _set(where: str, key: str, value):
    def edit(meta, state):
        target = meta if where == "meta" else state
        if value is _DROP:
            target.pop(key)
        else:
            target[key] = value
    return edit


_DROP = object()
STATE_CASES = [
    ("both", "state", "size", 999.7),
    ("both", "state", "size", True),
    ("both", "state", "size", -5),
    ("both", "state", "size", "10"),
    ("both", "state", "size", None),
    ("both", "state", "size", [1]),
    ("both", "state", "size", 10**15),  # more than total
    ("both", "state", "total", -1),
    ("both", "state", "total", 2**70),
    ("both", "state", "total", 699.0),
    ("both", "state", "cursor", "3"),
    ("both", "state", "cursor", False),
    ("both", "state", "cursor", 7),  # != total (% capacity)
    ("both", "state", "generation", None),
    ("both", "state", "generation", -1),
    ("both", "state", "episode", 1.5),
    ("both", "state", "step", -3),
    ("both", "state", "next_episode", "x"),
    ("ring", "state", "size", 600),  # more than the capacity
    ("ring", "meta", "capacity", 0),
    ("ring", "meta", "capacity", -500),
    ("ring", "meta", "capacity", True),
    ("ring", "meta", "capacity", 500.0),
    ("ring", "meta", "capacity", "500"),
    ("unbounded", "meta", "capacity", 0),
    ("unbounded", "meta", "capacity", False),
    ("both", "meta", "fields", {"obs": 1}),
    ("both", "meta", "fields", "obs"),
    ("both", "meta", "fields", [1, 2]),
    ("both", "meta", "fields", _DROP),
]


def _case_id(c):
    kind, _, key, value = c
    return f"{kind}-{key}={'<dropped>' if value is _DROP else json.dumps(value)}"


@pytest.mark.parametrize("kind,where,key,value", [
    pytest.param(k, w, key, v, id=_case_id((k, w, key, v))) for kinds, w, key, v in STATE_CASES
    for k in (("unbounded", "ring") if kinds == "both" else (kinds,))
])
def test_crafted_state_values_are_one_line_errors(stores, tmp_path, kind, where, key, value):
    p = _crafted(stores, tmp_path, kind, _set(where, key, value))
    with pytest.raises(rs.CorruptStoreError) as ei:
        rs.open(p)
    msg = str(ei.value)
    assert f"{p}/zarr.json" in msg and f"{key}'" in msg and "expected" in msg, msg
    assert "\n" not in msg
    line = assert_one_line_error(_cli("info", p), f"{p}/zarr.json", key)
    assert "expected" in line
    # verify reports the damage and falls back on the backup instead of failing
    report = rs.verify(p)
    assert not report.ok and any(key in x for x in report.problems), report.lines()


def test_valid_states_still_open(stores):
    for p in stores.values():
        with rs.open(p) as s:
            assert len(s) == 500 if s.capacity else len(s) == 700
        assert rs.verify(p).ok


# --------------------------------------------------------------------------------------
# bounded JSON: size and depth
# --------------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 150, 100_000])
def test_deeply_nested_zarr_json_is_refused(stores, tmp_path, depth):
    p = tmp_path / "deep.zarr"
    shutil.copytree(stores["unbounded"], p)
    doc = (p / "zarr.json").read_text()
    doc = doc.replace('"info": {}', '"info": {"x": ' + _nested(depth) + "}", 1)
    assert _nested(depth) in doc
    (p / "zarr.json").write_text(doc)
    with pytest.raises(rs.CorruptStoreError, match=f"nested deeper than {MAX_JSON_DEPTH}") as ei:
        rs.open(p)
    assert str(p / "zarr.json") in str(ei.value)
    assert_one_line_error(_cli("info", p), "zarr.json", "nested deeper")


def test_nesting_up_to_the_limit_is_accepted(stores, tmp_path):
    p = tmp_path / "ok.zarr"
    shutil.copytree(stores["unbounded"], p)
    doc = json.loads((p / "zarr.json").read_text())
    # the document, attributes, replaystore and info levels, then the nested lists
    doc["attributes"]["replaystore"]["info"]["x"] = json.loads(_nested(MAX_JSON_DEPTH - 4))
    (p / "zarr.json").write_text(json.dumps(doc))
    with rs.open(p) as s:
        assert len(s) == 700


def test_writing_metadata_deeper_than_the_limit_is_refused(tmp_path):
    deep = json.loads(_nested(MAX_JSON_DEPTH + 1))
    with pytest.raises(rs.SchemaError, match="nested deeper"):
        rs.create(tmp_path / "s.zarr", STD_OBS, STD_ACT, info={"x": deep})
    assert not (tmp_path / "s.zarr" / "zarr.json").exists()


def test_oversized_zarr_json_is_refused_before_it_is_read(stores, tmp_path, monkeypatch):
    p = tmp_path / "big.zarr"
    shutil.copytree(stores["unbounded"], p)
    os.truncate(p / "zarr.json", 65 << 20)  # valid JSON, then sparse NULs: 65 MiB
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    with pytest.raises(rs.CorruptStoreError, match="at most") as ei:
        rs.open(p)
    assert str(p / "zarr.json") in str(ei.value) and f"{65 << 20:,} bytes" in str(ei.value)
    assert sum(reads) == 0  # refused from its size, not read
    monkeypatch.undo()
    assert_one_line_error(_cli("info", p), "zarr.json", "at most")


def test_oversized_zarr_json_in_a_zip_is_refused(packed, tmp_path):
    """A zip whose (deflated) zarr.json declares more than the limit: refused from the
    declared size, not inflated."""
    z = tmp_path / "big.zip"
    with zipfile.ZipFile(packed) as src, zipfile.ZipFile(z, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "zarr.json":
                out.writestr("zarr.json", data + b" " * (MAX_JSON_BYTES + 1), zipfile.ZIP_DEFLATED)
            else:
                out.writestr(info.filename, data, zipfile.ZIP_STORED)
    assert z.stat().st_size < 8 << 20
    with pytest.raises(rs.CorruptStoreError, match="at most") as ei:
        rs.open(z)
    assert "zarr.json" in str(ei.value)
    assert_one_line_error(_cli("info", z), "zarr.json", "at most")


def test_fifo_in_place_of_zarr_json_does_not_hang(stores, tmp_path):
    p = tmp_path / "fifo.zarr"
    shutil.copytree(stores["unbounded"], p)
    (p / "zarr.json").unlink()
    os.mkfifo(p / "zarr.json")
    r = _cli("info", p, timeout=60)
    assert_one_line_error(r, "zarr.json", "not a regular file")


# --------------------------------------------------------------------------------------
# 3. a ring on a read-only mount: readers open .live read-only
# --------------------------------------------------------------------------------------


def test_ring_reader_opens_live_read_only(stores, tmp_path, monkeypatch):
    p = tmp_path / "r.zarr"
    shutil.copytree(stores["ring"], p)
    live = p / ".live"
    assert live.stat().st_size == 16
    os.chmod(live, 0o444)
    opened = []
    real_open = os.open

    def spy(path, flags, *a, **kw):
        if Path(path).name == ".live":
            opened.append(flags)
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(_files.os, "open", spy)
    with rs.open(p) as s:
        assert opened and all(f & (os.O_WRONLY | os.O_RDWR) == 0 for f in opened), opened
        lf = s._reader.live
        assert lf is not None and lf.floor == 700 - 500
        with pytest.raises(ValueError):
            lf.array[0] = 0  # the reader's mapping is read-only
        with pytest.raises(TypeError):
            lf._mm[0:8] = b"\0" * 8
        assert len(rs.UniformSampler(s, batch_size=64, seed=0).sample()["obs"]) == 64
        rows = read_all(s)
        np.testing.assert_array_equal(rows["reward"], np.arange(200, 700, dtype=np.float32))
    assert live.read_bytes()[:8] == struct.pack("<q", 200)  # untouched
    monkeypatch.undo()
    os.chmod(live, 0o644)
    # the writer still opens it for writing and raises the floor
    with rs.open(p, mode="a") as w:
        w.extend(std_batch(700, 100))
    assert struct.unpack("<q", live.read_bytes()[:8])[0] == 300


def test_non_regular_live_file_is_ignored_by_readers(stores, tmp_path):
    p = tmp_path / "r.zarr"
    shutil.copytree(stores["ring"], p)
    (p / ".live").unlink()
    os.mkfifo(p / ".live")
    r = subprocess.run([sys.executable, "-c", "import sys, replaystore as rs; "
                        "print(len(rs.open(sys.argv[1]).read([0, 1])['obs']))", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr[-2000:]


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def read_only_mount(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    dst.mkdir()
    if not (_mount("--bind", str(src), str(dst))):
        pytest.skip("mount --bind is not permitted here")
    try:
        if not _mount("-o", "remount,ro,bind", str(dst)):
            pytest.skip("mount -o remount,ro,bind is not permitted here")
        yield src, dst
    finally:
        subprocess.run(["umount", "-l", str(dst)], check=False)


@pytest.mark.parametrize("capacity", [500, None])
def test_store_on_a_read_only_mount_can_be_read(read_only_mount, capacity):
    src, dst = read_only_mount
    _store(src / "s.zarr", capacity=capacity, rows=700, chunk_rows=256)
    p = dst / "s.zarr"
    with pytest.raises(OSError):
        (p / "probe").write_bytes(b"x")  # really read-only
    assert (p / ".live").is_file() == (capacity is not None)
    with rs.open(p) as s:
        assert len(s) == (500 if capacity else 700)
        if capacity:
            assert s._reader.live is not None and s._reader.live.floor == 200
        rows = read_all(s)
        np.testing.assert_array_equal(rows["reward"], np.arange(700 - len(s), 700, dtype=np.float32))
        assert len(rs.UniformSampler(s, batch_size=32, seed=0).sample()["obs"]) == 32
        s.refresh()
    r = _cli("sample", p, "--batch-size", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    with pytest.raises(rs.StoreModeError):
        rs.open(p, mode="a")


def test_consistent_but_huge_counters_are_refused_not_allocated(tmp_path):
    """size = total = cursor = 10**15 agree with each other, but no array holds those rows."""
    import json
    import time

    import gymnasium as gym

    path = tmp_path / "huge.zarr"
    with rs.create(path, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)) as s:
        s.extend({"obs": np.zeros((10, 3)), "action": np.zeros(10, int), "reward": np.zeros(10),
                  "next_obs": np.zeros((10, 3)), "terminated": np.zeros(10, bool),
                  "truncated": np.zeros(10, bool)})
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["replaystore_state"].update(size=10**15, total=10**15, cursor=10**15)
    (path / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(rs.CorruptStoreError, match=r"obs/zarr.json: array of field 'obs' has 10 rows"):
        rs.open(path)
    t = time.monotonic()
    for repair in (False, True):
        report = rs.verify(path, repair=repair)
        assert not report.ok and "10 rows" not in " ".join(report.problems)
        assert any("hold 10" in p for p in report.problems)
    assert time.monotonic() - t < 10
    # the backup state agrees with the data: repair restores it, dropping nothing
    assert "restored zarr.json from its backup" in report.repaired
    assert rs.open(path).size == 10


@pytest.mark.parametrize("member", ["zarr.json", "obs/zarr.json", "obs/c/0/0"])
def test_a_symlink_out_of_the_store_is_never_followed(tmp_path, member):
    """A file of the store replaced by a link to a valid copy outside it: following the
    link would read outside the store (and here even give a working store); it is refused."""
    import gymnasium as gym

    path = tmp_path / "s.zarr"
    with rs.create(path, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)) as s:
        s.extend({"obs": np.zeros((10, 3)), "action": np.zeros(10, int), "reward": np.zeros(10),
                  "next_obs": np.zeros((10, 3)), "terminated": np.zeros(10, bool),
                  "truncated": np.zeros(10, bool)})
    outside = tmp_path / "outside"
    outside.write_bytes((path / member).read_bytes())
    (path / member).unlink()
    (path / member).symlink_to(outside)
    with pytest.raises(rs.CorruptStoreError, match="symbolic link|expected a regular file|not a regular"):
        with rs.open(path) as s:
            s.read_range(0, 10)

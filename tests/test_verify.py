"""verify finds every injected corruption, names field and rows, and repair drops exactly the
damaged rows (the rest kept bit for bit)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import replaystore as rs
from replaystore.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from crashtest import row_values  # noqa: E402


def make(path, capacity=None, n=9000, codecs=None):
    s = rs.create(path, gym.spaces.Box(-1e9, 1e9, (4,), np.float32), gym.spaces.Discrete(3),
                  capacity=capacity, extra_fields=[("check", "int64")], chunk_rows=4096, codecs=codecs)
    g = 0
    for m in (1, 5, 64, 3000, n - 3070):
        s.extend(row_values(np.arange(g, g + m)))
        g += m
        s.flush()
    s.close()
    return path


def flip(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("capacity", [None, 5000])
def test_clean_store_verifies(tmp_path, capacity):
    p = make(tmp_path / "s", capacity)
    r = rs.verify(p)
    assert r.ok and r.rows == (9000 if capacity is None else 5000) and r.damage == []


@pytest.mark.parametrize("capacity", [None, 5000])
def test_flipped_byte_is_found_and_repaired(tmp_path, capacity):
    p = make(tmp_path / "s", capacity)
    size = rs.open(p).size
    # chunk 1 of obs holds physical rows 4096..8191; byte 16*100 is row 4096+100
    flip(p / "obs" / "c" / "1" / "0", offset=16 * 100)
    r = rs.verify(p)
    assert not r.ok
    assert [d.field for d in r.damage] == ["obs"]
    d = r.damage[0]
    oldest = 0 if capacity is None else (9000 - 5000) % 5000
    logical = (4196 - oldest) % (capacity or 10**9)
    assert d.start <= logical < d.stop and "checksum mismatch" in d.reason
    first = 9000 - size  # global id of logical row 0
    r = rs.verify(p, repair=True)
    assert r.repaired and "dropped" in r.repaired
    assert rs.verify(p).ok
    s = rs.open(p)
    assert s.size == size - (d.stop - d.start)
    # only the damaged rows went; what was kept is intact, in order, and the store takes
    # new rows again
    ids = np.r_[first:first + d.start, first + d.stop:first + size]
    want = row_values(ids)
    got = s.read_range(0, s.size)
    assert all(np.array_equal(got[k], v) for k, v in want.items() if k not in ("episode", "step"))
    s.close()
    s = rs.open(p, "a")
    s.extend(row_values(np.arange(s.total, s.total + 10)))
    s.close()
    assert rs.verify(p).ok


def test_truncated_and_deleted_chunks(tmp_path):
    p = make(tmp_path / "s")
    chunk = p / "reward" / "c" / "0"
    os.truncate(chunk, 100)
    (p / "next_obs" / "c" / "1" / "0").unlink()
    r = rs.verify(p)
    by_field = {d.field: d for d in r.damage}
    assert set(by_field) == {"reward", "next_obs"}
    assert "100 bytes" in by_field["reward"].reason and by_field["reward"].start == 0
    assert "missing" in by_field["next_obs"].reason and by_field["next_obs"].start == 4096
    # opening a store with a truncated chunk is a clear error, not a crash
    with pytest.raises(rs.CorruptStoreError, match="reward"):
        rs.open(p).read([5], fields=["reward"])
    # a checksum covers a block of ~64 KiB: a truncated chunk of reward damages its block
    # (rows 0..16383 of float32: every row here); the damaged rows are dropped, no others
    dropped = np.zeros(9000, bool)
    for d in r.damage:
        dropped[d.start : d.stop] = True
    rs.verify(p, repair=True)
    assert rs.verify(p).ok and rs.open(p).size == int((~dropped).sum())


def test_compressed_field_corruption(tmp_path):
    p = make(tmp_path / "s", codecs={"check": "zstd:3"})
    flip(p / "check" / "c" / "1", offset=20)
    r = rs.verify(p)
    # checksums cover blocks of ~64 KiB (8192 int64 rows): the block holding chunk 1
    assert [d.field for d in r.damage] == ["check"]
    assert r.damage[0].start <= 4096 < r.damage[0].stop


def test_bad_json_is_reported_and_restored_from_backup(tmp_path):
    p = make(tmp_path / "s")
    good = rs.open(p).read_range(0, 9000)
    (p / "zarr.json").write_text("{ not json")
    with pytest.raises(rs.CorruptStoreError):
        rs.open(p)
    r = rs.verify(p)
    assert not r.ok and any("zarr.json" in str(x) for x in r.side) and not r.damage
    r = rs.verify(p, repair=True)
    assert "restored zarr.json" in r.repaired
    s = rs.open(p)
    assert all(np.array_equal(s.read_range(0, 9000)[k], v) for k, v in good.items())


def test_cli_verify_exit_codes(tmp_path):
    p = make(tmp_path / "s", n=5000)
    ok = CliRunner().invoke(main, ["verify", str(p)])
    assert ok.exit_code == 0 and "OK" in ok.output
    flip(p / "action" / "c" / "0", offset=8 * 10)
    bad = CliRunner().invoke(main, ["verify", str(p)])
    assert bad.exit_code == 1 and "action: rows 0.." in bad.output
    fixed = CliRunner().invoke(main, ["verify", str(p), "--repair"])
    assert fixed.exit_code == 1 and "repaired" in fixed.output
    assert CliRunner().invoke(main, ["verify", str(p)]).exit_code == 0


def test_the_bundled_dataset_verifies_and_repair_changes_nothing(tmp_path):
    """``data/`` ships in the wheel: it must pass verify, and --repair (on a copy) must find
    nothing to do."""
    import shutil

    bundled = Path(__file__).resolve().parents[1] / "data" / "frozenlake-4x4-slippery.zarr"
    report = rs.verify(bundled)
    assert report.ok, "\n".join(report.lines())
    with rs.open(bundled) as s:
        n_fields = len(s.schema.names)
    assert report.rows > 0 and report.rows_checked == report.rows * n_fields  # every row of every field
    copy = tmp_path / "copy.zarr"
    shutil.copytree(bundled, copy)
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert rs.verify(copy, repair=True).repaired is None
    after = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()
             if p.name != ".writer.lock"}
    assert after == {k: v for k, v in before.items() if k.name != ".writer.lock"}


# -- a packed .zip is verified in place, read-only ------------------------------------------
def _member_data_at(z: Path, name: str) -> tuple[int, int]:
    """(offset, stored bytes) of member ``name``'s data inside the zip file ``z``."""
    import struct
    import zipfile

    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo(name)
    raw = z.read_bytes()
    n, e = struct.unpack_from("<2H", raw, info.header_offset + 26)
    return info.header_offset + 30 + n + e, info.compress_size


@pytest.mark.parametrize("member,compressed", [("obs/c/1/0", False), ("check/c/2", False),
                                               ("obs/c/0/0", True)])
def test_verify_a_zip_finds_one_flipped_byte_and_names_the_field(tmp_path, member, compressed):
    src = make(tmp_path / "s.zarr", codecs={"obs": "zstd:3"} if compressed else None)
    z = rs.pack(src, tmp_path / "s.zip")
    good = rs.verify(z)
    assert good.ok and good.rows == 9000 and good.path == str(z), good.lines()
    before = z.read_bytes()
    at, size = _member_data_at(z, member)
    flip(z, at + size // 2)  # one byte inside the member's data (a full, partial or zstd chunk)
    report = rs.verify(z)
    assert not report.ok
    field = member.split("/")[0]
    text = "\n".join(report.lines())
    assert text.startswith(f"{z}: DAMAGED")
    assert any(d.field == field for d in report.damage), text
    assert "replaystore-verify-" not in text  # names the zip, not the scratch copy
    assert z.read_bytes()[:at] == before[:at]  # read-only: nothing else was changed
    res = CliRunner().invoke(main, ["verify", str(z)])
    assert res.exit_code == 1 and "DAMAGED" in res.output and f"{field}:" in res.output


def test_verify_repair_on_a_zip_is_refused_in_one_line(tmp_path):
    z = rs.pack(make(tmp_path / "s.zarr", n=100), tmp_path / "s.zip")
    before = z.read_bytes()
    res = CliRunner().invoke(main, ["verify", str(z), "--repair"])
    assert res.exit_code != 0
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "read-only" in lines[0] and "unpack" in lines[0], res.output
    assert z.read_bytes() == before

"""Issue 12, cases 4, 7, 8, 12 (verify parts) and "Smaller": verify covers what readers
trust, and ``--repair`` never drops rows whose data verifies."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import STD_ACT, STD_OBS, std_batch

import replaystore as rs

N = 50_000


def _make(path: Path, n: int = N, *, capacity=None, codecs=None, index: bool = False) -> Path:
    with rs.create(path, STD_OBS, STD_ACT, capacity=capacity, codecs=codecs, chunk_rows=4096) as s:
        for a in range(0, n, 10_000):
            s.extend(std_batch(a, min(10_000, n - a), term_every=37))
            s.flush()
        if index:
            s.class_index("action")
    return path


def _rows(path: Path) -> dict[str, np.ndarray]:
    with rs.open(path) as s:
        return s.read_range(0, len(s))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _edit_state(path: Path, **values) -> None:
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["replaystore_state"].update(values)
    (path / "zarr.json").write_text(json.dumps(doc))


# -- case 4: side files are repaired from the data ---------------------------------------
@pytest.mark.parametrize("damage", ["deleted crc", "flipped crc bit", "edited size/total",
                                    "size -5", "deleted check words and flipped crc"])
def test_side_file_damage_never_drops_rows(tmp_path, damage):
    path = _make(tmp_path / "s")
    before = _rows(path)
    if damage == "deleted crc":
        (path / ".crc" / "obs.bin").unlink()
    elif damage == "flipped crc bit":
        recs = np.fromfile(path / ".crc" / "obs.bin", "<u4")[:8].reshape(2, 4)
        slot = int(np.argmax(recs[:, 2]))  # the slot block 0 uses (newest generation)
        _flip(path / ".crc" / "obs.bin", slot * 16 + 3, bit=5)  # one bit of its crc
    elif damage == "edited size/total":
        _edit_state(path, size=40_000, total=40_000, cursor=40_000)
    elif damage == "size -5":
        _edit_state(path, size=-5)
    else:  # a store without check words (written before them) trusts its records
        (path / ".crc" / "obs.chk").unlink()
    report = rs.verify(path)
    if damage.startswith("deleted check"):
        assert report.ok  # records of stores without check words are trusted as they are
        return
    assert not report.ok and not report.damage, report.lines()
    report = rs.verify(path, repair=True)
    assert "no rows dropped" in report.repaired, report.lines()
    if damage in ("deleted crc", "flipped crc bit"):
        assert "checksums of field 'obs' rebuilt from the data" in report.repaired
        if damage == "deleted crc":
            assert "those 50,000 rows could not be verified" in "\n".join(report.lines())
    else:
        assert "restored zarr.json from its backup" in report.repaired
    assert rs.verify(path).ok
    assert _same(_rows(path), before)
    with rs.open(path) as s:
        assert s.size == N and s.total == N


@pytest.mark.parametrize("capacity", [None, 30_000])
def test_repair_drops_only_the_damaged_rows_and_says_which(tmp_path, capacity):
    path = _make(tmp_path / "s", capacity=capacity)
    before = _rows(path)
    size = len(before["reward"])
    first = N - size
    # physical row 20_000 of reward (float32: a checksum block is 16,384 rows)
    _flip(path / "reward" / "c" / str(20_000 // 4096), (20_000 % 4096) * 4 + 1)
    report = rs.verify(path)
    assert {d.field for d in report.damage} == {"reward"}
    dropped = np.zeros(size, bool)
    for d in report.damage:  # one checksum block: 16,384 rows (in a ring, what is committed of it)
        dropped[d.start : d.stop] = True
    assert dropped.sum() == (16_384 if capacity is None else 30_000 - 16_384)
    report = rs.verify(path, repair=True)
    d = report.damage[0]
    assert f"dropped {int(dropped.sum()):,} damaged row(s) (logical rows {d.start}..{d.stop - 1}" \
        in report.repaired
    assert "episodes now missing steps" in report.repaired
    assert rs.verify(path).ok
    after = _rows(path)
    keep = np.flatnonzero(~dropped)
    assert len(after["reward"]) == len(keep)
    for k in before:
        assert after[k].tobytes() == before[k][keep].tobytes(), k  # bit for bit, in order
    np.testing.assert_array_equal(after["reward"], (keep + first).astype(np.float32))
    with rs.open(path, "a") as s:  # the repaired store takes rows again
        s.extend(std_batch(N, 10))
    assert rs.verify(path).ok


def test_a_compressed_store_flipped_byte_is_caught_by_reads_and_verify(tmp_path):
    path = _make(tmp_path / "s", 20_000, codecs="zstd:3")
    chunk = path / "obs" / "c" / "1" / "0"
    _flip(chunk, len(chunk.read_bytes()) // 2)
    with rs.open(path) as s, pytest.raises(rs.CorruptStoreError, match="obs.*cannot be decoded"):
        s.read_range(0, 20_000, fields=["obs"])
    report = rs.verify(path)
    assert [d.field for d in report.damage] == ["obs"]


# -- case 7 and 12: what is in place of a chunk file ------------------------------------
@pytest.mark.parametrize("kind", ["missing", "dangling symlink", "directory", "fifo", "dev zero"])
@pytest.mark.parametrize("codec", ["zstd:3", None])
def test_anything_but_a_chunk_file_is_damage_never_zeros_or_a_hang(tmp_path, kind, codec):
    path = _make(tmp_path / "s", 10_000, codecs=codec)
    chunk = path / "obs" / "c" / "1" / "0"
    chunk.unlink()
    if kind == "dangling symlink":
        chunk.symlink_to(tmp_path / "nowhere")
    elif kind == "directory":
        chunk.mkdir()
    elif kind == "fifo":
        os.mkfifo(chunk)
    elif kind == "dev zero":
        chunk.symlink_to("/dev/zero")
    code = (f"import replaystore as rs\n"
            f"s = rs.open({str(path)!r})\n"
            "try:\n    s.read_range(0, len(s), fields=['obs'])\nexcept rs.CorruptStoreError as e:\n"
            "    print('CORRUPT', e)\n"
            f"r = rs.verify({str(path)!r})\nprint('DAMAGE', [(d.field, d.start) for d in r.damage])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CORRUPT" in out.stdout and "obs" in out.stdout.split("CORRUPT")[1].splitlines()[0]
    assert "DAMAGE [('obs'," in out.stdout


# -- case 8: class indexes and .live --------------------------------------------------------
@pytest.mark.parametrize("damage", ["deleted c1", "tripled counts", "flipped id"])
def test_class_index_damage_is_found_and_repaired(tmp_path, damage):
    path = _make(tmp_path / "s", 20_000, index=True)
    idx = path / "_index" / "action"
    assert (idx / "c1").is_dir()
    if damage == "deleted c1":
        import shutil

        shutil.rmtree(idx / "c1")
    elif damage == "tripled counts":
        doc = json.loads((idx / "zarr.json").read_text())
        attrs = doc["attributes"]["replaystore_index"]
        attrs["counts"] = [c * 3 if j == 0 else c for j, c in enumerate(attrs["counts"])]
        (idx / "zarr.json").write_text(json.dumps(doc))
    else:
        _flip(idx / "c2" / "c" / "0", 8 * 100 + 1)
    report = rs.verify(path)
    assert not report.ok and not report.damage
    assert [s.action for s in report.side] == ["index"], report.lines()
    report = rs.verify(path, repair=True)
    assert "removed class index 'action'" in report.repaired
    assert rs.verify(path).ok
    with rs.open(path, "a") as s:
        batch = rs.BalancedSampler(s, by="action", batch_size=4096, seed=0).sample()
        counts = np.bincount(batch["action"], minlength=4)
        assert counts.min() > 800, counts  # balanced again
        got = s.read_range(0, len(s), fields=["action"])["action"]
        index = s.class_index("action")
        for j, c in enumerate(index.classes):  # every id in the class of its action
            assert (got[index.ids_view(j)[: index.counts[j]]] == c).all()
    assert rs.verify(path).ok


def test_a_live_floor_above_the_committed_rows_is_reset(tmp_path):
    path = _make(tmp_path / "s", 20_000, capacity=8192)
    with open(path / ".live", "r+b") as fh:
        fh.write((10**12).to_bytes(8, "little"))
    report = rs.verify(path)
    assert [s.action for s in report.side] == ["live"]
    report = rs.verify(path, repair=True)
    assert "reset .live to 11,808" in report.repaired
    assert rs.verify(path).ok
    assert int.from_bytes((path / ".live").read_bytes()[:8], "little") == 20_000 - 8192


# -- a ring being written by another process -----------------------------------------------
_WRITER = """
import sys, time, numpy as np, replaystore as rs
sys.path.insert(0, {tests!r})
from conftest import STD_OBS, STD_ACT, std_batch
s = rs.create({path!r}, STD_OBS, STD_ACT, capacity=20_000, chunk_rows=4096, commit_every=700)
n = 0
s.extend(std_batch(0, 25_000)); s.flush(); n = 25_000
print("ready", flush=True)
t = time.time()
while time.time() - t < 30:
    s.extend(std_batch(n, 350)); n += 350
"""


def test_verify_of_a_ring_being_written_gives_a_correct_answer(tmp_path):
    path = tmp_path / "ring"
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(tests=tests, path=str(path))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        gens = []
        for _ in range(5):
            report = rs.verify(path)
            assert report.ok, report.lines()
            # (an eviction commit leaves out the rows about to be overwritten)
            assert report.writer_pid == str(proc.pid) and 20_000 - 700 <= report.rows <= 20_000
            gens.append(rs.open(path).generation)
        assert len(set(gens)) > 1  # it was being written all along
    finally:
        proc.kill()
        proc.wait()
    assert rs.verify(path).ok


# -- "Smaller": huge rows get bounded chunks ------------------------------------------------
def test_huge_rows_get_a_bounded_default_chunk_and_append(tmp_path):
    row = 24 * 2**20  # 24 MiB rows: 4,096 of them would be a 96 GiB chunk and write buffer
    path = tmp_path / "big"
    with rs.create(path, fields=[("frame", "uint8", (row,))]) as s:
        f = s.schema["frame"]
        assert f.chunk_rows * f.row_bytes <= max(row, 16 * 2**20)
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 255, (2, row), dtype=np.uint8)
        s.extend({"frame": frames, "reward": [0.0, 1.0], "terminated": [False, True],
                  "truncated": [False, False]})
    with rs.open(path, "a") as s:
        s.extend({"frame": frames[:1], "reward": [2.0], "terminated": [True], "truncated": [False]})
    with rs.open(path) as s:
        assert len(s) == 3 and s.read([2], fields=["frame"])["frame"][0].tobytes() == frames[0].tobytes()
    assert rs.verify(path).ok


# -- SIGKILL during verify --repair -----------------------------------------------------------
def test_sigkill_during_repair_leaves_the_old_or_the_repaired_store(tmp_path):
    base = _make(tmp_path / "base", 30_000)
    _flip(base / "reward" / "c" / "2", 100)  # damages rows 0..16383 (one checksum block)
    _flip(base / ".crc" / "obs.bin", 20)  # and a side file
    intact = _rows(base)
    keep = np.arange(16_384, 30_000)
    rng = random.Random(12)
    import shutil

    # how long one whole repair takes here (a subprocess, as below): the kills land inside it
    shutil.copytree(base, tmp_path / "timing")
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "replaystore", "verify", str(tmp_path / "timing"), "--repair"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    whole = time.monotonic() - t0
    kills = 0
    for trial in range(6):
        path = tmp_path / f"s{trial}"
        shutil.copytree(base, path)
        proc = subprocess.Popen([sys.executable, "-m", "replaystore", "verify", str(path), "--repair"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 0.95) * whole)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        report = rs.verify(path)
        if not report.ok:  # the old store, damaged as it was: repairable, losing nothing more
            assert [d.field for d in report.damage] == ["reward"], report.lines()
            rs.verify(path, repair=True)
        assert rs.verify(path).ok
        after = _rows(path)
        for k in intact:
            assert after[k].tobytes() == intact[k][keep].tobytes(), (trial, k)
        # a repair killed after its swap leaves its temporary copy; the next repair removes it
        rs.verify(path, repair=True)
        assert not [n for n in os.listdir(tmp_path) if n.startswith(f".s{trial}.repair-")]
    assert kills >= 2

"""Jobs that write a new output are all-or-nothing (issue 12, case 5).

import / export / merge build their output under a hidden name next to it and move it into
place when complete; ``--overwrite`` keeps the old output until then; an interrupted
``merge --append`` goes on where it stopped; leftovers of killed jobs are removed by the
next job; write errors (disk full, file too large) are one true line naming the path.
Real processes, real SIGKILLs, a real file-size limit (``RLIMIT_FSIZE``: EFBIG, treated
like a full disk) and, where this machine lets us mount one, a real full tmpfs.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import killtest  # noqa: E402

import replaystore as rs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, limit: int | None = None, cwd: Path | None = None) -> subprocess.Popen:
    def preexec() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen([sys.executable, "-m", "replaystore", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, preexec_fn=preexec,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def run(*args: str, **kw) -> tuple[int, str, str]:
    p = cli(*args, **kw)
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def committed_total(out_dirs: list[Path]) -> int:
    for d in out_dirs:
        try:
            doc = json.loads((d / "zarr.json").read_text())
            return int(doc["attributes"]["replaystore_state"]["total"])
        except (OSError, ValueError, KeyError):
            continue
    return -1


def kill_when(proc: subprocess.Popen, cond, timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``cond()`` holds (the job is part-way)."""
    end = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"the job ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < end, "the job never got part-way"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def candidates(d: Path, name: str) -> list[Path]:
    """``d/name`` and anything next to it whose name contains ``name`` (a job's temporary)."""
    return [p for p in d.iterdir() if name in p.name] if d.exists() else []


# ---------------------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------------------
def test_import_overwrite_that_fails_keeps_the_old_store(tmp_path):
    pytest.importorskip("h5py")
    import h5py

    killtest._make_hdf5(tmp_path / "bad.hdf5", 0, 3000)
    with h5py.File(tmp_path / "bad.hdf5", "r+") as f:
        t = f["terminals"][...].astype(np.uint8)
        t[2500] = 2  # a bad flag far into the file
        del f["terminals"]
        f["terminals"] = t
    killtest.make_store(tmp_path / "out.zarr", 7_000_000, 500)
    before = killtest.digest(tmp_path / "out.zarr")
    from replaystore.interop import import_d4rl

    with pytest.raises(rs.errors.InteropError, match="row 2500"):
        import_d4rl(tmp_path / "bad.hdf5", tmp_path / "out.zarr", overwrite=True, block_rows=100)
    assert killtest.digest(tmp_path / "out.zarr") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.hdf5", "out.zarr"]


def test_import_killed_part_way_leaves_nothing_at_out_and_the_rerun_works(tmp_path):
    pytest.importorskip("h5py")
    killtest._make_hdf5(tmp_path / "src.hdf5", 0, 400_000)
    out = tmp_path / "out.zarr"
    p = cli("import", str(tmp_path / "src.hdf5"), str(out), "--from", "d4rl", "--no-progress")
    kill_when(p, lambda: committed_total(candidates(tmp_path, "out.zarr")) > 0)
    assert not out.exists(), "a killed import left a partial store at OUT"
    code, stdout, err = run("import", str(tmp_path / "src.hdf5"), str(out), "--from", "d4rl", "--no-progress")
    assert code == 0, err
    assert np.array_equal(killtest.store_g(out), np.arange(400_000))
    assert killtest.leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------
def test_minari_export_killed_part_way_leaves_no_dataset(tmp_path):
    pytest.importorskip("minari")
    killtest.make_store(tmp_path / "in.zarr", 0, 60_000, episode_len=50)
    out = tmp_path / "ds-v0"
    p = cli("export", str(tmp_path / "in.zarr"), str(out), "--to", "minari", "--no-progress")
    kill_when(p, lambda: any((c / "data").is_dir() for c in candidates(tmp_path, "ds-v0")))
    assert not out.exists(), "a killed export left a dataset at OUT"
    code, _, err = run("export", str(tmp_path / "in.zarr"), str(out), "--to", "minari", "--no-progress")
    assert code == 0, err
    assert np.array_equal(killtest._read_export("minari", out), np.arange(60_000))
    assert killtest.leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------
# merge --append
# ---------------------------------------------------------------------------------------
def test_merge_append_killed_then_rerun_copies_every_row_once(tmp_path):
    out = killtest.make_store(tmp_path / "out.zarr", 5_000_000, 1000)
    killtest.make_store(tmp_path / "b.zarr", 1_000_000, 150_000)
    killtest.make_store(tmp_path / "c.zarr", 2_000_000, 50_000)
    args = ("merge", str(out), str(tmp_path / "b.zarr"), str(tmp_path / "c.zarr"), "--append",
            "--no-progress")
    # small blocks, so the kill lands between commits inside the first input
    code = (f"import replaystore as rs; rs.merge({str(out)!r}, [{str(tmp_path / 'b.zarr')!r}, "
            f"{str(tmp_path / 'c.zarr')!r}], append=True, block_rows=2000)")
    p = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_when(p, lambda: committed_total([out]) > 21_000)
    part = killtest.store_g(out)
    want = np.concatenate([np.arange(5_000_000, 5_001_000), np.arange(1_000_000, 1_150_000),
                           np.arange(2_000_000, 2_050_000)])
    assert 1000 < len(part) < len(want) and np.array_equal(part, want[:len(part)])
    code, stdout, err = run(*args)
    assert code == 0, err
    got = killtest.store_g(out)
    assert len(got) == len(want), f"{len(got) - len(want):,} rows copied twice"
    assert np.array_equal(got, want)
    assert "went on with an interrupted merge" in stdout
    with rs.open(out) as s:
        recs = s.info["merged_from"]
        assert [r["status"] for r in recs] == ["complete", "complete"]
        assert [r["copied"] for r in recs] == [150_000, 50_000]
        ep = s.read_range(0, len(s), fields=["episode"])["episode"]
    # episodes are renumbered as by one uninterrupted merge
    ref = killtest.make_store(tmp_path / "ref.zarr", 5_000_000, 1000)
    rs.merge(ref, [tmp_path / "b.zarr", tmp_path / "c.zarr"], append=True)
    with rs.open(ref) as s:
        assert np.array_equal(s.read_range(0, len(s), fields=["episode"])["episode"], ep)


def test_merge_append_that_fails_is_resumed_from_its_record(tmp_path):
    """A failure (not a kill) records what was copied; the same merge again finishes it."""
    out = killtest.make_store(tmp_path / "out.zarr", 5_000_000, 100)
    b = killtest.make_store(tmp_path / "b.zarr", 1_000_000, 5000)
    c = killtest.make_store(tmp_path / "c.zarr", 2_000_000, 40_000)
    # OUT's second chunk files (262,144 bytes) exceed the limit: b goes in, c fails
    code, _, err = run("merge", str(out), str(b), str(c), "--append", "--no-progress", limit=100_000)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "File too large" in err and "call flush() again" not in err
    with rs.open(out) as s:
        assert [r["status"] for r in s.info["merged_from"]] == ["complete", "interrupted"]
    code, stdout, err = run("merge", str(out), str(b), str(c), "--append", "--no-progress")
    assert code == 0, err
    want = np.concatenate([np.arange(5_000_000, 5_000_100), np.arange(1_000_000, 1_005_000),
                           np.arange(2_000_000, 2_040_000)])
    assert np.array_equal(killtest.store_g(out), want)
    assert "5,000 rows were copied already" in stdout


def test_merge_append_of_other_inputs_is_a_new_merge(tmp_path):
    out = killtest.make_store(tmp_path / "out.zarr", 5_000_000, 100)
    killtest.make_store(tmp_path / "b.zarr", 1_000_000, 3000)
    killtest.make_store(tmp_path / "c.zarr", 2_000_000, 300)
    rs.merge(out, [tmp_path / "b.zarr"], append=True)
    rs.merge(out, [tmp_path / "c.zarr"], append=True)
    st = rs.merge(out, [tmp_path / "c.zarr"], append=True)  # asked for twice: copied twice
    assert st.resumed_rows == 0
    assert len(killtest.store_g(out)) == 100 + 3000 + 600


# ---------------------------------------------------------------------------------------
# leftovers of killed jobs
# ---------------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_next_job_removes_leftovers_of_killed_jobs_and_nothing_else(tmp_path):
    from replaystore.storage.jobs import clean_leftovers, temp_path

    killtest.make_store(tmp_path / "in.zarr", 0, 100)
    dead = _dead_pid()
    ours = temp_path(tmp_path / "x.zarr").name.replace(f"-{os.getpid()}.", f"-{dead}.")
    leftovers = {
        ours: "dir",                                   # a killed import/merge/export
        f".y.zip.{dead}.tmp": "zip",                   # a killed pack
        f".z.zarr.{dead}.tmp": "dir",                  # a killed unpack
        f"w.zarr.merging-{dead}-0123abcd": "dir",      # a merge of an older version
    }
    keep = {
        temp_path(tmp_path / "live.zarr").name: "dir",  # a job of a live process (this one)
        f".notes.{dead}.tmp": "text",                  # someone else's file of that shape
        ".hidden": "text",
    }
    for name, kind in {**leftovers, **keep}.items():
        p = tmp_path / name
        if kind == "dir":
            p.mkdir()
            (p / "zarr.json").write_text("{}")
        elif kind == "zip":
            rs.pack(tmp_path / "in.zarr", tmp_path / "tmp.zip")
            (tmp_path / "tmp.zip").rename(p)
        else:
            p.write_text("not ours")
    code, _, err = run("export", str(tmp_path / "in.zarr"), str(tmp_path / "in.csv"), "--to", "csv",
                       "--no-progress")
    assert code == 0, err
    names = {p.name for p in tmp_path.iterdir()}
    assert not names & set(leftovers), names & set(leftovers)
    assert set(keep) <= names
    assert clean_leftovers(tmp_path) == []


def test_a_swap_killed_between_its_renames_puts_the_old_output_back(tmp_path):
    from replaystore.storage.jobs import clean_leftovers, temp_path

    killtest.make_store(tmp_path / "in.zarr", 0, 100)
    dead = _dead_pid()
    old = temp_path(tmp_path / "out.zarr", "old")
    old = old.with_name(old.name.replace(f"-{os.getpid()}.", f"-{dead}."))
    (tmp_path / "in.zarr").rename(old)
    clean_leftovers(tmp_path)
    assert not old.exists() and np.array_equal(killtest.store_g(tmp_path / "out.zarr"), np.arange(100))


# ---------------------------------------------------------------------------------------
# write errors: one line, the path, and the truth
# ---------------------------------------------------------------------------------------
def test_file_size_limit_during_import_overwrite_keeps_the_old_store_and_says_so(tmp_path):
    pytest.importorskip("h5py")
    killtest._make_hdf5(tmp_path / "src.hdf5", 0, 50_000)
    killtest.make_store(tmp_path / "out.zarr", 7_000_000, 500)
    before = killtest.digest(tmp_path / "out.zarr")
    code, _, err = run("import", str(tmp_path / "src.hdf5"), str(tmp_path / "out.zarr"), "--from",
                       "d4rl", "--overwrite", "--no-progress", limit=200_000)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert str(tmp_path / "out.zarr") in lines[0] and "File too large" in lines[0]
    assert "unchanged" in lines[0] and "committed rows are intact" not in lines[0]
    assert ".rsjob-" not in lines[0]
    assert killtest.digest(tmp_path / "out.zarr") == before
    assert killtest.leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_file_size_limit_during_export_names_the_file(tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    killtest.make_store(tmp_path / "in.zarr", 0, 100_000)
    out = tmp_path / f"out.{fmt}"
    code, _, err = run("export", str(tmp_path / "in.zarr"), str(out), "--to", fmt, "--no-progress",
                       limit=300_000)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert str(out) in lines[0] and "nothing was written" in lines[0], lines[0]
    assert not out.exists() and killtest.leftovers(tmp_path) == []


@pytest.fixture
def full_disk(tmp_path):
    """A 3 MiB tmpfs (skipped where this machine does not let us mount one)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_during_merge_and_import_says_what_is_left(tmp_path, full_disk):
    pytest.importorskip("h5py")
    killtest.make_store(tmp_path / "big.zarr", 0, 100_000)
    killtest.make_store(full_disk / "old.zarr", 7_000_000, 500)
    before = killtest.digest(full_disk / "old.zarr")
    code, _, err = run("merge", str(full_disk / "m.zarr"), str(tmp_path / "big.zarr"), "--no-progress")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert str(full_disk / "m.zarr") in err and "No space left on device" in err
    assert "nothing was written" in err and "call flush() again" not in err
    killtest._make_hdf5(tmp_path / "src.hdf5", 0, 100_000)
    code, _, err = run("import", str(tmp_path / "src.hdf5"), str(full_disk / "old.zarr"), "--from",
                       "d4rl", "--overwrite", "--no-progress")
    assert code == 1 and "No space left on device" in err and "unchanged" in err, err
    assert killtest.digest(full_disk / "old.zarr") == before
    assert sorted(p.name for p in full_disk.iterdir()) == ["old.zarr"]

"""Every bad-input path of the store: error type, message, and the store left unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import (
    SPACE_CASES,
    STD_ACT,
    STD_OBS,
    assert_batches_equal,
    make_batch,
    rows_of,
    std_batch,
)
from gymnasium.spaces import Box

import replaystore as rs
from replaystore.errors import (
    CorruptStoreError,
    EmptyStoreError,
    FormatVersionError,
    NotAStoreError,
    ReplayStoreError,
    RowIndexError,
    SchemaError,
    StoreLockedError,
    StoreModeError,
)

REPO = Path(__file__).resolve().parents[1]


def _snapshot(store) -> tuple[int, dict]:
    return len(store), store.read_range(0, len(store))


def _assert_unchanged(store, snap, path) -> None:
    """Same length and data now, and after a close + reopen."""
    n, data = snap
    assert len(store) == n
    assert_batches_equal(store.read_range(0, len(store)), data)
    store.close()
    with rs.open(path) as again:
        assert len(again) == n
        assert_batches_equal(again.read_range(0, n), data)


def _check_error(excinfo, cls, builtin, *parts) -> None:
    err = excinfo.value
    assert type(err) is cls
    assert isinstance(err, ReplayStoreError)
    assert isinstance(err, builtin)
    msg = str(err)
    for part in parts:
        assert str(part) in msg, f"{part!r} not in {msg!r}"


def _good_row(i=100):
    return rows_of(std_batch(i, 1))[0]


# --------------------------------------------------------------------------------------
# append / extend with bad data
# --------------------------------------------------------------------------------------

BAD_ROWS = {
    "wrong_shape": ({"obs": np.zeros(4, np.float32)}, "obs"),
    "wrong_shape_scalar_field": ({"reward": np.zeros(2, np.float32)}, "reward"),
    "float_into_int": ({"action": 1.5}, "action"),
    "integral_float_into_int": ({"action": np.float64(2.0)}, "action"),
    "int_2_into_bool": ({"terminated": 2}, "terminated"),
    "float_into_bool": ({"truncated": 1.0}, "truncated"),
    "string_into_float": ({"reward": "1.0"}, "reward"),
    "object_into_float": ({"reward": object()}, "reward"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_append_bad_value(std_store, tmp_store_path, case):
    snap = _snapshot(std_store)
    change, field = BAD_ROWS[case]
    row = {**_good_row(), **change}
    with pytest.raises(SchemaError) as ei:
        std_store.append(**row)
    _check_error(ei, SchemaError, ValueError, tmp_store_path, repr(field))
    _assert_unchanged(std_store, snap, tmp_store_path)


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_extend_bad_value(std_store, tmp_store_path, case):
    snap = _snapshot(std_store)
    change, field = BAD_ROWS[case]
    batch = std_batch(100, 4)
    value = np.asarray(change[field], dtype=object if case == "object_into_float" else None)
    batch[field] = np.stack([value] * 4) if value.ndim else np.full(4, value)
    with pytest.raises(SchemaError) as ei:
        std_store.extend(batch)
    _check_error(ei, SchemaError, ValueError, tmp_store_path, repr(field))
    _assert_unchanged(std_store, snap, tmp_store_path)


@pytest.mark.parametrize(
    ("obs_space", "field", "value"),
    [
        (Box(0, 255, (2, 2), np.uint8), "obs", np.full((2, 2), 256)),
        (Box(0, 255, (2, 2), np.uint8), "obs", np.full((2, 2), -1)),
        (Box(-5, 5, (2,), np.int8), "next_obs", np.array([0, 200])),
        (Box(-5, 5, (2,), np.int32), "obs", np.array([2**40, 0])),
        (Box(0, 5, (2,), np.uint16), "obs", np.array([-3, 0], np.int8)),
    ],
    ids=["u8_256", "u8_negative", "i8_200", "i32_2pow40", "u16_from_negative_i8"],
)
def test_int_out_of_range(tmp_store_path, obs_space, field, value):
    with rs.create(tmp_store_path, obs_space, STD_ACT) as store:
        store.extend(make_batch(obs_space, STD_ACT, 0, 5))
    store = rs.open(tmp_store_path, "a")
    snap = _snapshot(store)
    row = rows_of(make_batch(obs_space, STD_ACT, 5, 1))[0]
    row[field] = value
    with pytest.raises(SchemaError) as ei:
        store.append(**row)
    _check_error(ei, SchemaError, ValueError, tmp_store_path, repr(field))
    batch = make_batch(obs_space, STD_ACT, 5, 3)
    batch[field] = np.stack([value] * 3)
    with pytest.raises(SchemaError):
        store.extend(batch)
    _assert_unchanged(store, snap, tmp_store_path)


def test_safe_casts_are_accepted(tmp_store_path):
    """The counterpart of the above: python scalars, lists and lossless int casts work."""
    obs = Box(0, 255, (2,), np.uint8)
    with rs.create(tmp_store_path, obs, STD_ACT) as store:
        store.append(obs=[1, 255], action=3, reward=1, next_obs=np.array([2, 3], np.int64),
                     terminated=0, truncated=np.int8(1))
        row = store[0]
    assert row["obs"].dtype == np.uint8 and row["obs"].tolist() == [1, 255]
    assert row["reward"] == np.float32(1.0) and row["truncated"] is np.True_


def test_missing_field(std_store, tmp_store_path):
    snap = _snapshot(std_store)
    row = _good_row()
    del row["reward"]
    with pytest.raises(SchemaError) as ei:
        std_store.append(**row)
    _check_error(ei, SchemaError, ValueError, tmp_store_path, "'reward'")
    batch = std_batch(100, 3)
    del batch["next_obs"]
    with pytest.raises(SchemaError) as ei:
        std_store.extend(batch)
    _check_error(ei, SchemaError, ValueError, tmp_store_path, "'next_obs'")
    _assert_unchanged(std_store, snap, tmp_store_path)


def test_missing_dict_leaf_field(tmp_store_path):
    obs = SPACE_CASES["dict"]
    store = rs.create(tmp_store_path, obs, STD_ACT)
    store.extend(make_batch(obs, STD_ACT, 0, 3))
    snap = _snapshot(store)
    batch = make_batch(obs, STD_ACT, 3, 2)
    del batch["obs.pos"]
    with pytest.raises(SchemaError) as ei:
        store.extend(batch)
    _check_error(ei, SchemaError, ValueError, tmp_store_path, "'obs.pos'")
    batch = make_batch(obs, STD_ACT, 3, 2)
    batch["obs.pos"] = np.zeros((2, 3), np.float32)
    with pytest.raises(SchemaError) as ei:
        store.extend(batch)
    _check_error(ei, SchemaError, ValueError, tmp_store_path, "'obs.pos'")
    _assert_unchanged(store, snap, tmp_store_path)


def test_unknown_field(std_store, tmp_store_path):
    snap = _snapshot(std_store)
    with pytest.raises(SchemaError) as ei:
        std_store.append(**_good_row(), bonus=1.0)
    _check_error(ei, SchemaError, ValueError, tmp_store_path, "'bonus'")
    with pytest.raises(SchemaError) as ei:
        std_store.extend({**std_batch(100, 2), "obs.x": np.zeros(2)})
    _check_error(ei, SchemaError, ValueError, tmp_store_path, "'obs.x'")
    _assert_unchanged(std_store, snap, tmp_store_path)


@pytest.mark.parametrize("given", ["episode", "step"])
def test_episode_without_step(std_store, tmp_store_path, given):
    snap = _snapshot(std_store)
    other = "step" if given == "episode" else "episode"
    with pytest.raises(SchemaError) as ei:
        std_store.append(**_good_row(), **{given: 3})
    _check_error(ei, SchemaError, ValueError, tmp_store_path, repr(given), repr(other))
    with pytest.raises(SchemaError):
        std_store.extend({**std_batch(100, 2), given: np.array([3, 3])})
    _assert_unchanged(std_store, snap, tmp_store_path)


def test_extend_mismatched_lengths(std_store, tmp_store_path):
    snap = _snapshot(std_store)
    batch = std_batch(100, 5)
    batch["action"] = batch["action"][:4]
    with pytest.raises(SchemaError) as ei:
        std_store.extend(batch)
    _check_error(ei, SchemaError, ValueError, tmp_store_path, "'action'", "4", "5")
    batch = std_batch(100, 5)
    batch["reward"] = batch["reward"][:0]
    with pytest.raises(SchemaError):
        std_store.extend(batch)
    _assert_unchanged(std_store, snap, tmp_store_path)


def test_extend_not_a_mapping(std_store, tmp_store_path):
    snap = _snapshot(std_store)
    with pytest.raises(SchemaError) as ei:
        std_store.extend([_good_row()])
    _check_error(ei, SchemaError, ValueError, tmp_store_path)
    _assert_unchanged(std_store, snap, tmp_store_path)


def test_extend_scalar_instead_of_batch(std_store, tmp_store_path):
    snap = _snapshot(std_store)
    with pytest.raises(SchemaError) as ei:
        std_store.extend(_good_row())
    _check_error(ei, SchemaError, ValueError, tmp_store_path)
    _assert_unchanged(std_store, snap, tmp_store_path)


def test_bad_row_in_ring_leaves_ring_unchanged(tmp_store_path):
    store = rs.create(tmp_store_path, STD_OBS, STD_ACT, capacity=5)
    store.extend(std_batch(0, 8))
    snap = _snapshot(store)
    batch = std_batch(8, 10)
    batch["terminated"] = np.full(10, 7)
    with pytest.raises(SchemaError):
        store.extend(batch)
    _assert_unchanged(store, snap, tmp_store_path)


# --------------------------------------------------------------------------------------
# modes, empty stores, row indices
# --------------------------------------------------------------------------------------


def test_write_in_read_mode(tmp_store_path):
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        store.extend(std_batch(0, 6))
    store = rs.open(tmp_store_path, "r")
    snap = _snapshot(store)
    calls = [
        lambda: store.append(**_good_row()),
        lambda: store.extend(std_batch(6, 2)),
        store.flush,
        lambda: store.new_episode_ids(2),
        lambda: store.update_info({"a": 1}),
    ]
    for call in calls:
        with pytest.raises(StoreModeError) as ei:
            call()
        _check_error(ei, StoreModeError, PermissionError, tmp_store_path, "'r'")
    _assert_unchanged(store, snap, tmp_store_path)
    with rs.open(tmp_store_path) as store:
        assert store.info == {}


def test_bad_mode(tmp_store_path):
    rs.create(tmp_store_path, STD_OBS, STD_ACT).close()
    with pytest.raises(StoreModeError) as ei:
        rs.open(tmp_store_path, "w")
    _check_error(ei, StoreModeError, PermissionError, tmp_store_path, "'w'")


def test_use_after_close(std_store, tmp_store_path):
    std_store.close()
    with pytest.raises(StoreModeError) as ei:
        std_store.append(**_good_row())
    _check_error(ei, StoreModeError, PermissionError, tmp_store_path, "closed")
    with pytest.raises(StoreModeError):
        std_store.read([0])
    with rs.open(tmp_store_path) as store:
        assert len(store) == 13


def test_empty_store_reads(tmp_store_path):
    rs.create(tmp_store_path, STD_OBS, STD_ACT).close()
    for mode in ("r", "a"):
        with rs.open(tmp_store_path, mode) as store:
            assert len(store) == 0
            for call in (lambda: store[0], lambda: store[-1], lambda: store.read([0, 0])):
                with pytest.raises(EmptyStoreError) as ei:
                    call()
                _check_error(ei, EmptyStoreError, IndexError, tmp_store_path)
            # an empty selection of an empty store is not an error
            assert store[:]["obs"].shape == (0, 3)
            assert store.read_range(0, 10)["reward"].shape == (0,)
    with rs.open(tmp_store_path) as store:
        assert len(store) == 0 and store.total == 0


@pytest.mark.parametrize("capacity", [None, 8])
def test_row_index_out_of_range(tmp_store_path, capacity):
    with rs.create(tmp_store_path, STD_OBS, STD_ACT, capacity=capacity) as store:
        store.extend(std_batch(0, 10))
    store = rs.open(tmp_store_path)
    n = len(store)
    snap = _snapshot(store)
    for bad, key in [(n, n), (-n - 1, -n - 1), (n + 5, [0, n + 5, 1]), (-n - 1, np.array([2, -n - 1]))]:
        with pytest.raises(RowIndexError) as ei:
            store.read(key) if isinstance(key, list | np.ndarray) else store[key]
        _check_error(ei, RowIndexError, IndexError, tmp_store_path, str(bad), f"{n} rows")
    with pytest.raises(RowIndexError) as ei:
        store.read(np.ones(n, bool))
    _check_error(ei, RowIndexError, IndexError, tmp_store_path)
    with pytest.raises(RowIndexError):
        store.read([0.0, 1.0])
    _assert_unchanged(store, snap, tmp_store_path)


def test_unknown_field_on_read(std_store, tmp_store_path):
    with pytest.raises(SchemaError) as ei:
        std_store.read([0], fields=["nope"])
    _check_error(ei, SchemaError, ValueError, "'nope'")
    with pytest.raises(SchemaError):
        std_store.read_range(0, 2, fields="nope")
    with pytest.raises(SchemaError) as ei:
        std_store["obs"]
    _check_error(ei, SchemaError, ValueError, tmp_store_path, "'obs'")


# --------------------------------------------------------------------------------------
# opening things that are not (good) stores
# --------------------------------------------------------------------------------------


def test_open_missing_path(tmp_path):
    path = tmp_path / "nope.zarr"
    for mode in ("r", "a"):
        with pytest.raises(NotAStoreError) as ei:
            rs.open(path, mode)
        _check_error(ei, NotAStoreError, FileNotFoundError, path)
    assert not path.exists()


def test_open_non_store_paths(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    afile = tmp_path / "file.txt"
    afile.write_text("hello")
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w").create_array("x", shape=(3,), dtype="f4")
    for path in (empty, afile, plain):
        with pytest.raises(NotAStoreError) as ei:
            rs.open(path)
        _check_error(ei, NotAStoreError, FileNotFoundError, path)
    assert afile.read_text() == "hello"
    assert zarr.open_group(str(plain), mode="r")["x"].shape == (3,)


def _edit_zarr_json(path: Path, edit) -> None:
    doc = json.loads((path / "zarr.json").read_text())
    edit(doc)
    (path / "zarr.json").write_text(json.dumps(doc))


def test_format_version_bumped(std_store, tmp_store_path):
    std_store.close()
    _edit_zarr_json(tmp_store_path, lambda d: d["attributes"]["replaystore"].update(format_version=99))
    for mode in ("r", "a"):
        with pytest.raises(FormatVersionError) as ei:
            rs.open(tmp_store_path, mode)
        _check_error(ei, FormatVersionError, ValueError, tmp_store_path, "99")
    # the failed opens left no writer lock held (the lock file may exist, unlocked)
    lock = tmp_store_path / ".writer.lock"
    if lock.exists():
        import fcntl

        with open(lock, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _edit_zarr_json(tmp_store_path, lambda d: d["attributes"]["replaystore"].update(format_version=1))
    with rs.open(tmp_store_path) as store:
        assert len(store) == 13


@pytest.mark.parametrize(
    "content",
    [b"", b'{"zarr_format": 3, "node_type": "gr', b"\x00\x01not json"],
    ids=["empty", "truncated", "binary_ascii"],
)
def test_corrupted_zarr_json(std_store, tmp_store_path, content):
    std_store.close()
    (tmp_store_path / "zarr.json").write_bytes(content)
    with pytest.raises(CorruptStoreError) as ei:
        rs.open(tmp_store_path)
    _check_error(ei, CorruptStoreError, OSError, tmp_store_path / "zarr.json")


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00garbage\x89", b"\x89PNG\r\n\x1a\n\xff\xff"],
    ids=["utf16_bom_garbage", "png_bytes"],
)
def test_corrupted_zarr_json_non_utf8(std_store, tmp_store_path, content):
    """Random bytes in zarr.json: CorruptStoreError, not a raw UnicodeDecodeError."""
    std_store.close()
    (tmp_store_path / "zarr.json").write_bytes(content)
    with pytest.raises(CorruptStoreError) as ei:
        rs.open(tmp_store_path)
    _check_error(ei, CorruptStoreError, OSError, tmp_store_path / "zarr.json")


@pytest.mark.parametrize("content", [b"null", b"[1, 2]", b"42"], ids=["null", "list", "number"])
def test_zarr_json_not_an_object(std_store, tmp_store_path, content):
    """Valid JSON that is not an object: a clear replaystore error, not AttributeError."""
    std_store.close()
    (tmp_store_path / "zarr.json").write_bytes(content)
    with pytest.raises((CorruptStoreError, NotAStoreError)) as ei:
        rs.open(tmp_store_path)
    assert isinstance(ei.value, ReplayStoreError)
    assert str(tmp_store_path) in str(ei.value)


def test_replaystore_attributes_not_an_object(std_store, tmp_store_path):
    std_store.close()
    _edit_zarr_json(tmp_store_path, lambda d: d["attributes"].update(replaystore=5))
    with pytest.raises((CorruptStoreError, NotAStoreError)) as ei:
        rs.open(tmp_store_path)
    assert isinstance(ei.value, ReplayStoreError)
    assert str(tmp_store_path) in str(ei.value)


def test_missing_committed_state(std_store, tmp_store_path):
    std_store.close()
    _edit_zarr_json(tmp_store_path, lambda d: d["attributes"].pop("replaystore_state"))
    with pytest.raises(CorruptStoreError) as ei:
        rs.open(tmp_store_path)
    _check_error(ei, CorruptStoreError, OSError, tmp_store_path, "replaystore_state")


def test_damaged_field_metadata(std_store, tmp_store_path):
    std_store.close()
    (tmp_store_path / "reward" / "zarr.json").write_text("{not json")
    with pytest.raises(CorruptStoreError) as ei:
        rs.open(tmp_store_path)
    _check_error(ei, CorruptStoreError, OSError, tmp_store_path / "reward" / "zarr.json", "'reward'")
    (tmp_store_path / "reward" / "zarr.json").unlink()
    with pytest.raises(CorruptStoreError) as ei:
        rs.open(tmp_store_path)
    _check_error(ei, CorruptStoreError, OSError, "'reward'")


# --------------------------------------------------------------------------------------
# create on an existing path
# --------------------------------------------------------------------------------------


def test_create_on_existing_store(std_store, tmp_store_path):
    std_store.close()
    with rs.open(tmp_store_path) as store:
        snap = _snapshot(store)
    with pytest.raises(FileExistsError) as ei:
        rs.create(tmp_store_path, STD_OBS, STD_ACT)
    assert str(tmp_store_path) in str(ei.value)
    assert "overwrite" in str(ei.value)
    store = rs.open(tmp_store_path)
    _assert_unchanged(store, snap, tmp_store_path)


def test_create_on_existing_store_error_is_a_replaystore_error(std_store, tmp_store_path):
    """errors.py: every error raised on purpose derives from ReplayStoreError (and the builtin)."""
    std_store.close()
    with pytest.raises(FileExistsError) as ei:
        rs.create(tmp_store_path, STD_OBS, STD_ACT)
    assert isinstance(ei.value, ReplayStoreError)


def test_create_overwrite_refuses_non_store(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "keep.txt").write_text("x")
    with pytest.raises(NotAStoreError) as ei:
        rs.create(d, STD_OBS, STD_ACT, overwrite=True)
    _check_error(ei, NotAStoreError, FileNotFoundError, d)
    assert (d / "keep.txt").read_text() == "x"
    with pytest.raises(FileExistsError):
        rs.create(d, STD_OBS, STD_ACT)


def test_create_overwrite_replaces_store(std_store, tmp_store_path):
    std_store.close()
    with rs.create(tmp_store_path, STD_OBS, STD_ACT, overwrite=True) as store:
        assert len(store) == 0


# --------------------------------------------------------------------------------------
# a second writer
# --------------------------------------------------------------------------------------


def _run_py(code: str, *args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, timeout=60, env=env, **kw,
    )


SECOND_WRITER = """
    import sys
    import replaystore as rs
    try:
        rs.open(sys.argv[1], "a")
    except rs.StoreLockedError as e:
        ok = isinstance(e, rs.ReplayStoreError) and isinstance(e, BlockingIOError)
        print("LOCKED" if ok else "WRONG-HIERARCHY", e)
        sys.exit(3)
    print("OPENED")
"""


def test_second_writer_in_process(std_store, tmp_store_path):
    std_store.flush()  # reading no longer commits: make the 3 buffered rows visible to readers
    snap = _snapshot(std_store)
    with pytest.raises(StoreLockedError) as ei:
        rs.open(tmp_store_path, "a")
    _check_error(ei, StoreLockedError, BlockingIOError, tmp_store_path)
    # the failed open left the first writer's lock in place ...
    import gc

    gc.collect()
    with pytest.raises(StoreLockedError):
        rs.open(tmp_store_path, "a")
    # ... and the first writer keeps working; readers are allowed
    std_store.append(**_good_row(13))
    with rs.open(tmp_store_path) as reader:
        assert len(reader) == snap[0]  # the new row is still buffered
    _assert_unchanged_plus_one(std_store, snap, tmp_store_path)
    with rs.open(tmp_store_path, "a") as store:  # lock released by close()
        assert len(store) == snap[0] + 1


def _assert_unchanged_plus_one(store, snap, path):
    n, data = snap
    store.close()
    with rs.open(path) as again:
        assert len(again) == n + 1
        assert_batches_equal(again.read_range(0, n), data)
        assert float(again[-1]["reward"]) == 13.0


def test_second_writer_other_process(std_store, tmp_store_path):
    snap = _snapshot(std_store)
    res = _run_py(SECOND_WRITER, tmp_store_path)
    assert res.returncode == 3, res.stdout + res.stderr
    assert res.stdout.startswith("LOCKED"), res.stdout
    assert str(tmp_store_path) in res.stdout
    assert str(os.getpid()) in res.stdout
    _assert_unchanged(std_store, snap, tmp_store_path)
    # once the first writer closed, another process may write
    res = _run_py(SECOND_WRITER, tmp_store_path)
    assert res.returncode == 0 and "OPENED" in res.stdout, res.stdout + res.stderr


def test_writer_in_other_process_blocks_this_one(std_store, tmp_store_path):
    std_store.close()
    holder = """
        import sys
        import replaystore as rs
        s = rs.open(sys.argv[1], "a")
        print("READY", flush=True)
        if sys.stdin.readline().strip() == "crash":
            import os
            os._exit(0)  # leave a stale lock behind
        s.close()
    """
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for how in ("close", "crash"):
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(holder), str(tmp_store_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        try:
            assert proc.stdout.readline().strip() == "READY"
            with pytest.raises(StoreLockedError) as ei:
                rs.open(tmp_store_path, "a")
            _check_error(ei, StoreLockedError, BlockingIOError, tmp_store_path, str(proc.pid))
            proc.stdin.write(how + "\n")
            proc.stdin.flush()
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # the holder closed (or died): this process can write now
        with rs.open(tmp_store_path, "a") as store:
            assert len(store) == 13

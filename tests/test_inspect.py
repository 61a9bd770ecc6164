"""Episode/step auto-fill, ``to_pandas`` and ``episodes()`` against values computed by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import (
    SPACE_CASES,
    STD_ACT,
    STD_OBS,
    expected_episodes,
    make_batch,
    rows_of,
    std_batch,
)

import replaystore as rs
from replaystore.inspect import episodes as episodes_fn


def _flags(n, term=(), trunc=()):
    te = np.zeros(n, bool)
    tr = np.zeros(n, bool)
    te[list(term)] = True
    tr[list(trunc)] = True
    return te, tr


def _batch(start, te, tr):
    b = std_batch(start, len(te))
    b["terminated"], b["truncated"] = te, tr
    return b


# --------------------------------------------------------------------------------------
# episode / step auto-fill
# --------------------------------------------------------------------------------------


def test_autofill_single_appends(tmp_store_path):
    te, tr = _flags(9, term=[2], trunc=[5])
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        for row in rows_of(_batch(0, te, tr)):
            store.append(**row)
        got = store[:]
    np.testing.assert_array_equal(got["episode"], [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(got["step"], [0, 1, 2, 0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("cuts", [[9], [3, 6], [1, 2, 3, 4, 5, 6, 7, 8], [6, 7], [5, 6]])
def test_autofill_across_extend_boundaries(tmp_store_path, cuts):
    """Same result however the rows are split into batches (dones at batch ends too)."""
    te, tr = _flags(12, term=[2, 3], trunc=[5, 11])
    batch = _batch(0, te, tr)
    bounds = [0, *cuts, 12]
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            store.extend({k: v[a:b] for k, v in batch.items()})
    with rs.open(tmp_store_path) as store:
        got = store[:]
    np.testing.assert_array_equal(got["episode"], [0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 3, 3])
    np.testing.assert_array_equal(got["step"], [0, 1, 2, 0, 0, 1, 0, 1, 2, 3, 4, 5])


def test_autofill_across_reopen(tmp_store_path):
    te, tr = _flags(10, term=[3], trunc=[6])
    batch = _batch(0, te, tr)
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        store.extend({k: v[:5] for k, v in batch.items()})  # episode 1 is running at close
    with rs.open(tmp_store_path, "a") as store:
        store.extend({k: v[5:7] for k, v in batch.items()})  # ends with a done
    with rs.open(tmp_store_path, "a") as store:
        for row in rows_of({k: v[7:] for k, v in batch.items()}):
            store.append(**row)
    want_ep, want_step, _ = expected_episodes(te, tr)
    with rs.open(tmp_store_path) as store:
        np.testing.assert_array_equal(store[:]["episode"], want_ep)
        np.testing.assert_array_equal(store[:]["step"], want_step)
    np.testing.assert_array_equal(want_ep, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2])


def test_autofill_with_new_episode_ids(tmp_store_path):
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        te, tr = _flags(3, term=[1])
        store.extend(_batch(0, te, tr))  # episode 0 (2 rows), episode 1 running
        ids = store.new_episode_ids(3)
        np.testing.assert_array_equal(ids, [2, 3, 4])
        assert ids.dtype == np.int64
        te, tr = _flags(2, term=[0])
        store.extend(_batch(3, te, tr))  # finishes episode 1; the next one skips 2..4
        store.append(**rows_of(std_batch(5, 1))[0])
    with rs.open(tmp_store_path) as store:
        np.testing.assert_array_equal(store[:]["episode"], [0, 0, 1, 1, 5, 5])
        np.testing.assert_array_equal(store[:]["step"], [0, 1, 0, 1, 0, 1])
        assert store.next_episode == 6
    # reserved ids survive a reopen even when no row was written after the reservation
    with rs.open(tmp_store_path, "a") as store:
        np.testing.assert_array_equal(store.new_episode_ids(2), [6, 7])
    with rs.open(tmp_store_path, "a") as store:
        assert store.next_episode == 8
        te, tr = _flags(2, term=[0])
        store.extend(_batch(6, te, tr))
        np.testing.assert_array_equal(store[-2:]["episode"], [5, 8])


def test_explicit_episode_and_step_kept(tmp_store_path):
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        b = std_batch(0, 4)
        b["episode"] = np.array([7, 7, 3, 3])
        b["step"] = np.array([10, 11, 0, 1])
        store.extend(b)
        store.append(**rows_of(std_batch(4, 1))[0])  # auto-filled: continues episode 3
        assert store.next_episode == 8
    with rs.open(tmp_store_path) as store:
        np.testing.assert_array_equal(store[:]["episode"], [7, 7, 3, 3, 3])
        np.testing.assert_array_equal(store[:]["step"], [10, 11, 0, 1, 2])


# --------------------------------------------------------------------------------------
# to_pandas
# --------------------------------------------------------------------------------------


def test_to_pandas_columns_and_values(tmp_store_path):
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        store.extend(std_batch(0, 10, term_every=4))
    want = std_batch(0, 10, term_every=4)
    with rs.open(tmp_store_path) as store:
        df = store.to_pandas()
        assert df.columns.tolist() == [
            "obs_0", "obs_1", "obs_2", "action", "reward",
            "next_obs_0", "next_obs_1", "next_obs_2",
            "terminated", "truncated", "episode", "step",
        ]
        assert isinstance(df.index, pd.RangeIndex) and df.index.name == "row"
        assert (df.index.start, df.index.stop) == (0, 10)
        for i in range(3):
            np.testing.assert_array_equal(df[f"obs_{i}"].to_numpy(), want["obs"][:, i])
            assert df[f"obs_{i}"].dtype == np.float32
        np.testing.assert_array_equal(df["reward"].to_numpy(), np.arange(10, dtype=np.float32))
        assert df["terminated"].dtype == bool and df["action"].dtype == np.int64
        np.testing.assert_array_equal(df["episode"].to_numpy(), [0] * 4 + [1] * 4 + [2] * 2)

        part = store.to_pandas(fields=["reward", "obs"], start=3, stop=7)
        assert part.columns.tolist() == ["reward", "obs_0", "obs_1", "obs_2"]
        assert part.index.tolist() == [3, 4, 5, 6]
        np.testing.assert_array_equal(part["reward"].to_numpy(), [3, 4, 5, 6])
        neg = store.to_pandas(fields="reward", start=-2)
        assert neg.index.tolist() == [8, 9]
        assert store.to_pandas(fields=["reward"], start=8, stop=3).empty


def test_to_pandas_wide_fields(tmp_store_path):
    obs = SPACE_CASES["nested"]  # obs.cam is 4x4 uint8 = 16 columns
    with rs.create(tmp_store_path, obs, STD_ACT) as store:
        store.extend(make_batch(obs, STD_ACT, 0, 5))
    want = make_batch(obs, STD_ACT, 0, 5)
    with rs.open(tmp_store_path) as store:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            df = store.to_pandas()  # no wide field at the default limit
        assert "obs.cam_0_0" in df.columns and "obs.cam_3_3" in df.columns
        assert "obs.state.0_2" in df.columns and "obs.state.1.v_0" in df.columns
        np.testing.assert_array_equal(df["obs.cam_1_2"].to_numpy(), want["obs.cam"][:, 1, 2])

        with pytest.warns(UserWarning, match=r"obs\.cam") as rec:
            narrow = store.to_pandas(max_columns_per_field=8)
        assert "next_obs.cam" in str(rec[0].message)
        assert not [c for c in narrow.columns if c.startswith(("obs.cam", "next_obs.cam"))]
        assert "obs.state.0_0" in narrow.columns and "reward" in narrow.columns

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            asked = store.to_pandas(fields=["obs.cam", "reward"], max_columns_per_field=8)
        assert asked.columns.tolist() == [f"obs.cam_{i}_{j}" for i in range(4) for j in range(4)] + ["reward"]


def test_to_pandas_image_left_out_by_default(tmp_store_path):
    obs = SPACE_CASES["box_u8_image"]  # 8x8x3 = 192 columns > 64
    with rs.create(tmp_store_path, obs, STD_ACT) as store:
        store.extend(make_batch(obs, STD_ACT, 0, 3))
        with pytest.warns(UserWarning, match="obs"):
            df = store.to_pandas()
        assert df.columns.tolist() == ["action", "reward", "terminated", "truncated", "episode", "step"]
        full = store.to_pandas(fields=["obs"])
        assert full.shape == (3, 192)
        assert full.columns[0] == "obs_0_0_0" and full.columns[-1] == "obs_7_7_2"


def test_to_pandas_empty_store(tmp_store_path):
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        df = store.to_pandas(fields=["reward", "obs"])
        assert len(df) == 0
        assert df.columns.tolist() == ["reward", "obs_0", "obs_1", "obs_2"]


# --------------------------------------------------------------------------------------
# episodes()
# --------------------------------------------------------------------------------------

COLS = ["episode", "first_row", "length", "return", "terminated", "truncated", "complete"]


def test_episodes_by_hand(tmp_store_path):
    # rows 0..10, rewards 0..10; episode 0 = rows 0-2 (terminated), 1 = rows 3-6
    # (truncated), 2 = rows 7-8 (terminated), 3 = rows 9-10 (still running)
    te, tr = _flags(11, term=[2, 8], trunc=[6])
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        store.extend(_batch(0, te, tr))
    with rs.open(tmp_store_path) as store:
        df = store.episodes()
        assert df.columns.tolist() == COLS
        assert df.values.tolist() == [
            [0, 0, 3, 0.0 + 1 + 2, True, False, True],
            [1, 3, 4, 3.0 + 4 + 5 + 6, False, True, True],
            [2, 7, 2, 7.0 + 8, True, False, True],
            [3, 9, 2, 9.0 + 10, False, False, False],
        ]
        # reading in small blocks gives the same table
        pd.testing.assert_frame_equal(episodes_fn(store, block_rows=3), df)
        pd.testing.assert_frame_equal(episodes_fn(store, block_rows=1), df)


def test_episodes_ring_first_partially_evicted(tmp_store_path):
    # 14 rows written into a ring of 8: rows 6..13 remain. Episodes by row:
    # ep 0 rows 0-4 (term at 4) -> evicted; ep 1 rows 5-9 (trunc at 9) -> rows 6-9 kept,
    # its start evicted; ep 2 rows 10-12 (term at 12) complete; ep 3 row 13 running.
    te, tr = _flags(14, term=[4, 12], trunc=[9])
    with rs.create(tmp_store_path, STD_OBS, STD_ACT, capacity=8) as store:
        store.extend(_batch(0, te, tr))
    with rs.open(tmp_store_path) as store:
        assert len(store) == 8
        df = store.episodes()
        assert df.values.tolist() == [
            [1, 0, 4, 6.0 + 7 + 8 + 9, False, True, False],
            [2, 4, 3, 10.0 + 11 + 12, True, False, True],
            [3, 7, 1, 13.0, False, False, False],
        ]
        pd.testing.assert_frame_equal(episodes_fn(store, block_rows=3), df)
        assert df["episode"].dtype == np.int64 and df["return"].dtype == np.float64


def test_episodes_empty_store(tmp_store_path):
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        df = store.episodes()
    assert df.columns.tolist() == COLS
    assert len(df) == 0
    assert df["return"].dtype == np.float64 and df["complete"].dtype == bool


def test_episodes_with_interleaved_explicit_ids(tmp_store_path):
    """Two collectors' episodes interleaved (explicit ids): grouped by id, ordered by first row."""
    with rs.create(tmp_store_path, STD_OBS, STD_ACT) as store:
        b = std_batch(0, 6)
        b["episode"] = np.array([5, 2, 5, 2, 5, 2])
        b["step"] = np.array([0, 0, 1, 1, 2, 2])
        b["terminated"] = np.array([False, False, False, False, True, False])
        store.extend(b)
        df = store.episodes()
    assert df.values.tolist() == [
        [5, 0, 3, 0.0 + 2 + 4, True, False, True],
        [2, 1, 3, 1.0 + 3 + 5, False, False, False],
    ]

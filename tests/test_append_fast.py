"""The one-row append fast path (validate.RowValidator.compile_put): it stores exactly what
the general path stores, and every row it cannot vouch for goes to the general path, which
refuses bad rows with the usual errors and leaves the buffer as it was."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import replaystore as rs

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT = gym.spaces.Discrete(5, start=2)


def make(path, **kw):
    return rs.create(path, OBS, ACT, extra_fields=[("count", "int32"), ("flag", "bool")], **kw)


def good(**over):
    row = dict(obs=np.zeros(3, np.float32), action=3, reward=0.5, next_obs=np.ones(3, np.float32),
               terminated=False, truncated=False, count=7, flag=True)
    row.update(over)
    return row


def stored(store):
    return {k: v.tolist() for k, v in store.read_range(0, len(store)).items()}


scalars = {
    "action": st.sampled_from([2, 6, np.int64(4), np.int32(3), np.uint8(2), np.int16(5)]),
    "reward": st.sampled_from([0.0, -1.5, 3, np.float32(0.25), np.float64(-2.0), np.int64(2), True]),
    "terminated": st.sampled_from([False, True, np.bool_(True), np.bool_(False), 0, 1]),
    "count": st.sampled_from([0, -5, 2**31 - 1, np.int64(9), np.int32(-3), np.uint16(65535)]),
    "obs": st.sampled_from([np.zeros(3, np.float32), np.array([0.5, -0.5, 1.0]), [0.1, 0.2, 0.3],
                            np.array([1, 0, -1]), np.float64([0.25, 0.5, 0.75])]),
}


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries(scalars))
def test_append_stores_what_extend_stores(tmp_path_factory, values):
    """Any mix of Python and numpy scalar types, lists and arrays: append (fast path where
    it applies) and a one-row extend (the general path) store the same values."""
    d = tmp_path_factory.mktemp("eq")
    a, b = make(d / "a"), make(d / "b")
    row = good(obs=values["obs"], action=values["action"], reward=values["reward"],
               terminated=values["terminated"], count=values["count"])
    a.append(**row)
    b.extend({k: np.asarray(v)[None] for k, v in row.items()})
    assert stored(a) == stored(b)
    a.close(), b.close()
    assert stored(rs.open(d / "a")) == stored(rs.open(d / "b"))


BAD = [
    ("action", 7, rs.SpaceError, r"field 'action'.*7"),
    ("action", 1, rs.SpaceError, r"field 'action'.*1"),
    ("action", np.int64(99), rs.SpaceError, "action"),
    ("action", 2.0, rs.SchemaError, r"field 'action' has dtype int64; got floats"),
    ("reward", math.inf, rs.SchemaError, "non-finite"),
    ("reward", np.float32("nan"), rs.SchemaError, "non-finite"),
    ("reward", "1.0", rs.SchemaError, "reward"),
    ("count", 2**40, rs.SchemaError, r"field 'count' has dtype int32; values"),
    ("count", np.int64(-(2**33)), rs.SchemaError, "count"),
    ("flag", 2, rs.SchemaError, r"field 'flag' is bool"),
    ("flag", 0.0, rs.SchemaError, r"field 'flag' is bool; got floats"),
    ("obs", np.zeros(4, np.float32), rs.SchemaError, r"field 'obs' has shape \(4,\)"),
    ("obs", np.zeros((1, 3), np.float32), rs.SchemaError, "field 'obs' has shape"),
    ("obs", np.array(["a", "b", "c"]), rs.SchemaError, "obs"),
]


@pytest.mark.parametrize(("field", "value", "error", "match"), BAD, ids=[f"{b[0]}-{b[1]!r}" for b in BAD])
def test_bad_rows_are_refused_and_nothing_buffered_changes(tmp_path, field, value, error, match):
    s = make(tmp_path / "s")
    s.append(**good())
    with pytest.raises(error, match=match) as e:
        s.append(**good(**{field: value}))
    assert str(tmp_path / "s") in str(e.value)
    assert len(s) == 1 and s.buffered == 1
    s.append(**good(count=8))  # the next good row lands right after the first
    s.close()
    assert rs.open(tmp_path / "s").read_range(0, 2, fields=["count"])["count"].tolist() == [7, 8]


def test_unknown_missing_and_half_given_episode_fields(tmp_path):
    s = make(tmp_path / "s")
    with pytest.raises(rs.SchemaError, match="unknown field"):
        s.append(**good(colour=1))
    row = good()
    del row["flag"]
    with pytest.raises(rs.SchemaError, match="missing field"):
        s.append(**row)
    with pytest.raises(rs.SchemaError, match="without 'step'"):
        s.append(**good(episode=3))
    assert len(s) == 0
    s.close()


def test_episode_and_step_are_filled_in_like_extend(tmp_path):
    s = make(tmp_path / "s")
    for t in range(7):
        s.append(**good(terminated=t == 2, truncated=t == 4))
    s.append(**good(episode=10, step=0))  # given explicitly: the general path
    s.append(**good())
    got = s.read_range(0, len(s), fields=["episode", "step"])
    assert got["episode"].tolist() == [0, 0, 0, 1, 1, 2, 2, 10, 10]
    assert got["step"].tolist() == [0, 1, 2, 0, 1, 0, 1, 0, 1]
    s.close()


def test_box_bounds_warn_once_per_field_and_the_rows_are_stored(tmp_path):
    s = make(tmp_path / "s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            s.append(**good(obs=np.full(3, 5.0, np.float32)))
        s.flush()  # (the fast path checks Box bounds of buffered rows in bulk, by the commit)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "field 'obs'" in msgs[0] and "stored anyway" in msgs[0]
    s.close()
    assert rs.open(tmp_path / "s").read_range(0, 3, fields=["obs"])["obs"].max() == 5.0


def test_box_bounds_error_refuses_on_append(tmp_path):
    make(tmp_path / "s").close()
    s = rs.open(tmp_path / "s", "a", bounds="error")
    s.append(**good())
    with pytest.raises(rs.SpaceError, match=r"field 'obs'.*expected a value in \[-1.0, 1.0\]"):
        s.append(**good(obs=np.full(3, 5.0, np.float32)))
    with pytest.raises(rs.SpaceError, match="field 'next_obs'"):
        s.append(**good(next_obs=np.full(3, np.nan, np.float32)))
    s.close()
    assert len(rs.open(tmp_path / "s")) == 1


def test_append_after_a_failed_write_keeps_every_row_in_order(tmp_path):
    """A full buffer whose write failed: appends queue behind it (general path), in order."""
    s = make(tmp_path / "s", buffer_rows=4)
    w = s._writer
    real = w._write_rows
    calls = {"n": 0}

    def failing():
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        real()

    w._write_rows = failing
    with pytest.raises(rs.StoreWriteError, match="No space left"):
        for k in range(4):
            s.append(**good(count=k))
    for k in range(4, 10):
        s.append(**good(count=k))
    s.close()
    assert rs.open(tmp_path / "s").read_range(0, 10, fields=["count"])["count"].tolist() == list(range(10))

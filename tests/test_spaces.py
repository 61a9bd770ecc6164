"""Tests for replaystore.spaces: JSON round trip, fields, value flattening and checks."""

from __future__ import annotations

import json
import re
from collections import OrderedDict

import numpy as np
import pytest
from gymnasium.spaces import (
    Box,
    Dict,
    Discrete,
    Graph,
    MultiBinary,
    MultiDiscrete,
    OneOf,
    Sequence,
    Text,
    Tuple,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from replaystore.errors import ReplayStoreError, SpaceError
from replaystore.spaces import (
    SUPPORTED_SPACES,
    check_values,
    describe,
    field_spec,
    flatten_space,
    flatten_value,
    space_equal,
    space_from_json,
    space_to_json,
    unflatten_value,
)


def roundtrip(space):
    """space -> dict -> JSON text (strict: no NaN/Infinity literals) -> dict -> space."""
    text = json.dumps(space_to_json(space), allow_nan=False)
    return space_from_json(json.loads(text))


def assert_same_box(a: Box, b: Box) -> None:
    assert type(b) is Box
    assert b.dtype == a.dtype
    assert b.shape == a.shape
    assert b.low.dtype == a.low.dtype and b.high.dtype == a.high.dtype
    np.testing.assert_array_equal(b.low, a.low)
    np.testing.assert_array_equal(b.high, a.high)


# --------------------------------------------------------------------------------------
# JSON round trip: examples
# --------------------------------------------------------------------------------------

BOX_DTYPES = [
    np.float16,
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
]


@pytest.mark.parametrize("dtype", BOX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(), (1,), (3,), (2, 3), (4, 4, 3)], ids=str)
def test_box_roundtrip_uniform_bounds(dtype, shape):
    space = Box(0, 100, shape, dtype=dtype)
    back = roundtrip(space)
    assert_same_box(space, back)
    assert space_equal(space, back)
    assert space_to_json(space)["dtype"] == np.dtype(dtype).name


def test_uint8_image_box_metadata_stays_small():
    space = Box(0, 255, (84, 84, 3), dtype=np.uint8)
    d = space_to_json(space)
    assert d == {"type": "Box", "shape": [84, 84, 3], "dtype": "uint8", "low": 0, "high": 255}
    assert_same_box(space, roundtrip(space))


def test_bool_box_roundtrip():
    space = Box(0, 1, (2, 2), dtype=np.bool_)
    assert_same_box(space, roundtrip(space))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_box_infinite_and_per_element_bounds(dtype):
    low = np.array([[-np.inf, -1.5], [0.1, -3.0]], dtype=dtype)
    high = np.array([[np.inf, 2.0], [np.inf, 1e-3]], dtype=dtype)
    space = Box(low, high, dtype=dtype)
    d = space_to_json(space)
    assert d["low"][0][0] == "-inf" and d["high"][0][0] == "inf"
    back = roundtrip(space)
    assert_same_box(space, back)
    # the exact float32/float16 values, not a float64 approximation, come back
    assert back.low[1, 0] == np.asarray(0.1, dtype=dtype)


def test_fully_unbounded_box():
    space = Box(-np.inf, np.inf, (5,), dtype=np.float32)
    d = space_to_json(space)
    assert d["low"] == "-inf" and d["high"] == "inf"
    back = roundtrip(space)
    assert_same_box(space, back)
    assert not back.bounded_below.any() and not back.bounded_above.any()


def test_int_box_with_extreme_bounds():
    info = np.iinfo(np.int64)
    space = Box(info.min, info.max, (3,), dtype=np.int64)
    assert_same_box(space, roundtrip(space))
    u = Box(0, np.iinfo(np.uint64).max, (2,), dtype=np.uint64)
    assert_same_box(u, roundtrip(u))


def test_big_endian_box_keeps_byte_order():
    space = Box(-1, 1, (2,), dtype=">f4")
    assert space_to_json(space)["dtype"] == ">f4"
    assert roundtrip(space).dtype == np.dtype(">f4")


@pytest.mark.parametrize(
    "space",
    [
        Discrete(16),
        Discrete(5, start=-2),
        Discrete(1, start=100),
        Discrete(7, dtype=np.int32),
        Discrete(3, start=1, dtype=np.uint8),
    ],
    ids=repr,
)
def test_discrete_roundtrip(space):
    back = roundtrip(space)
    assert type(back) is Discrete
    assert int(back.n) == int(space.n)
    assert int(back.start) == int(space.start)
    assert back.dtype == space.dtype
    assert back == space and space_equal(back, space)


@pytest.mark.parametrize(
    "space",
    [
        MultiDiscrete([3, 4, 5]),
        MultiDiscrete([3, 4], start=[-1, 2]),
        MultiDiscrete(np.array([[2, 3], [4, 5]])),
        MultiDiscrete([10, 20], dtype=np.int32, start=[1, 1]),
        MultiDiscrete([2, 2], dtype=np.uint8),
    ],
    ids=repr,
)
def test_multidiscrete_roundtrip(space):
    back = roundtrip(space)
    assert type(back) is MultiDiscrete
    assert back.dtype == space.dtype
    assert back.nvec.shape == space.nvec.shape
    np.testing.assert_array_equal(back.nvec, space.nvec)
    np.testing.assert_array_equal(back.start, space.start)
    assert back == space and space_equal(back, space)


@pytest.mark.parametrize("n", [1, 8, [4], [2, 3], (2, 2, 2)], ids=str)
def test_multibinary_roundtrip(n):
    space = MultiBinary(n)
    back = roundtrip(space)
    assert type(back) is MultiBinary
    assert back.shape == space.shape
    assert back.dtype == np.int8
    assert back.n == space.n  # int stays int, shape stays a shape
    assert back == space


def test_nested_composite_roundtrip_keeps_key_order():
    inner = Dict(
        OrderedDict([("zeta", Discrete(3)), ("alpha", Box(-1, 1, (2,), dtype=np.float64))])
    )
    space = Tuple(
        [
            inner,
            Tuple([MultiBinary(3), MultiDiscrete([2, 5])]),
            Box(0, 255, (4, 4), dtype=np.uint8),
        ]
    )
    back = roundtrip(space)
    assert type(back) is Tuple and len(back.spaces) == 3
    assert list(back.spaces[0].spaces) == ["zeta", "alpha"]  # not re-sorted
    assert_same_box(inner["alpha"], back.spaces[0]["alpha"])
    assert space_equal(space, back)
    assert back == space


def test_empty_composites_roundtrip():
    for space in (Tuple([]), Dict({})):
        back = roundtrip(space)
        assert space_equal(space, back)
        assert flatten_space("obs", space) == []


def test_json_has_type_key_everywhere():
    space = Dict(a=Tuple([Discrete(2), Box(0, 1)]), b=MultiBinary(2))
    d = space_to_json(space)

    def walk(node):
        assert node["type"] in SUPPORTED_SPACES
        if node["type"] == "Tuple":
            for sub in node["spaces"]:
                walk(sub)
        elif node["type"] == "Dict":
            for _, sub in node["spaces"]:
                walk(sub)

    walk(d)


# --------------------------------------------------------------------------------------
# JSON round trip: properties
# --------------------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def float_boxes(draw):
    """Per-element bounds: each low is finite or -inf, each high finite (>= low) or +inf."""
    dtype = np.dtype(draw(st.sampled_from([np.float16, np.float32, np.float64])))
    shape = draw(shapes)
    size = int(np.prod(shape))
    width = 16 if dtype.itemsize == 2 else 32
    finite = st.floats(-1e4, 1e4, width=width)
    sized = {"min_size": size, "max_size": size}
    lows = draw(st.lists(st.one_of(finite, st.just(-np.inf)), **sized))
    highs = draw(st.lists(st.one_of(finite, st.just(np.inf)), **sized))
    low = np.array(lows, dtype=dtype).reshape(shape)
    high = np.maximum(np.array(highs, dtype=dtype).reshape(shape), np.where(np.isinf(low), 0, low))
    return Box(low, high, shape=shape, dtype=dtype)


@st.composite
def int_boxes(draw):
    dtype = np.dtype(draw(st.sampled_from([np.int8, np.int32, np.int64, np.uint8, np.uint64])))
    info = np.iinfo(dtype)
    shape = draw(shapes)
    size = int(np.prod(shape))
    a = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=size, max_size=size))
    b = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=size, max_size=size))
    low = np.minimum(np.array(a, dtype=dtype), np.array(b, dtype=dtype)).reshape(shape)
    high = np.maximum(np.array(a, dtype=dtype), np.array(b, dtype=dtype)).reshape(shape)
    return Box(low, high, shape=shape, dtype=dtype)


discretes = st.builds(
    lambda n, start, dtype: Discrete(n, start=start, dtype=dtype),
    st.integers(1, 1000),
    st.integers(-50, 50),
    st.sampled_from([np.int64, np.int32]),
)


@st.composite
def multidiscretes(draw):
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple))
    size = int(np.prod(shape))
    nvec = draw(st.lists(st.integers(1, 50), min_size=size, max_size=size))
    start = draw(st.lists(st.integers(-20, 20), min_size=size, max_size=size))
    dtype = draw(st.sampled_from([np.int64, np.int32]))
    return MultiDiscrete(
        np.array(nvec).reshape(shape), dtype=dtype, start=np.array(start).reshape(shape)
    )


multibinaries = st.one_of(
    st.integers(1, 10).map(MultiBinary),
    st.lists(st.integers(1, 4), min_size=1, max_size=3).map(MultiBinary),
)
leaf_spaces = st.one_of(float_boxes(), int_boxes(), discretes, multidiscretes(), multibinaries)
keys = st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True)
spaces = st.recursive(
    leaf_spaces,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(Tuple),
        st.lists(st.tuples(keys, children), max_size=3, unique_by=lambda kv: kv[0]).map(
            lambda kvs: Dict(kvs)
        ),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(spaces)
def test_roundtrip_property(space):
    back = roundtrip(space)
    assert space_equal(space, back)
    assert back == space  # gymnasium's (looser) equality agrees
    assert describe(back) == describe(space)
    assert [n for n, _ in flatten_space("x", back)] == [n for n, _ in flatten_space("x", space)]


@settings(max_examples=100, deadline=None)
@given(st.one_of(float_boxes(), int_boxes()))
def test_box_roundtrip_property_exact_arrays(space):
    back = roundtrip(space)
    assert_same_box(space, back)


# --------------------------------------------------------------------------------------
# malformed JSON and unsupported spaces
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space",
    [
        Text(10),
        Graph(node_space=Box(0, 1, (2,)), edge_space=None),
        Sequence(Discrete(3)),
        OneOf([Discrete(2), Discrete(3)]),
    ],
    ids=lambda s: type(s).__name__,
)
def test_unsupported_spaces_raise(space):
    name = type(space).__name__
    with pytest.raises(SpaceError, match=rf"got space type {name}") as info:
        space_to_json(space)
    for supported in SUPPORTED_SPACES:
        assert supported in str(info.value)
    with pytest.raises(SpaceError, match=name):
        flatten_space("obs", space)
    with pytest.raises(SpaceError, match=name):
        field_spec(space)


def test_unsupported_space_nested_names_its_path():
    space = Dict(a=Tuple([Discrete(2), Text(4)]))
    with pytest.raises(SpaceError, match=re.escape("space['a'][1]: expected one of")):
        space_to_json(space)


def test_box_subclass_is_refused():
    class MyBox(Box):
        pass

    with pytest.raises(SpaceError, match="MyBox"):
        space_to_json(MyBox(0, 1, (2,)))


def test_non_space_is_refused():
    with pytest.raises(SpaceError, match="non-space object of type int"):
        space_to_json(3)


def test_spaceerror_is_valueerror():
    with pytest.raises(ValueError):
        space_from_json({"type": "Nope"})
    assert issubclass(SpaceError, ReplayStoreError)


@pytest.mark.parametrize(
    ("d", "pattern"),
    [
        ({"type": "Graph"}, r'expected "type" to be one of Box, .*got \'Graph\''),
        ({}, r"expected key 'type'"),
        ([1, 2], r"expected a JSON object"),
        ({"type": "Discrete"}, r"expected key 'n'"),
        ({"type": "Discrete", "n": "3"}, r"expected an integer, got '3'"),
        ({"type": "Discrete", "n": 0}, r"invalid space description"),
        (
            {"type": "Box", "shape": [2], "dtype": "float32", "low": "oops", "high": 1},
            r"low: expected a number or one of",
        ),
        (
            {"type": "Box", "shape": [2], "dtype": "float32", "low": [0, 0, 0], "high": 1},
            r"expected shape \(2,\), got an array of shape \(3,\)",
        ),
        (
            {"type": "Box", "shape": [2], "dtype": "float32", "low": 2, "high": 1},
            r"invalid space description",
        ),
        (
            {"type": "Box", "shape": [2], "dtype": "nonsense", "low": 0, "high": 1},
            r"expected a numpy dtype string, got 'nonsense'",
        ),
        ({"type": "Tuple", "spaces": {"a": 1}}, r"spaces: expected a list"),
        ({"type": "Dict", "spaces": [["a"]]}, r"expected \[key, space\] pairs"),
        (
            {"type": "Dict", "spaces": [["a", {"type": "Discrete", "n": 2}]] * 2},
            r"expected unique keys",
        ),
        (
            {"type": "Tuple", "spaces": [{"type": "Discrete", "n": 2}, {"type": "Text"}]},
            r"space \(Tuple\)\[1\]: expected \"type\"",
        ),
    ],
)
def test_malformed_json_raises(d, pattern):
    with pytest.raises(SpaceError, match=pattern):
        space_from_json(d)


# --------------------------------------------------------------------------------------
# equality
# --------------------------------------------------------------------------------------


def test_space_equal_is_exact():
    assert space_equal(Box(0, 1, (2,)), Box(0, 1, (2,)))
    assert not space_equal(Box(0, 1, (2,)), Box(0, 1, (2,), dtype=np.float64))
    assert not space_equal(Box(0, 1, (2,)), Box(0, 1, (3,)))
    assert not space_equal(Box(0.0, 1e-9, (1,)), Box(0.0, 0.0, (1,)))  # gymnasium: ==
    assert not space_equal(Box(-np.inf, 1, (1,)), Box(-1e30, 1, (1,)))
    assert not space_equal(Discrete(3), Discrete(3, start=1))
    assert not space_equal(Discrete(3), Discrete(3, dtype=np.int32))
    assert not space_equal(MultiDiscrete([2, 3]), MultiDiscrete([2, 3], dtype=np.int32))
    assert not space_equal(MultiDiscrete([2, 3]), MultiDiscrete([2, 3], start=[0, 1]))
    assert not space_equal(Discrete(2), MultiBinary(2))
    assert space_equal(MultiBinary(4), MultiBinary([4]))  # same storage; gymnasium says !=
    a = Dict(OrderedDict([("a", Discrete(2)), ("b", Discrete(3))]))
    b = Dict(OrderedDict([("b", Discrete(3)), ("a", Discrete(2))]))
    assert a == b  # gymnasium ignores order
    assert not space_equal(a, b)  # order decides field order, so we do not
    assert not space_equal(Tuple([Discrete(2)]), Tuple([Discrete(2), Discrete(2)]))


# --------------------------------------------------------------------------------------
# fields
# --------------------------------------------------------------------------------------


def test_field_spec():
    assert field_spec(Box(0, 255, (84, 84, 3), dtype=np.uint8)) == (np.dtype(np.uint8), (84, 84, 3))
    assert field_spec(Box(-1, 1, (), dtype=np.float64)) == (np.dtype(np.float64), ())
    assert field_spec(Discrete(4)) == (np.dtype(np.int64), ())
    assert field_spec(Discrete(4, dtype=np.int32)) == (np.dtype(np.int32), ())
    assert field_spec(MultiDiscrete([[2, 3], [4, 5]], dtype=np.int32)) == (
        np.dtype(np.int32),
        (2, 2),
    )
    assert field_spec(MultiBinary([2, 3])) == (np.dtype(np.int8), (2, 3))
    assert field_spec(MultiBinary(5)) == (np.dtype(np.int8), (5,))


@pytest.mark.parametrize("space", [Tuple([Discrete(2)]), Dict(a=Discrete(2))], ids=repr)
def test_field_spec_refuses_composites(space):
    with pytest.raises(SpaceError, match="use flatten_space"):
        field_spec(space)


NESTED = Dict(
    OrderedDict(
        [
            ("pos", Box(-1, 1, (2,), dtype=np.float32)),
            (
                "a",
                Tuple([Discrete(3), Dict(OrderedDict([("img", Box(0, 255, (2, 2), np.uint8))]))]),
            ),
            ("bits", MultiBinary(3)),
        ]
    )
)


def test_flatten_space_names_and_order():
    fields = flatten_space("obs", NESTED)
    assert [n for n, _ in fields] == ["obs.pos", "obs.a.0", "obs.a.1.img", "obs.bits"]
    assert space_equal(fields[2][1], Box(0, 255, (2, 2), np.uint8))
    assert flatten_space("act", Discrete(4)) == [("act", Discrete(4))]
    t = flatten_space("obs", Tuple([Box(0, 1), Box(0, 2)]))
    assert [n for n, _ in t] == ["obs.0", "obs.1"]


def test_flatten_space_default_dict_is_sorted_by_gymnasium():
    # a plain dict is sorted by gymnasium's Dict, so field order follows the sorted keys
    fields = flatten_space("obs", Dict({"vel": Box(0, 1), "pos": Box(0, 1)}))
    assert [n for n, _ in fields] == ["obs.pos", "obs.vel"]


@pytest.mark.parametrize("key", ["a.b", "", "with space", "é", "x-y"])
def test_flatten_space_refuses_bad_keys(key):
    with pytest.raises(SpaceError, match=r"\[A-Za-z0-9_\]\+"):
        flatten_space("obs", Dict({key: Discrete(2)}))


def test_flatten_space_refuses_non_string_keys():
    with pytest.raises(SpaceError, match="got 3"):
        flatten_space("obs", Dict({3: Discrete(2)}))
    with pytest.raises(SpaceError, match="expected string Dict keys"):
        space_to_json(Dict({3: Discrete(2)}))


# --------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------


def assert_values_equal(a, b):
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_values_equal(a[k], b[k])
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_values_equal(x, y)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_value_roundtrip_single():
    value = NESTED.sample()
    fields = flatten_value("obs", NESTED, value)
    assert list(fields) == ["obs.pos", "obs.a.0", "obs.a.1.img", "obs.bits"]
    assert fields["obs.a.1.img"].shape == (2, 2)
    assert fields["obs.a.0"].shape == ()
    back = unflatten_value("obs", NESTED, fields)
    assert_values_equal(value, back)
    assert NESTED.contains(back)


def test_value_roundtrip_batched():
    n = 5
    samples = [NESTED.sample() for _ in range(n)]
    batch = {
        "pos": np.stack([s["pos"] for s in samples]),
        "a": (
            np.array([s["a"][0] for s in samples]),
            {"img": np.stack([s["a"][1]["img"] for s in samples])},
        ),
        "bits": np.stack([s["bits"] for s in samples]),
    }
    fields = flatten_value("obs", NESTED, batch, batched=True)
    assert {k: v.shape for k, v in fields.items()} == {
        "obs.pos": (n, 2),
        "obs.a.0": (n,),
        "obs.a.1.img": (n, 2, 2),
        "obs.bits": (n, 3),
    }
    back = unflatten_value("obs", NESTED, fields, batched=True)
    assert_values_equal(batch, back)
    # row i of the batch is sample i
    for i, s in enumerate(samples):
        row = unflatten_value("obs", NESTED, {k: v[i] for k, v in fields.items()})
        assert_values_equal(s, row)


@settings(max_examples=60, deadline=None)
@given(spaces, st.integers(0, 2**32 - 1))
def test_value_roundtrip_property(space, seed):
    space.seed(seed)
    try:
        value = space.sample()
    except ValueError:
        # gymnasium's Box.sample overflows on int64 bounds spanning the whole dtype range
        # (high - low does not fit); that is gymnasium's limit, not ours
        assume(False)
    fields = flatten_value("v", space, value)
    assert set(fields) == {n for n, _ in flatten_space("v", space)}
    assert_values_equal(value, unflatten_value("v", space, fields))


def test_unflatten_ignores_other_fields_and_reports_missing():
    space = Tuple([Discrete(2), Discrete(3)])
    assert unflatten_value("obs", space, {"obs.0": 1, "obs.1": 2, "action": 0}) == (1, 2)
    with pytest.raises(SpaceError, match=r"field 'obs.1': expected it among the given fields"):
        unflatten_value("obs", space, {"obs.0": 1})


def test_flatten_value_errors():
    space = Dict(a=Box(0, 1, (2,)), b=Tuple([Discrete(2), Discrete(2)]))
    with pytest.raises(SpaceError, match=r"missing \['b'\]"):
        flatten_value("obs", space, {"a": np.zeros(2)})
    with pytest.raises(SpaceError, match=r"unexpected \['c'\]"):
        flatten_value("obs", space, {"a": np.zeros(2), "b": (0, 1), "c": 1})
    with pytest.raises(SpaceError, match="expected a mapping"):
        flatten_value("obs", space, [1, 2])
    with pytest.raises(SpaceError, match=r"field 'obs.b': expected a tuple of 2 values, got 3"):
        flatten_value("obs", space, {"a": np.zeros(2), "b": (0, 1, 1)})
    with pytest.raises(SpaceError, match=r"field 'obs.a': expected shape with shape \(2,\)"):
        flatten_value("obs", space, {"a": np.zeros(3), "b": (0, 1)})
    with pytest.raises(SpaceError, match=r"got \{'obs.a': 4, 'obs.b.0': 3, 'obs.b.1': 3\}"):
        flatten_value(
            "obs", space, {"a": np.zeros((4, 2)), "b": (np.zeros(3), np.zeros(3))}, batched=True
        )
    with pytest.raises(SpaceError, match=r"field 'x': expected a batch"):
        flatten_value("x", Discrete(3), 1, batched=True)


# --------------------------------------------------------------------------------------
# check_values
# --------------------------------------------------------------------------------------


def test_check_values_accepts_valid_batches():
    check_values("a", Discrete(4, start=1), np.array([1, 2, 3, 4]))
    check_values("a", MultiDiscrete([2, 3], start=[0, -1]), np.array([[0, -1], [1, 1]]))
    check_values("a", MultiBinary(3), np.array([[0, 1, 1], [1, 0, 0]], dtype=np.int8))
    check_values("o", Box(-1, 1, (2,)), np.array([[-1, 1], [0, 0.5]], dtype=np.float32))
    check_values("o", Box(-np.inf, np.inf, (2,)), np.array([[np.nan, np.inf]]))
    check_values("o", Box(0, 255, (2, 2), np.uint8), np.zeros((0, 2, 2), np.uint8))
    check_values("a", Discrete(4), np.int64(3), batched=False)
    check_values("a", Discrete(4), np.array([0.0, 3.0]))  # integral floats are fine


def test_check_values_discrete_message():
    values = np.array([0, 1, 2, 5, 1, -1])
    with pytest.raises(SpaceError) as info:
        check_values("action", Discrete(3), values)
    msg = str(info.value)
    assert "field 'action'" in msg
    assert "row 3 has value 5" in msg
    assert "[0, 2]" in msg
    assert "Discrete(3)" in msg
    assert "2 of 6 rows" in msg and "rows 3, 5" in msg


def test_check_values_discrete_start_and_single():
    with pytest.raises(SpaceError, match=r"value 0, expected an integer in \[1, 4\]"):
        check_values("a", Discrete(4, start=1), np.int64(0), batched=False)
    with pytest.raises(SpaceError, match=r"row 1 has value 1.5, expected an integer"):
        check_values("a", Discrete(4), np.array([1.0, 1.5]))
    with pytest.raises(SpaceError, match=r"row 0 has value nan"):
        check_values("a", Discrete(4), np.array([np.nan]))


def test_check_values_many_bad_rows_are_abbreviated():
    with pytest.raises(SpaceError, match=r"100 of 100 rows out of range; rows 0, 1, 2, \.\.\.\)"):
        check_values("a", Discrete(2), np.full(100, 7))


def test_check_values_multidiscrete_names_element_and_range():
    space = MultiDiscrete([3, 5], start=[0, 10])
    values = np.array([[0, 10], [2, 14], [1, 15]])
    with pytest.raises(SpaceError) as info:
        check_values("act", space, values)
    msg = str(info.value)
    assert "field 'act': row 2 element 1 has value 15" in msg
    assert "[10, 14]" in msg


def test_check_values_multibinary():
    with pytest.raises(SpaceError, match=r"row 1 element 2 has value 2, expected 0 or 1"):
        check_values("bits", MultiBinary(3), np.array([[0, 1, 1], [0, 0, 2]]))


def test_check_values_box_bounds_and_nan():
    low = np.array([-1.0, 0.0, -np.inf], dtype=np.float32)
    high = np.array([1.0, np.inf, np.inf], dtype=np.float32)
    space = Box(low, high, dtype=np.float32)
    check_values("obs", space, np.array([[0, 1e30, -1e30], [1, 0, np.nan]], np.float32))
    with pytest.raises(
        SpaceError,
        match=r"row 1 element 0 has value 1.5, expected a value in "
        r"\[-1.0, 1.0\]",
    ):
        check_values("obs", space, np.array([[0, 0, 0], [1.5, 0, 0]], np.float32))
    with pytest.raises(SpaceError, match=r"row 0 element 1 has value -0.5, .*\[0.0, inf\]"):
        check_values("obs", space, np.array([[0, -0.5, 0]], np.float32))
    # NaN where a bound is finite is out of bounds
    with pytest.raises(SpaceError, match=r"row 0 element 1 has value nan"):
        check_values("obs", space, np.array([[0, np.nan, 0]], np.float32))


def test_check_values_uint8_image():
    space = Box(10, 200, (2, 2), dtype=np.uint8)
    values = np.full((4, 2, 2), 100, np.uint8)
    check_values("img", space, values)
    values[2, 1, 0] = 255
    with pytest.raises(SpaceError, match=r"row 2 element \(1, 0\) has value 255.*\[10, 200\]"):
        check_values("img", space, values)


def test_check_values_shape_and_composite_errors():
    with pytest.raises(
        SpaceError,
        match=r"expected a batch .* shape \(2,\).*got an array "
        r"of shape \(4, 3\)",
    ):
        check_values("obs", Box(0, 1, (2,)), np.zeros((4, 3)))
    with pytest.raises(SpaceError, match="use flatten_value"):
        check_values("obs", Dict(a=Discrete(2)), np.zeros(3))
    with pytest.raises(SpaceError, match="expected numeric values"):
        check_values("a", Discrete(2), np.array(["x", "y"]))


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 20),
    st.integers(-5, 5),
    st.lists(st.integers(0, 19), min_size=1, max_size=50),
    st.data(),
)
def test_check_values_discrete_property(n, start, raw, data):
    space = Discrete(n, start=start)
    values = np.array([start + r % n for r in raw], dtype=np.int64)
    check_values("a", space, values)
    row = data.draw(st.integers(0, len(values) - 1))
    bad = data.draw(st.one_of(st.integers(-100, start - 1), st.integers(start + n, 100)))
    values[row] = bad
    with pytest.raises(
        SpaceError, match=rf"row {row} has value {bad}, .*\[{start}, {start + n - 1}\]"
    ):
        check_values("a", space, values)


@settings(max_examples=50, deadline=None)
@given(float_boxes(), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_check_values_accepts_box_samples(space, n, seed):
    space.seed(seed)
    try:
        values = np.stack([space.sample() for _ in range(n)])
    except ValueError:
        assume(False)  # gymnasium's Box.sample overflows on full-range int64 bounds
    check_values("o", space, values)


# --------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "text"),
    [
        (Box(-1.0, 1.0, (8,), np.float32), "Box(-1.0, 1.0, (8,), float32)"),
        (Box(0, 255, (84, 84, 3), np.uint8), "Box(0, 255, (84, 84, 3), uint8)"),
        (Box(-np.inf, np.inf, (), np.float64), "Box(-inf, inf, (), float64)"),
        (Discrete(16), "Discrete(16)"),
        (Discrete(5, start=-2), "Discrete(5, start=-2)"),
        (Discrete(5, dtype=np.int32), "Discrete(5, dtype=int32)"),
        (MultiDiscrete([3, 4]), "MultiDiscrete([3, 4])"),
        (MultiBinary(4), "MultiBinary(4)"),
        (MultiBinary([2, 3]), "MultiBinary((2, 3))"),
        (Tuple([Discrete(2), MultiBinary(2)]), "Tuple(Discrete(2), MultiBinary(2))"),
        (Text(5), repr(Text(5))),
    ],
    ids=lambda x: x if isinstance(x, str) else type(x).__name__,
)
def test_describe(space, text):
    assert describe(space) == text


def test_describe_large_per_element_box_is_short():
    low = np.linspace(-1, 0, 10_000).reshape(100, 100)
    text = describe(Box(low, low + 1, dtype=np.float64))
    assert text == "Box(low=-1.0..0.0, high=0.0..1.0, (100, 100), float64)"

"""Gymnasium spaces <-> JSON metadata, storage fields and value checks.

A store is created from an observation space and an action space. This module turns a
space into JSON-safe metadata (and back, with dtype, shape and bounds kept exactly),
splits composite spaces (``Tuple``, ``Dict``) into named leaf fields with one storage
array each, and validates batches of values against a leaf space.

>>> from gymnasium.spaces import Box, Dict, Discrete
>>> space = Dict({"pos": Box(-1.0, 1.0, (2,)), "goal": Discrete(4)})
>>> [(name, describe(leaf)) for name, leaf in flatten_space("obs", space)]
[('obs.goal', 'Discrete(4)'), ('obs.pos', 'Box(-1.0, 1.0, (2,), float32)')]
>>> space_equal(space_from_json(space_to_json(space)), space)
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Tuple

from replaystore.errors import SpaceError

__all__ = [
    "SUPPORTED_SPACES",
    "space_to_json",
    "space_from_json",
    "space_equal",
    "field_spec",
    "flatten_space",
    "flatten_value",
    "unflatten_value",
    "check_values",
    "describe",
]

#: Names of the space types that can be stored, in the order they are listed in errors.
SUPPORTED_SPACES: tuple[str, ...] = (
    "Box",
    "Discrete",
    "MultiDiscrete",
    "MultiBinary",
    "Tuple",
    "Dict",
)

_LEAF_TYPES: tuple[type, ...] = (Box, Discrete, MultiDiscrete, MultiBinary)
_COMPOSITE_TYPES: tuple[type, ...] = (Tuple, Dict)
_KEY_RE = re.compile(r"[A-Za-z0-9_]+")
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
# How many offending rows an error message quotes at most.
_MAX_QUOTED = 3


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _type_name(space: Any) -> str:
    return type(space).__name__


def _supported_list() -> str:
    return ", ".join(SUPPORTED_SPACES)


def _check_supported(space: Any, where: str) -> None:
    """Raise SpaceError unless ``space`` is exactly one of the supported gymnasium types.

    Subclasses are refused on purpose: they would come back from JSON as their base
    class, so the round trip would not be exact.
    """
    if type(space) not in _LEAF_TYPES + _COMPOSITE_TYPES:
        kind = (
            f"space type {_type_name(space)}"
            if isinstance(space, gymnasium.Space)
            else f"a non-space object of type {_type_name(space)}"
        )
        raise SpaceError(f"{where}: expected one of {_supported_list()}, got {kind}")


def _dtype_to_json(dtype: np.dtype) -> str:
    """``float32`` style name when it identifies the dtype exactly, else ``dtype.str``."""
    dtype = np.dtype(dtype)
    return dtype.name if np.dtype(dtype.name) == dtype else dtype.str


def _dtype_from_json(value: Any, where: str) -> np.dtype:
    try:
        dtype = np.dtype(value)
    except TypeError as exc:
        raise SpaceError(f"{where}: expected a numpy dtype string, got {value!r}") from exc
    return dtype


def _scalar_to_json(x: Any) -> Any:
    """A Python int/float/bool for JSON, with non-finite floats as strings."""
    if isinstance(x, float) and not math.isfinite(x):
        if math.isnan(x):
            return "nan"
        return "inf" if x > 0 else "-inf"
    return x


def _nested_to_json(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_nested_to_json(o) for o in obj]
    return _scalar_to_json(obj)


def _nested_from_json(obj: Any, where: str) -> Any:
    if isinstance(obj, list):
        return [_nested_from_json(o, where) for o in obj]
    if isinstance(obj, str):
        if obj not in _NONFINITE:
            raise SpaceError(
                f"{where}: expected a number or one of {sorted(_NONFINITE)}, got {obj!r}"
            )
        return _NONFINITE[obj]
    return obj


def _array_to_json(arr: np.ndarray) -> Any:
    """A JSON value for ``arr``: one scalar when all elements are equal, else nested lists.

    Uniform bounds (the common case, e.g. ``Box(0, 255, (84, 84, 3), uint8)``) stay small.
    """
    arr = np.asarray(arr)
    if arr.size > 0:
        first = arr.reshape(-1)[:1]
        uniform = np.array_equal(
            arr, np.broadcast_to(first.reshape(()), arr.shape), equal_nan=arr.dtype.kind == "f"
        )
        if uniform:
            return _scalar_to_json(first[0].item())
    return _nested_to_json(arr.tolist())


def _array_from_json(value: Any, shape: tuple[int, ...], dtype: np.dtype, where: str) -> np.ndarray:
    decoded = _nested_from_json(value, where)
    try:
        if isinstance(decoded, list):
            arr = np.array(decoded, dtype=dtype)
        else:
            arr = np.full(shape, decoded, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SpaceError(
            f"{where}: expected numbers of dtype {dtype.name} and shape {shape}, "
            f"got {value!r:.200} ({exc})"
        ) from exc
    if arr.shape != shape:
        raise SpaceError(f"{where}: expected shape {shape}, got an array of shape {arr.shape}")
    return arr


def _require(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise SpaceError(f"{where}: expected key {key!r}, got keys {sorted(d)}")
    return d[key]


def _int_from_json(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpaceError(f"{where}: expected an integer, got {value!r}")
    return value


def _shape_from_json(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise SpaceError(f"{where}: expected a list of integers, got {value!r}")
    return tuple(_int_from_json(v, where) for v in value)


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise SpaceError(f"{where}: Dict keys must be strings matching [A-Za-z0-9_]+, got {key!r}")
    return key


def _fmt(x: Any) -> str:
    """Short text for a numpy or Python scalar (``str`` of numpy scalars is shortest-repr)."""
    return str(x)


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------


def space_to_json(space: gymnasium.Space) -> dict[str, Any]:
    """Encode a gymnasium space as a JSON-safe dict with a ``"type"`` key.

    Bounds are scalars when uniform and nested lists otherwise; ``inf``/``-inf``/``nan``
    become strings; dtypes are numpy names such as ``"float32"``.

    >>> import numpy as np
    >>> from gymnasium.spaces import Box, Discrete
    >>> space_to_json(Discrete(3, start=1))
    {'type': 'Discrete', 'n': 3, 'start': 1, 'dtype': 'int64'}
    >>> space_to_json(Box(np.array([0.0, -np.inf]), np.array([1.0, np.inf]), dtype=np.float64))
    {'type': 'Box', 'shape': [2], 'dtype': 'float64', 'low': [0.0, '-inf'], 'high': [1.0, 'inf']}
    """
    return _to_json(space, "space")


def _to_json(space: Any, where: str) -> dict[str, Any]:
    _check_supported(space, where)
    if type(space) is Box:
        if space.dtype.kind not in "biuf" or (space.dtype.kind == "f" and space.dtype.itemsize > 8):
            raise SpaceError(
                f"{where}: expected a Box of bool, integer or float (up to 64 bit) dtype, "
                f"got dtype {space.dtype}"
            )
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": _dtype_to_json(space.dtype),
            "low": _array_to_json(space.low),
            "high": _array_to_json(space.high),
        }
    if type(space) is Discrete:
        return {
            "type": "Discrete",
            "n": int(space.n),
            "start": int(space.start),
            "dtype": _dtype_to_json(space.dtype),
        }
    if type(space) is MultiDiscrete:
        return {
            "type": "MultiDiscrete",
            "nvec": space.nvec.tolist(),
            "start": space.start.tolist(),
            "dtype": _dtype_to_json(space.dtype),
        }
    if type(space) is MultiBinary:
        n = space.n
        n_json = int(n) if isinstance(n, int | np.integer) else [int(v) for v in n]
        return {"type": "MultiBinary", "n": n_json}
    if type(space) is Tuple:
        return {
            "type": "Tuple",
            "spaces": [_to_json(s, f"{where}[{i}]") for i, s in enumerate(space.spaces)],
        }
    # Dict: a list of [key, space] pairs, so key order survives any JSON tool.
    pairs = []
    for key, sub in space.spaces.items():
        if not isinstance(key, str):
            raise SpaceError(f"{where}: expected string Dict keys, got {key!r}")
        pairs.append([key, _to_json(sub, f"{where}[{key!r}]")])
    return {"type": "Dict", "spaces": pairs}


def space_from_json(d: dict[str, Any]) -> gymnasium.Space:
    """Rebuild the space encoded by :func:`space_to_json` (dtype, bounds and order exact).

    >>> from gymnasium.spaces import MultiDiscrete
    >>> space_from_json({"type": "MultiDiscrete", "nvec": [3, 4], "start": [0, 1],
    ...                  "dtype": "int32"})
    MultiDiscrete([3 4], start=[0 1])
    >>> space_from_json({"type": "Graph"})
    Traceback (most recent call last):
    ...
    replaystore.errors.SpaceError: space: expected "type" to be one of Box, Discrete, \
MultiDiscrete, MultiBinary, Tuple, Dict, got 'Graph'
    """
    return _from_json(d, "space")


def _from_json(d: Any, where: str) -> gymnasium.Space:
    if not isinstance(d, Mapping):
        raise SpaceError(f"{where}: expected a JSON object describing a space, got {d!r:.200}")
    kind = _require(d, "type", where)
    if kind not in SUPPORTED_SPACES:
        raise SpaceError(f'{where}: expected "type" to be one of {_supported_list()}, got {kind!r}')
    where = f"{where} ({kind})"
    try:
        if kind == "Box":
            shape = _shape_from_json(_require(d, "shape", where), f"{where}.shape")
            dtype = _dtype_from_json(_require(d, "dtype", where), f"{where}.dtype")
            low = _array_from_json(_require(d, "low", where), shape, dtype, f"{where}.low")
            high = _array_from_json(_require(d, "high", where), shape, dtype, f"{where}.high")
            return Box(low=low, high=high, shape=shape, dtype=dtype)
        if kind == "Discrete":
            return Discrete(
                _int_from_json(_require(d, "n", where), f"{where}.n"),
                start=_int_from_json(d.get("start", 0), f"{where}.start"),
                dtype=_dtype_from_json(d.get("dtype", "int64"), f"{where}.dtype"),
            )
        if kind == "MultiDiscrete":
            dtype = _dtype_from_json(d.get("dtype", "int64"), f"{where}.dtype")
            nvec = np.array(_require(d, "nvec", where), dtype=dtype)
            start = d.get("start")
            return MultiDiscrete(
                nvec, dtype=dtype, start=None if start is None else np.array(start, dtype=dtype)
            )
        if kind == "MultiBinary":
            n = _require(d, "n", where)
            n = (
                _shape_from_json(n, f"{where}.n")
                if isinstance(n, list)
                else _int_from_json(n, f"{where}.n")
            )
            return MultiBinary(n)
        subs = _require(d, "spaces", where)
        if not isinstance(subs, list):
            raise SpaceError(f"{where}.spaces: expected a list, got {subs!r:.200}")
        if kind == "Tuple":
            return Tuple([_from_json(s, f"{where}[{i}]") for i, s in enumerate(subs)])
        pairs = []
        for item in subs:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise SpaceError(f"{where}.spaces: expected [key, space] pairs, got {item!r:.200}")
            pairs.append((item[0], _from_json(item[1], f"{where}[{item[0]!r}]")))
        if len({k for k, _ in pairs}) != len(pairs):
            raise SpaceError(f"{where}.spaces: expected unique keys, got {[k for k, _ in pairs]}")
        return Dict(pairs)  # a sequence of pairs keeps its order (a plain dict is sorted)
    except SpaceError:
        raise
    except (TypeError, ValueError, OverflowError, AssertionError) as exc:
        # gymnasium's own validation (e.g. low > high, nvec <= 0)
        raise SpaceError(f"{where}: invalid space description ({exc})") from exc


# --------------------------------------------------------------------------------------
# equality
# --------------------------------------------------------------------------------------


def space_equal(a: gymnasium.Space, b: gymnasium.Space) -> bool:
    """Exact structural equality: type, dtype, shape, bounds, ``n``/``start``/``nvec``, order.

    Stricter than gymnasium's ``==``, which compares Box bounds with ``np.allclose`` and
    ignores the key order of ``Dict`` spaces.

    >>> from gymnasium.spaces import Box
    >>> Box(0.0, 1e-9, (1,)) == Box(0.0, 0.0, (1,))
    True
    >>> space_equal(Box(0.0, 1e-9, (1,)), Box(0.0, 0.0, (1,)))
    False
    """
    if type(a) is not type(b):
        return False
    if type(a) is Box:
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a.low, b.low, equal_nan=a.dtype.kind == "f")
            and np.array_equal(a.high, b.high, equal_nan=a.dtype.kind == "f")
        )
    if type(a) is Discrete:
        return a.dtype == b.dtype and int(a.n) == int(b.n) and int(a.start) == int(b.start)
    if type(a) is MultiDiscrete:
        return (
            a.dtype == b.dtype
            and np.array_equal(a.nvec, b.nvec)
            and np.array_equal(a.start, b.start)
        )
    if type(a) is MultiBinary:
        return a.shape == b.shape
    if type(a) is Tuple:
        return len(a.spaces) == len(b.spaces) and all(
            space_equal(x, y) for x, y in zip(a.spaces, b.spaces, strict=True)
        )
    if type(a) is Dict:
        return list(a.spaces) == list(b.spaces) and all(
            space_equal(a.spaces[k], b.spaces[k]) for k in a.spaces
        )
    return bool(a == b)


# --------------------------------------------------------------------------------------
# fields
# --------------------------------------------------------------------------------------


def field_spec(space: gymnasium.Space) -> tuple[np.dtype, tuple[int, ...]]:
    """Storage dtype and per-row shape of a leaf (non-composite) space.

    >>> from gymnasium.spaces import Box, Discrete, MultiBinary
    >>> field_spec(Box(0, 255, (84, 84, 3), dtype="uint8"))
    (dtype('uint8'), (84, 84, 3))
    >>> field_spec(Discrete(4))
    (dtype('int64'), ())
    >>> field_spec(MultiBinary([2, 3]))
    (dtype('int8'), (2, 3))
    """
    if type(space) in _COMPOSITE_TYPES:
        raise SpaceError(
            f"field_spec: expected a leaf space ({', '.join(SUPPORTED_SPACES[:4])}), "
            f"got composite {_type_name(space)}; use flatten_space() to split it into fields"
        )
    _check_supported(space, "field_spec")
    if type(space) is Box:
        return np.dtype(space.dtype), tuple(space.shape)
    if type(space) is Discrete:
        return np.dtype(space.dtype), ()
    if type(space) is MultiDiscrete:
        return np.dtype(space.dtype), tuple(space.nvec.shape)
    return np.dtype(space.dtype), tuple(space.shape)  # MultiBinary: int8


def flatten_space(name: str, space: gymnasium.Space) -> list[tuple[str, gymnasium.Space]]:
    """Named leaf fields of ``space``: ``Dict`` keys and ``Tuple`` indices join with ``"."``.

    >>> from gymnasium.spaces import Box, Dict, Discrete, Tuple
    >>> space = Dict({"a": Tuple([Discrete(2), Box(0, 1)]), "b": Discrete(3)})
    >>> [name for name, _ in flatten_space("obs", space)]
    ['obs.a.0', 'obs.a.1', 'obs.b']
    """
    _check_supported(space, f"field {name!r}")
    if type(space) is Tuple:
        out: list[tuple[str, gymnasium.Space]] = []
        for i, sub in enumerate(space.spaces):
            out.extend(flatten_space(f"{name}.{i}", sub))
        return out
    if type(space) is Dict:
        out = []
        for key, sub in space.spaces.items():
            _check_key(key, f"field {name!r}")
            out.extend(flatten_space(f"{name}.{key}", sub))
        return out
    return [(name, space)]


def _leaf_shape_check(name: str, space: Any, value: Any, batched: bool) -> np.ndarray:
    arr = np.asarray(value)
    _, shape = field_spec(space)
    got = arr.shape[1:] if batched else arr.shape
    if (batched and arr.ndim == 0) or got != shape:
        what = "a batch of shape (N, *shape)" if batched else "shape"
        raise SpaceError(
            f"field {name!r}: expected {what} with shape {shape} for {describe(space)}, "
            f"got an array of shape {arr.shape}"
        )
    return arr


def flatten_value(
    name: str, space: gymnasium.Space, value: Any, *, batched: bool = False
) -> dict[str, np.ndarray]:
    """Split one value (or a batch, leaves with a leading batch axis) into leaf fields.

    Leaves are returned as arrays without casting; shapes are checked, and in a batch all
    leaves must have the same length.

    >>> import numpy as np
    >>> from gymnasium.spaces import Box, Dict, Discrete, Tuple
    >>> space = Dict({"pos": Box(-1, 1, (2,)), "id": Tuple([Discrete(3)])})
    >>> fields = flatten_value("obs", space, {"pos": np.zeros(2), "id": (2,)})
    >>> {k: v.tolist() for k, v in fields.items()}
    {'obs.id.0': 2, 'obs.pos': [0.0, 0.0]}
    """
    out: dict[str, np.ndarray] = {}
    _flatten_value_into(name, space, value, batched, out)
    if batched and out:
        lengths = {k: len(v) for k, v in out.items()}
        if len(set(lengths.values())) > 1:
            raise SpaceError(
                f"field {name!r}: expected every leaf of the batch to have the same length, "
                f"got {lengths}"
            )
    return out


def _flatten_value_into(
    name: str, space: Any, value: Any, batched: bool, out: dict[str, np.ndarray]
) -> None:
    if type(space) is Dict:
        if not isinstance(value, Mapping):
            raise SpaceError(
                f"field {name!r}: expected a mapping with keys {list(space.spaces)}, "
                f"got {_type_name(value)}"
            )
        missing = [k for k in space.spaces if k not in value]
        extra = [k for k in value if k not in space.spaces]
        if missing or extra:
            raise SpaceError(
                f"field {name!r}: expected keys {list(space.spaces)}, got {list(value)} "
                f"(missing {missing}, unexpected {extra})"
            )
        for key, sub in space.spaces.items():
            _check_key(key, f"field {name!r}")
            _flatten_value_into(f"{name}.{key}", sub, value[key], batched, out)
        return
    if type(space) is Tuple:
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise SpaceError(
                f"field {name!r}: expected a tuple of {len(space.spaces)} values, "
                f"got {_type_name(value)}"
            )
        if len(value) != len(space.spaces):
            raise SpaceError(
                f"field {name!r}: expected a tuple of {len(space.spaces)} values, got {len(value)}"
            )
        for i, (sub, v) in enumerate(zip(space.spaces, value, strict=True)):
            _flatten_value_into(f"{name}.{i}", sub, v, batched, out)
        return
    _check_supported(space, f"field {name!r}")
    out[name] = _leaf_shape_check(name, space, value, batched)


def unflatten_value(
    name: str, space: gymnasium.Space, fields: Mapping[str, Any], *, batched: bool = False
) -> Any:
    """Inverse of :func:`flatten_value`: ``Dict`` -> dict (space order), ``Tuple`` -> tuple.

    Extra entries in ``fields`` (other fields of the store) are ignored.

    >>> from gymnasium.spaces import Box, Discrete, Tuple
    >>> unflatten_value("obs", Tuple([Discrete(3), Discrete(2)]), {"obs.0": 1, "obs.1": 0})
    (1, 0)
    """
    if type(space) is Dict:
        return {
            key: unflatten_value(f"{name}.{_check_key(key, name)}", sub, fields, batched=batched)
            for key, sub in space.spaces.items()
        }
    if type(space) is Tuple:
        return tuple(
            unflatten_value(f"{name}.{i}", sub, fields, batched=batched)
            for i, sub in enumerate(space.spaces)
        )
    _check_supported(space, f"field {name!r}")
    if name not in fields:
        raise SpaceError(
            f"field {name!r}: expected it among the given fields, got {sorted(fields)}"
        )
    value = fields[name]
    _leaf_shape_check(name, space, value, batched)
    return value


# --------------------------------------------------------------------------------------
# value checks
# --------------------------------------------------------------------------------------


def check_values(
    name: str, space: gymnasium.Space, values: np.ndarray, *, batched: bool = True
) -> None:
    """Raise :class:`SpaceError` if any value lies outside the leaf ``space``.

    ``Discrete``/``MultiDiscrete`` must be integers in range, ``MultiBinary`` in {0, 1},
    ``Box`` within ``[low, high]`` (NaN fails wherever a bound is finite). The message
    names the field, the first offending row and value, and the valid range.

    >>> import numpy as np
    >>> from gymnasium.spaces import Discrete
    >>> check_values("action", Discrete(4), np.array([0, 3, 1]))
    >>> check_values("action", Discrete(4), np.array([0, 3, 7, 9]))
    Traceback (most recent call last):
    ...
    replaystore.errors.SpaceError: field 'action': row 2 has value 7, expected an integer \
in [0, 3] for Discrete(4) (2 of 4 rows out of range; rows 2, 3)
    """
    if type(space) in _COMPOSITE_TYPES:
        raise SpaceError(
            f"field {name!r}: expected a leaf space, got composite {_type_name(space)}; "
            f"use flatten_value() and check each field"
        )
    arr = _leaf_shape_check(name, space, values, batched)
    if arr.dtype.kind not in "biuf":
        raise SpaceError(
            f"field {name!r}: expected numeric values for {describe(space)}, got dtype {arr.dtype}"
        )
    rows = arr if batched else arr[np.newaxis]
    bad, low, high = _bad_mask(space, rows)
    if not bad.any():
        return
    bad_rows = np.flatnonzero(bad.reshape(len(rows), -1).any(axis=1))
    first = int(bad_rows[0])
    element_bad = bad[first]
    idx = tuple(int(i) for i in np.argwhere(element_bad)[0]) if element_bad.ndim else ()
    value = rows[first][idx]
    lo = low[idx] if np.ndim(low) else low
    hi = high[idx] if np.ndim(high) else high
    where = "value" if not batched else f"row {first}"
    if idx:
        where += f" element {idx if len(idx) > 1 else idx[0]}"
    if type(space) is MultiBinary:
        expected = "0 or 1"
    elif type(space) is Box:
        expected = f"a value in [{_fmt(lo)}, {_fmt(hi)}]"
    else:
        expected = f"an integer in [{_fmt(lo)}, {_fmt(hi)}]"
    msg = (
        f"field {name!r}: {where} has value {_fmt(value)}, "
        f"expected {expected} for {describe(space)}"
    )
    if batched:
        quoted = ", ".join(str(int(r)) for r in bad_rows[:_MAX_QUOTED])
        more = ", ..." if len(bad_rows) > _MAX_QUOTED else ""
        msg += f" ({len(bad_rows)} of {len(rows)} rows out of range; rows {quoted}{more})"
    raise SpaceError(msg)


def _bad_mask(space: Any, rows: np.ndarray) -> tuple[np.ndarray, Any, Any]:
    """Boolean mask (same shape as ``rows``) of invalid elements, and the inclusive bounds."""
    if type(space) is Box:
        low, high = space.low, space.high
        bad = (rows < low) | (rows > high)
        if rows.dtype.kind == "f" and (np.isfinite(low).any() or np.isfinite(high).any()):
            bad |= np.isnan(rows) & (np.isfinite(low) | np.isfinite(high))
        return bad, low, high
    if type(space) is MultiBinary:
        return (rows != 0) & (rows != 1), 0, 1
    if type(space) is Discrete:
        low = np.int64(space.start)
        high = np.int64(space.start + space.n - 1)
    else:  # MultiDiscrete
        low = space.start.astype(np.int64)
        high = low + space.nvec.astype(np.int64) - 1
    bad = (rows < low) | (rows > high)
    if rows.dtype.kind == "f":
        bad |= ~np.isfinite(rows) | (rows != np.floor(rows))
    return bad, low, high


# --------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------


def _describe_bound(arr: np.ndarray) -> str:
    flat = arr.reshape(-1)
    if flat.size and np.array_equal(
        arr, np.broadcast_to(flat[0], arr.shape), equal_nan=arr.dtype.kind == "f"
    ):
        return _fmt(flat[0])
    if flat.size == 0:
        return "[]"
    return f"{_fmt(flat.min())}..{_fmt(flat.max())}"


def describe(space: gymnasium.Space) -> str:
    """A short one-line description of a space, for listings.

    >>> import numpy as np
    >>> from gymnasium.spaces import Box, Dict, Discrete, MultiDiscrete
    >>> describe(Box(-1.0, 1.0, (8,)))
    'Box(-1.0, 1.0, (8,), float32)'
    >>> describe(Box(np.array([-1.0, 0.0]), np.array([1.0, np.inf]), dtype=np.float64))
    'Box(low=-1.0..0.0, high=1.0..inf, (2,), float64)'
    >>> describe(Dict({"goal": Discrete(16), "cell": MultiDiscrete([4, 4], start=[1, 1])}))
    'Dict(cell: MultiDiscrete([4, 4], start=[1, 1]), goal: Discrete(16))'
    """
    if type(space) is Box:
        low, high = _describe_bound(space.low), _describe_bound(space.high)
        if ".." in low or ".." in high:
            low, high = f"low={low}", f"high={high}"
        return f"Box({low}, {high}, {space.shape}, {space.dtype})"
    if type(space) is Discrete:
        extra = f", start={int(space.start)}" if int(space.start) != 0 else ""
        extra += f", dtype={space.dtype}" if space.dtype != np.int64 else ""
        return f"Discrete({int(space.n)}{extra})"
    if type(space) is MultiDiscrete:
        extra = f", start={space.start.tolist()}" if np.any(space.start != 0) else ""
        extra += f", dtype={space.dtype}" if space.dtype != np.int64 else ""
        return f"MultiDiscrete({space.nvec.tolist()}{extra})"
    if type(space) is MultiBinary:
        n = space.n
        return f"MultiBinary({int(n) if isinstance(n, int | np.integer) else tuple(n)})"
    if type(space) is Tuple:
        return f"Tuple({', '.join(describe(s) for s in space.spaces)})"
    if type(space) is Dict:
        return f"Dict({', '.join(f'{k}: {describe(s)}' for k, s in space.spaces.items())})"
    return repr(space)

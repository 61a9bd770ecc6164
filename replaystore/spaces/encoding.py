"""Gymnasium spaces <-> JSON-safe metadata, with dtype, shape and bounds kept exactly.

Encoding dispatches on the Python type of the space (``functools.singledispatch``, one
registration per space type); decoding dispatches on the JSON ``"type"`` string through
``_DECODERS``, a dict with one decoder per space type. Each type's encoder and decoder
sit next to each other below.

>>> from gymnasium.spaces import Discrete
>>> space_from_json(space_to_json(Discrete(3, start=1)))
Discrete(3, start=1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import singledispatch
from typing import Any

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Tuple

from replaystore.errors import SpaceError
from replaystore.spaces.supported import check_supported, no_registration, supported_list

__all__ = ["space_to_json", "space_from_json"]

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}

_Decoder = Callable[[Mapping[str, Any], str], gymnasium.Space]
#: JSON "type" name -> decoder(d, where); filled by ``@_decodes`` below, one per space type.
_DECODERS: dict[str, _Decoder] = {}


# --------------------------------------------------------------------------------------
# entry points
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


def _to_json(space: Any, where: str) -> dict[str, Any]:
    check_supported(space, where)
    return _encode(space, where)


def _from_json(d: Any, where: str) -> gymnasium.Space:
    if not isinstance(d, Mapping):
        raise SpaceError(f"{where}: expected a JSON object describing a space, got {d!r:.200}")
    kind = _require(d, "type", where)
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise SpaceError(f'{where}: expected "type" to be one of {supported_list()}, got {kind!r}')
    where = f"{where} ({kind})"
    try:
        return decoder(d, where)
    except SpaceError:
        raise
    except (TypeError, ValueError, OverflowError, AssertionError) as exc:
        # gymnasium's own validation (e.g. low > high, nvec <= 0)
        raise SpaceError(f"{where}: invalid space description ({exc})") from exc


@singledispatch
def _encode(space: Any, where: str) -> dict[str, Any]:
    """The JSON dict of ``space`` (an exactly supported type: see ``_to_json``)."""
    raise no_registration("space_to_json", space)


def _decodes(kind: str) -> Callable[[_Decoder], _Decoder]:
    """Register the decoder of the JSON ``"type"`` name ``kind``."""

    def register(decoder: _Decoder) -> _Decoder:
        _DECODERS[kind] = decoder
        return decoder

    return register


# --------------------------------------------------------------------------------------
# one encoder and one decoder per space type
# --------------------------------------------------------------------------------------


@_encode.register(Box)
def _box_to_json(space: Box, where: str) -> dict[str, Any]:
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


@_decodes("Box")
def _box_from_json(d: Mapping[str, Any], where: str) -> Box:
    shape = _shape_from_json(_require(d, "shape", where), f"{where}.shape")
    dtype = _dtype_from_json(_require(d, "dtype", where), f"{where}.dtype")
    low = _array_from_json(_require(d, "low", where), shape, dtype, f"{where}.low")
    high = _array_from_json(_require(d, "high", where), shape, dtype, f"{where}.high")
    return Box(low=low, high=high, shape=shape, dtype=dtype)


@_encode.register(Discrete)
def _discrete_to_json(space: Discrete, where: str) -> dict[str, Any]:
    return {
        "type": "Discrete",
        "n": int(space.n),
        "start": int(space.start),
        "dtype": _dtype_to_json(space.dtype),
    }


@_decodes("Discrete")
def _discrete_from_json(d: Mapping[str, Any], where: str) -> Discrete:
    return Discrete(
        _int_from_json(_require(d, "n", where), f"{where}.n"),
        start=_int_from_json(d.get("start", 0), f"{where}.start"),
        dtype=_dtype_from_json(d.get("dtype", "int64"), f"{where}.dtype"),
    )


@_encode.register(MultiDiscrete)
def _multidiscrete_to_json(space: MultiDiscrete, where: str) -> dict[str, Any]:
    return {
        "type": "MultiDiscrete",
        "nvec": space.nvec.tolist(),
        "start": space.start.tolist(),
        "dtype": _dtype_to_json(space.dtype),
    }


@_decodes("MultiDiscrete")
def _multidiscrete_from_json(d: Mapping[str, Any], where: str) -> MultiDiscrete:
    dtype = _dtype_from_json(d.get("dtype", "int64"), f"{where}.dtype")
    nvec = np.array(_require(d, "nvec", where), dtype=dtype)
    start = d.get("start")
    return MultiDiscrete(
        nvec, dtype=dtype, start=None if start is None else np.array(start, dtype=dtype)
    )


@_encode.register(MultiBinary)
def _multibinary_to_json(space: MultiBinary, where: str) -> dict[str, Any]:
    n = space.n
    n_json = int(n) if isinstance(n, int | np.integer) else [int(v) for v in n]
    return {"type": "MultiBinary", "n": n_json}


@_decodes("MultiBinary")
def _multibinary_from_json(d: Mapping[str, Any], where: str) -> MultiBinary:
    n = _require(d, "n", where)
    n = (
        _shape_from_json(n, f"{where}.n")
        if isinstance(n, list)
        else _int_from_json(n, f"{where}.n")
    )
    return MultiBinary(n)


@_encode.register(Tuple)
def _tuple_to_json(space: Tuple, where: str) -> dict[str, Any]:
    return {
        "type": "Tuple",
        "spaces": [_to_json(s, f"{where}[{i}]") for i, s in enumerate(space.spaces)],
    }


@_decodes("Tuple")
def _tuple_from_json(d: Mapping[str, Any], where: str) -> Tuple:
    subs = _subspaces_from_json(d, where)
    return Tuple([_from_json(s, f"{where}[{i}]") for i, s in enumerate(subs)])


@_encode.register(Dict)
def _dict_to_json(space: Dict, where: str) -> dict[str, Any]:
    # a list of [key, space] pairs, so key order survives any JSON tool.
    pairs = []
    for key, sub in space.spaces.items():
        if not isinstance(key, str):
            raise SpaceError(f"{where}: expected string Dict keys, got {key!r}")
        pairs.append([key, _to_json(sub, f"{where}[{key!r}]")])
    return {"type": "Dict", "spaces": pairs}


@_decodes("Dict")
def _dict_from_json(d: Mapping[str, Any], where: str) -> Dict:
    subs = _subspaces_from_json(d, where)
    pairs = []
    for item in subs:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise SpaceError(f"{where}.spaces: expected [key, space] pairs, got {item!r:.200}")
        pairs.append((item[0], _from_json(item[1], f"{where}[{item[0]!r}]")))
    if len({k for k, _ in pairs}) != len(pairs):
        raise SpaceError(f"{where}.spaces: expected unique keys, got {[k for k, _ in pairs]}")
    return Dict(pairs)  # a sequence of pairs keeps its order (a plain dict is sorted)


# --------------------------------------------------------------------------------------
# JSON values
# --------------------------------------------------------------------------------------


def _subspaces_from_json(d: Mapping[str, Any], where: str) -> list[Any]:
    subs = _require(d, "spaces", where)
    if not isinstance(subs, list):
        raise SpaceError(f"{where}.spaces: expected a list, got {subs!r:.200}")
    return subs


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

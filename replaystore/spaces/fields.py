"""Storage fields: composite spaces split into named leaves, values split and joined.

A leaf space (``Box``, ``Discrete``, ``MultiDiscrete``, ``MultiBinary``) is one storage
array; ``Dict`` keys and ``Tuple`` indices join the field name with ``"."``. Each
operation below is a ``functools.singledispatch`` function with one registration per
space type, called only after the exact-type guard of :mod:`replaystore.spaces.supported`.

>>> from gymnasium.spaces import Discrete, Tuple
>>> space = Tuple([Discrete(3), Discrete(2)])
>>> fields = flatten_value("act", space, (2, 1))
>>> sorted(fields), unflatten_value("act", space, fields)
(['act.0', 'act.1'], (array(2), array(1)))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import singledispatch
from typing import Any

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Tuple

from replaystore.errors import SpaceError
from replaystore.spaces.supported import (
    check_key,
    check_supported,
    leaf_list,
    no_registration,
    type_name,
)
from replaystore.spaces.text import describe

__all__ = ["field_spec", "flatten_space", "flatten_value", "unflatten_value"]


# --------------------------------------------------------------------------------------
# field_spec
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
    check_supported(space, "field_spec")
    return _field_spec(space)


@singledispatch
def _field_spec(space: Any) -> tuple[np.dtype, tuple[int, ...]]:
    raise no_registration("field_spec", space)


@_field_spec.register(Box)
def _box_field_spec(space: Box) -> tuple[np.dtype, tuple[int, ...]]:
    return np.dtype(space.dtype), tuple(space.shape)


@_field_spec.register(Discrete)
def _discrete_field_spec(space: Discrete) -> tuple[np.dtype, tuple[int, ...]]:
    return np.dtype(space.dtype), ()


@_field_spec.register(MultiDiscrete)
def _multidiscrete_field_spec(space: MultiDiscrete) -> tuple[np.dtype, tuple[int, ...]]:
    return np.dtype(space.dtype), tuple(space.nvec.shape)


@_field_spec.register(MultiBinary)
def _multibinary_field_spec(space: MultiBinary) -> tuple[np.dtype, tuple[int, ...]]:
    return np.dtype(space.dtype), tuple(space.shape)  # int8


@_field_spec.register(Tuple)
@_field_spec.register(Dict)
def _composite_field_spec(space: Tuple | Dict) -> tuple[np.dtype, tuple[int, ...]]:
    raise SpaceError(
        f"field_spec: expected a leaf space ({leaf_list()}), "
        f"got composite {type_name(space)}; use flatten_space() to split it into fields"
    )


# --------------------------------------------------------------------------------------
# flatten_space
# --------------------------------------------------------------------------------------


def flatten_space(name: str, space: gymnasium.Space) -> list[tuple[str, gymnasium.Space]]:
    """Named leaf fields of ``space``: ``Dict`` keys and ``Tuple`` indices join with ``"."``.

    >>> from gymnasium.spaces import Box, Dict, Discrete, Tuple
    >>> space = Dict({"a": Tuple([Discrete(2), Box(0, 1)]), "b": Discrete(3)})
    >>> [name for name, _ in flatten_space("obs", space)]
    ['obs.a.0', 'obs.a.1', 'obs.b']
    """
    check_supported(space, f"field {name!r}")
    return _flatten_space(space, name)


@singledispatch
def _flatten_space(space: Any, name: str) -> list[tuple[str, gymnasium.Space]]:
    raise no_registration("flatten_space", space)


@_flatten_space.register(Box)
@_flatten_space.register(Discrete)
@_flatten_space.register(MultiDiscrete)
@_flatten_space.register(MultiBinary)
def _leaf_flatten_space(space: gymnasium.Space, name: str) -> list[tuple[str, gymnasium.Space]]:
    return [(name, space)]


@_flatten_space.register(Tuple)
def _tuple_flatten_space(space: Tuple, name: str) -> list[tuple[str, gymnasium.Space]]:
    out: list[tuple[str, gymnasium.Space]] = []
    for i, sub in enumerate(space.spaces):
        out.extend(flatten_space(f"{name}.{i}", sub))
    return out


@_flatten_space.register(Dict)
def _dict_flatten_space(space: Dict, name: str) -> list[tuple[str, gymnasium.Space]]:
    out: list[tuple[str, gymnasium.Space]] = []
    for key, sub in space.spaces.items():
        check_key(key, f"field {name!r}")
        out.extend(flatten_space(f"{name}.{key}", sub))
    return out


# --------------------------------------------------------------------------------------
# flatten_value
# --------------------------------------------------------------------------------------


def leaf_shape_check(name: str, space: Any, value: Any, batched: bool) -> np.ndarray:
    """``value`` as an array (not cast) if its shape fits the leaf ``space``, else raise."""
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
    check_supported(space, f"field {name!r}")
    _flatten_into(space, name, value, batched, out)


@singledispatch
def _flatten_into(
    space: Any, name: str, value: Any, batched: bool, out: dict[str, np.ndarray]
) -> None:
    raise no_registration("flatten_value", space)


@_flatten_into.register(Box)
@_flatten_into.register(Discrete)
@_flatten_into.register(MultiDiscrete)
@_flatten_into.register(MultiBinary)
def _leaf_flatten_into(
    space: gymnasium.Space, name: str, value: Any, batched: bool, out: dict[str, np.ndarray]
) -> None:
    out[name] = leaf_shape_check(name, space, value, batched)


@_flatten_into.register(Tuple)
def _tuple_flatten_into(
    space: Tuple, name: str, value: Any, batched: bool, out: dict[str, np.ndarray]
) -> None:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise SpaceError(
            f"field {name!r}: expected a tuple of {len(space.spaces)} values, "
            f"got {type_name(value)}"
        )
    if len(value) != len(space.spaces):
        raise SpaceError(
            f"field {name!r}: expected a tuple of {len(space.spaces)} values, got {len(value)}"
        )
    for i, (sub, v) in enumerate(zip(space.spaces, value, strict=True)):
        _flatten_value_into(f"{name}.{i}", sub, v, batched, out)


@_flatten_into.register(Dict)
def _dict_flatten_into(
    space: Dict, name: str, value: Any, batched: bool, out: dict[str, np.ndarray]
) -> None:
    if not isinstance(value, Mapping):
        raise SpaceError(
            f"field {name!r}: expected a mapping with keys {list(space.spaces)}, "
            f"got {type_name(value)}"
        )
    missing = [k for k in space.spaces if k not in value]
    extra = [k for k in value if k not in space.spaces]
    if missing or extra:
        raise SpaceError(
            f"field {name!r}: expected keys {list(space.spaces)}, got {list(value)} "
            f"(missing {missing}, unexpected {extra})"
        )
    for key, sub in space.spaces.items():
        check_key(key, f"field {name!r}")
        _flatten_value_into(f"{name}.{key}", sub, value[key], batched, out)


# --------------------------------------------------------------------------------------
# unflatten_value
# --------------------------------------------------------------------------------------


def unflatten_value(
    name: str, space: gymnasium.Space, fields: Mapping[str, Any], *, batched: bool = False
) -> Any:
    """Inverse of :func:`flatten_value`: ``Dict`` -> dict (space order), ``Tuple`` -> tuple.

    Extra entries in ``fields`` (other fields of the store) are ignored.

    >>> from gymnasium.spaces import Box, Discrete, Tuple
    >>> unflatten_value("obs", Tuple([Discrete(3), Discrete(2)]), {"obs.0": 1, "obs.1": 0})
    (1, 0)
    """
    check_supported(space, f"field {name!r}")
    return _unflatten(space, name, fields, batched)


@singledispatch
def _unflatten(space: Any, name: str, fields: Mapping[str, Any], batched: bool) -> Any:
    raise no_registration("unflatten_value", space)


@_unflatten.register(Box)
@_unflatten.register(Discrete)
@_unflatten.register(MultiDiscrete)
@_unflatten.register(MultiBinary)
def _leaf_unflatten(
    space: gymnasium.Space, name: str, fields: Mapping[str, Any], batched: bool
) -> Any:
    if name not in fields:
        raise SpaceError(
            f"field {name!r}: expected it among the given fields, got {sorted(fields)}"
        )
    value = fields[name]
    leaf_shape_check(name, space, value, batched)
    return value


@_unflatten.register(Tuple)
def _tuple_unflatten(space: Tuple, name: str, fields: Mapping[str, Any], batched: bool) -> Any:
    return tuple(
        unflatten_value(f"{name}.{i}", sub, fields, batched=batched)
        for i, sub in enumerate(space.spaces)
    )


@_unflatten.register(Dict)
def _dict_unflatten(space: Dict, name: str, fields: Mapping[str, Any], batched: bool) -> Any:
    return {
        key: unflatten_value(f"{name}.{check_key(key, name)}", sub, fields, batched=batched)
        for key, sub in space.spaces.items()
    }

"""Exact structural equality of spaces (stricter than gymnasium's ``==``).

>>> from gymnasium.spaces import Dict, Discrete
>>> a = Dict([("x", Discrete(2)), ("y", Discrete(3))])
>>> b = Dict([("y", Discrete(3)), ("x", Discrete(2))])
>>> a == b, space_equal(a, b)
(True, False)
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Tuple

from replaystore.spaces.supported import is_supported, no_registration

__all__ = ["space_equal"]


def space_equal(a: gymnasium.Space, b: gymnasium.Space) -> bool:
    """Exact structural equality: type, dtype, shape, bounds, ``n``/``start``/``nvec``, order.

    Stricter than gymnasium's ``==``, which compares Box bounds with ``np.allclose`` and
    ignores the key order of ``Dict`` spaces. Two objects of the same type that is not an
    exactly supported space type compare with ``==``.

    >>> from gymnasium.spaces import Box
    >>> Box(0.0, 1e-9, (1,)) == Box(0.0, 0.0, (1,))
    True
    >>> space_equal(Box(0.0, 1e-9, (1,)), Box(0.0, 0.0, (1,)))
    False
    """
    if type(a) is not type(b):
        return False
    if not is_supported(a):
        return bool(a == b)
    return _equal(a, b)


@singledispatch
def _equal(a: Any, b: Any) -> bool:
    """Equality of ``a`` and ``b``, two spaces of the same, exactly supported type."""
    raise no_registration("space_equal", a)


@_equal.register(Box)
def _box_equal(a: Box, b: Box) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(a.low, b.low, equal_nan=a.dtype.kind == "f")
        and np.array_equal(a.high, b.high, equal_nan=a.dtype.kind == "f")
    )


@_equal.register(Discrete)
def _discrete_equal(a: Discrete, b: Discrete) -> bool:
    return a.dtype == b.dtype and int(a.n) == int(b.n) and int(a.start) == int(b.start)


@_equal.register(MultiDiscrete)
def _multidiscrete_equal(a: MultiDiscrete, b: MultiDiscrete) -> bool:
    return (
        a.dtype == b.dtype and np.array_equal(a.nvec, b.nvec) and np.array_equal(a.start, b.start)
    )


@_equal.register(MultiBinary)
def _multibinary_equal(a: MultiBinary, b: MultiBinary) -> bool:
    return a.shape == b.shape


@_equal.register(Tuple)
def _tuple_equal(a: Tuple, b: Tuple) -> bool:
    return len(a.spaces) == len(b.spaces) and all(
        space_equal(x, y) for x, y in zip(a.spaces, b.spaces, strict=True)
    )


@_equal.register(Dict)
def _dict_equal(a: Dict, b: Dict) -> bool:
    return list(a.spaces) == list(b.spaces) and all(
        space_equal(a.spaces[k], b.spaces[k]) for k in a.spaces
    )

"""Value checks: is every value of a batch inside its leaf space?

Two ``functools.singledispatch`` functions carry the space-type-specific part, with one
registration per leaf type: ``_out_of_range`` (which elements are invalid, and the
bounds) and ``_expected`` (how the valid range reads in a message).

>>> import numpy as np
>>> from gymnasium.spaces import MultiBinary
>>> check_values("mask", MultiBinary(3), np.array([[0, 1, 1], [1, 0, 2]]))
Traceback (most recent call last):
...
replaystore.errors.SpaceError: field 'mask': row 1 element 2 has value 2, expected 0 or 1 \
for MultiBinary(3) (1 of 2 rows out of range; rows 1)
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Discrete, MultiBinary, MultiDiscrete

from replaystore.errors import SpaceError
from replaystore.spaces.fields import leaf_shape_check
from replaystore.spaces.supported import COMPOSITE_TYPES, no_registration, type_name
from replaystore.spaces.text import describe, format_scalar

__all__ = ["check_values"]

# How many offending rows an error message quotes at most.
_MAX_QUOTED = 3


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
    # Exact types, as everywhere: anything unsupported is refused by field_spec below.
    if type(space) in COMPOSITE_TYPES:
        raise SpaceError(
            f"field {name!r}: expected a leaf space, got composite {type_name(space)}; "
            f"use flatten_value() and check each field"
        )
    arr = leaf_shape_check(name, space, values, batched)
    if arr.dtype.kind not in "biuf":
        raise SpaceError(
            f"field {name!r}: expected numeric values for {describe(space)}, got dtype {arr.dtype}"
        )
    rows = arr if batched else arr[np.newaxis]
    bad, low, high = _out_of_range(space, rows)
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
    msg = (
        f"field {name!r}: {where} has value {format_scalar(value)}, "
        f"expected {_expected(space, lo, hi)} for {describe(space)}"
    )
    if batched:
        quoted = ", ".join(str(int(r)) for r in bad_rows[:_MAX_QUOTED])
        more = ", ..." if len(bad_rows) > _MAX_QUOTED else ""
        msg += f" ({len(bad_rows)} of {len(rows)} rows out of range; rows {quoted}{more})"
    raise SpaceError(msg)


# --------------------------------------------------------------------------------------
# invalid elements
# --------------------------------------------------------------------------------------


@singledispatch
def _out_of_range(space: Any, rows: np.ndarray) -> tuple[np.ndarray, Any, Any]:
    """Boolean mask (same shape as ``rows``) of invalid elements, and the inclusive bounds."""
    raise no_registration("check_values", space)


@_out_of_range.register(Box)
def _box_out_of_range(space: Box, rows: np.ndarray) -> tuple[np.ndarray, Any, Any]:
    low, high = space.low, space.high
    bad = (rows < low) | (rows > high)
    if rows.dtype.kind == "f" and (np.isfinite(low).any() or np.isfinite(high).any()):
        bad |= np.isnan(rows) & (np.isfinite(low) | np.isfinite(high))
    return bad, low, high


@_out_of_range.register(Discrete)
def _discrete_out_of_range(space: Discrete, rows: np.ndarray) -> tuple[np.ndarray, Any, Any]:
    low = np.int64(space.start)
    high = np.int64(space.start + space.n - 1)
    return _integers_out_of_range(rows, low, high), low, high


@_out_of_range.register(MultiDiscrete)
def _multidiscrete_out_of_range(
    space: MultiDiscrete, rows: np.ndarray
) -> tuple[np.ndarray, Any, Any]:
    low = space.start.astype(np.int64)
    high = low + space.nvec.astype(np.int64) - 1
    return _integers_out_of_range(rows, low, high), low, high


@_out_of_range.register(MultiBinary)
def _multibinary_out_of_range(space: MultiBinary, rows: np.ndarray) -> tuple[np.ndarray, Any, Any]:
    return (rows != 0) & (rows != 1), 0, 1


def _integers_out_of_range(rows: np.ndarray, low: Any, high: Any) -> np.ndarray:
    """Elements outside ``[low, high]`` or, for float rows, not a finite whole number."""
    bad = (rows < low) | (rows > high)
    if rows.dtype.kind == "f":
        bad |= ~np.isfinite(rows) | (rows != np.floor(rows))
    return bad


# --------------------------------------------------------------------------------------
# valid range, as text
# --------------------------------------------------------------------------------------


@singledispatch
def _expected(space: Any, lo: Any, hi: Any) -> str:
    """What a valid element of ``space`` is, given its bounds ``lo`` and ``hi``."""
    raise no_registration("check_values", space)


@_expected.register(Box)
def _box_expected(space: Box, lo: Any, hi: Any) -> str:
    return f"a value in [{format_scalar(lo)}, {format_scalar(hi)}]"


@_expected.register(Discrete)
@_expected.register(MultiDiscrete)
def _integer_expected(space: Discrete | MultiDiscrete, lo: Any, hi: Any) -> str:
    return f"an integer in [{format_scalar(lo)}, {format_scalar(hi)}]"


@_expected.register(MultiBinary)
def _multibinary_expected(space: MultiBinary, lo: Any, hi: Any) -> str:
    return "0 or 1"

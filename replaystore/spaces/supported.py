"""The space types a store accepts, and the exact-type guard in front of every dispatch.

The type-specific functions of this package are ``functools.singledispatch`` functions,
which look a registration up along the MRO: a subclass of ``Box`` would reach the ``Box``
registration. Subclasses are refused on purpose (they would come back from JSON as their
base class, so the round trip would not be exact), so each public entry point calls
:func:`check_supported` (or :func:`is_supported`) before it dispatches.

Supporting a new space type means adding it to :data:`LEAF_TYPES` or
:data:`COMPOSITE_TYPES` and registering it with every dispatching function (``grep
'.register('`` lists them) and with the decoders of :mod:`replaystore.spaces.encoding`.

>>> from gymnasium.spaces import Box
>>> class MyBox(Box):
...     pass
>>> is_supported(Box(0, 1)), is_supported(MyBox(0, 1))
(True, False)
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Tuple

from replaystore.errors import SpaceError

#: Space types stored as one array each, in the order they are listed in errors.
LEAF_TYPES: tuple[type[gymnasium.Space], ...] = (Box, Discrete, MultiDiscrete, MultiBinary)
#: Space types split into named leaf fields (``Dict`` keys, ``Tuple`` indices).
COMPOSITE_TYPES: tuple[type[gymnasium.Space], ...] = (Tuple, Dict)
SUPPORTED_TYPES: tuple[type[gymnasium.Space], ...] = LEAF_TYPES + COMPOSITE_TYPES

#: Names of the space types that can be stored, in the order they are listed in errors.
SUPPORTED_SPACES: tuple[str, ...] = tuple(cls.__name__ for cls in SUPPORTED_TYPES)

_KEY_RE = re.compile(r"[A-Za-z0-9_]+")


def type_name(obj: Any) -> str:
    """The class name of ``obj``, for messages."""
    return type(obj).__name__


def supported_list() -> str:
    """``"Box, Discrete, ..."``: the supported type names, for messages."""
    return ", ".join(SUPPORTED_SPACES)


def leaf_list() -> str:
    """``"Box, Discrete, MultiDiscrete, MultiBinary"``: the leaf type names, for messages."""
    return ", ".join(cls.__name__ for cls in LEAF_TYPES)


def is_supported(space: Any) -> bool:
    """True when ``space`` is exactly (not a subclass of) one of :data:`SUPPORTED_TYPES`."""
    return type(space) in SUPPORTED_TYPES


def check_supported(space: Any, where: str) -> None:
    """Raise SpaceError unless ``space`` is exactly one of the supported gymnasium types.

    Subclasses are refused on purpose: they would come back from JSON as their base
    class, so the round trip would not be exact.
    """
    if not is_supported(space):
        kind = (
            f"space type {type_name(space)}"
            if isinstance(space, gymnasium.Space)
            else f"a non-space object of type {type_name(space)}"
        )
        raise SpaceError(f"{where}: expected one of {supported_list()}, got {kind}")


def check_key(key: Any, where: str) -> str:
    """``key`` if it is a valid ``Dict`` key (it becomes part of a field name), else raise."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise SpaceError(f"{where}: Dict keys must be strings matching [A-Za-z0-9_]+, got {key!r}")
    return key


def no_registration(operation: str, space: Any) -> NotImplementedError:
    """The error a dispatching function's fallback raises for a type nobody registered.

    Unreachable for the supported types; it means a registration is missing.
    """
    return NotImplementedError(f"{operation}: no registration for space type {type_name(space)}")

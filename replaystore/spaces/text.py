"""One-line descriptions of spaces, for listings and error messages.

>>> from gymnasium.spaces import Discrete, Tuple
>>> describe(Tuple([Discrete(2), Discrete(3, start=1)]))
'Tuple(Discrete(2), Discrete(3, start=1))'
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Tuple

from replaystore.spaces.supported import is_supported, no_registration

__all__ = ["describe"]


def format_scalar(x: Any) -> str:
    """Short text for a numpy or Python scalar (``str`` of numpy scalars is shortest-repr)."""
    return str(x)


def describe(space: gymnasium.Space) -> str:
    """A short one-line description of a space, for listings.

    Anything but an exactly supported space type is described by its ``repr``.

    >>> import numpy as np
    >>> from gymnasium.spaces import Box, Dict, Discrete, MultiDiscrete
    >>> describe(Box(-1.0, 1.0, (8,)))
    'Box(-1.0, 1.0, (8,), float32)'
    >>> describe(Box(np.array([-1.0, 0.0]), np.array([1.0, np.inf]), dtype=np.float64))
    'Box(low=-1.0..0.0, high=1.0..inf, (2,), float64)'
    >>> describe(Dict({"goal": Discrete(16), "cell": MultiDiscrete([4, 4], start=[1, 1])}))
    'Dict(cell: MultiDiscrete([4, 4], start=[1, 1]), goal: Discrete(16))'
    """
    if not is_supported(space):
        return repr(space)
    return _describe(space)


@singledispatch
def _describe(space: Any) -> str:
    raise no_registration("describe", space)


@_describe.register(Box)
def _describe_box(space: Box) -> str:
    low, high = _describe_bound(space.low), _describe_bound(space.high)
    if ".." in low or ".." in high:
        low, high = f"low={low}", f"high={high}"
    return f"Box({low}, {high}, {space.shape}, {space.dtype})"


@_describe.register(Discrete)
def _describe_discrete(space: Discrete) -> str:
    extra = f", start={int(space.start)}" if int(space.start) != 0 else ""
    extra += f", dtype={space.dtype}" if space.dtype != np.int64 else ""
    return f"Discrete({int(space.n)}{extra})"


@_describe.register(MultiDiscrete)
def _describe_multidiscrete(space: MultiDiscrete) -> str:
    extra = f", start={space.start.tolist()}" if np.any(space.start != 0) else ""
    extra += f", dtype={space.dtype}" if space.dtype != np.int64 else ""
    return f"MultiDiscrete({space.nvec.tolist()}{extra})"


@_describe.register(MultiBinary)
def _describe_multibinary(space: MultiBinary) -> str:
    n = space.n
    return f"MultiBinary({int(n) if isinstance(n, int | np.integer) else tuple(n)})"


@_describe.register(Tuple)
def _describe_tuple(space: Tuple) -> str:
    return f"Tuple({', '.join(describe(s) for s in space.spaces)})"


@_describe.register(Dict)
def _describe_dict(space: Dict) -> str:
    return f"Dict({', '.join(f'{k}: {describe(s)}' for k, s in space.spaces.items())})"


def _describe_bound(arr: np.ndarray) -> str:
    flat = arr.reshape(-1)
    if flat.size and np.array_equal(
        arr, np.broadcast_to(flat[0], arr.shape), equal_nan=arr.dtype.kind == "f"
    ):
        return format_scalar(flat[0])
    if flat.size == 0:
        return "[]"
    return f"{format_scalar(flat.min())}..{format_scalar(flat.max())}"

"""Checks and casts of incoming rows against a field's dtype and a space's values."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from ..errors import SchemaError
from .schema import Field

__all__: list[str] = []  # internal helpers of ReplayStore


def _copy_rows(arrays: dict[str, np.ndarray], a: int, b: int) -> dict[str, np.ndarray]:
    if arrays["reward"].ndim == 0:
        return {k: np.asarray(v)[None].copy() for k, v in arrays.items()}
    return {k: np.array(v[a:b]) for k, v in arrays.items()}


def _fast_check(space: gym.Space):
    """A cheap test that values certainly fit ``space`` (False means: check properly)."""
    if isinstance(space, gym.spaces.Box):
        low, high = space.low, space.high
        if np.all(np.isneginf(low)) and np.all(np.isposinf(high)):
            return lambda a: True  # NaN and inf fit an unbounded Box
        return lambda a: bool(((a >= low) & (a <= high)).all())
    if isinstance(space, gym.spaces.Discrete):
        lo, hi = int(space.start), int(space.start) + int(space.n)

        def ok(a: np.ndarray) -> bool:
            if a.ndim == 0:
                return lo <= int(a) < hi
            return a.size == 0 or (lo <= int(a.min()) and int(a.max()) < hi)

        return ok
    return None


def _cast(arr: np.ndarray, f: Field, path: Path) -> np.ndarray:
    src = arr.dtype
    dst = f.dtype
    if src == dst:
        return arr
    if src.kind == "O" or src.kind not in "biuf":
        raise SchemaError(f"{path}: field {f.name!r} got values of dtype {src}; expected {dst}")
    if dst.kind == "b":
        if src.kind in "iu" and arr.size and not np.isin(arr, (0, 1)).all():
            raise SchemaError(
                f"{path}: field {f.name!r} is bool; got integers other than 0/1 (dtype {src})"
            )
        if src.kind == "f":
            raise SchemaError(f"{path}: field {f.name!r} is bool; got floats (dtype {src})")
        return arr.astype(dst)
    if dst.kind in "iu":
        if src.kind == "f":
            raise SchemaError(
                f"{path}: field {f.name!r} has dtype {dst}; got floats (dtype {src}), which "
                "cannot be cast safely to integers"
            )
        if src.kind in "iu" and not np.can_cast(src, dst, "safe") and arr.size:
            info = np.iinfo(dst)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise SchemaError(
                    f"{path}: field {f.name!r} has dtype {dst}; values {lo}..{hi} do not fit "
                    f"its range {info.min}..{info.max}"
                )
        return arr.astype(dst)
    # float destination: any bool/int/float source is accepted (float64 -> float32 rounds)
    return arr.astype(dst)


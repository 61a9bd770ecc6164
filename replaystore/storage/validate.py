"""Checks and casts of incoming rows: names, shapes, safe casts, values against spaces.

>>> import gymnasium as gym
>>> from replaystore.storage.schema import Field, Schema
>>> v = RowValidator(Schema([Field("reward", "float32")]), {}, where="s")
>>> v.rows({"reward": [1, 2]}, batched=True)["reward"].dtype
dtype('float32')
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from .. import spaces as _spaces
from ..errors import SchemaError
from .schema import Field, Schema

__all__ = ["RowValidator", "OPTIONAL_FIELDS"]

#: fields a row may omit (they are filled in): both or neither
OPTIONAL_FIELDS = ("episode", "step")


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



class RowValidator:
    """Validates rows for one store: known fields, shapes, safe casts, values in their
    spaces (``bounds`` decides what a Box bound violation does), finite rewards."""

    def __init__(self, schema: Schema, leaf_spaces: Mapping[str, gym.Space], *, where: Any,
                 bounds: str = "warn", nonfinite_rewards: str = "error") -> None:
        if bounds not in ("error", "warn", "ignore"):
            raise SchemaError(f"{where}: bounds must be 'error', 'warn' or 'ignore', got {bounds!r}")
        if nonfinite_rewards not in ("error", "allow"):
            raise SchemaError(
                f"{where}: nonfinite_rewards must be 'error' or 'allow', got {nonfinite_rewards!r}"
            )
        self.schema = schema
        self.where = where
        self.bounds = bounds
        self.nonfinite_rewards = nonfinite_rewards
        self.leaf_spaces = dict(leaf_spaces)
        self._fast_ok = {name: _fast_check(sp) for name, sp in self.leaf_spaces.items()}
        self._warned_bounds: set[str] = set()

    def rows(self, row: Mapping[str, Any], *, batched: bool) -> dict[str, np.ndarray]:
        """``row`` (one row, or a batch with a leading axis) checked and cast to the schema."""
        self._check_names(row)
        out: dict[str, np.ndarray] = {}
        n = None
        for name, value in row.items():
            f = self.schema[name]
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            if batched:
                n = self._check_batch_shape(f, arr, n)
            elif arr.shape != f.shape:
                raise SchemaError(f"{self.where}: field {name!r} has shape {arr.shape}; expected {f.shape}")
            out[name] = _cast(arr, f, self.where)
        self._check_values(out, batched)
        return out

    def _check_names(self, row: Mapping[str, Any]) -> None:
        names = self.schema.names
        unknown = sorted(set(row) - set(names))
        if unknown:
            raise SchemaError(f"{self.where}: unknown field(s) {unknown}; the store has fields {list(names)}")
        missing = [n for n in names if n not in row and n not in OPTIONAL_FIELDS]
        if missing:
            raise SchemaError(f"{self.where}: missing field(s) {missing}; every row needs a value for each")
        given_opt = [n for n in OPTIONAL_FIELDS if n in row]
        if len(given_opt) == 1:
            raise SchemaError(
                f"{self.where}: got {given_opt[0]!r} without {({'episode', 'step'} - set(given_opt)).pop()!r};"
                " give both or neither (then they are filled in)"
            )

    def _check_batch_shape(self, f: Field, arr: np.ndarray, n: int | None) -> int:
        if arr.ndim != len(f.shape) + 1 or arr.shape[1:] != f.shape:
            raise SchemaError(
                f"{self.where}: field {f.name!r} has shape {arr.shape}; expected (n, {', '.join(map(str, f.shape))})"
                .replace(", )", ")")
            )
        if n is not None and arr.shape[0] != n:
            raise SchemaError(
                f"{self.where}: field {f.name!r} has {arr.shape[0]} rows but other fields have {n}; "
                "every field of a batch needs the same number of rows"
            )
        return arr.shape[0]

    def _check_values(self, arrays: dict[str, np.ndarray], batched: bool) -> None:
        """Values must fit their spaces: discrete ones always, Box bounds per ``bounds``."""
        r = arrays.get("reward")
        if r is not None and self.nonfinite_rewards == "error" and r.dtype.kind == "f":
            bad = ~np.isfinite(r)
            if bad.any():
                i = int(np.flatnonzero(np.atleast_1d(bad))[0])
                raise SchemaError(
                    f"{self.where}: field 'reward' has a non-finite value ({np.atleast_1d(r)[i]}) at row {i} "
                    "of the batch; rewards must be finite (open with nonfinite_rewards='allow' to keep them)"
                )
        for name, space in self.leaf_spaces.items():
            arr = arrays.get(name)
            if arr is None:
                continue
            is_box = isinstance(space, gym.spaces.Box)
            if is_box and self.bounds == "ignore":
                continue
            fast = self._fast_ok[name]
            if fast is not None and fast(arr):
                continue
            try:
                _spaces.check_values(name, space, arr, batched=batched)
            except ValueError as e:
                if is_box and self.bounds == "warn":
                    if name not in self._warned_bounds:
                        self._warned_bounds.add(name)
                        warnings.warn(f"{self.where}: {e} (stored anyway; further warnings for "
                                      f"{name!r} suppressed)", stacklevel=5)
                    continue
                raise type(e)(f"{self.where}: {e}") from None

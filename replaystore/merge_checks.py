"""Whether stores can be merged: their spaces, fields and environments (see :func:`replaystore.merge.merge`).

:func:`differences` lists what keeps one store's rows out of a store like another;
:func:`check_compatible` and :func:`check_envs` raise the errors :func:`~replaystore.merge.merge`
documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from . import spaces as _spaces
from .envs import env_differences
from .errors import EnvError, SchemaError
from .storage import ReplayStore

__all__: list[str] = []


def _space_diff(a, b) -> str:
    """How space ``a`` differs from ``b``, in words."""
    d = _spaces.describe
    from gymnasium.spaces import Box, Dict, Tuple

    if type(a) is not type(b):
        return f"{d(a)} vs {d(b)}"
    if type(a) is Box:
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{d(a)} vs {d(b)}"
        for what, x, y in (("low", a.low, b.low), ("high", a.high, b.high)):
            ne = ~((x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else (x == y))
            if ne.any():
                i = tuple(int(v) for v in np.argwhere(ne)[0])
                at = f"[{', '.join(map(str, i))}]" if i else ""
                return f"{d(a)} vs {d(b)}: {what}{at} is {x[i]} vs {y[i]} ({int(ne.sum())} bound(s) differ)"
        return f"{d(a)} vs {d(b)}"  # pragma: no cover - equal Boxes are not compared
    if type(a) is Dict:
        ka, kb = list(a.spaces), list(b.spaces)
        if ka != kb:
            return f"keys {ka} vs {kb}"
        for k in ka:
            if not _spaces.space_equal(a.spaces[k], b.spaces[k]):
                return f"key {k!r}: {_space_diff(a.spaces[k], b.spaces[k])}"
    if type(a) is Tuple:
        if len(a.spaces) != len(b.spaces):
            return f"{len(a.spaces)} vs {len(b.spaces)} elements: {d(a)} vs {d(b)}"
        for i, (x, y) in enumerate(zip(a.spaces, b.spaces, strict=True)):
            if not _spaces.space_equal(x, y):
                return f"element {i}: {_space_diff(x, y)}"
    return f"{d(a)} vs {d(b)}"


def differences(ref: ReplayStore, other: ReplayStore) -> list[str]:
    """Everything that keeps ``other``'s rows out of a store like ``ref``, as phrases."""
    out = []
    for role, sa, sb in (
        ("observation", ref.observation_space, other.observation_space),
        ("action", ref.action_space, other.action_space),
    ):
        if sa is None and sb is None:
            continue
        if sa is None or sb is None:
            out.append(f"{role} space {'(none recorded)' if sa is None else _spaces.describe(sa)} vs "
                       f"{'(none recorded)' if sb is None else _spaces.describe(sb)}")
        elif not _spaces.space_equal(sa, sb):
            out.append(f"{role} space {_space_diff(sa, sb)}")
    spaces_differ = bool(out)
    names_a, names_b = set(ref.schema.names), set(other.schema.names)
    if names_b - names_a:
        out.append(f"field(s) {sorted(names_b - names_a)} only in {other.path}")
    if names_a - names_b:
        out.append(f"field(s) {sorted(names_a - names_b)} missing from {other.path}")
    for name in ref.schema.names:
        if name not in names_b:
            continue
        fa, fb = ref.schema[name], other.schema[name]
        if fa.dtype != fb.dtype:
            out.append(f"field {name!r} dtype {fa.dtype.name} vs {fb.dtype.name}")
        if fa.shape != fb.shape:
            out.append(f"field {name!r} shape {fa.shape} vs {fb.shape}")
        if fa.dtype == fb.dtype and fa.shape == fb.shape and not spaces_differ:
            # a leaf's space follows from the store's spaces: only compare when those agree
            for key in ("role", "space"):
                if fa.meta.get(key) != fb.meta.get(key):
                    out.append(f"field {name!r} {key} {json.dumps(fa.meta.get(key))} vs "
                               f"{json.dumps(fb.meta.get(key))}")
    return out


def _env_str(env: Mapping) -> str:
    if not env.get("id"):
        return "(none recorded)" if not env.get("mixed") else "(mixed)"
    kw = env.get("kwargs")
    return env["id"] + (f" {json.dumps(kw, sort_keys=True)}" if kw else "")


def check_compatible(ref: ReplayStore, srcs: list[ReplayStore], *, into: bool) -> None:
    """Raise :class:`SchemaError` for the first input whose rows cannot go into a store like
    ``ref`` (``into``: ``ref`` is an existing OUT, not the first input)."""
    for s in srcs:
        if s is ref:
            continue
        diff = differences(ref, s)
        if diff:
            raise SchemaError(
                f"cannot merge {s.path} {'into' if into else 'with'} {ref.path}: "
                f"{'; '.join(diff)} ({ref.path} vs {s.path})"
            )


def check_envs(srcs: list[ReplayStore], ref: ReplayStore, dst: ReplayStore | None,
               allow_different_env: bool) -> tuple[list[dict], dict, bool]:
    """The inputs' envs, the env they are compared with, and whether they differ from it.

    OUT (``dst``, when appending) counts unless it has never held a row and records none;
    different envs raise :class:`EnvError` unless ``allow_different_env``. Env kwargs are
    compared with the env's defaults filled in (:func:`replaystore.envs.env_differences`).
    """
    envs = [s.env_info for s in srcs]
    env_ref = ref.env_info
    env_from = ref
    if dst is not None and dst.total == 0 and not env_ref.get("id"):
        env_ref, env_from = envs[0], srcs[0]
    mixed = False
    for s, e in zip(srcs, envs, strict=True):
        if env_differences(env_ref, e):
            if not allow_different_env:
                what = (f"cannot merge {s.path} (env {_env_str(e)}) with {env_from.path} (env "
                        f"{_env_str(env_ref)}): transitions of different environments would be mixed")
                raise EnvError(f"{what}; pass allow_different_env=True to merge anyway",
                               cli=f"{what}; pass --allow-different-env to merge anyway")
            mixed = True
    return envs, env_ref, mixed

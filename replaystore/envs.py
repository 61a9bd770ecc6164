r"""Making gymnasium environments, and deciding whether an env id read from a store may be made.

A store is data: the env id it records is made only in a form that imports no module
(see :func:`check_env_id`); :func:`make_env` turns gymnasium's errors into one-line
:class:`~replaystore.errors.EnvError`\ s.

>>> make_env("FrozenLake-v1", {"is_slippery": False}).spec.id
'FrozenLake-v1'
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from .errors import EnvError

__all__ = ["check_env_id", "make_env", "env_defaults", "normalize_env_kwargs", "env_differences"]


def check_env_id(env_id: Any, *, source: str | os.PathLike[str], trusted: bool,
                 env_option: str | None = "--env") -> str:
    """``env_id`` if it may go to ``gym.make``; :class:`EnvError` if not.

    A store is data: an env id read from its metadata (``source`` names the store) is
    never made in gymnasium's ``module:Env-v0`` form (any id containing ``":"``), which
    imports ``module`` -- i.e. runs code the store chose -- unless ``trusted`` (the user
    passed ``--trust-env-id`` / ``trust_env_id=True``, or gave the id themselves).
    ``env_option`` names the option that lets the user give the id themselves, if the
    command has one (the error suggests it). Ids without ``":"`` (registered envs such
    as ``FrozenLake-v1``) always pass.

    >>> check_env_id("FrozenLake-v1", source="fl.zarr", trusted=False)
    'FrozenLake-v1'
    >>> check_env_id("evil:Foo-v0", source="fl.zarr", trusted=False)
    Traceback (most recent call last):
    ...
    replaystore.errors.EnvError: fl.zarr: the store records env id 'evil:Foo-v0', which would import the Python module 'evil' (a store is data, so its env id is not imported); pass trust_env_id=True if you trust this store, or give the env id yourself
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"{source}: the recorded env id {env_id!r} is not a non-empty string")
    if trusted or ":" not in env_id:
        return env_id
    yourself = f", or pass the env id yourself with {env_option}" if env_option else ""
    what = (f"{source}: the store records env id {env_id!r}, which would import the Python module "
            f"{env_id.split(':', 1)[0]!r} (a store is data, so its env id is not imported)")
    raise EnvError(f"{what}; pass trust_env_id=True if you trust this store"
                   + (", or give the env id yourself" if env_option else ""),
                   cli=f"{what}; pass --trust-env-id if you trust this store{yourself}")


def make_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None, **make_kwargs: Any) -> gym.Env:
    """``gym.make`` with errors turned into :class:`EnvError` naming the id and kwargs.

    ``env_id`` is made as given: an id that came from a store must pass
    :func:`check_env_id` first (a ``module:Env-v0`` id imports ``module``)."""
    try:
        return gym.make(env_id, **dict(env_kwargs or {}), **make_kwargs)
    except gym.error.Error as e:
        raise EnvError(f"environment {env_id!r}: {e}") from None
    except ImportError as e:  # a trusted "module:Env-v0" id whose module is not there
        raise EnvError(f"environment {env_id!r}: {' '.join(str(e).split())}") from None
    except TypeError as e:
        raise EnvError(f"environment {env_id!r} does not accept env kwargs {dict(env_kwargs or {})}: {e}") from None


def _json(v: Any) -> Any:
    return json.loads(json.dumps(v, sort_keys=True, allow_nan=False))


@functools.lru_cache(maxsize=64)
def _defaults(env_id: str) -> str:
    """:func:`env_defaults` as a JSON string (cached: it may import the env's module)."""
    try:
        spec = gym.spec(env_id)
    except Exception:  # not registered here: nothing known about its defaults
        return "{}"
    out: dict[str, Any] = {}
    try:
        entry = spec.entry_point
        creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
        for name, p in inspect.signature(creator).parameters.items():
            if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                out[name] = p.default
    except Exception:  # an entry point that cannot be loaded or inspected: the spec's kwargs only
        pass
    out.update(spec.kwargs or {})
    out["max_episode_steps"] = spec.max_episode_steps
    keep = {}
    for k, v in out.items():
        try:
            keep[k] = _json(v)
        except (TypeError, ValueError):  # not JSON: recorded kwargs never hold such a value
            pass
    return json.dumps(keep, sort_keys=True)


def env_defaults(env_id: Any, *, trusted: bool = False) -> dict[str, Any]:
    """The keyword arguments ``gym.make(env_id)`` uses when given none, as JSON values: the
    env constructor's signature defaults, overridden by the registered ``EnvSpec.kwargs``,
    plus ``max_episode_steps``. ``{}`` for an env not registered here, and for a
    ``module:Env-v0`` id unless ``trusted`` (looking it up would import ``module``; see
    :func:`check_env_id`). Resolving a registered id imports its env's module, as making it does.

    >>> env_defaults("FrozenLake-v1")["is_slippery"], env_defaults("FrozenLake-v1")["map_name"]
    (True, '4x4')
    """
    if not isinstance(env_id, str) or not env_id or (":" in env_id and not trusted):
        return {}
    return json.loads(_defaults(env_id))


def normalize_env_kwargs(env_id: Any, kwargs: Mapping[str, Any] | None, *,
                         trusted: bool = False) -> dict[str, Any]:
    """``kwargs`` with the env's defaults (:func:`env_defaults`) filled in, as JSON values:
    two sets of kwargs make the same env exactly when their normalised forms are equal.

    >>> a = normalize_env_kwargs("FrozenLake-v1", {})
    >>> a == normalize_env_kwargs("FrozenLake-v1", {"is_slippery": True, "map_name": "4x4"})
    True
    >>> a == normalize_env_kwargs("FrozenLake-v1", {"is_slippery": False})
    False
    """
    return {**env_defaults(env_id, trusted=trusted), **_json(dict(kwargs or {}))}


def _env_words(env: Mapping[str, Any]) -> str:
    if env.get("mixed"):
        return "mixed envs"
    return json.dumps(env["id"]) if env.get("id") else "none"


def env_differences(recorded: Mapping[str, Any], given: Mapping[str, Any], *,
                    trusted: bool = False) -> list[str]:
    """How the env ``given`` differs from the env ``recorded`` (both ``{"id", "kwargs",
    "mixed"}`` as in :attr:`ReplayStore.env_info`), as phrases; ``[]`` when they are the
    same env. Kwargs are compared after :func:`normalize_env_kwargs`.

    >>> env_differences({"id": "FrozenLake-v1", "kwargs": {}},
    ...                 {"id": "FrozenLake-v1", "kwargs": {"is_slippery": False}})
    ['env kwargs: is_slippery: store recorded true, given false']
    >>> env_differences({"id": "FrozenLake-v1"}, {"id": "FrozenLake-v1", "kwargs": {"map_name": "4x4"}})
    []
    """
    if bool(recorded.get("mixed")) != bool(given.get("mixed")) or recorded.get("id") != given.get("id"):
        return [f"env: store recorded {_env_words(recorded)}, given {_env_words(given)}"]
    if not recorded.get("id"):
        return []
    env_id = recorded["id"]
    a = normalize_env_kwargs(env_id, recorded.get("kwargs"), trusted=trusted)
    b = normalize_env_kwargs(env_id, given.get("kwargs"), trusted=trusted)
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, ...) != b.get(k, ...):
            va = json.dumps(a[k], sort_keys=True) if k in a else "nothing"
            vb = json.dumps(b[k], sort_keys=True) if k in b else "nothing"
            out.append(f"env kwargs: {k}: store recorded {va}, given {vb}")
    return out

r"""Making gymnasium environments, and deciding whether an env id read from a store may be made.

A store is data: the env id it records is made only in a form that imports no module
(see :func:`check_env_id`); :func:`make_env` turns gymnasium's errors into one-line
:class:`~replaystore.errors.EnvError`\ s.

>>> make_env("FrozenLake-v1", {"is_slippery": False}).spec.id
'FrozenLake-v1'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from .errors import EnvError

__all__ = ["check_env_id", "make_env"]


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
    replaystore.errors.EnvError: fl.zarr: the store records env id 'evil:Foo-v0', which would import the Python module 'evil' (a store is data, so its env id is not imported); pass --trust-env-id (Python: trust_env_id=True) if you trust this store, or pass the env id yourself with --env
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"{source}: the recorded env id {env_id!r} is not a non-empty string")
    if trusted or ":" not in env_id:
        return env_id
    yourself = f", or pass the env id yourself with {env_option}" if env_option else ""
    raise EnvError(f"{source}: the store records env id {env_id!r}, which would import the Python "
                   f"module {env_id.split(':', 1)[0]!r} (a store is data, so its env id is not "
                   f"imported); pass --trust-env-id (Python: trust_env_id=True) if you trust this store{yourself}")


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

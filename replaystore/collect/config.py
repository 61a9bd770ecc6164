"""The collector's arguments: checks, env kwargs, seeds, the vector env, and what a run returns."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ..errors import EnvError, ReplayStoreError

__all__ = ["CollectorConfigError", "CollectStats", "BLOCK_STEPS", "TAG_ACTIONS", "TAG_EPSILON",
           "is_int", "check_count", "check_budget", "parse_env_kwargs", "json_copy",
           "derived_seed", "make_envs", "append_env_kwargs", "MIXED_ENV"]

#: what a store of transitions of different envs records (as :func:`replaystore.merge.merge` does)
MIXED_ENV = {"id": None, "kwargs": {}, "mixed": True}

#: Vector steps buffered before one ``store.extend`` (times ``num_envs`` rows).
BLOCK_STEPS = 1024

#: tags of the random streams derived from the seed
TAG_ACTIONS = 0x61637473  # "acts"
TAG_EPSILON = 0x65707331  # "eps1"


class CollectorConfigError(ReplayStoreError, ValueError):
    """The collector was given arguments that cannot work (steps/episodes, num_envs...)."""


@dataclasses.dataclass(frozen=True)
class CollectStats:
    """What one collection run did.

    ``steps`` transitions were written; ``episodes`` episodes ended (terminated or
    truncated) among them, with mean undiscounted return ``mean_return`` (``None`` when
    no episode ended); the run took ``seconds``.
    """

    steps: int
    episodes: int
    mean_return: float | None
    seconds: float
    path: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def is_int(x: Any) -> bool:
    """An int (numpy ints included), not a bool."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def check_count(name: str, value: Any) -> int:
    """``value`` as a positive int, or :class:`CollectorConfigError` naming ``name``."""
    if not is_int(value) or value < 1:
        raise CollectorConfigError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_budget(steps: Any, episodes: Any) -> tuple[int | None, int | None]:
    """Exactly one of ``steps`` and ``episodes``, as a positive int."""
    if (steps is None) == (episodes is None):
        raise CollectorConfigError(
            "give exactly one of steps= (transitions to record) or episodes= (complete "
            f"episodes to record), got steps={steps!r}, episodes={episodes!r}"
        )
    if steps is not None:
        return check_count("steps", steps), None
    return None, check_count("episodes", episodes)


def parse_env_kwargs(env_id: str, env_kwargs: Any) -> dict[str, Any]:
    """``env_kwargs`` as a JSON-safe dict (a dict or a JSON object string).

    >>> parse_env_kwargs("FrozenLake-v1", '{"is_slippery": false}')
    {'is_slippery': False}
    """
    if env_kwargs is None:
        return {}
    if isinstance(env_kwargs, str | bytes):
        try:
            env_kwargs = json.loads(env_kwargs)
        except json.JSONDecodeError as e:
            raise EnvError(f"{env_id}: env kwargs {env_kwargs!r} are not valid JSON: {e}") from None
    if not isinstance(env_kwargs, Mapping):
        raise EnvError(
            f"{env_id}: env kwargs must be a dict (or a JSON object), "
            f"got {type(env_kwargs).__name__} {env_kwargs!r}"
        )
    bad = [k for k in env_kwargs if not isinstance(k, str)]
    if bad:
        raise EnvError(f"{env_id}: env kwargs keys must be strings, got {bad!r}")
    out = dict(env_kwargs)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise EnvError(
            f"{env_id}: env kwargs must be JSON-serializable (they are recorded in the "
            f"store's metadata), got {out!r}: {e}"
        ) from None
    return out


def append_env_kwargs(recorded: Mapping[str, Any], env_id: str, env_kwargs: Any) -> Any:
    """The env kwargs to append to a store recording env ``recorded`` with: ``env_kwargs``
    if given, else the store's recorded kwargs when it records ``env_id`` (so an append
    without kwargs makes the env the store holds, not gymnasium's defaults).

    >>> append_env_kwargs({"id": "FrozenLake-v1", "kwargs": {"is_slippery": False}}, "FrozenLake-v1", None)
    {'is_slippery': False}
    """
    if env_kwargs is not None or recorded.get("mixed") or recorded.get("id") != env_id:
        return env_kwargs
    return json_copy(dict(recorded.get("kwargs") or {}))


def json_copy(obj: Any) -> Any:
    """A deep copy of JSON data: the store keeps what ``update_info`` is given by reference."""
    return json.loads(json.dumps(obj))


def derived_seed(seed: int, tag: int) -> np.random.SeedSequence:
    """The seed of the random stream ``tag`` of a run seeded ``seed``."""
    return np.random.SeedSequence([seed, tag])


def make_envs(env_id: str, env_kwargs: dict[str, Any], num_envs: int) -> SyncVectorEnv:
    """``num_envs`` copies of ``env_id`` in a sync vector env (``NEXT_STEP`` autoreset)."""
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"env id must be a non-empty string, got {env_id!r}")
    try:
        return SyncVectorEnv(
            [partial(gym.make, env_id, **env_kwargs) for _ in range(num_envs)],
            autoreset_mode=AutoresetMode.NEXT_STEP,
        )
    except gym.error.Error as e:
        raise EnvError(f"{env_id}: cannot make the environment: {e}") from e
    except (TypeError, ValueError, KeyError) as e:
        raise EnvError(
            f"{env_id}: cannot make the environment with kwargs {env_kwargs!r}: "
            f"{type(e).__name__}: {e}"
        ) from e

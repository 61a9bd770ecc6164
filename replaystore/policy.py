"""What acts: the :class:`Policy` interface, and a registry of loaders for saved policies.

A policy maps observations to actions. Learners (``replaystore.agents``) are policies,
and so is anything a user writes::

    >>> import numpy as np
    >>> class Lean(Policy):
    ...     '''Push the cart the way the pole leans.'''
    ...     def act(self, obs, *, epsilon=0.0, rng=None):
    ...         return int(obs[2] > 0)
    >>> Lean().act(np.array([0.0, 0.0, 0.1, 0.0])), Lean().describe()["kind"]
    (1, 'policy')

Saved policies. A class that can be saved registers a loader for its format, by name
(``class MyAgent(Agent, saved_format="me.MyAgent", suffixes=(".pt",))``, or an explicit
:func:`register_loader` call). :func:`load_policy` then reads a path without knowing which
class wrote it: the format named in the file's JSON sidecar (``path.with_suffix(".json")``,
key ``"format"``) picks the loader, else the file's suffix does. The collector takes such
a path, so it never imports the agents; ``import replaystore`` imports them, so their
loaders are registered before anybody asks.

>>> registered_formats()["replaystore.QLearningAgent"]
('.npz', '.npy')
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .errors import ReplayStoreError

__all__ = [
    "Policy",
    "PolicyLoader",
    "UnknownPolicyError",
    "load_policy",
    "register_loader",
    "registered_formats",
]


class UnknownPolicyError(ReplayStoreError, ValueError):
    """No registered loader reads this path (unknown format name or file suffix)."""


class Policy(ABC):
    """Anything that acts: ``act(obs)`` returns an action for an observation.

    Subclasses implement :meth:`act`; :meth:`check_spaces` (accept by default) and
    :meth:`describe` have defaults. ``batched_act = True`` says ``act`` also takes a batch
    of observations (leading axis) and returns a batch of actions; the collector then
    calls it once per vector step instead of once per env.

    A subclass made with ``saved_format="name"`` (and ``suffixes=(".ext", ...)``)
    registers its :meth:`load_saved` as the loader of that format (:func:`load_policy`).
    """

    batched_act: ClassVar[bool] = False
    saved_format: ClassVar[str | None] = None

    def __init_subclass__(
        cls, *, saved_format: str | None = None, suffixes: Sequence[str] = (), **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if saved_format is not None:
            cls.saved_format = saved_format
            register_loader(saved_format, cls.load_saved, suffixes=suffixes)

    @abstractmethod
    def act(
        self, obs: Any, *, epsilon: float = 0.0, rng: np.random.Generator | None = None
    ) -> Any:
        """The action for ``obs``; with probability ``epsilon`` a random one drawn from
        ``rng`` (a policy may refuse ``epsilon > 0`` without an ``rng``)."""

    def check_spaces(self, observation_space: Any, action_space: Any) -> None:
        """Raise :class:`~replaystore.errors.SpaceError` saying what does not fit when
        this policy cannot act in these (gymnasium) spaces. The default accepts any."""
        return None

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the records a collection run leaves in a store.

        ``"kind"`` says what sort of policy it is; the rest is up to the subclass.
        """
        cls = type(self)
        return {"kind": "policy", "name": f"{cls.__module__}.{cls.__qualname__}"}

    @classmethod
    def load_saved(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy of this class from ``path``: the loader ``saved_format`` registers."""
        raise NotImplementedError(f"{cls.__qualname__} does not define load_saved(path)")


@dataclass(frozen=True)
class PolicyLoader:
    """A registered format: its name, the function reading a path, its file suffixes."""

    format: str
    load: Callable[[Path], Policy]
    suffixes: tuple[str, ...] = ()


_LOADERS: dict[str, PolicyLoader] = {}


def register_loader(
    saved_format: str, load: Callable[[Path], Policy], *, suffixes: Sequence[str] = ()
) -> None:
    """Register ``load(path) -> Policy`` as the reader of ``saved_format``.

    ``suffixes`` (e.g. ``(".npy",)``) are the file endings it claims when a path has no
    sidecar naming its format. Registering a name again replaces its loader.
    """
    if not isinstance(saved_format, str) or not saved_format:
        raise ValueError(f"saved_format must be a non-empty string, got {saved_format!r}")
    claimed = tuple(s.lower() for s in suffixes)
    bad = [s for s in claimed if not s.startswith(".")]
    if bad:
        raise ValueError(f"suffixes must start with '.', got {bad}")
    _LOADERS[saved_format] = PolicyLoader(saved_format, load, claimed)


def registered_formats() -> dict[str, tuple[str, ...]]:
    """Every registered format name and the suffixes it claims."""
    return {name: loader.suffixes for name, loader in _LOADERS.items()}


def _sidecar_format(path: Path) -> str | None:
    """The ``"format"`` named by the JSON description of ``path``, if there is a readable one."""
    sidecar = path if path.suffix == ".json" else path.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    return fmt if isinstance(fmt, str) else None


def _known() -> str:
    if not _LOADERS:
        return "no saved-policy formats are registered (import replaystore registers its agents)"
    parts = [f"{name} ({', '.join(lo.suffixes) or 'sidecar only'})" for name, lo in _LOADERS.items()]
    return "formats known here: " + "; ".join(parts)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read the saved policy at ``path`` with the loader registered for its format.

    The format named in the JSON sidecar (``path.with_suffix(".json")``) picks the
    loader; without one, the first format claiming the file's suffix does. The loader's
    own errors (a missing or damaged file) name the path; when no loader fits,
    :class:`UnknownPolicyError` names the path and the known formats.

    >>> import tempfile, pathlib, numpy as np
    >>> q = pathlib.Path(tempfile.mkdtemp()) / "Q.npy"
    >>> np.save(q, np.eye(3, 2))                  # a bare Q-table, no sidecar
    >>> load_policy(q).act(1)
    1
    >>> load_policy(q.with_name("policy.bin"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    replaystore.policy.UnknownPolicyError: '.../policy.bin': no registered loader reads it; ...
    """
    p = Path(path)
    if not p.suffix and not p.exists():  # ("cp-dqn" for the cp-dqn.pt a command wrote)
        found = [p.with_name(p.name + s) for lo in _LOADERS.values() for s in lo.suffixes
                 if p.with_name(p.name + s).is_file()]
        if len(found) == 1:
            p = found[0]
    fmt = _sidecar_format(p)
    if fmt is not None:
        loader = _LOADERS.get(fmt)
        if loader is None:
            raise UnknownPolicyError(
                f"{str(p)!r}: its sidecar names the format {fmt!r}, which has no registered "
                f"loader; {_known()}"
            )
        return loader.load(p)
    suffix = p.suffix.lower()
    for loader in _LOADERS.values():
        if suffix and suffix in loader.suffixes:
            return loader.load(p)
    raise UnknownPolicyError(f"{str(p)!r}: no registered loader reads it; {_known()}")

"""Gymnasium spaces <-> JSON metadata, storage fields and value checks.

A store is created from an observation space and an action space. This module turns a
space into JSON-safe metadata (and back, with dtype, shape and bounds kept exactly),
splits composite spaces (``Tuple``, ``Dict``) into named leaf fields with one storage
array each, and validates batches of values against a leaf space.

>>> from gymnasium.spaces import Box, Dict, Discrete
>>> space = Dict({"pos": Box(-1.0, 1.0, (2,)), "goal": Discrete(4)})
>>> [(name, describe(leaf)) for name, leaf in flatten_space("obs", space)]
[('obs.goal', 'Discrete(4)'), ('obs.pos', 'Box(-1.0, 1.0, (2,), float32)')]
>>> space_equal(space_from_json(space_to_json(space)), space)
True

Space-type-specific behaviour is chosen by ``functools.singledispatch`` functions with
one registration per space type, as in ``gymnasium.spaces.utils``; decoding JSON looks
the ``"type"`` name up in a dict of decoders. Every entry point first refuses anything
that is not exactly one of the supported types (subclasses included), before it
dispatches. The submodules:

- :mod:`~replaystore.spaces.supported`: the supported types and that exact-type guard;
- :mod:`~replaystore.spaces.encoding`: :func:`space_to_json`, :func:`space_from_json`;
- :mod:`~replaystore.spaces.equality`: :func:`space_equal`;
- :mod:`~replaystore.spaces.fields`: :func:`field_spec`, :func:`flatten_space`,
  :func:`flatten_value`, :func:`unflatten_value`;
- :mod:`~replaystore.spaces.checks`: :func:`check_values`;
- :mod:`~replaystore.spaces.text`: :func:`describe`.
"""

from __future__ import annotations

from replaystore.spaces.checks import check_values
from replaystore.spaces.encoding import space_from_json, space_to_json
from replaystore.spaces.equality import space_equal
from replaystore.spaces.fields import field_spec, flatten_space, flatten_value, unflatten_value
from replaystore.spaces.supported import SUPPORTED_SPACES
from replaystore.spaces.text import describe

__all__ = [
    "SUPPORTED_SPACES",
    "space_to_json",
    "space_from_json",
    "space_equal",
    "field_spec",
    "flatten_space",
    "flatten_value",
    "unflatten_value",
    "check_values",
    "describe",
]

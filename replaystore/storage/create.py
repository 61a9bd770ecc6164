"""Creating a store: the schema from gymnasium spaces or a field list, one Zarr v3 array
per field, and the initial metadata."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import zarr

from .. import spaces as _spaces
from ..errors import NotAStoreError, SchemaError, StoreExistsError, StoreModeError
from . import layout
from .backends import resolve
from .metadata import (
    FORMAT_VERSION,
    MAX_COUNT,
    json_copy,
    load_meta,
    now_iso,
    package_version,
    write_group,
)
from .schema import SCALAR_FIELDS, Field, Schema
from .store import ReplayStore

__all__ = ["create", "new_meta", "write_new", "build_schema", "clear_local", "clear_remote"]

_SCALARS = tuple(Field(name, dtype) for name, dtype in SCALAR_FIELDS)


def _as_field(spec: Any, chunk_rows, codecs) -> Field:
    if isinstance(spec, Field):
        return spec
    if isinstance(spec, Mapping):
        return Field(**spec)
    if isinstance(spec, Sequence) and not isinstance(spec, str) and 2 <= len(spec) <= 3:
        name, dtype, *shape = spec
        return Field(name, dtype, tuple(shape[0]) if shape else ())
    raise SchemaError(
        f"field spec {spec!r} not understood: expected Field, dict or (name, dtype[, shape])"
    )


def _per_field(option, name: str, default=None):
    if isinstance(option, Mapping):
        return option.get(name, default)
    return default if option is None else option


def build_schema(observation_space, action_space, fields, extra_fields, chunk_rows, codecs):
    out: list[Field] = []
    spaces_json: dict[str, Any] = {}
    if fields is not None:
        if observation_space is not None or action_space is not None:
            raise SchemaError("give either observation_space/action_space or fields=, not both")
        out = [_as_field(f, chunk_rows, codecs) for f in fields]
        names = {f.name for f in out}
        for f in _SCALARS:
            if f.name not in names:
                out.append(f)
    else:
        if observation_space is None or action_space is None:
            raise SchemaError(
                "create() needs observation_space and action_space (gymnasium spaces), "
                "or an explicit fields=[(name, dtype, shape), ...] list"
            )
        obs_fields = _spaces.flatten_space("obs", observation_space)
        act_fields = _spaces.flatten_space("action", action_space)
        spaces_json = {
            "observation": _spaces.space_to_json(observation_space),
            "action": _spaces.space_to_json(action_space),
        }

        def leaf(name, space, role):
            dtype, shape = _spaces.field_spec(space)
            return Field(name, dtype, shape, meta={"role": role, "space": _spaces.space_to_json(space)})

        out += [leaf(n, s, "obs") for n, s in obs_fields]
        out += [leaf(n, s, "action") for n, s in act_fields]
        out.append(_SCALARS[0])
        out += [leaf("next_" + n, s, "next_obs") for n, s in obs_fields]
        out += list(_SCALARS[1:])
    for spec in extra_fields or ():
        out.append(_as_field(spec, chunk_rows, codecs))
    final = []
    for f in out:
        cr = _per_field(chunk_rows, f.name, f.chunk_rows if isinstance(chunk_rows, Mapping) else None)
        codec = _per_field(codecs, f.name, f.codec)
        if isinstance(codecs, Mapping) and f.name not in codecs:
            codec = f.codec
        final.append(
            Field(f.name, f.dtype, f.shape, cr if cr is not None else f.chunk_rows, codec, f.meta)
        )
    return Schema(final), spaces_json


def _zarr_codecs(codec: str | None):
    """The zarr codecs of a compressed field: the compressor, then Zarr v3's standard
    ``crc32c`` checksum of each encoded chunk (a flipped byte fails to decode, instead of
    decoding to other values)."""
    if codec is None:
        return None
    name, _, level = codec.partition(":")
    level = int(level) if level else None
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

    if name == "zstd":
        compressor = ZstdCodec(level=3 if level is None else level)
    elif name in ("lz4", "blosc-lz4"):
        compressor = BloscCodec(cname="lz4", clevel=5 if level is None else level, shuffle="shuffle")
    elif name == "blosc-zstd":
        compressor = BloscCodec(cname="zstd", clevel=3 if level is None else level, shuffle="shuffle")
    elif name == "gzip":
        compressor = GzipCodec(level=5 if level is None else level)
    else:  # pragma: no cover - parse_codec guards
        raise SchemaError(f"unknown codec {codec!r}")
    return [compressor, Crc32cCodec()]


def create(
    path: str | os.PathLike,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    *,
    capacity: int | None = None,
    extra_fields: Iterable[Any] | None = None,
    fields: Iterable[Any] | None = None,
    chunk_rows: int | Mapping[str, int] | None = None,
    codecs: str | Mapping[str, str | None] | None = None,
    env_id: str | None = None,
    info: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    first_episode: int = 0,
    **options: Any,
) -> ReplayStore:
    """Create a new store at ``path`` and return it open for appending.

    ``capacity=None`` makes an unbounded dataset; ``capacity=N`` a ring that keeps the
    newest ``N`` rows. ``chunk_rows`` and ``codecs`` (e.g. ``"zstd:3"``) apply to every
    field, or per field when given as a dict. ``extra_fields`` adds user fields, e.g.
    ``[("label", "int64")]``. ``info`` is free-form JSON kept in the metadata. ``path`` may
    be an fsspec URL (``s3://bucket/buf.zarr``; ``storage_options`` go to fsspec).
    ``first_episode`` is the id of the store's first episode (later ones count up from
    it): stores filled side by side can be given disjoint episode ids.

    >>> import tempfile, gymnasium as gym
    >>> s = create(tempfile.mkdtemp() + "/s", gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))
    >>> s.schema.names
    ('obs', 'action', 'reward', 'next_obs', 'terminated', 'truncated', 'episode', 'step')
    >>> s.close()
    """
    loc = resolve(path, storage_options)
    if not loc.writable or (loc.local is not None and loc.local.suffix.lower() == ".zip"):
        raise StoreModeError(
            f"{path}: a .zip store is read-only; create a directory store and pack it with "
            "replaystore.pack (or `replaystore pack`)"
        )
    root = loc.local if loc.local is not None else loc.name
    capacity = _check_capacity(capacity, root)
    if (not isinstance(first_episode, int | np.integer) or isinstance(first_episode, bool)
            or not 0 <= first_episode < MAX_COUNT - 1):
        raise SchemaError(f"{root}: first_episode must be an int in [0, 2**62 - 1), got {first_episode!r}")
    first_episode = int(first_episode)
    schema, spaces_json = build_schema(
        observation_space, action_space, fields, extra_fields, chunk_rows, codecs
    )
    info_copy = json_copy(info or {}, root, "info")  # (bad info is refused before anything is touched)
    if loc.local is None:
        clear_remote(loc, overwrite)
    else:
        clear_local(root, overwrite)
    if capacity is not None:
        schema = _fit_ring(schema, capacity)
    meta = new_meta(schema, spaces_json, capacity, env={"id": env_id} if env_id else {},
                    info=info_copy)
    write_new(loc, meta, first_episode)
    return ReplayStore(loc, "a", **options)


def new_meta(schema: Schema, spaces_json: Mapping[str, Any], capacity: int | None, *,
             env: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """The ``replaystore`` metadata document of a new store (also a sharded dataset's
    template for its shards)."""
    return {
        "format_version": FORMAT_VERSION,
        "created": {
            "replaystore_version": package_version(),
            "time": now_iso(),
            "zarr_version": zarr.__version__,
        },
        "capacity": capacity,
        "fields": schema.to_json(),
        "spaces": dict(spaces_json),
        "env": dict(env),
        "info": dict(info),
    }


def write_new(loc, meta: Mapping[str, Any], first_episode: int = 0) -> None:
    """Write an empty store with metadata ``meta`` at the (empty) backend ``loc``: the
    arrays first, the group ``zarr.json`` last (a store exists once that lands)."""
    schema = Schema.from_json(meta["fields"])
    _create_arrays(loc, schema, meta["capacity"])
    state = {"size": 0, "cursor": 0, "total": 0, "episode": first_episode, "step": 0,
             "next_episode": first_episode + 1, "generation": 0}
    write_group(loc, dict(meta), state, fsync=True)


def _check_capacity(capacity: Any, root: Any) -> int | None:
    if capacity is None:
        return None
    if not isinstance(capacity, int | np.integer) or isinstance(capacity, bool) or capacity <= 0:
        raise SchemaError(f"{root}: capacity must be a positive int or None, got {capacity!r}")
    return int(capacity)


def clear_local(root, overwrite: bool) -> None:
    """Refuse to create over anything but an empty directory, unless ``overwrite`` and it is
    a store (then it is deleted)."""
    if not root.exists():
        return
    if overwrite and (root / "zarr.json").exists():
        try:
            load_meta(root)
        except NotAStoreError:
            raise NotAStoreError(f"{root}: refusing to overwrite a path that is not a replaystore store") from None
        shutil.rmtree(root)
    elif root.is_dir() and not any(root.iterdir()):
        pass
    elif overwrite and root.is_dir() and not (root / "zarr.json").exists():
        raise NotAStoreError(f"{root}: refusing to overwrite a non-empty directory that is not a store")
    else:
        raise StoreExistsError(
            f"{root}: already exists; open it with replaystore.open(path, mode='a') "
            "to append, or pass overwrite=True",
            cli=f"{root}: already exists; choose another path, or use --overwrite to replace it",
        )


def _fit_ring(schema: Schema, capacity: int) -> Schema:
    """A ring never needs chunks longer than itself."""
    return Schema([
        Field(f.name, f.dtype, f.shape, min(f.chunk_rows, _ceil_pow2(capacity)), f.codec, f.meta)
        if f.chunk_rows > capacity else f
        for f in schema
    ])


def _create_arrays(loc, schema: Schema, capacity: int | None) -> None:
    """One Zarr v3 array per field under a new group (its metadata is written last)."""
    target = str(loc.local) if loc.local is not None else loc.zarr_store(read_only=False)
    group = zarr.open_group(target, mode="w-", zarr_format=3)
    for f in schema:
        group.create_array(
            f.name,
            shape=(capacity if capacity is not None else 0, *f.shape),
            chunks=(f.chunk_rows, *f.shape),
            dtype=f.dtype,
            compressors=_zarr_codecs(f.codec),
            fill_value=False if f.dtype.kind == "b" else 0,
            config={"write_empty_chunks": True},
            # every chunk is written (a missing chunk file is damage, not the fill value)
            attributes={layout.ARRAY_ATTR: {"every_chunk_written": True}},
        )


def clear_remote(loc, overwrite: bool) -> None:
    """Refuse to create over anything at a URL, unless ``overwrite`` and it is a store."""
    if loc.is_empty():
        return
    if not overwrite:
        raise StoreExistsError(
            f"{loc}: already exists; open it with replaystore.open(url, mode='a') to append, "
            "or pass overwrite=True",
            cli=f"{loc}: already exists; choose another URL, or use --overwrite to replace it",
        )
    try:
        load_meta(loc)
    except NotAStoreError:
        raise NotAStoreError(f"{loc}: refusing to overwrite a location that is not a replaystore store") from None
    loc.delete_all()


def _ceil_pow2(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()



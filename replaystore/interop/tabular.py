"""Parquet and CSV exports: one row per transition, in logical row order (oldest first).

Scalar fields are one column each; vector fields one column per component, named as
:meth:`ReplayStore.to_pandas` names them (``obs_0``, ``obs_1``, ...; ``obs.pos_0`` for a
``Dict`` space). Image-like fields (two or more dimensions, or more than 64 components)
are left out unless asked for with ``fields=[...]`` or ``include_images=True``: Parquet
then stores each as one fixed-size-list column (the row's values flattened in C order, the
shape in the column's metadata), CSV as one column per component (``obs_0_0_0``...).

Rows are read and written block by block (Parquet: one row group per block), so a store
far larger than RAM exports with bounded memory. Floats are written so that they read
back bit for bit: ``pd.read_parquet(out)`` equals ``store.to_pandas()`` (apart from the
index name), and so does ``pd.read_csv(out, dtype=...)`` with the store's dtypes.

>>> import tempfile, gymnasium as gym, pandas as pd, replaystore as rs
>>> d = tempfile.mkdtemp()
>>> s = rs.create(d + "/s.zarr", gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3))
>>> s.extend({"obs": [[0, 0.5], [0.25, 1]], "action": [0, 2], "reward": [1.0, 0.1],
...           "next_obs": [[0.25, 1], [1, 1]], "terminated": [False, True],
...           "truncated": [False, False]})
>>> export_csv(s, d + "/s.csv").rows
2
>>> pd.read_csv(d + "/s.csv").columns.tolist()[:5]
['obs_0', 'obs_1', 'action', 'reward', 'next_obs_0']
>>> s.close()
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import InteropError
from ..inspect import columns as field_columns
from ..progress import Progress, as_progress
from ..storage.schema import Field
from ._common import (
    InteropStats,
    atomic_output,
    opened_store,
    row_bytes,
)
from ._common import block_rows as _block_rows

__all__ = ["export_parquet", "export_csv", "is_image_like", "MAX_COLUMNS_PER_FIELD"]

#: a field with more components than this is image-like (as in ``to_pandas``)
MAX_COLUMNS_PER_FIELD = 64


def is_image_like(field: Field) -> bool:
    """Two or more dimensions per row, or more than :data:`MAX_COLUMNS_PER_FIELD` values."""
    return len(field.shape) >= 2 or int(np.prod(field.shape, dtype=np.int64)) > MAX_COLUMNS_PER_FIELD


def _select(store: Any, fields: str | Sequence[str] | None, include_images: bool,
            stats: InteropStats) -> tuple[list[str], set[str]]:
    """Field names to export and the image-like ones among them."""
    if fields is not None:
        names = list(dict.fromkeys(store.schema.select(fields)))
        if not names:
            raise InteropError(f"{store.path}: no fields to export (fields=[] selects none)")
        return names, {n for n in names if is_image_like(store.schema[n])}
    names = list(store.schema.names)
    images = [n for n in names if is_image_like(store.schema[n])]
    if include_images:
        return names, set(images)
    if images:
        stats.note(f"left out image-like field(s) {', '.join(images)} (include them with "
                   "include_images=True / --include-images, or name them in fields / --fields)")
    return [n for n in names if n not in images], set()


def _column_names(field: Field) -> list[str]:
    return list(field_columns(field.name, np.zeros((1, *field.shape), field.dtype)))


def export_parquet(
    store: Any,
    out: str | os.PathLike,
    *,
    fields: str | Sequence[str] | None = None,
    include_images: bool = False,
    block_rows: int | None = None,
    compression: str | None = "zstd",
    overwrite: bool = False,
    progress: bool | Progress = False,
) -> InteropStats:
    """Write the rows of ``store`` (a store or its path) to the Parquet file ``out``.

    Needs pyarrow (``pip install "replaystore[parquet]"``, else
    :class:`~replaystore.errors.MissingExtraError`). ``fields`` selects fields (image-like
    ones included when named); ``include_images=True`` keeps every field. ``out`` must not
    exist unless ``overwrite=True``; it is written to a temporary file and renamed at the
    end, so a failed export leaves nothing behind. The file's metadata key
    ``replaystore`` holds the store's fields, spaces and env as JSON.

    Example::

        export_parquet("fl.zarr", "fl.parquet")
        pd.read_parquet("fl.parquet")
    """
    return _export(store, out, "parquet", fields=fields, include_images=include_images,
                   block_rows_=block_rows, compression=compression, overwrite=overwrite,
                   progress=progress)


def export_csv(
    store: Any,
    out: str | os.PathLike,
    *,
    fields: str | Sequence[str] | None = None,
    include_images: bool = False,
    block_rows: int | None = None,
    overwrite: bool = False,
    progress: bool | Progress = False,
) -> InteropStats:
    """Write the rows of ``store`` (a store or its path) to the CSV file ``out``.

    A header line, then one line per row; floats are written in their shortest exact form
    (``float32`` values as float32), booleans as ``True``/``False``, NaN as an empty
    field. Read back exactly with ``pd.read_csv(out, dtype=store.to_pandas().dtypes.to_dict())``
    (pandas 2 also needs ``float_precision="round_trip"``). Other arguments as for
    :func:`export_parquet`.

    Example::

        export_csv("fl.zarr", "fl.csv", fields=["obs", "action", "reward"])
    """
    return _export(store, out, "csv", fields=fields, include_images=include_images,
                   block_rows_=block_rows, compression=None, overwrite=overwrite,
                   progress=progress)


def _export(store: Any, out: str | os.PathLike, fmt: str, *, fields, include_images: bool,
            block_rows_: int | None, compression: str | None, overwrite: bool,
            progress: bool | Progress) -> InteropStats:
    from ._common import require

    pa = pq = None
    if fmt == "parquet":
        pa = require("pyarrow", "parquet", "export to Parquet")
        pq = require("pyarrow.parquet", "parquet", "export to Parquet")
    t0 = time.perf_counter()
    with opened_store(store) as st:
        stats = InteropStats("export", {"parquet": "Parquet file", "csv": "CSV file"}[fmt], str(st.path),
                             str(out))
        names, images = _select(st, fields, include_images, stats)
        n = len(st)
        step = _block_rows(row_bytes(st, names), block_rows_, total=n)
        layout: list[tuple[str, list[str], bool]] = []  # field, columns, as one list column
        for name in names:
            f = st.schema[name]
            as_list = fmt == "parquet" and name in images
            layout.append((name, [name] if as_list else _column_names(f), as_list))
        stats.columns = tuple(c for _, cols, _ in layout for c in cols)
        with atomic_output(out, overwrite) as tmp, as_progress(progress).task(n, f"export {fmt}") as bar:
            if fmt == "parquet":
                schema = _arrow_schema(pa, st, layout, n)
                with pq.ParquetWriter(str(tmp), schema, compression=compression) as writer:
                    for a in range(0, n, step):
                        b = min(n, a + step)
                        data = st.read_range(a, b, fields=names)
                        writer.write_table(_arrow_block(pa, st, layout, data, schema),
                                           row_group_size=b - a)
                        bar.update(b - a)
            else:
                with open(tmp, "w", newline="", encoding="utf-8") as fh:
                    if n == 0:
                        fh.write(",".join(stats.columns) + "\n")
                    for a in range(0, n, step):
                        b = min(n, a + step)
                        data = st.read_range(a, b, fields=names)
                        cols: dict[str, np.ndarray] = {}
                        for name in names:
                            cols.update(field_columns(name, data[name]))
                        pd.DataFrame(cols).to_csv(fh, header=a == 0, index=False, lineterminator="\n")
                        bar.update(b - a)
        stats.rows = n
    stats.seconds = time.perf_counter() - t0
    return stats


def _arrow_schema(pa: Any, store: Any, layout, n: int):
    fields = []
    described = []
    for name, cols, as_list in layout:
        f = store.schema[name]
        t = pa.from_numpy_dtype(f.dtype)
        if as_list:
            size = int(np.prod(f.shape, dtype=np.int64))
            fields.append(pa.field(name, pa.list_(t, size), metadata={"replaystore.shape": json.dumps(list(f.shape))}))
        else:
            fields.extend(pa.field(c, t) for c in cols)
        described.append({"name": name, "dtype": f.dtype.name, "shape": list(f.shape), "columns": cols,
                          "layout": "list" if as_list else "columns"})
    meta = {
        "source": str(store.path),
        "rows": n,
        "fields": described,
        "spaces": store.metadata.get("spaces", {}),
        "env": store.env_info,
        "replaystore_version": __version__,
    }
    return pa.schema(fields, metadata={"replaystore": json.dumps(meta)})


def _arrow_block(pa: Any, store: Any, layout, data: dict[str, np.ndarray], schema):
    arrays = []
    for name, _, as_list in layout:
        values = data[name]
        if as_list:
            size = int(np.prod(values.shape[1:], dtype=np.int64))
            flat = pa.array(np.ascontiguousarray(values).reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, size))
        else:
            arrays.extend(pa.array(np.ascontiguousarray(c)) for c in field_columns(name, values).values())
    return pa.Table.from_arrays(arrays, schema=schema)

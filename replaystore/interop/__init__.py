"""Export stores to Parquet, CSV and Minari; import Minari datasets and D4RL-style HDF5 files.

=========================  =================================================================
``export_parquet``         rows to a Parquet file (pyarrow: ``replaystore[parquet]``)
``export_csv``             rows to a CSV file
``export_minari``          complete episodes to a Minari dataset (``replaystore[minari]``)
``import_minari``          a Minari dataset into a new store (``replaystore[minari]``)
``import_d4rl``            a D4RL-style HDF5 file into a new store (h5py: ``replaystore[hdf5]``)
``export_as``/``import_from``  the same, with the format as a string (what the CLI calls)
=========================  =================================================================

Every one of them is all-or-nothing: the output is built under a hidden name next to
``out`` and moved into place when complete, so a failed or killed job leaves ``out`` as it
was (with ``overwrite=True``, the old output stays until the new one is complete);
leftovers of killed jobs are removed by the next job writing there.

Each returns an :class:`InteropStats` (rows, episodes, what was left out and why) and
warns (:class:`InteropWarning`) about anything left out. See the modules for the exact
mappings: :mod:`.tabular`, :mod:`.minari` (export: :mod:`.minari_export`), :mod:`.d4rl`.

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> d = tempfile.mkdtemp()
>>> with rs.create(d + "/s.zarr", gym.spaces.Discrete(3), gym.spaces.Discrete(2)) as s:
...     s.extend({"obs": [0, 1], "action": [1, 0], "reward": [0.0, 1.0], "next_obs": [1, 2],
...               "terminated": [False, True], "truncated": [False, False]})
>>> export_as(d + "/s.zarr", d + "/s.csv", "csv").summary().startswith("exported 2 rows x 8 columns")
True
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InteropError
from . import d4rl as _d4rl
from ._common import InteropStats, InteropWarning, store_job
from .minari import import_minari
from .minari_export import export_minari
from .tabular import export_csv, export_parquet

__all__ = [
    "export_parquet",
    "export_csv",
    "export_minari",
    "import_minari",
    "import_d4rl",
    "export_as",
    "import_from",
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "InteropStats",
    "InteropWarning",
]

#: all-or-nothing like every importer: the store is built aside and moved into place when
#: complete (:func:`._common.store_job`)
import_d4rl = store_job(_d4rl.import_d4rl)

EXPORT_FORMATS = {"parquet": export_parquet, "csv": export_csv, "minari": export_minari}
IMPORT_FORMATS = {"minari": import_minari, "d4rl": import_d4rl}


def _pick(table: dict, fmt: str, what: str):
    fn = table.get(str(fmt).lower())
    if fn is None:
        raise InteropError(f"cannot {what} {fmt!r}: formats are {', '.join(table)}")
    return fn


def export_as(store: Any, out: str | os.PathLike, fmt: str, **options: Any) -> InteropStats:
    """Export ``store`` (a store or its path) to ``out`` in format ``fmt``
    (``"parquet"``, ``"csv"`` or ``"minari"``); ``options`` go to that exporter."""
    return _pick(EXPORT_FORMATS, fmt, "export to")(store, out, **options)


def import_from(src: str | os.PathLike, out: str | os.PathLike, fmt: str, **options: Any) -> InteropStats:
    """Create the store ``out`` from ``src`` in format ``fmt`` (``"minari"`` or ``"d4rl"``);
    ``options`` go to that importer."""
    return _pick(IMPORT_FORMATS, fmt, "import from")(src, out, **options)

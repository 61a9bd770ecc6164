"""Where the data lives: backends, field I/O, the writer and reader, and the store facade.

``backends/`` (where keys live), ``fieldio/`` (how one field's rows are read and written),
``layout`` (every on-disk name), ``writer``/``reader`` (the two sides of an open store),
``store`` (the :class:`ReplayStore` facade), and around them schema, ring arithmetic,
checksums, class indexes, verify, pack and create.
"""

from .backends import Backend, is_local_dir, is_url, remote_errors
from .backends import resolve as resolve_backend
from .create import create
from .dataset import ShardedDataset, ShardMismatchError, create_dataset, is_dataset, open_dataset
from .frames import columns, episodes, to_pandas
from .metadata import FORMAT_VERSION, load_meta, now_iso
from .pack import RUNTIME_FILES, pack, unpack
from .reader import TORN_RETRIES, BatchReader
from .schema import SCALAR_FIELDS, STANDARD_FIELDS, TRANSITION_FIELDS, Field, Schema
from .store import ReplayStore, open
from .verify import Damage, VerifyReport, verify

__all__ = ["Field", "Schema", "STANDARD_FIELDS", "TRANSITION_FIELDS", "SCALAR_FIELDS", "ReplayStore", "create", "open", "FORMAT_VERSION",
           "verify", "VerifyReport", "Damage", "pack", "unpack", "now_iso", "resolve_backend",
           "Backend", "is_url", "is_local_dir", "remote_errors", "load_meta", "RUNTIME_FILES",
           "to_pandas", "episodes", "columns", "BatchReader", "TORN_RETRIES", "ShardedDataset",
           "ShardMismatchError", "create_dataset", "open_dataset", "is_dataset"]

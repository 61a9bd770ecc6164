"""Where the data lives: schema, ring arithmetic, chunk files and the store itself."""

from .create import create
from .pack import pack, unpack
from .schema import Field, Schema
from .store import FORMAT_VERSION, ReplayStore, open
from .verify import Damage, VerifyReport, verify

__all__ = ["Field", "Schema", "ReplayStore", "create", "open", "FORMAT_VERSION", "verify",
           "VerifyReport", "Damage", "pack", "unpack"]

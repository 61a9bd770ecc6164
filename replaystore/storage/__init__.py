"""Where the data lives: schema, ring arithmetic, chunk files and the store itself."""

from .schema import Field, Schema
from .store import FORMAT_VERSION, ReplayStore, create, open

__all__ = ["Field", "Schema", "ReplayStore", "create", "open", "FORMAT_VERSION"]

"""The installed replaystore version, in a module that imports nothing of the package (so
that, e.g., the collector can record it without importing the package ``__init__``).

>>> isinstance(__version__, str)
True
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

__all__ = ["__version__"]

try:
    __version__ = _dist_version("replaystore")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

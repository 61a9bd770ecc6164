"""Stores left open for appending are closed (their buffered rows committed) when the
interpreter exits normally, before it starts tearing down.

Relying on ``__del__`` at exit is not enough: by then the interpreter cannot start the
thread zarr-python runs its event loop in, so closing a store with compressed fields (whose
metadata zarr writes) would hang the exit. Plain ``atexit`` handlers are too late as well:
zarr hands file I/O to a ``concurrent.futures`` thread pool, shut down before them. So the
stores are closed from the hook the thread pools use themselves (``threading``'s exit hook,
registered after theirs, so it runs before they shut down).
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  (its exit hook first, so ours runs before it)
import threading
import weakref
from typing import Any

__all__ = ["track", "untrack"]

_OPEN: weakref.WeakSet = weakref.WeakSet()


def track(store: Any) -> None:
    """Close ``store`` at exit if it is still open then."""
    _OPEN.add(store)


def untrack(store: Any) -> None:
    _OPEN.discard(store)


def _close_open_stores() -> None:
    for store in list(_OPEN):
        try:
            store.close()
        except Exception:  # (best effort, as __del__: the exit goes on)
            pass


_hook = getattr(threading, "_register_atexit", None)
(_hook or atexit.register)(_close_open_stores)

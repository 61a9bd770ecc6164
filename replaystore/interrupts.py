"""Ctrl-C at safe points: a long loop stops between two steps, not in the middle of one.

>>> with interrupts_between_steps() as interrupted:
...     for step in range(3):
...         pass                # a first Ctrl-C here only sets the flag...
...         if interrupted():   # ...and the loop stops here, its state whole
...             raise KeyboardInterrupt
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["interrupts_between_steps"]


@contextlib.contextmanager
def interrupts_between_steps() -> Iterator[Callable[[], bool]]:
    """Within the block, a first SIGINT (Ctrl-C) only sets a flag the loop checks between
    steps (the function yielded); a second one raises :class:`KeyboardInterrupt` at once.

    Only in the main thread and while SIGINT has Python's default handler; otherwise (a
    thread, a notebook's own handler) nothing changes and the flag stays false. The
    default handler is back when the block ends.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False
        return
    pending = [False]

    def on_sigint(signum: int, frame: Any) -> None:
        if pending[0]:
            raise KeyboardInterrupt
        pending[0] = True

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: pending[0]
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)

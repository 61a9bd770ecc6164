"""Progress reporting: the library reports, a front end draws.

Long jobs (collect, train, merge, pack, export, import) take ``progress=`` and report to
a :class:`Progress` object: ``start(total, label)`` once, ``update(n)`` as work is done,
``close()`` at the end. The library never draws a bar itself; the command line passes a
reporter that draws one (see ``replaystore.cli``). ``progress=True`` means the plain
:class:`TextProgress` (a line on stderr a few times a second), ``False``/``None`` means
nothing is reported.

>>> p = as_progress(False)
>>> with p.task(10, "copy") as t:
...     t.update(4)
>>> isinstance(p, NullProgress)
True
"""

from __future__ import annotations

import contextlib
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["Progress", "NullProgress", "TextProgress", "as_progress"]


class Progress(ABC):
    """What the library reports to. One task at a time: ``start``, ``update``..., ``close``."""

    @abstractmethod
    def start(self, total: int | None, label: str) -> None:
        """A task of ``total`` units (``None``: unknown) begins."""

    @abstractmethod
    def update(self, n: int = 1, **status: Any) -> None:
        """``n`` more units are done; ``status`` is extra text to show (e.g. ``bound=1e-3``)."""

    @abstractmethod
    def close(self) -> None:
        """The task ended (finished or not)."""

    @contextlib.contextmanager
    def task(self, total: int | None, label: str) -> Iterator[Progress]:
        """``start`` now and ``close`` when the block ends, however it ends."""
        self.start(total, label)
        try:
            yield self
        finally:
            self.close()


class NullProgress(Progress):
    """Reports nothing."""

    def start(self, total: int | None, label: str) -> None:
        pass

    def update(self, n: int = 1, **status: Any) -> None:
        pass

    def close(self) -> None:
        pass


class TextProgress(Progress):
    """A line of text on ``file`` (stderr): ``label done/total``, redrawn at most
    ``every`` seconds, and once at the end. On a terminal the line is redrawn in place."""

    def __init__(self, file: IO[str] | None = None, every: float = 0.25) -> None:
        self.file = file
        self.every = float(every)
        self._label = ""
        self._total: int | None = None
        self._done = 0
        self._status: dict[str, Any] = {}
        self._last = 0.0
        self._open = False

    def _out(self) -> IO[str]:
        return self.file if self.file is not None else sys.stderr

    def start(self, total: int | None, label: str) -> None:
        self._label, self._total, self._done, self._status = label, total, 0, {}
        self._open = True
        self._last = 0.0
        self._draw(final=False)

    def update(self, n: int = 1, **status: Any) -> None:
        self._done += int(n)
        self._status.update(status)
        now = time.monotonic()
        if now - self._last >= self.every:
            self._draw(final=False)

    def close(self) -> None:
        if self._open:
            self._draw(final=True)
            self._open = False

    def _line(self) -> str:
        done = f"{self._done:,}" + (f"/{self._total:,}" if self._total is not None else "")
        extra = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in self._status.items())
        return " ".join(p for p in (self._label, done, extra) if p)

    def _draw(self, *, final: bool) -> None:
        out = self._out()
        tty = getattr(out, "isatty", lambda: False)()
        if not tty and not final:
            return  # a log file gets one line at the end, not a line per redraw
        self._last = time.monotonic()
        out.write(("\r" if tty else "") + self._line() + ("\n" if final else ""))
        out.flush()


def as_progress(progress: bool | Progress | None) -> Progress:
    """``progress=`` of a library function as a :class:`Progress`."""
    if isinstance(progress, Progress):
        return progress
    return TextProgress() if progress else NullProgress()

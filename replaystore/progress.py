"""Progress reporting: the library reports, a front end draws.

Long jobs (collect, train, merge, pack, export, import) take ``progress=`` and report to
a :class:`Progress` object: ``start(total, label)`` once, ``update(n)`` as work is done,
``close()`` at the end. The library never draws a bar itself; the command line passes a
reporter that draws one (see ``replaystore.cli``). ``progress=True`` means the plain
:class:`TextProgress` (a line on stderr a few times a second), ``False``/``None`` means
nothing is reported. Jobs may call ``update`` every step: a :class:`ThrottledProgress`
(both of ours) only counts then, and redraws by time, not by step.

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

__all__ = ["Progress", "NullProgress", "ThrottledProgress", "TextProgress", "as_progress"]


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


class ThrottledProgress(Progress):
    """A :class:`Progress` that draws at most once every ``every`` seconds, however often
    ``update`` is called, and the final state once at ``close``. ``update`` only adds and
    reads the clock (a few hundred nanoseconds), so a job may report every step.
    Subclasses implement :meth:`draw`, which reads ``label``, ``total``, ``done``, ``status``.

    >>> class Count(ThrottledProgress):
    ...     def draw(self, *, final: bool) -> None:
    ...         self.drawn.append((self.done, final))
    >>> p = Count(every=3600.0); p.drawn = []
    >>> with p.task(1000, "work"):
    ...     for _ in range(1000):
    ...         p.update(1)
    >>> p.drawn  # once at the start, never in between, the final state at the end
    [(0, False), (1000, True)]
    """

    def __init__(self, every: float = 0.25) -> None:
        self.every = float(every)
        self.label = ""
        self.total: int | None = None
        self.done = 0
        self.status: dict[str, Any] = {}
        self._next = 0.0  # the clock time after which the next redraw may be made
        self._open = False

    def start(self, total: int | None, label: str) -> None:
        if self._open:
            self.close()
        self.label, self.total, self.done, self.status = label, total, 0, {}
        self._open = True
        now = time.monotonic()
        if now >= self._next:  # (a task begun right after the last redraw waits its turn)
            self._next = now + self.every
            self.draw(final=False)

    def update(self, n: int = 1, **status: Any) -> None:
        self.done += n
        if status:
            self.status.update(status)
        if self._open and time.monotonic() >= self._next:
            self._next = time.monotonic() + self.every
            self.draw(final=False)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._next = time.monotonic() + self.every
            self.draw(final=True)

    def status_text(self) -> str:
        """``status`` as text: ``dq=0.00123 bound=4.5``."""
        return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in self.status.items())

    @abstractmethod
    def draw(self, *, final: bool) -> None:
        """Show the current state (``final``: the task has ended; show it for good)."""


class TextProgress(ThrottledProgress):
    """A line of text on ``file`` (stderr): ``label done/total``, redrawn at most
    ``every`` seconds, and once at the end. On a terminal the line is redrawn in place;
    anything else (a log file, a pipe) gets one line, at the end."""

    def __init__(self, file: IO[str] | None = None, every: float = 0.25) -> None:
        super().__init__(every)
        self.file = file
        self._width = 0

    def _out(self) -> IO[str]:
        return self.file if self.file is not None else sys.stderr

    def _line(self) -> str:
        done = f"{self.done:,}" + (f"/{self.total:,}" if self.total is not None else "")
        return " ".join(p for p in (self.label, done, self.status_text()) if p)

    def draw(self, *, final: bool) -> None:
        out = self._out()
        tty = getattr(out, "isatty", lambda: False)()
        if not tty and not final:
            return  # a log file gets one line at the end, not a line per redraw
        line = self._line()
        pad = " " * max(0, self._width - len(line)) if tty else ""
        self._width = 0 if final else len(line)
        out.write(("\r" if tty else "") + line + pad + ("\n" if final else ""))
        out.flush()


def as_progress(progress: bool | Progress | None) -> Progress:
    """``progress=`` of a library function as a :class:`Progress`."""
    if isinstance(progress, Progress):
        return progress
    return TextProgress() if progress else NullProgress()

"""What every command shares: the progress bar, argument parsers, the error-to-message group."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

from .. import __version__
from ..errors import ReplayStoreError
from ..progress import Progress, ThrottledProgress


class ClickProgress(ThrottledProgress):
    """A click progress bar on stderr (``file``), redrawn at most once every ``every``
    seconds whatever the job reports (see :class:`~replaystore.progress.ThrottledProgress`),
    and its final state once at the end; status values (e.g. ``dq``) are shown after the bar.
    When ``file`` is not a terminal nothing is drawn at all: the command's own summary
    line says what was done. A job of unknown length (``total=None``) shows a count."""

    def __init__(self, every: float = 0.25, file: IO[str] | None = None) -> None:
        super().__init__(every)
        self.file = file
        self._bar: Any = None
        self._drawn = 0

    def start(self, total: int | None, label: str) -> None:
        if self._open:
            self.close()
        out = self.file if self.file is not None else sys.stderr
        self._bar = None
        if getattr(out, "isatty", lambda: False)():
            # unknown length: an iterable without one (a generator), and a count, no bar
            items = None if total is not None else (_ for _ in ())
            shape = {} if total is not None else {"bar_template": "%(label)s  %(info)s"}
            self._bar = click.progressbar(items, length=total, label=label, file=out,
                                          show_pos=True, item_show_func=lambda s: s, **shape)
        self._drawn = 0
        super().start(total, label)

    def draw(self, *, final: bool) -> None:
        if self._bar is None:
            return
        step, self._drawn = self.done - self._drawn, self.done
        if step:
            self._bar.update(step, current_item=self.status_text() or None)  # draws (if changed)
        elif not self._bar.entered:
            self._bar.__enter__()  # draws the empty bar
        if final:
            self._bar.__exit__(None, None, None)  # ends the line
            self._bar = None


def progress_arg(on: bool) -> Progress | bool:
    """What ``--progress/--no-progress`` passes to the library."""
    return ClickProgress() if on else False


def fields_arg(value: str | None) -> list[str] | None:
    """``--fields a,b`` as a list (``None``: all)."""
    return [f.strip() for f in value.split(",")] if value else None


class _Group(click.Group):
    """Turn expected errors into ``Error: <one line>`` and a non-zero exit, never a traceback;
    list each command with its whole first sentence (wrapped, never cut off with ``...``)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ReplayStoreError, FileExistsError, FileNotFoundError, PermissionError,
                IsADirectoryError, NotADirectoryError) as e:
            msg = getattr(e, "cli_message", None) or str(e)  # (in command-line words, if given)
            raise click.ClickException(" ".join(msg.split())) from None
        except OSError as e:  # disk full, I/O errors
            raise click.ClickException(" ".join(f"{e.filename or ''}: {e.strerror or e}".split())) from None


def json_arg(value: str | None, name: str) -> dict:
    if not value:
        return {}
    try:
        out = json.loads(value)
    except json.JSONDecodeError as e:
        raise click.ClickException(f"{name}: not valid JSON ({e.msg}): {value!r}") from None
    if not isinstance(out, dict):
        raise click.ClickException(
            f"{name}: expected a JSON object like '{{\"is_slippery\": true}}', got {value!r}")
    return out


def open_readonly(path: str):
    from ..storage import open as open_store

    return open_store(path, mode="r")



@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="replaystore")
def main() -> None:
    """Disk-backed experience replay: collect -> store -> sample -> train -> evaluate."""



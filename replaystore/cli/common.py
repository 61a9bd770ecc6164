"""What every command shares: the progress bar, argument parsers, the error-to-message group."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from .. import __version__
from ..errors import ReplayStoreError
from ..progress import Progress


class ClickProgress(Progress):
    """A click progress bar on stderr, redrawn at most once every ``every`` seconds (not
    per step); status values (e.g. ``dq``) are shown after the bar."""

    def __init__(self, every: float = 0.25) -> None:
        self.every = float(every)
        self._bar: Any = None
        self._pending = 0
        self._last = 0.0

    def start(self, total: int | None, label: str) -> None:
        self.close()
        self._bar = click.progressbar(length=total or 0, label=label, file=sys.stderr,
                                      show_pos=True, item_show_func=lambda s: s)
        self._bar.__enter__()
        self._pending = 0
        self._last = time.monotonic()

    def update(self, n: int = 1, **status: Any) -> None:
        if self._bar is None:
            return
        self._pending += int(n)
        now = time.monotonic()
        if now - self._last >= self.every:
            text = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in status.items())
            self._bar.update(self._pending, current_item=text or None)
            self._pending = 0
            self._last = now

    def close(self) -> None:
        if self._bar is None:
            return
        if self._pending:
            self._bar.update(self._pending)
            self._pending = 0
        self._bar.__exit__(None, None, None)
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



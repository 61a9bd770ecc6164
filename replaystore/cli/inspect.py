"""``info``, ``head``, ``episodes``, ``sample``, ``verify``: look at a store."""

from __future__ import annotations

import sys

import click

from .common import fields_arg, main, open_readonly


# -- inspect ---------------------------------------------------------------------------------
@main.command()
@click.argument("path", type=click.Path())
def info(path):
    """Schema, spaces, rows, episodes, capacity, chunking and size on disk of a store.

    Example: replaystore info data/frozenlake-4x4-slippery.zarr
    """
    from ..inspect import summary

    click.echo("\n".join(summary(open_readonly(path)).lines()))


@main.command()
@click.argument("path", type=click.Path())
@click.option("-n", "rows", type=click.IntRange(min=0), default=10, show_default=True,
              help='Rows to show.')
@click.option("--fields", help="Comma-separated fields to show (default: all narrow ones).")
def head(path, rows, fields):
    """The first rows of a store as a pandas table.

    Example: replaystore head fl.zarr -n 5 --fields obs,action,reward
    """
    from ..inspect import frame_text

    click.echo(frame_text(open_readonly(path).to_pandas(fields=fields_arg(fields), start=0, stop=rows)))


@main.command()
@click.argument("path", type=click.Path())
@click.option("-n", "rows", type=click.IntRange(min=0), default=None, help="Show only the first N episodes.")
def episodes(path, rows):
    """One line per episode: id, first row, length, return, terminated, truncated.

    Example: replaystore episodes fl.zarr -n 20
    """
    from ..inspect import frame_text

    df = open_readonly(path).episodes()
    click.echo(frame_text(df if rows is None else df.head(rows), index=False))


@main.command()
@click.argument("path", type=click.Path())
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help='Rows in the batch.')
@click.option("--balanced-by", help="Balance classes of this discrete field (or reward_sign).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sampler's random generator.")
@click.option("--fields", help="Comma-separated fields to show.")
def sample(path, batch_size, balanced_by, seed, fields):
    """Draw one batch and print it.

    Example: replaystore sample fl.zarr --batch-size 8 --balanced-by action --seed 1
    """
    from ..inspect import frame_text, sample_frame

    df = sample_frame(open_readonly(path), batch_size=batch_size, balanced_by=balanced_by, seed=seed,
                      fields=fields_arg(fields))
    click.echo(frame_text(df))


@main.command()
@click.argument("path", type=click.Path())
@click.option("--repair", is_flag=True,
              help="Rebuild damaged checksums, indexes and state from the data; drop only rows "
                   "whose data fails its checksum (and say which).")
def verify(path, repair):
    """Check every chunk, class index and the state of a store; exit 1 if anything is damaged.

    PATH is a store directory or a packed .zip (checked read-only; --repair needs the
    directory: unpack it first).

    Example: replaystore verify fl.zarr --repair
    """
    from ..storage import verify as run_verify

    report = run_verify(path, repair=repair)
    click.echo("\n".join(report.lines()))
    if not report.ok:
        sys.exit(1)



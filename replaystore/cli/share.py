"""``pack``/``unpack``, ``export``/``import`` and ``merge``: stores as files to share."""

from __future__ import annotations

import os
from typing import Any

import click

from .common import json_arg, main, progress_arg


def _clean_leftovers(out: str) -> None:
    """Remove what killed jobs (pack, unpack, import, export, merge...) left next to ``out``."""
    from pathlib import Path

    from ..storage.jobs import clean_leftovers

    if "://" not in out:
        clean_leftovers(Path(out).absolute().parent)



# -- sharing: pack / unpack / URLs (storage/pack.py) -------------------------------------------
@main.command()
@click.argument("path", type=click.Path())
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
def pack(path, out, overwrite, progress):
    """Pack the store PATH (a directory or URL) into the single zip file OUT.

    Every read-only command (info, head, episodes, sample, train) uses OUT in place.

    Example: replaystore pack runs/frozenlake.zarr frozenlake.zip
    """
    from ..inspect import human_bytes
    from ..storage import pack as run_pack

    _clean_leftovers(out)
    res = run_pack(path, out, overwrite=overwrite, progress=progress_arg(progress))
    click.echo(f"packed {path} into {res} ({human_bytes(os.path.getsize(res))})")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace the store OUT if it exists.")
def unpack(path, out, overwrite):
    """Unpack the zip store PATH into the directory OUT (to append to it again).

    Example: replaystore unpack frozenlake.zip runs/frozenlake.zarr
    """
    from ..storage import unpack as run_unpack

    _clean_leftovers(out)
    res = run_unpack(path, out, overwrite=overwrite)
    click.echo(f"unpacked {path} into {res}")


# -- export / import (replaystore/interop/) ------------------------------------------------------
# (export, import commands go here)
def _interop(fn, *args, **kwargs):
    """Run an exporter/importer; what it leaves out is in its summary line, not warned."""
    import warnings

    from ..interop import InteropWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InteropWarning)
        return fn(*args, **kwargs)


@main.command(name="export")
@click.argument("path", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--to", "fmt", required=True, type=click.Choice(["parquet", "csv", "minari"]),
              help="Output format.")
@click.option("--fields", help="parquet/csv: comma-separated fields (image-like ones are kept when named).")
@click.option("--include-images", is_flag=True,
              help="parquet/csv: keep image-like fields (2-D or more than 64 values; left out by default).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--trust-env-id", is_flag=True,
              help="minari: make the store's recorded env id even in the module:Env-v0 form, which imports "
                   "that module (refused by default: a store is data).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
def export(path, out, fmt, fields, include_images, overwrite, trust_env_id, progress):
    """Export the store PATH to OUT: a Parquet or CSV file, or a Minari dataset.

    With --to minari, OUT is a dataset id in the local Minari directory (e.g.
    replaystore/frozenlake-v0) or a path (starting with / or .); only complete episodes
    are exported.

    Example: replaystore export fl.zarr fl.parquet --to parquet
    """
    from ..interop import export_as

    opts: dict[str, Any] = {"overwrite": overwrite, "progress": progress_arg(progress)}
    if fmt == "minari":
        if fields or include_images:
            raise click.ClickException("--fields and --include-images apply to --to parquet and --to csv")
        opts["trust_env_id"] = trust_env_id
    elif trust_env_id:
        raise click.ClickException("--trust-env-id applies to --to minari")
    else:
        opts.update(fields=[f.strip() for f in fields.split(",") if f.strip()] if fields else None,
                    include_images=include_images)
    click.echo(_interop(export_as, path, out, fmt, **opts).summary())


@main.command(name="import")
@click.argument("src")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--from", "fmt", required=True, type=click.Choice(["minari", "d4rl"]),
              help="Format of SRC: a Minari dataset (id or path) or a D4RL-style HDF5 file.")
@click.option("--discrete-actions", is_flag=True,
              help="d4rl: integer actions make a Discrete action space (default: Box).")
@click.option("--env", "env_id", help="d4rl: env id to record in the store.")
@click.option("--env-kwargs", help="d4rl: env kwargs to record, as JSON.")
@click.option("--overwrite", is_flag=True, help="Replace the store OUT if it exists.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
def import_(src, out, fmt, discrete_actions, env_id, env_kwargs, overwrite, progress):
    """Create the store OUT from SRC: a Minari dataset or a D4RL-style HDF5 file.

    A Minari SRC is a dataset id in the local Minari directory or a path (starting with /
    or .). A D4RL file without next_observations loses the last row of each episode.

    Example: replaystore import replaystore/frozenlake-v0 fl.zarr --from minari
    """
    from ..interop import import_from

    opts: dict[str, Any] = {"overwrite": overwrite, "progress": progress_arg(progress)}
    if fmt == "d4rl":
        opts.update(discrete_actions=discrete_actions, env_id=env_id,
                    env_kwargs=json_arg(env_kwargs, "--env-kwargs"))
    elif discrete_actions or env_id or env_kwargs:
        raise click.ClickException("--discrete-actions, --env and --env-kwargs apply to --from d4rl")
    click.echo(_interop(import_from, src, out, fmt, **opts).summary())


# -- merge (replaystore/merge.py) ----------------------------------------------------------------
@main.command()
@click.argument("out", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--append", is_flag=True, help="OUT may be an existing compatible store: add the inputs after its rows.")
@click.option("--allow-different-env", is_flag=True,
              help="Merge inputs recorded from different env ids or env kwargs (refused by default).")
@click.option("--capacity", type=click.IntRange(min=1),
              help="Make a new OUT a ring keeping the newest C rows (default: unbounded).")
@click.option("--chunk-rows", type=click.IntRange(min=1), help="Rows per chunk file of OUT (default: the first input's).")
@click.option("--codecs", help="Compression of OUT: none, zstd[:level], lz4, blosc-lz4, gzip (default: the first input's).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
def merge(out, inputs, append, allow_different_env, capacity, chunk_rows, codecs, progress):
    """Concatenate the stores INPUTS (same fields and spaces) into the new store OUT.

    Rows are copied in order, input by input; episode ids are renumbered so episodes of
    different inputs never collide; OUT's info records where every row came from. A new
    OUT appears only when complete; an interrupted --append goes on where it stopped when
    run again with the same inputs (no row is copied twice).

    Example: replaystore merge all.zarr run1.zarr run2.zarr
    """
    from ..merge import merge as run_merge

    res = run_merge(out, inputs, append=append, allow_different_env=allow_different_env,
                    capacity=capacity, chunk_rows=chunk_rows, codecs=codecs,
                    progress=progress_arg(progress))
    resumed = (f"; went on with an interrupted merge ({res.resumed_rows:,} rows were copied already)"
               if res.resumed_rows else "")
    click.echo(f"merged {res.inputs} store{'s' if res.inputs != 1 else ''} ({res.rows:,} rows, "
               f"{res.episodes:,} episodes) into {out} ({res.size:,} rows) in {res.seconds:.1f}s{resumed}")



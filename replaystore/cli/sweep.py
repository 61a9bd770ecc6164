"""``sweep``: many ``train`` runs (a grid of hyperparameters x seeds) as Dask tasks, one table."""

from __future__ import annotations

import copy
import time

import click

from .common import json_arg, main, progress_arg
from .train import train as train_command

# the train options every run of a sweep shares (same names, types, defaults and help)
_SHARED = ("updates", "epochs", "batch_size", "alpha", "alpha_schedule", "gamma", "balanced_by",
           "tol", "max_updates", "env_id", "env_kwargs", "trust_env_id", "lr", "cql_alpha")
_TRAIN_OPTIONS = {p.name: p for p in train_command.params if isinstance(p, click.Option)}


def _shared_options(f):
    for name in reversed(_SHARED):
        f.__click_params__ = [*getattr(f, "__click_params__", []), copy.copy(_TRAIN_OPTIONS[name])]
    return f


def _grid(ctx: click.Context, specs: tuple[str, ...]) -> dict[str, list]:
    """``--param name=v1,v2`` as ``{name: [v1, v2]}``, each value converted by the type of
    the train option of that name (an unknown name is left for the library to refuse)."""
    grid: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        parts = [v.strip() for v in values.split(",")]
        if not sep or not name or not values.strip() or "" in parts:
            raise click.ClickException(f"--param {spec!r}: expected NAME=V1,V2,... "
                                       "(e.g. --param gamma=0.9,0.99)")
        if name in grid:
            raise click.ClickException(f"--param {name}: given twice (list every value in one "
                                       f"--param {name}=V1,V2,...)")
        opt = _TRAIN_OPTIONS.get(name) if name in _SHARED else None
        if opt is None:
            grid[name] = parts
            continue
        try:
            grid[name] = [opt.type.convert(v, opt, ctx) for v in parts]
        except click.BadParameter as e:
            raise click.ClickException(f"--param {name}: {e.message}") from None
    return grid


@main.command()
@click.argument("path", type=click.Path())
@click.option("--agent", "agent_kind", type=click.Choice(["q", "qlearning", "dqn", "cql"]),
              default="q", show_default=True,
              help="As for train: q (or qlearning): tabular Q-learning; dqn; cql (the torch extra).")
@click.option("--param", "params", multiple=True, metavar="NAME=V1,V2,...",
              help="A hyperparameter and its values (repeat for a grid), typed as train's option of "
                   "that name: gamma, batch_size, updates, epochs, tol, max_updates; q: alpha, "
                   "alpha_schedule; dqn/cql: lr; cql: cql_alpha.")
@click.option("--seeds", default="0", show_default=True,
              help="Seeds of the runs of each combination: 0-4, 0,1,2 or 0-2,7.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes of the local Dask cluster [default: one per core].")
@click.option("--scheduler", help="Run on the Dask cluster of this scheduler (tcp://host:8786) "
                                  "instead of a local one; PATH must be readable on its workers.")
@click.option("--eval-episodes", type=click.IntRange(min=0), default=100, show_default=True,
              help="Episodes of the evaluation at the end of each run (0: none).")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Times a run that fails is tried again (a run whose worker dies is always rerun).")
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="Write the table (a row per run) to this .csv, .json or .parquet file.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False),
              help="Draw the mean return per parameter value, with the seeds' spread, into this "
                   ".png or .svg (the plot extra).")
@click.option("--overwrite", is_flag=True, help="Replace --out and --plot if they exist.")
@_shared_options
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar over the runs on the terminal.")
@click.pass_context
def sweep(ctx, path, agent_kind, params, seeds, workers, scheduler, eval_episodes, retries, out,
          plot_out, overwrite, progress, **shared):
    """Train once per combination of --param values and seed, in parallel on Dask, into one table.

    Each run is what `replaystore train PATH` with those options does, evaluated at its end;
    the other train options given here apply to every run. Prints the mean and std over the
    seeds of each combination's mean return, best first. Needs the dask extra:
    pip install "replaystore[dask]".

    \b
    Example:
      replaystore sweep fl.zarr --param gamma=0.9,0.95,0.99 --param alpha=0.1,0.5 \\
          --batch-size 256 --updates 20000 --seeds 0-4 --workers 2 --out sweep.csv --plot sweep.png
    """
    from ..agents.qtable_files import refuse_existing
    from ..sweep import parse_seeds, summarize, table_format, write_table
    from ..sweep import sweep as run_sweep

    if workers is not None and scheduler:
        raise click.ClickException("--workers sizes a local cluster; with --scheduler the runs go "
                                   "to that cluster's workers: give one of them")
    grid = _grid(ctx, params)
    fixed = {k: v for k, v in shared.items()
             if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    if "env_kwargs" in fixed:
        fixed["env_kwargs"] = json_arg(fixed["env_kwargs"], "--env-kwargs")
    if out:
        table_format(out)
        refuse_existing(out, overwrite)
    if plot_out:
        from ..plot import out_format

        out_format(plot_out)
        refuse_existing(plot_out, overwrite)
    t0 = time.perf_counter()
    table = run_sweep(path, agent=agent_kind, grid=grid, seeds=parse_seeds(seeds), train_kwargs=fixed,
                      evaluate_episodes=eval_episodes or None, scheduler=scheduler, workers=workers,
                      retries=retries, progress=progress_arg(progress))
    seconds = time.perf_counter() - t0
    summary = summarize(table)
    click.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))
    n_seeds = table["seed"].nunique()
    lines = [f"{len(table)} runs ({len(summary)} combinations x {n_seeds} seeds) in {seconds:.1f} s"]
    if n_seeds > 1 and (table["mode"] == "sweeps").all():
        lines.append("note: full sweeps over the store do not depend on the seed (every seed gave the "
                     "same run); give --batch-size to train in minibatches")
    if out:
        write_table(table, out, overwrite=overwrite)
        lines.append(f"wrote the table ({len(table)} rows) to {out}")
    if plot_out:
        from ..sweep import plot_sweep

        plot_sweep(table, plot_out)
        lines.append(f"drew the mean returns into {plot_out}")
    click.echo("\n".join(lines))

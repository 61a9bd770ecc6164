"""``replaystore collect``: record an environment into a store."""

from __future__ import annotations

import sys

import click

from .common import json_arg, main, open_readonly, progress_arg


# -- collect ---------------------------------------------------------------------------------
@main.command()
@click.argument("env_id")
@click.option("--out", "out", required=True, type=click.Path(), help="Store to create or append to.")
@click.option("--steps", type=click.IntRange(min=1), help="Environment steps to record (per run, all envs).")
@click.option("--episodes", type=click.IntRange(min=1), help="Complete episodes to record.")
@click.option("--policy", type=click.Choice(["random"]), default="random", show_default=True,
              help="Behaviour policy when no --qtable is given.")
@click.option("--qtable", type=click.Path(dir_okay=False), metavar="AGENT",
              help="Act epsilon-greedily from AGENT, a saved agent: one .npz file written by train/learn "
                   "(older q.npy files, or any saved policy replaystore can load, work too).")
@click.option("--epsilon", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Exploration rate with --qtable.")
@click.option("--num-envs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run K environments side by side (gymnasium sync vector env).")
@click.option("--capacity", type=click.IntRange(min=1), help="Make a ring buffer keeping the newest C rows.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the environment resets and the policy's random actions.")
@click.option("--env-kwargs", help='Environment keyword arguments as JSON, e.g. \'{"is_slippery": true}\' '
              "(appending: default the store's).")
@click.option("--allow-different-env", is_flag=True,
              help="Append even if the store records another env or env kwargs (it is then recorded as mixed).")
@click.option("--chunk-rows", type=click.IntRange(min=1), help="Rows per chunk file (new stores; default by size).")
@click.option("--codecs", help="Compression for a new store: none, zstd[:level], lz4, blosc-lz4, gzip.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
@click.option("--workers", type=click.IntRange(min=1),
              help="Collect as Dask tasks on a local cluster of N worker processes, into a sharded "
                   "dataset (needs the dask extra).")
@click.option("--scheduler", metavar="ADDRESS",
              help="Run the tasks on an existing Dask cluster, e.g. tcp://host:8786 (a sharded dataset).")
@click.option("--tasks", type=click.IntRange(min=1),
              help="With --workers/--scheduler: split the budget into T tasks, one shard each "
                   "(default 8; the rows depend on T and --seed, not on the workers).")
def collect(env_id, out, steps, episodes, policy, qtable, epsilon, num_envs, capacity, seed, env_kwargs,
            allow_different_env, chunk_rows, codecs, progress, workers, scheduler, tasks):
    """Run ENV_ID with a policy and record every transition into --out.

    Example: replaystore collect FrozenLake-v1 --out fl.zarr --steps 50000 --seed 0

    With --workers N (or --scheduler ADDRESS) the budget is split into --tasks Dask tasks that
    fill one sharded dataset side by side; a task whose worker dies is retried and resumes
    its shard, and running the same command again resumes a run that stopped.

    Ctrl-C stops it and keeps every row committed so far (exit status 130).
    """
    from ..collect import collect as run_collect

    if (steps is None) == (episodes is None):
        raise click.ClickException("collect: give exactly one of --steps N or --episodes N")
    if workers is not None or scheduler is not None:
        _collect_sharded(env_id, out, steps, episodes, qtable or policy, epsilon if qtable else 0.0,
                         num_envs, capacity, seed, env_kwargs, allow_different_env, chunk_rows, codecs,
                         progress, workers, scheduler, tasks)
        return
    if tasks is not None:
        raise click.ClickException("collect: --tasks splits the budget between Dask workers; "
                                   "give --workers N or --scheduler ADDRESS too")
    try:
        stats = run_collect(env_id, out, steps=steps, episodes=episodes, policy=qtable or policy,
                            epsilon=epsilon if qtable else 0.0, num_envs=num_envs, capacity=capacity,
                            seed=seed, env_kwargs=None if env_kwargs is None else json_arg(env_kwargs, "--env-kwargs"),
                            progress=progress_arg(progress), chunk_rows=chunk_rows, codecs=codecs,
                            allow_different_env=allow_different_env)
    except KeyboardInterrupt:
        click.echo(f"interrupted: {_kept(out)}", err=True)
        sys.exit(130)
    mean = "-" if stats.mean_return is None else f"{stats.mean_return:.3f}"
    click.echo(f"recorded {stats.steps} transitions ({stats.episodes} complete episodes, "
               f"mean return {mean}) into {out} in {stats.seconds:.1f}s")


def _collect_sharded(env_id, out, steps, episodes, policy, epsilon, num_envs, capacity, seed, env_kwargs,
                     allow_different_env, chunk_rows, codecs, progress, workers, scheduler, tasks):
    from ..collect.distributed import collect_sharded

    if capacity is not None:
        raise click.ClickException("collect: a sharded dataset (--workers/--scheduler) is unbounded; "
                                   "drop --capacity")
    if allow_different_env:
        raise click.ClickException("collect: every shard of a sharded dataset records one env; "
                                   "--allow-different-env does not apply with --workers/--scheduler")
    try:
        stats = collect_sharded(
            env_id, out, steps=steps, episodes=episodes, tasks=tasks, workers=workers,
            scheduler=scheduler, policy=policy, epsilon=epsilon, num_envs=num_envs, seed=seed,
            env_kwargs=None if env_kwargs is None else json_arg(env_kwargs, "--env-kwargs"),
            chunk_rows=chunk_rows, codecs=codecs, progress=progress_arg(progress))
    except KeyboardInterrupt:
        click.echo(f"interrupted: {_kept(out)}; run the same command again to resume", err=True)
        sys.exit(130)
    mean = "-" if stats.mean_return is None else f"{stats.mean_return:.3f}"
    resumed = f", {stats.resumed} shards resumed" if stats.resumed else ""
    click.echo(f"recorded {stats.steps} transitions ({stats.episodes} complete episodes, mean return "
               f"{mean}) into {stats.shards} shards of {out} on {stats.workers} workers in "
               f"{stats.seconds:.1f}s{resumed}")


def _kept(out: str) -> str:
    """How many committed rows the store at ``out`` holds after an interrupted collect."""
    from ..errors import NotAStoreError, ReplayStoreError

    try:
        with open_readonly(out) as store:
            return f"kept {len(store):,} rows (committed) in {out}"
    except NotAStoreError:
        return f"kept 0 rows: {out} was not created"
    except (ReplayStoreError, OSError) as e:
        return f"the rows committed in {out} are kept, but could not be counted: {e}"

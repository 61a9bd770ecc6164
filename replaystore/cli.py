"""The ``replaystore`` command line: a thin layer over the library.

Each command parses its arguments, makes one library call and prints what it returns.
Errors from replaystore (and bad files or arguments) become a one-line message and exit
code 1. This is the only module that imports click: long jobs get a :class:`ClickProgress`
(a click progress bar on stderr) as their ``progress=``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from . import __version__
from .demo import DEMO_STORE
from .errors import ReplayStoreError
from .progress import Progress


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


def _progress(on: bool) -> Progress | bool:
    """What ``--progress/--no-progress`` passes to the library."""
    return ClickProgress() if on else False


def _fields(value: str | None) -> list[str] | None:
    """``--fields a,b`` as a list (``None``: all)."""
    return [f.strip() for f in value.split(",")] if value else None


class _Group(click.Group):
    """Turn expected errors into ``Error: <one line>`` and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ReplayStoreError, FileExistsError, FileNotFoundError, PermissionError,
                IsADirectoryError, NotADirectoryError) as e:
            raise click.ClickException(" ".join(str(e).split())) from None
        except OSError as e:  # disk full, I/O errors
            raise click.ClickException(" ".join(f"{e.filename or ''}: {e.strerror or e}".split())) from None


def _json_arg(value: str | None, name: str) -> dict:
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


def _open(path: str):
    from .storage import open as open_store

    return open_store(path, mode="r")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="replaystore")
def main() -> None:
    """Disk-backed experience replay: collect -> store -> sample -> train -> evaluate."""


# -- collect ---------------------------------------------------------------------------------
@main.command()
@click.argument("env_id")
@click.option("--out", "out", required=True, type=click.Path(), help="Store to create or append to.")
@click.option("--steps", type=click.IntRange(min=1), help="Environment steps to record (per run, all envs).")
@click.option("--episodes", type=click.IntRange(min=1), help="Complete episodes to record.")
@click.option("--policy", type=click.Choice(["random"]), default="random", show_default=True,
              help="Behaviour policy when no --qtable is given.")
@click.option("--qtable", type=click.Path(dir_okay=False),
              help="Act epsilon-greedily from this saved Q.npy (or any saved policy replaystore can load).")
@click.option("--epsilon", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Exploration rate with --qtable.")
@click.option("--num-envs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run K environments side by side (gymnasium sync vector env).")
@click.option("--capacity", type=click.IntRange(min=1), help="Make a ring buffer keeping the newest C rows.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the environment resets and the policy's random actions.")
@click.option("--env-kwargs", help='Environment keyword arguments as JSON, e.g. \'{"is_slippery": true}\'.')
@click.option("--chunk-rows", type=click.IntRange(min=1), help="Rows per chunk file (new stores; default by size).")
@click.option("--codecs", help="Compression for a new store: none, zstd[:level], lz4, blosc-lz4, gzip.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
def collect(env_id, out, steps, episodes, policy, qtable, epsilon, num_envs, capacity, seed, env_kwargs,
            chunk_rows, codecs, progress):
    """Run ENV_ID with a policy and record every transition into --out.

    Example: replaystore collect FrozenLake-v1 --out fl.zarr --steps 50000 --seed 0
    """
    from .collect import collect as run_collect

    if (steps is None) == (episodes is None):
        raise click.ClickException("collect: give exactly one of --steps N or --episodes N")
    stats = run_collect(env_id, out, steps=steps, episodes=episodes, policy=qtable or policy,
                        epsilon=epsilon if qtable else 0.0, num_envs=num_envs, capacity=capacity,
                        seed=seed, env_kwargs=_json_arg(env_kwargs, "--env-kwargs"),
                        progress=_progress(progress), chunk_rows=chunk_rows, codecs=codecs)
    mean = "-" if stats.mean_return is None else f"{stats.mean_return:.3f}"
    click.echo(f"recorded {stats.steps} transitions ({stats.episodes} complete episodes, "
               f"mean return {mean}) into {out} in {stats.seconds:.1f}s")


# -- inspect ---------------------------------------------------------------------------------
@main.command()
@click.argument("path", type=click.Path())
def info(path):
    """Schema, spaces, rows, episodes, capacity, chunking and size on disk of a store.

    Example: replaystore info data/frozenlake-4x4-slippery.zarr
    """
    from .inspect import summary

    click.echo("\n".join(summary(_open(path)).lines()))


@main.command()
@click.argument("path", type=click.Path())
@click.option("-n", "rows", type=click.IntRange(min=0), default=10, show_default=True,
              help='Rows to show.')
@click.option("--fields", help="Comma-separated fields to show (default: all narrow ones).")
def head(path, rows, fields):
    """The first rows of a store as a pandas table.

    Example: replaystore head fl.zarr -n 5 --fields obs,action,reward
    """
    from .inspect import frame_text

    click.echo(frame_text(_open(path).to_pandas(fields=_fields(fields), start=0, stop=rows)))


@main.command()
@click.argument("path", type=click.Path())
@click.option("-n", "rows", type=click.IntRange(min=0), default=None, help="Show only the first N episodes.")
def episodes(path, rows):
    """One line per episode: id, first row, length, return, terminated, truncated.

    Example: replaystore episodes fl.zarr -n 20
    """
    from .inspect import frame_text

    df = _open(path).episodes()
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
    from .inspect import frame_text, sample_frame

    df = sample_frame(_open(path), batch_size=batch_size, balanced_by=balanced_by, seed=seed,
                      fields=_fields(fields))
    click.echo(frame_text(df))


@main.command()
@click.argument("path", type=click.Path())
@click.option("--repair", is_flag=True,
              help="Rebuild damaged checksums, indexes and state from the data; drop only rows "
                   "whose data fails its checksum (and say which).")
def verify(path, repair):
    """Check every chunk, class index and the state of a store; exit 1 if anything is damaged.

    Example: replaystore verify fl.zarr --repair
    """
    from .storage import verify as run_verify

    report = run_verify(path, repair=repair)
    click.echo("\n".join(report.lines()))
    if not report.ok:
        sys.exit(1)


# -- train and evaluate ---------------------------------------------------------------------------
@main.command()
@click.argument("path", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Where to save Q.npy.")
@click.option("--updates", type=click.IntRange(min=1), help="Exactly this many updates (default: until converged).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Passes over the store instead.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Minibatches of B sampled rows (default: full sweeps over the store).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help='Base learning rate in (0, 1] (see --alpha-schedule).')
@click.option("--alpha-schedule", type=click.Choice(["auto", "visits", "polynomial", "constant"]),
              default="auto", show_default=True,
              help="Step-size schedule; auto = constant for sweeps, visits for minibatches.")
@click.option("--gamma", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help='Discount factor.')
@click.option("--balanced-by", help="Sample class-balanced by this discrete field.")
@click.option("--seed", type=int, default=0, show_default=True,
              help='Seed of the sampler and of the evaluation episodes.')
@click.option("--tol", type=float, default=1e-6, show_default=True,
              help="Stop when the bound on the Q-table's remaining error is below this.")
@click.option("--max-updates", type=click.IntRange(min=1), default=500_000, show_default=True,
              help='Stop after this many updates even if the Q-table still changes.')
@click.option("--eval-every", type=click.IntRange(min=1), help="Evaluate every K updates.")
@click.option("--eval-episodes", type=click.IntRange(min=1), default=100, show_default=True,
              help='Episodes of each evaluation (with --eval-every).')
@click.option("--env", "env_id", help="Environment for evaluation (default: the store's env id).")
@click.option("--env-kwargs", help="Evaluation env kwargs as JSON (default: the store's).")
@click.option("--log", "log_csv", type=click.Path(dir_okay=False), help="Write metrics to this CSV.")
@click.option("--trust-env-id", is_flag=True,
              help="Make the store's recorded env id even in the module:Env-v0 form, which imports "
                   "that module (refused by default: a store is data).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
def train(path, out, updates, epochs, batch_size, alpha, alpha_schedule, gamma, balanced_by, seed, tol,
          max_updates, eval_every, eval_episodes, env_id, env_kwargs, log_csv, trust_env_id, progress):
    """Train a tabular Q-learning agent offline from the store at PATH.

    Example: replaystore train fl.zarr --out q.npy --gamma 0.95 --eval-every 5000
    """
    from .training import train_store

    report = train_store(path, out, updates=updates, epochs=epochs, batch_size=batch_size,
                         balanced_by=balanced_by, alpha=alpha, alpha_schedule=alpha_schedule,
                         gamma=gamma, seed=seed, tol=tol, max_updates=max_updates,
                         eval_every=eval_every, eval_episodes=eval_episodes, env_id=env_id,
                         env_kwargs=_json_arg(env_kwargs, "--env-kwargs") if env_kwargs else None,
                         log_csv=log_csv, progress=_progress(progress), trust_env_id=trust_env_id)
    click.echo("\n".join(report.lines()))


@main.command()
@click.argument("env_id")
@click.argument("qtable", type=click.Path(dir_okay=False))
@click.option("--episodes", type=click.IntRange(min=1), default=100, show_default=True,
              help='Episodes to run.')
@click.option("--seed", type=int, default=0, show_default=True,
              help='Seed of the first episode (episode k uses seed + k) and of the random actions.')
@click.option("--epsilon", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help='Probability of a random action (0: the greedy policy).')
@click.option("--env-kwargs", help="Environment keyword arguments as JSON.")
def evaluate(env_id, qtable, episodes, seed, epsilon, env_kwargs):
    """Run a saved Q-table greedily in ENV_ID: mean return, success rate, episode length.

    Example: replaystore evaluate FrozenLake-v1 q.npy --episodes 1000 --env-kwargs '{"is_slippery": true}'
    """
    from .training import evaluate as run_eval

    r = run_eval(env_id, qtable, episodes=episodes, seed=seed, epsilon=epsilon,
                 env_kwargs=_json_arg(env_kwargs, "--env-kwargs"))
    click.echo(f"{env_id}: {r['episodes']} episodes, mean return {r['mean_return']:.3f} "
               f"(std {r['std_return']:.3f}), success rate {r['success_rate']:.2%}, "
               f"mean length {r['mean_length']:.1f}")


# -- learn online (replaystore/online/) ----------------------------------------------------------
@main.command()
@click.argument("env_id")
@click.option("--buffer", "buffer", required=True, type=click.Path(file_okay=False),
              help="The replay buffer: a ring store created here (its run state goes next to it).")
@click.option("--capacity", required=True, type=click.IntRange(min=2), help="Ring capacity in rows.")
@click.option("--steps", required=True, type=click.IntRange(min=1), help="Env steps of the whole run.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Where to save Q.npy.")
@click.option("--seed", type=int, default=0, show_default=True,
              help='Seed of the run: env resets, exploration, the sampler (all derived from it).')
@click.option("--gamma", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help='Discount factor.')
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help='Base learning rate in (0, 1] (see --alpha-schedule).')
@click.option("--alpha-schedule", type=click.Choice(["visits", "polynomial", "constant"]),
              default="visits", show_default=True, help="Step-size schedule of the Q-learning agent.")
@click.option("--env-kwargs", help='Environment keyword arguments as JSON, e.g. \'{"is_slippery": true}\'.')
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help='Transitions per update.')
@click.option("--updates-per-step", type=click.IntRange(min=0), default=1, show_default=True,
              help='Updates (each one sampled batch) after every env step.')
@click.option("--learning-starts", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Rows stored before updates begin.")
@click.option("--epsilon-start", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help='Exploration rate at the first step.')
@click.option("--epsilon-end", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help='Exploration rate after --epsilon-fraction of the run.')
@click.option("--epsilon-fraction", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Share of the run over which epsilon decays linearly.")
@click.option("--commit-every", type=click.IntRange(min=1), default=None,
              help="Commit the buffer and save the run state every N env steps "
                   "[default: 10000, less for rings with a smaller write buffer].")
@click.option("--eval-every", type=click.IntRange(min=1), help="Evaluate the greedy policy every N steps.")
@click.option("--eval-episodes", type=click.IntRange(min=1), default=100, show_default=True,
              help='Episodes of each evaluation (with --eval-every; the gap to optimal needs none).')
@click.option("--balanced-by", help="Sample class-balanced by this discrete field (or reward_sign).")
@click.option("--log", "log_csv", type=click.Path(dir_okay=False),
              help="Write the learning curves (episodes, evaluations, TD) to this CSV.")
@click.option("--resume", is_flag=True, help="Continue the run saved in --buffer (same settings).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
def learn(env_id, buffer, capacity, steps, out, seed, gamma, alpha, alpha_schedule, env_kwargs, batch_size,
          updates_per_step, learning_starts, epsilon_start, epsilon_end, epsilon_fraction, commit_every,
          eval_every, eval_episodes, balanced_by, log_csv, resume, progress):
    """Learn tabular Q-learning online in ENV_ID with a replay buffer on disk.

    Example: replaystore learn Taxi-v4 --buffer taxi.zarr --capacity 50000 --steps 200000 --out taxi.npy --seed 0

    After a crash, the same command with --resume goes on from the last commit.
    """
    from .online import learn as run_learn

    report = run_learn(env_id, buffer, capacity=capacity, steps=steps, out=out, seed=seed, gamma=gamma,
                       alpha=alpha, alpha_schedule=alpha_schedule,
                       env_kwargs=_json_arg(env_kwargs, "--env-kwargs"), batch_size=batch_size,
                       updates_per_step=updates_per_step, learning_starts=learning_starts,
                       epsilon_start=epsilon_start, epsilon_end=epsilon_end,
                       epsilon_fraction=epsilon_fraction, commit_every=commit_every,
                       eval_every=eval_every, eval_episodes=eval_episodes, balanced_by=balanced_by,
                       log=log_csv, resume=resume, progress=_progress(progress))
    click.echo("\n".join(report.lines()))



@main.command()
@click.argument("curves", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--label", "labels", multiple=True,
              help="Legend name of each CSV, in order (repeat; default: the file names).")
@click.option("--smooth", type=click.IntRange(min=1),
              help="Episodes in the moving average of returns [default: from the number of episodes].")
@click.option("--title", help="Title above the panels.")
def plot(curves, out, labels, smooth, title):
    """Draw the learning curves CURVES (CSVs of replaystore learn --log) into a PNG.

    Panels: episode returns, evaluations (and the gap to optimal), TD/update size. Several
    CSVs are several runs on the same axes. Needs the plot extra: pip install 'replaystore[plot]'.

    Example: replaystore plot small.csv big.csv --out curves.png --label 5k --label 50k
    """
    from .plot import plot_curves

    plot_curves(list(curves), out, labels=list(labels) or None, smooth=smooth, title=title)
    click.echo(f"drew {len(curves)} run{'s' if len(curves) != 1 else ''} into {out}")


def _clean_leftovers(out: str) -> None:
    """Remove what killed jobs (pack, unpack, import, export, merge...) left next to ``out``."""
    from pathlib import Path

    from .storage.jobs import clean_leftovers

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
    from .inspect import human_bytes
    from .storage import pack as run_pack

    _clean_leftovers(out)
    res = run_pack(path, out, overwrite=overwrite, progress=_progress(progress))
    click.echo(f"packed {path} into {res} ({human_bytes(os.path.getsize(res))})")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace the store OUT if it exists.")
def unpack(path, out, overwrite):
    """Unpack the zip store PATH into the directory OUT (to append to it again).

    Example: replaystore unpack frozenlake.zip runs/frozenlake.zarr
    """
    from .storage import unpack as run_unpack

    _clean_leftovers(out)
    res = run_unpack(path, out, overwrite=overwrite)
    click.echo(f"unpacked {path} into {res}")


# -- export / import (replaystore/interop/) ------------------------------------------------------
# (export, import commands go here)
def _interop(fn, *args, **kwargs):
    """Run an exporter/importer; what it leaves out is in its summary line, not warned."""
    import warnings

    from .interop import InteropWarning

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
    from .interop import export_as

    opts: dict[str, Any] = {"overwrite": overwrite, "progress": _progress(progress)}
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
    from .interop import import_from

    opts: dict[str, Any] = {"overwrite": overwrite, "progress": _progress(progress)}
    if fmt == "d4rl":
        opts.update(discrete_actions=discrete_actions, env_id=env_id,
                    env_kwargs=_json_arg(env_kwargs, "--env-kwargs"))
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
    from .merge import merge as run_merge

    res = run_merge(out, inputs, append=append, allow_different_env=allow_different_env,
                    capacity=capacity, chunk_rows=chunk_rows, codecs=codecs,
                    progress=_progress(progress))
    resumed = (f"; went on with an interrupted merge ({res.resumed_rows:,} rows were copied already)"
               if res.resumed_rows else "")
    click.echo(f"merged {res.inputs} store{'s' if res.inputs != 1 else ''} ({res.rows:,} rows, "
               f"{res.episodes:,} episodes) into {out} ({res.size:,} rows) in {res.seconds:.1f}s{resumed}")


# -- demo ----------------------------------------------------------------------------------------
@main.command()
@click.option("--data", type=click.Path(), default=None,
              help="Store to train on [default: the bundled FrozenLake 4x4 slippery dataset, "
                   "shipped inside the package].")
@click.option("--gamma", type=click.FloatRange(0, 1, max_open=True), default=0.95, show_default=True,
              help='Discount factor.')
@click.option("--seed", type=int, default=0, show_default=True,
              help='Seed of training and of the evaluation episodes.')
@click.option("--episodes", type=click.IntRange(min=1), default=1000, show_default=True,
              help='Episodes of the evaluation.')
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also save the Q-table here.")
@click.option("--trust-env-id", is_flag=True,
              help="Make the store's recorded env id even in the module:Env-v0 form, which imports "
                   "that module (refused by default: a store is data).")
def demo(data, gamma, seed, episodes, out, trust_env_id):
    """The main job on the bundled dataset: train offline, evaluate, compare with the optimum.

    Example: replaystore demo
    """
    from .demo import run_demo

    run_demo(DEMO_STORE if data is None else data, gamma=gamma, seed=seed, episodes=episodes, out=out,
             echo=click.echo, trust_env_id=trust_env_id)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="replaystore")
    sys.exit(0)

"""``replaystore plot``: pictures of learning curves, of a store's data, of a policy."""

from __future__ import annotations

import click

from .common import json_arg, main

_LOCATIONS = ("R", "G", "Y", "B")


@main.command()
@click.argument("sources", metavar="SOURCE...", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Picture to write: FILE.png or FILE.svg (the suffix chooses).")
@click.option("--by", help="Store: the discrete field of the class-balance panel [default: action].")
@click.option("--env", "env_id", help="Saved agent: the grid-world env to draw its policy on "
                                      "(FrozenLake-v1, CliffWalking-v1, Taxi-v4, ...).")
@click.option("--env-kwargs", help="Saved agent: env kwargs as JSON, e.g. '{\"is_slippery\": false}'.")
@click.option("--passenger", type=click.Choice(_LOCATIONS), default="R", show_default=True,
              help="Saved Taxi agent: the passenger's location the picture shows.")
@click.option("--destination", type=click.Choice(_LOCATIONS), default="G", show_default=True,
              help="Saved Taxi agent: the destination the picture shows.")
@click.option("--label", "labels", multiple=True,
              help="Logs: legend name of each CSV, in order (repeat; default: the file names).")
@click.option("--smooth", type=click.IntRange(min=1),
              help="learn --log CSVs: episodes in the moving average of returns [default: from "
                   "the number of episodes].")
@click.option("--title", help="Title above the picture.")
def plot(sources, out, by, env_id, env_kwargs, passenger, destination, labels, smooth, title):
    """Draw a picture of SOURCE (a training log, a store or a saved agent) into a PNG or SVG.

    \b
    SOURCE is one of:
      a training log (.csv of learn --log or train --log; several are several runs):
        learning curves, returns and max |dQ| (or TD size) against updates or env steps;
      a store (directory, .zip or URL): histograms of episode returns and lengths and the
        class balance of the actions (or of the discrete field --by);
      a saved agent (.npz) with --env: the greedy policy as arrows over a heat map of the
        state values V(s) = max_a Q(s,a), for FrozenLake, CliffWalking and Taxi (the taxi's
        position, for one --passenger/--destination).

    Needs the plot extra: pip install 'replaystore[plot]'.

    \b
    Example:
      replaystore plot small.csv big.csv --out curves.png --label 5k --label 50k
      replaystore plot fl.zarr --out data.png --by action
      replaystore plot q.npz --env FrozenLake-v1 --env-kwargs '{"is_slippery": true}' --out policy.svg
    """
    from ..plot import plot as draw
    from ..plot import source_kind

    draw(list(sources), out, by=by, env=env_id,
         env_kwargs=json_arg(env_kwargs, "--env-kwargs") if env_kwargs else None,
         labels=list(labels) or None, smooth=smooth, passenger=_LOCATIONS.index(passenger),
         destination=_LOCATIONS.index(destination), title=title)
    kind = source_kind(sources[0])
    what = {"log": f"{len(sources)} run{'s' if len(sources) != 1 else ''}",
            "store": f"the data of {sources[0]}", "agent": f"the policy of {sources[0]}"}[kind]
    click.echo(f"drew {what} into {out}")

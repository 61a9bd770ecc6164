"""``replaystore demo``: the whole job on the bundled dataset."""

from __future__ import annotations

import sys

import click

from ..demo import DEMO_STORE
from .common import main


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
    from ..demo import run_demo

    run_demo(DEMO_STORE if data is None else data, gamma=gamma, seed=seed, episodes=episodes, out=out,
             echo=click.echo, trust_env_id=trust_env_id)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="replaystore")
    sys.exit(0)

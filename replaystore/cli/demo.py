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
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also save the agent here (a saved agent: one .npz file, as train/learn write; "
                   "an existing file is refused unless --overwrite).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Also write the report into this directory (created if missing): report.txt, "
                   "train-log.csv (one row per sweep) and the pictures learning-curve.png, data.png "
                   "and policy.png (they need the plot extra: pip install 'replaystore[plot]'; "
                   "without it only the text is written). A directory already holding any of "
                   "these files is refused unless --overwrite; its other files are never touched.")
@click.option("--overwrite", is_flag=True, help="Replace --out and the report files already in --report DIR.")
@click.option("--trust-env-id", is_flag=True,
              help="Make the store's recorded env id even in the module:Env-v0 form, which imports "
                   "that module (refused by default: a store is data).")
def demo(data, gamma, seed, episodes, out, report_dir, overwrite, trust_env_id):
    """The main job on the bundled dataset: bundled data -> train offline -> evaluate.

    Trains a tabular Q-learning agent on transitions collected earlier (the bundled FrozenLake
    dataset, a random policy's; the demo collects nothing), evaluates its greedy policy in the
    env (mean undiscounted return over --episodes episodes) and compares it with the exact
    optimum (the discounted value of the start state at --gamma).

    \b
    Example:
      replaystore demo
      replaystore demo --report demo-report     # also report.txt and pictures in demo-report/
    """
    from ..demo import run_demo

    run_demo(DEMO_STORE if data is None else data, gamma=gamma, seed=seed, episodes=episodes, out=out,
             echo=click.echo, trust_env_id=trust_env_id, report_dir=report_dir, overwrite=overwrite)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="replaystore")
    sys.exit(0)

"""``replaystore plot``: pictures of learning curves."""

from __future__ import annotations

import click

from .common import main


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
    from ..plot import plot_curves

    plot_curves(list(curves), out, labels=list(labels) or None, smooth=smooth, title=title)
    click.echo(f"drew {len(curves)} run{'s' if len(curves) != 1 else ''} into {out}")

"""Tests of ``replaystore plot`` / :func:`replaystore.plot.plot_curves`: the curves come from
real short online runs (CliffWalking, two ring capacities), the pictures are real PNG files
read back, and bad logs give one-line errors from the real ``python -m replaystore``."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, cli_one_line, run_cli

import replaystore as rs
from replaystore.online import learn
from replaystore.online.curves import COLUMNS
from replaystore.plot import plot_curves, read_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> list[Path]:
    """Curves CSVs of two real runs that differ only in the ring capacity."""
    d = tmp_path_factory.mktemp("runs")
    out = []
    for cap in (5000, 800):
        log = d / f"cap{cap}.csv"
        learn("CliffWalking-v1", d / f"buf{cap}.zarr", env_kwargs={"max_episode_steps": 500},
              capacity=cap, steps=4000, learning_starts=500, commit_every=500, eval_every=1000,
              eval_episodes=2, log=log, out=d / f"q{cap}.npy", seed=0)
        out.append(log)
    return out


def assert_png(path: Path, min_px: int = 300) -> tuple[int, int]:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    h, w = matplotlib.image.imread(path).shape[:2]
    assert w > min_px and h > min_px, (w, h)
    return w, h


def episode_returns(path: Path) -> list[float]:
    with open(path, newline="") as f:
        return [float(r["return"]) for r in csv.DictReader(f) if r["kind"] == "episode"]


def test_one_run_draws_three_panels_with_the_moving_average(logs, tmp_path):
    png = tmp_path / "one.png"
    fig = plot_curves([logs[0]], png, smooth=7, title="CliffWalking")
    assert_png(png)
    episode_ax, eval_ax, td_ax, gap_ax = fig.axes  # the gap is a second axis on the eval panel
    assert td_ax.get_yscale() == "log" and gap_ax.get_yscale() == "symlog"
    assert episode_ax.get_shared_x_axes().joined(episode_ax, td_ax)
    assert fig.get_suptitle() == "CliffWalking"
    # the moving average: its last point is the mean of the last 7 episode returns of the CSV
    returns = episode_returns(logs[0])
    (ma,) = episode_ax.get_lines()
    assert ma.get_label() == "mean of 7 episodes"
    assert len(ma.get_ydata()) == len(returns) > 20
    assert ma.get_ydata()[-1] == pytest.approx(np.mean(returns[-7:]))
    assert ma.get_ydata()[0] == pytest.approx(returns[0])
    # evaluations: the 4 evaluations of the run, the gap in % (the run reaches the optimum)
    (ev,) = eval_ax.get_lines()
    assert list(ev.get_xdata()) == [1000, 2000, 3000, 4000]
    gap = gap_ax.get_lines()[0].get_ydata()
    assert gap[0] > 1 and gap[-1] == 0


def test_default_window_follows_the_number_of_episodes(logs, tmp_path):
    n = len(episode_returns(logs[0]))
    fig = plot_curves(logs[0], tmp_path / "d.png")
    assert fig.axes[0].get_lines()[0].get_label() == f"mean of {max(1, min(100, n // 10))} episodes"


def test_two_runs_share_the_axes_with_a_legend(logs, tmp_path):
    png = tmp_path / "two.png"
    fig = plot_curves(logs, png, labels=["5k rows", "800 rows"], smooth=5)
    assert_png(png)
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["5k rows (mean of 5 episodes)",
                                                          "800 rows (mean of 5 episodes)"]
    for ax in fig.axes[:3]:
        assert len(ax.get_lines()) == 2
    colors = {line.get_color() for line in fig.axes[0].get_lines()}
    assert len(colors) == 2


def test_cli_plot(logs, tmp_path):
    png = tmp_path / "cli.png"
    r = run_cli("plot", *logs, "--out", png, "--label", "big", "--label", "small", "--smooth", "3",
                "--title", "capacity")
    assert r.exit_code == 0, r.output
    assert cli_one_line(r) == f"drew 2 runs into {png}"
    assert_png(png)
    r = run_cli("plot", logs[0], "--out", png, "--smooth", "0")
    assert r.exit_code != 0 and "--smooth" in r.output


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replaystore", "plot", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_errors_are_one_line(logs, tmp_path):
    png = tmp_path / "x.png"
    not_log = tmp_path / "table.csv"
    not_log.write_text("obs,action,reward\n0,1,0.0\n")
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(COLUMNS) + "\n")
    assert_one_line_error(_cli(not_log, "--out", png), str(not_log), "not a learning-curves log",
                          "missing kind")
    assert_one_line_error(_cli(tmp_path / "nope.csv", "--out", png), "nope.csv", "no such")
    assert_one_line_error(_cli(empty, "--out", png), str(empty), "no rows")
    assert_one_line_error(_cli(logs[0], "--out", png, "--label", "a", "--label", "b"), "labels")
    assert_one_line_error(_cli(logs[0], "--out", tmp_path / "no" / "x.png"), str(tmp_path / "no" / "x.png"))
    assert not png.exists()


@pytest.mark.parametrize("row, needles", [
    ("bogus,10,,,,,,,", ["line 2", "kind", "'bogus'"]),
    ("episode,ten,-1.0,3,,,,,", ["line 2", "'step'", "'ten'"]),
    ("episode,-4,-1.0,3,,,,,", ["line 2", "step", ">= 0"]),
    ("episode,10,,3,,,,,", ["line 2", "'return'"]),
    ("eval,10,,,nan,0.0,,,", ["line 2", "'mean_return'", "finite"]),
])
def test_bad_rows_name_the_file_and_line(tmp_path, row, needles):
    p = tmp_path / "bad.csv"
    p.write_text(",".join(COLUMNS) + "\n" + row + "\n")
    with pytest.raises(rs.CurveLogError) as e:
        read_curves(p)
    for n in [str(p), *needles]:
        assert n in str(e.value)


def test_error_classes(tmp_path):
    with pytest.raises(rs.CurveLogNotFoundError) as e:
        plot_curves([tmp_path / "missing.csv"], tmp_path / "x.png")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, rs.ReplayStoreError)
    with pytest.raises(rs.CurveLogNotFoundError):
        read_curves(tmp_path)  # a directory
    png = tmp_path / "pic.png"
    png.write_bytes(PNG_SIGNATURE + bytes(range(256)))
    with pytest.raises(rs.CurveLogError, match="UTF-8"):
        read_curves(png)
    with pytest.raises(rs.CurveLogError, match="no learning-curves log given"):
        plot_curves([], tmp_path / "x.png")


def test_missing_matplotlib_names_the_extra(logs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    with pytest.raises(rs.MissingExtraError) as e:
        plot_curves(logs[0], tmp_path / "x.png")
    assert isinstance(e.value, ImportError)
    assert "pip install 'replaystore[plot]'" in str(e.value)


def test_missing_matplotlib_names_the_extra_for_stores_and_agents_too(tmp_path, monkeypatch):
    from replaystore.agents import QLearningAgent
    from replaystore.collect import collect
    from replaystore.plot import plot

    collect("FrozenLake-v1", tmp_path / "fl.zarr", steps=200, env_kwargs={"is_slippery": False})
    QLearningAgent(16, 4).save(tmp_path / "q.npz")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    for source, kw in ((tmp_path / "fl.zarr", {}), (tmp_path / "q.npz", {"env": "FrozenLake-v1"})):
        with pytest.raises(rs.MissingExtraError, match=r"pip install 'replaystore\[plot\]'"):
            plot(source, tmp_path / "x.svg", **kw)
    assert not (tmp_path / "x.svg").exists()


def test_importing_does_not_import_matplotlib():
    code = ("import sys, replaystore, replaystore.plot, replaystore.cli, replaystore.demo; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr

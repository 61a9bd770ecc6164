"""Tests of the pictures (issue 14, item 7): ``replaystore plot`` on a training log of
either kind, a store and a saved agent (FrozenLake, CliffWalking, Taxi), and
``replaystore demo --report DIR``.

Every picture is a real file read back: a PNG must have the exact pixel size of its
figure and real content (many colours, a good share of non-white pixels: not a blank
canvas, which :func:`test_the_content_check_rejects_a_blank_canvas` shows the check
catches); an SVG must be an SVG document with drawn paths. What is drawn is checked on
the returned figure: bar heights against counts computed here, arrow directions against
each env's own action numbers.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

import replaystore as rs
from replaystore.agents import QLearningAgent
from replaystore.collect import collect
from replaystore.online.curves import COLUMNS as ONLINE_COLUMNS
from replaystore.plot import TRAIN_LOG_COLUMNS, class_counts, plot, plot_policy, source_kind

DET = {"is_slippery": False}


def assert_picture(path: Path, size: tuple[int, int], coloured: float = 0.1) -> np.ndarray:
    """The PNG at ``path`` is ``size`` = (width, height) pixels with real content: many
    colours, and more than ``coloured`` of its pixels in colour (not white, grey or black:
    axes, ticks and labels alone are grey; data are drawn in colour)."""
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)[..., :3]
    assert (img.shape[1], img.shape[0]) == size
    colours = np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"{path}: only {len(colours)} colours"
    share = (img.max(axis=-1) - img.min(axis=-1) > 0.2).mean()
    assert share > coloured, f"{path}: only {share:.2%} of the pixels are in colour"
    return img


#: the share of pixels in colour a line plot (curves) has at least
LINES = 0.005


def assert_svg(path: Path, inches: tuple[float, float]) -> None:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert (root.get("width"), root.get("height")) == (f"{inches[0] * 72:g}pt", f"{inches[1] * 72:g}pt")
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 20


def test_the_content_check_rejects_a_blank_canvas_and_empty_axes(tmp_path):
    from matplotlib.figure import Figure

    Figure(figsize=(7, 6)).savefig(tmp_path / "blank.png", dpi=100)
    with pytest.raises(AssertionError, match="colours"):
        assert_picture(tmp_path / "blank.png", (700, 600))
    fig = Figure(figsize=(9, 6.2), layout="constrained")
    for ax in fig.subplots(2, 1):
        ax.set_ylabel("greedy policy mean return")
        ax.set_xlabel("updates (full sweeps over the store)")
        ax.grid(True, alpha=0.3)
    fig.suptitle("no data")
    fig.savefig(tmp_path / "empty.png", dpi=100)
    with pytest.raises(AssertionError, match="in colour"):
        assert_picture(tmp_path / "empty.png", (900, 620), LINES)


# -- training logs ------------------------------------------------------------------------
def write_train_log(path: Path, sweeps: bool = True) -> Path:
    """A ``train --log`` CSV as the trainer writes it: a row per sweep, evaluations on some."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRAIN_LOG_COLUMNS)
        for u in range(1, 41):
            dq = 0.5 * 0.8 ** u
            ev = [min(1.0, u / 20), min(1.0, u / 20), 6 + 10 / u] if u % 5 == 0 else ["", "", ""]
            w.writerow([u, 1000 * u, u if sweeps else "", dq, dq * 19 if sweeps else "", u / 100, *ev])
    return path


def test_a_train_log_draws_evaluations_and_max_dq_against_updates(tmp_path):
    log = write_train_log(tmp_path / "metrics.csv")
    fig = plot(log, tmp_path / "c.png")
    assert_picture(tmp_path / "c.png", (900, 620), LINES)  # 2 panels: 9 x (2 * 2.8 + 0.6) inches
    ev_ax, dq_ax, rate_ax = fig.axes
    ret, = ev_ax.get_lines()
    assert list(ret.get_xdata()) == [5, 10, 15, 20, 25, 30, 35, 40]
    assert list(ret.get_ydata()) == [0.25, 0.5, 0.75, 1, 1, 1, 1, 1]
    assert list(rate_ax.get_lines()[0].get_ydata())[:2] == [25, 50]  # in %
    dq, bound = dq_ax.get_lines()
    assert dq_ax.get_yscale() == "log" and len(dq.get_xdata()) == 40
    assert np.allclose(bound.get_ydata(), 19 * dq.get_ydata())
    assert dq_ax.get_xlabel() == "updates (full sweeps over the store)"
    plot(log, tmp_path / "c.svg")
    assert_svg(tmp_path / "c.svg", (9, 6.2))


def test_a_minibatch_log_without_evaluations_has_one_panel(tmp_path):
    log = tmp_path / "mb.csv"
    log.write_text(",".join(TRAIN_LOG_COLUMNS) + "\n" + "".join(
        f"{u * 1000},{u * 32000},,{1 / u},,{u},,,\n" for u in range(1, 30)))
    fig = plot(log, tmp_path / "mb.png")
    assert_picture(tmp_path / "mb.png", (900, 340), LINES)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "updates (minibatches)" and len(ax.get_lines()) == 1


def test_an_online_log_is_still_drawn_from_its_header(tmp_path):
    log = tmp_path / "online.csv"
    rows = [f"episode,{10 * i},{-20 + i * 0.5},{10},,,,," for i in range(1, 60)]
    rows += [f"eval,{100 * i},,,{-15 + i},0.5,{0.5 / i},," for i in range(1, 6)]
    rows += [f"td,{20 * i},,,,,,{1 / i},32" for i in range(1, 30)]
    log.write_text(",".join(ONLINE_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    fig = plot(log, tmp_path / "o.png")
    assert_picture(tmp_path / "o.png", (900, 900), LINES)  # 3 panels
    assert fig.axes[0].get_ylabel() == "episode return" and fig.axes[-2].get_xlabel() == "env steps"


def test_logs_of_two_kinds_are_not_mixed(tmp_path):
    off = write_train_log(tmp_path / "off.csv")
    on = tmp_path / "on.csv"
    on.write_text(",".join(ONLINE_COLUMNS) + "\nepisode,5,1.0,5,,,,,\n")
    with pytest.raises(rs.CurveLogError, match="draw them separately"):
        plot([on, off], tmp_path / "x.png")


@pytest.mark.parametrize("row, needle", [("x,1,1,0.5,1,0.1,,,", "update"),
                                         ("3,1,1,,1,0.1,,,", "'max_dq'"),
                                         ("3,1,1,0.5,1,0.1,good,,", "'mean_return'")])
def test_bad_train_log_rows_name_the_file_and_line(tmp_path, row, needle):
    p = tmp_path / "bad.csv"
    p.write_text(",".join(TRAIN_LOG_COLUMNS) + "\n" + row + "\n")
    with pytest.raises(rs.CurveLogError) as e:
        plot(p, tmp_path / "x.png")
    assert str(p) in str(e.value) and "line 2" in str(e.value) and needle in str(e.value)


# -- stores ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lake") / "fl.zarr"
    collect("FrozenLake-v1", path, steps=3000, seed=0, env_kwargs=DET)
    return path


def test_a_store_draws_returns_lengths_and_the_action_balance(lake, tmp_path):
    fig = plot(lake, tmp_path / "data.png")
    assert_picture(tmp_path / "data.png", (1400, 420))
    ret_ax, len_ax, bal_ax = fig.axes
    with rs.open(lake) as store:
        ep = store.episodes()
        actions = store.read_range(0, len(store), fields=["action"])["action"]
    done = ep[ep["complete"]]
    # returns: FrozenLake's are 0 or 1, one bar each, heights the episode counts
    assert sorted(p.get_height() for p in ret_ax.patches) == sorted(
        done["return"].value_counts().tolist())
    assert sum(p.get_height() for p in len_ax.patches) == len(done)
    assert [p.get_height() for p in bal_ax.patches] == np.bincount(actions, minlength=4).tolist()
    assert [t.get_text() for t in bal_ax.get_xticklabels()] == ["left\n(0)", "down\n(1)",
                                                                 "right\n(2)", "up\n(3)"]
    plot(lake, tmp_path / "data.svg")
    assert_svg(tmp_path / "data.svg", (14, 4.2))


def test_the_balance_of_any_discrete_field_with_by(tmp_path):
    path = tmp_path / "s.zarr"
    rng = np.random.default_rng(0)
    n = 3000
    label = rng.choice([-2, 0, 3, 7], size=n, p=[0.1, 0.2, 0.3, 0.4])
    with rs.create(path, gym.spaces.Discrete(5), gym.spaces.Discrete(2),
                   extra_fields=[("label", "int16")]) as s:
        s.extend({"obs": rng.integers(0, 5, n), "action": rng.integers(0, 2, n),
                  "reward": rng.standard_normal(n).astype(np.float32), "next_obs": rng.integers(0, 5, n),
                  "terminated": rng.random(n) < 0.05, "truncated": np.zeros(n, bool), "label": label})
    r = run_cli("plot", path, "--by", "label", "--out", tmp_path / "b.png")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"drew the data of {path} into {tmp_path / 'b.png'}"
    assert_picture(tmp_path / "b.png", (1400, 420))
    fig = plot(path, tmp_path / "b.png", by="label")
    classes, counts = class_counts(rs.open(path), "label")
    assert classes.tolist() == [-2, 0, 3, 7]
    assert counts.tolist() == [int((label == c).sum()) for c in (-2, 0, 3, 7)]
    assert [p.get_height() for p in fig.axes[2].patches] == counts.tolist()
    r = run_cli("plot", path, "--by", "reward", "--out", tmp_path / "b.png")
    assert r.exit_code != 0 and "--by reward" in r.output and "discrete" in r.output


# -- policies -------------------------------------------------------------------------------
def arrows(ax) -> dict[tuple[int, int], tuple[int, int]]:
    """(row, col) -> (dx, dy) of each arrow drawn on ``ax`` (y grows downwards)."""
    out = {}
    for a in ax.texts:
        if a.get_text() == "" and hasattr(a, "xyann"):
            (x1, y1), (x0, y0) = a.xy, a.xyann
            out[(round((y0 + y1) / 2), round((x0 + x1) / 2))] = (int(np.sign(x1 - x0)), int(np.sign(y1 - y0)))
    return out


@pytest.mark.parametrize("env_id, kwargs, size, moves", [
    ("FrozenLake-v1", DET, (700, 600), {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}),
    ("CliffWalking-v1", {}, (1300, 480), {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}),
])
def test_grid_policy_arrows_follow_the_env_action_numbers(tmp_path, env_id, kwargs, size, moves):
    env = gym.make(env_id, **kwargs)
    n, k = env.observation_space.n, env.action_space.n
    rng = np.random.default_rng(1)
    agent = QLearningAgent(n, k)
    agent.q = rng.random((n, k))
    agent.save(tmp_path / "q.npz")
    r = run_cli("plot", tmp_path / "q.npz", "--env", env_id, "--env-kwargs",
                '{"is_slippery": false}' if kwargs else "{}", "--out", tmp_path / "p.png")
    assert r.exit_code == 0, r.output
    assert_picture(tmp_path / "p.png", size)
    fig = plot_policy(agent, env, tmp_path / "p.svg")
    assert_svg(tmp_path / "p.svg", (size[0] / 100, size[1] / 100))
    drawn = arrows(fig.axes[0])
    cols = 4 if env_id.startswith("Frozen") else 12
    greedy = agent.q.argmax(axis=1)
    if env_id.startswith("Frozen"):  # no arrows on the holes and the goal
        desc = env.unwrapped.desc.astype(str).reshape(-1)
        expected = {divmod(s, cols): moves[greedy[s]] for s in range(n) if desc[s] not in "HG"}
        assert {t.get_text() for t in fig.axes[0].texts} >= {"S", "H", "G"}
    else:  # no arrows on the cliff and the goal
        expected = {divmod(s, cols): moves[greedy[s]] for s in range(n) if s < 37}
    assert drawn == expected
    v = fig.axes[0].get_images()[0].get_array()
    assert np.allclose(v, agent.q.max(axis=1).reshape(-1, cols))


def test_taxi_shows_pickup_and_dropoff_for_the_chosen_passenger_and_destination(tmp_path):
    env = gym.make("Taxi-v4")
    u = env.unwrapped
    agent = QLearningAgent(500, 6)
    for s in range(500):
        row, col, pas, dest = u.decode(s)
        if pas < 4 and (row, col) == tuple(u.locs[pas]):
            agent.q[s, 4] = 1.0  # pick up where the passenger waits
        elif pas == 4 and (row, col) == tuple(u.locs[dest]):
            agent.q[s, 5] = 2.0  # drop off at the destination
        else:
            agent.q[s, 0] = 0.5  # south
    agent.save(tmp_path / "taxi.npz")
    r = run_cli("plot", tmp_path / "taxi.npz", "--env", "Taxi-v4", "--passenger", "Y",
                "--destination", "B", "--out", tmp_path / "t.png")
    assert r.exit_code == 0, r.output
    assert_picture(tmp_path / "t.png", (1200, 560))
    fig = plot(tmp_path / "taxi.npz", tmp_path / "t.svg", env="Taxi-v4", passenger=2, destination=3)
    assert_svg(tmp_path / "t.svg", (12, 5.6))
    waiting, riding = fig.axes[:2]
    assert "passenger at Y (blue frame) and the destination B" in fig.get_suptitle()
    marks = {ax: {(round(t.get_position()[1]), round(t.get_position()[0])) for t in ax.texts
                  if t.get_text() == m} for ax, m in ((waiting, "P"), (riding, "D"))}
    assert marks[waiting] == {(4, 0)} and marks[riding] == {(4, 3)}  # Y at (4, 0), B at (4, 3)
    assert set(arrows(waiting).values()) == {(0, 1)} and len(arrows(waiting)) == 24
    assert np.allclose(riding.get_images()[0].get_array()[4, 3], 2.0)


def test_source_kinds_and_errors_in_cli_words(lake, tmp_path):
    assert source_kind(lake) == "store" and source_kind("s3://b/x.zarr") == "store"
    assert source_kind("a.zip") == "store" and source_kind("m.csv") == "log"
    QLearningAgent(16, 4).save(tmp_path / "q.npz")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "replaystore", "plot", *map(str, args)],
                              capture_output=True, text=True, timeout=120)

    assert_one_line_error(cli(tmp_path / "q.npz", "--out", tmp_path / "x.png"), "q.npz", "--env")
    assert_one_line_error(cli(tmp_path / "q.npz", "--env", "CartPole-v1", "--out", tmp_path / "x.png"),
                          "CartPole-v1", "FrozenLake, CliffWalking and Taxi")
    assert_one_line_error(cli(tmp_path / "q.npz", "--env", "Taxi-v4", "--out", tmp_path / "x.png"),
                          "q.npz", "(16, 4)", "500 states")
    assert_one_line_error(cli(lake, "--out", tmp_path / "x.gif"), "x.gif", ".png or .svg")
    assert_one_line_error(cli(lake, "--env", "FrozenLake-v1", "--out", tmp_path / "x.png"),
                          "--env applies to a saved agent only")
    assert_one_line_error(cli(tmp_path / "nope.npz", "--env", "FrozenLake-v1", "--out", tmp_path / "x.png"),
                          "nope.npz", "no such file")
    assert not (tmp_path / "x.png").exists()


# -- the demo's report ----------------------------------------------------------------------
def test_demo_report_writes_the_text_and_three_pictures(lake, tmp_path):
    report = tmp_path / "report"
    r = run_cli("demo", "--data", lake, "--episodes", 20, "--report", report)
    assert r.exit_code == 0, r.output
    printed = r.output.strip().splitlines()
    text = (report / "report.txt").read_text().splitlines()
    assert text == printed  # the numbers printed are the ones in the file
    assert [ln.split()[0] for ln in text] == ["dataset", "FrozenLake-v1", "train", "evaluate",
                                              "optimum", "report", "done"]
    assert "mean undiscounted return 1.000 over 20 episodes" in text[3]
    assert text[4].startswith("optimum   discounted value of the start state (gamma=0.95): optimal V*=")
    assert sorted(p.name for p in report.iterdir()) == ["data.png", "learning-curve.png", "policy.png",
                                                         "report.txt", "train-log.csv"]
    assert_picture(report / "learning-curve.png", (900, 620), LINES)
    assert_picture(report / "data.png", (1400, 420))
    assert_picture(report / "policy.png", (700, 600))
    with open(report / "train-log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == TRAIN_LOG_COLUMNS and rows[-1]["mean_return"] == "1.0"
    # a directory holding a report is refused unless --overwrite, which touches nothing else
    (report / "notes.txt").write_text("mine")
    r = run_cli("demo", "--data", lake, "--episodes", 5, "--report", report)
    assert r.exit_code != 0 and "--overwrite" in r.output and "report.txt" in r.output
    r = run_cli("demo", "--data", lake, "--episodes", 5, "--report", report, "--overwrite")
    assert r.exit_code == 0, r.output
    assert "over 5 episodes" in (report / "report.txt").read_text()
    assert (report / "notes.txt").read_text() == "mine"


def test_demo_report_without_matplotlib_writes_the_text_and_says_how(lake, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from replaystore.cli import main; "
            f"main(['demo', '--data', {str(lake)!r}, '--episodes', '5', '--report', "
            f"{str(tmp_path / 'r')!r}])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("report"))
    assert "pictures skipped" in line and "pip install 'replaystore[plot]'" in line
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["report.txt", "train-log.csv"]
    plain = code.replace(f", '--report', {str(tmp_path / 'r')!r}", "")
    r = subprocess.run([sys.executable, "-c", plain], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    hint = [ln for ln in r.stdout.splitlines() if "matplotlib" in ln]
    assert hint == ["pictures  need matplotlib: pip install 'replaystore[plot]', then replaystore "
                    "demo --report DIR"]

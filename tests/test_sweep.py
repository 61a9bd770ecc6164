"""Training sweeps on a real Dask cluster (issue 17, point 5): ``replaystore.sweep`` and
``replaystore sweep``.

One module-scoped ``LocalCluster`` of 2 worker processes runs the sweeps; a sweep with
``workers=1`` starts (and closes) its own. Checked: every (params, seed) run is a row, in
grid order; a row equals a direct ``train_store`` run and a ``replaystore train`` run with
the same options; the table does not depend on the number of workers; a worker SIGKILLed
while it trains still gives the complete, identical table (and its nanny restarts it); bad
grids and seeds are refused before any task reaches the scheduler, with a one-line CLI
message; the CLI end to end writes the table and its picture.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import replaystore as rs
from replaystore.cli import main
from replaystore.collect import collect
from replaystore.sweep import (
    RESULT_COLUMNS,
    TIMING_COLUMNS,
    parse_seeds,
    summarize,
    sweep,
    write_table,
)
from replaystore.training import train_store

distributed = pytest.importorskip("distributed")

#: short runs: minibatches, so that the seed matters
SHORT = {"batch_size": 64, "updates": 1500}
GRID = {"gamma": [0.9, 0.99]}
SEEDS = [0, 1, 2]
EPISODES = 50
#: runs long enough (about a second or two each) to be killed while they train
LONG = {"batch_size": 256, "updates": 20_000}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "fl.zarr"
    collect("FrozenLake-v1", path, steps=20_000, seed=0)
    return path


@pytest.fixture(scope="module")
def client():
    with (distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=":0") as cluster,
          distributed.Client(cluster) as c):
        yield c


@pytest.fixture(scope="module")
def table(store, client):
    return sweep(store, agent="q", grid=GRID, seeds=SEEDS, train_kwargs=SHORT,
                 evaluate_episodes=EPISODES, client=client)


def reproducible(t: pd.DataFrame) -> pd.DataFrame:
    return t.drop(columns=list(TIMING_COLUMNS))


def transitions(c) -> int:
    """Task transitions the scheduler has made so far (none: no task was submitted)."""
    return c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)


def test_the_table_has_every_run_in_grid_order(table):
    assert list(table.columns) == ["agent", "gamma", "seed", *RESULT_COLUMNS]
    assert list(zip(table["gamma"], table["seed"], strict=True)) == [
        (g, s) for g in GRID["gamma"] for s in SEEDS]
    assert (table["agent"] == "q").all() and (table["mode"] == "minibatches").all()
    assert (table["updates"] == SHORT["updates"]).all()
    assert (table["transitions"] == SHORT["updates"] * SHORT["batch_size"]).all()
    assert table["mean_return"].between(0, 1).all() and table["mean_length"].gt(0).all()
    assert (table["worker_seconds"] >= table["train_seconds"]).all()
    # the seeds give different runs (so the row order is checked for real)
    assert table.groupby("gamma")["final_max_dq"].nunique().eq(len(SEEDS)).all()


def test_a_row_is_the_run_train_store_and_replaystore_train_make(store, table, tmp_path):
    row = table.iloc[-1]  # gamma 0.99, seed 2
    report = train_store(store, None, gamma=0.99, seed=2, eval_every=SHORT["updates"],
                         eval_episodes=EPISODES, **SHORT)
    ev = report.result.evaluations[-1]
    assert (row["updates"], row["final_max_dq"]) == (report.result.updates, report.result.last_max_dq)
    assert [row[k] for k in ("mean_return", "std_return", "success_rate", "mean_length")] == [
        ev[k] for k in ("mean_return", "std_return", "success_rate", "mean_length")]
    r = CliRunner().invoke(main, ["train", str(store), "--out", str(tmp_path / "q.npz"), "--gamma",
                                  "0.99", "--seed", "2", "--batch-size", "64", "--updates", "1500",
                                  "--eval-every", "1500", "--eval-episodes", str(EPISODES),
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    m = re.search(r"update\s+1,500: mean return ([\d.]+), success ([\d.]+)%, mean length ([\d.]+)",
                  r.output)
    assert m, r.output
    assert (float(m[1]), float(m[2]), float(m[3])) == (round(row["mean_return"], 3),
                                                       round(100 * row["success_rate"], 2),
                                                       round(row["mean_length"], 1))


def test_one_worker_gives_the_same_table(store, table):
    one = sweep(store, agent="qlearning", grid=GRID, seeds=SEEDS, train_kwargs=SHORT,
                evaluate_episodes=EPISODES, workers=1)  # its own LocalCluster, closed after
    pd.testing.assert_frame_equal(reproducible(one), reproducible(table))


def test_a_worker_killed_mid_sweep_still_gives_the_whole_table(store, client):
    kw = {"agent": "q", "grid": GRID, "seeds": [0, 1], "train_kwargs": LONG,
          "evaluate_episodes": EPISODES, "client": client}
    base = sweep(store, **kw)
    pids = client.run(os.getpid)
    out: dict = {}

    def run() -> None:
        try:
            out["table"] = sweep(store, **kw)
        except BaseException as e:  # (re-raised below)
            out["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    busy: list[str] = []
    while len(busy) < 2 and time.monotonic() < deadline:  # both workers training
        processing = client.processing()
        busy = [w for w, keys in processing.items()
                if any("replaystore-sweep" in str(k) for k in keys)]
        time.sleep(0.02)
    assert len(busy) == 2, client.processing()
    time.sleep(0.3)  # into the run (each takes a second or more)
    assert worker.is_alive()
    victim = busy[0]
    lost = processing[victim]
    os.kill(pids[victim], signal.SIGKILL)
    worker.join(120)
    assert not worker.is_alive()
    if "error" in out:
        raise out["error"]
    pd.testing.assert_frame_equal(reproducible(out["table"]), reproducible(base))
    for key in lost:  # the scheduler took the runs off the dead worker and ran them again
        story = client.run_on_scheduler(
            lambda dask_scheduler, key=key: [(s[1], s[2]) for s in dask_scheduler.story(key)])
        dropped = story.index(("processing", "released"))  # (ValueError: it never was)
        again = max(i for i, (_, b) in enumerate(story) if b == "processing")
        assert dropped < again and ("processing", "memory") in story[again:], story
    client.wait_for_workers(2, timeout=30)  # the nanny started a new worker process
    after = client.run(os.getpid)
    survivor = next(p for w, p in pids.items() if w != victim)
    assert len(after) == 2 and survivor in after.values() and pids[victim] not in after.values()


@pytest.mark.parametrize("grid, seeds, kw, needle", [
    ({"lr": [0.1]}, [0], {}, "unknown sweep parameter 'lr'"),
    ({"alpha": [0.5]}, [0], {"agent": "dqn"}, "unknown sweep parameter 'alpha'"),
    ({"gamma": []}, [0], {}, "'gamma': no values"),
    ({"gamma": [0.9, 1.5]}, [0], {}, "'gamma': 1.5 is not a number in [0, 1]"),
    ({"gamma": [0.9, 0.9]}, [0], {}, "given twice"),
    ({"updates": [10, 0]}, [0], {}, "'updates': 0 is not a whole number >= 1"),
    ({"batch_size": [True]}, [0], {}, "'batch_size': True is not a whole number"),
    ({"seed": [1, 2]}, [0], {}, "seeds are not a sweep parameter"),
    ({"updates": [10]}, [0], {"train_kwargs": {"epochs": 2}}, "updates or epochs, not both"),
    ({"gamma": [0.9]}, [0], {"train_kwargs": {"gamma": 0.5}}, "both a sweep parameter and a fixed"),
    ({"gamma": [0.9]}, "4-0", {}, "the range 4-0 is empty"),
    ({"gamma": [0.9]}, "0-x", {}, "'0-x' is not a seed or a range"),
    ({"gamma": [0.9]}, [], {}, "none given"),
    ({"gamma": [0.9]}, [1, 1], {}, "seed 1 is given twice"),
    ({"gamma": [0.9]}, [-1], {}, "-1 is not a non-negative int"),
])
def test_bad_grids_and_seeds_are_refused_before_any_task(store, client, grid, seeds, kw, needle):
    before = transitions(client)
    with pytest.raises(rs.errors.AgentConfigError) as e:
        sweep(store, grid=grid, seeds=seeds, client=client, **{"agent": "q", **kw})
    assert needle in str(e.value)
    assert isinstance(e.value, ValueError)
    assert transitions(client) == before


def test_a_missing_store_is_refused_before_any_task(tmp_path, client):
    before = transitions(client)
    with pytest.raises(rs.NotAStoreError, match=re.escape(str(tmp_path / "nope.zarr"))):
        sweep(tmp_path / "nope.zarr", grid=GRID, seeds=[0], client=client)
    assert transitions(client) == before


def test_without_dask_the_error_names_the_extra(store, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes the import fail
    with pytest.raises(rs.MissingExtraError, match=re.escape('pip install "replaystore[dask]"')):
        sweep(store, grid=GRID, seeds=[0])


def run_cli(*args: object):
    return CliRunner().invoke(main, ["sweep", *map(str, args)])


@pytest.mark.parametrize("args, needle", [
    (["--param", "lr=0.1"], "--param lr: unknown parameter"),
    (["--param", "gamma=0.9,1.5"], "--param gamma: 1.5 is not in the range"),
    (["--param", "gamma"], "expected NAME=V1,V2"),
    (["--param", "gamma=0.9,"], "expected NAME=V1,V2"),
    (["--param", "gamma=0.9", "--param", "gamma=0.99"], "--param gamma: given twice"),
    (["--param", "updates=ten"], "--param updates: 'ten' is not a valid integer"),
    (["--param", "gamma=0.9", "--gamma", "0.5"], "given both by --param and by its own option"),
    (["--seeds", "4-0"], "--seeds '4-0': the range 4-0 is empty"),
    (["--seeds", "0,0"], "--seeds: seed 0 is given twice"),
    (["--out", "table.txt"], "as .csv, .json or .parquet"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "give one of them"),
])
def test_bad_cli_arguments_give_one_line(store, args, needle):
    r = run_cli(store, *args, "--no-progress")
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert needle in lines[0], lines[0]
    assert "=True" not in lines[0] and "Traceback" not in r.output


def test_the_cli_end_to_end(store, client, table, tmp_path):
    out, png = tmp_path / "sweep.csv", tmp_path / "sweep.png"
    r = run_cli(store, "--agent", "qlearning", "--param", "gamma=0.9,0.99", "--seeds", "0-2",
                "--batch-size", 64, "--updates", 1500, "--eval-episodes", EPISODES,
                "--scheduler", client.scheduler.address, "--out", out, "--plot", png,
                "--no-progress")
    assert r.exit_code == 0, r.output
    got = pd.read_csv(out)
    pd.testing.assert_frame_equal(reproducible(got), reproducible(table), check_dtype=False)
    summary = summarize(table)
    lines = r.output.splitlines()
    assert lines[0].split()[:4] == ["gamma", "seeds", "return_mean", "return_std"]
    assert [float(ln.split()[0]) for ln in lines[1:3]] == summary["gamma"].tolist()
    assert "6 runs (2 combinations x 3 seeds)" in r.output and f"to {out}" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_cli(store, "--param", "gamma=0.9", "--scheduler", client.scheduler.address,
                    "--out", out, "--no-progress")
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_full_sweeps_say_the_seed_does_not_matter(store, client):
    r = run_cli(store, "--param", "gamma=0.9,0.95", "--seeds", "0,1", "--eval-episodes", 0,
                "--scheduler", client.scheduler.address, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "do not depend on the seed" in r.output and "4 runs (2 combinations x 2 seeds)" in r.output


def test_tables_write_as_csv_json_and_parquet(table, tmp_path):
    for name, read in (("t.csv", pd.read_csv), ("t.json", pd.read_json),
                       ("t.parquet", pd.read_parquet)):
        write_table(table, tmp_path / name)
        back = read(tmp_path / name)
        pd.testing.assert_frame_equal(back, table, check_dtype=False)
    assert json.loads((tmp_path / "t.json").read_text())[0]["seed"] == 0
    with pytest.raises(rs.StoreExistsError):
        write_table(table, tmp_path / "t.csv")


def test_summary_is_mean_and_std_over_seeds(table):
    s = summarize(table, sort=False)
    for gamma, row in zip(GRID["gamma"], s.itertuples(), strict=True):
        runs = table[table["gamma"] == gamma]["mean_return"]
        assert row.gamma == gamma and row.seeds == len(SEEDS)
        assert np.isclose(row.return_mean, runs.mean()) and np.isclose(row.return_std, runs.std())


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds(" 3, 0-1 ,7") == [3, 0, 1, 7]
    assert parse_seeds(range(3)) == [0, 1, 2]

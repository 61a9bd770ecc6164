"""Crash and resume of an online run: real processes SIGKILLed at random times.

A run of ``learn`` (the library call behind ``replaystore learn``) is killed 20 times at
seeded random delays and resumed each time with ``resume=True`` until it completes. The
children are forked from a forkserver that has imported replaystore once, so each start
costs milliseconds rather than the ~1.5 s of a fresh interpreter; each child is its own
process, killed with SIGKILL (no cleanup, no flush).
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import random
import signal
import time

import gymnasium as gym
import numpy as np
from click.testing import CliRunner

import replaystore as rs
from replaystore.agents import QLearningAgent, policy_value_gap
from replaystore.cli import main
from replaystore.online import learn, run_dir_of

STEPS = 10_000
KILLS = 20


def settings(root, resume: bool) -> dict:
    return dict(env_id="CliffWalking-v1", buffer=str(root / "buf.zarr"), capacity=20_000, steps=STEPS,
                out=str(root / "q.npy"), seed=0, gamma=0.99, env_kwargs={"max_episode_steps": 500},
                learning_starts=500, commit_every=500, log=str(root / "curves.csv"), resume=resume)


def episode_rows(path) -> list[dict]:
    with open(path) as f:
        return [r for r in csv.DictReader(f) if r["kind"] == "episode"]


def is_store(path) -> bool:
    """``rs.create`` has finished: the group metadata carries the store's attributes (zarr
    writes a bare group document first)."""
    try:
        rs.open(path).close()
    except (rs.ReplayStoreError, OSError):
        return False
    return True


def test_sigkill_at_random_times_then_resume(tmp_path):
    # the uninterrupted run: its time calibrates the kill delays, its gap is the tolerance
    (tmp_path / "ref").mkdir()
    t0 = time.perf_counter()
    ref = learn(**settings(tmp_path / "ref", resume=False))
    ref_seconds = time.perf_counter() - t0
    assert ref.result.steps == STEPS and ref.gap is not None and ref.gap < 1e-9

    root = tmp_path / "crash"
    root.mkdir()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["replaystore.online", "gymnasium"])
    rng = random.Random(2024)
    longest = max(0.05, ref_seconds / KILLS)
    kills, attempts, done = 0, 0, False
    totals = []
    while not done:
        p = ctx.Process(target=learn, kwargs=settings(root, resume=attempts > 0))
        p.start()
        attempts += 1
        if attempts == 1:  # the first kill comes after the store exists (a half-made store is
            while p.is_alive() and not is_store(root / "buf.zarr"):  # not resumable)
                time.sleep(0.005)
        if kills < KILLS:
            time.sleep(rng.uniform(0.0, longest))
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
        p.join(60)
        assert p.exitcode is not None, "learn hung"
        if p.exitcode == -signal.SIGKILL:
            kills += 1
            if (root / "buf.zarr" / "zarr.json").exists():
                with rs.open(root / "buf.zarr") as store:
                    totals.append(store.total)
        else:
            assert p.exitcode == 0, f"attempt {attempts} failed with exit code {p.exitcode}"
            done = True
        assert attempts < 200
    assert kills >= KILLS, f"the run finished after only {kills} kills"
    assert totals == sorted(totals) and totals[-1] < STEPS  # killed mid-run, never going back

    with rs.open(root / "buf.zarr") as store:
        assert store.total == STEPS and len(store) == STEPS
        assert store.info["online_run"]["step"] == STEPS
        d = store.read_range(0, STEPS, fields=["terminated", "truncated"])
    assert rs.verify(root / "buf.zarr").ok
    r = CliRunner().invoke(main, ["verify", str(root / "buf.zarr")])
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(run_dir_of(root / "buf.zarr"))) == [f"state-{STEPS:012d}.npz"]

    # the curves: every completed episode once, in order, exactly the store's episode ends
    rows = episode_rows(root / "curves.csv")
    steps = [int(r["step"]) for r in rows]
    assert len(steps) == len(set(steps)) and steps == sorted(steps)
    ends = (np.flatnonzero(d["terminated"] | d["truncated"]) + 1).tolist()
    assert steps == ends

    # the final greedy policy is as good as the uninterrupted run's
    env = gym.make("CliffWalking-v1", max_episode_steps=500)
    agent = QLearningAgent.load(root / "q.npy")
    gap = policy_value_gap(env, agent.greedy_policy(), 0.99)["rel_gap"]
    assert gap <= max(ref.gap, 0.0) + 1e-9


def test_resume_after_a_lost_commit_goes_on_from_the_store(tmp_path):
    """A run state written for rows the store never committed (killed between the two) is
    stale: the resumed run goes on from the store's committed step and removes it."""
    kw = settings(tmp_path, resume=False)
    kw.update(steps=3_000, log=None)
    learn(**{**kw, "steps": 3_000})
    run_dir = run_dir_of(tmp_path / "buf.zarr")
    saved = run_dir / f"state-{3_000:012d}.npz"
    # pretend a later state was written but its commit never happened
    os.link(saved, run_dir / f"state-{3_500:012d}.npz")
    report = learn(**{**kw, "resume": True})
    assert report.result.resumed_from == 3_000 and report.result.steps_this_call == 0
    assert sorted(os.listdir(run_dir)) == [saved.name]

"""How the replay buffer's capacity changes online learning (issue 13, item 6).

For every environment, capacity and seed this tool runs the online loop
(:class:`replaystore.OnlineTrainer`: epsilon-greedy tabular Q-learning, one transition
appended and one minibatch of 32 replayed per env step) on a fresh ring buffer on disk
of that capacity, and grades the greedy policy exactly every ``--eval-every`` steps:
``gap = (V* - V^pi) / |V*|`` by value iteration and policy evaluation on
``env.unwrapped.P`` (the trainer's ``evaluations[i]["gap"]``). Settings: gamma 0.99,
the agent's defaults otherwise (``QLearningAgent.from_spaces(..., gamma=0.99)``),
batch 32, ``learning_starts`` 1,000, epsilon 1 -> 0.05 linearly over the first half of
the run, the same ``--commit-every`` for every capacity.

It prints one markdown table: per env and capacity the median (min-max over seeds) gap
at fixed steps, the step from which the gap stays below 1% to the end of the budget
("not within budget" if it never settles there; resolution ``--eval-every``), and the
median env steps/s of the loop (evaluations included). Stores live in a temp dir that
is removed at the end.

Usage::

    python tools/study_capacity.py                       # FrozenLake 8x8 + Taxi, 1k/10k/100k, seeds 0,1,2
    python tools/study_capacity.py --envs taxi --capacities 1000,100000 --seeds 0 --steps 50000
    python tools/study_capacity.py --plot capacity.png --json capacity.json

``--plot`` needs matplotlib (not a replaystore dependency). ``tools/study_weighting.py`` reuses
the runner and the table helpers of this script.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

import replaystore as rs
from replaystore.agents import QLearningAgent

#: label -> (gymnasium id, gym.make kwargs)
ENVS: dict[str, tuple[str, dict[str, Any]]] = {
    "lake8": ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": True}),
    "lake4": ("FrozenLake-v1", {"map_name": "4x4", "is_slippery": True}),
    "taxi": ("Taxi-v4", {}),
    # gymnasium registers no time limit for CliffWalking (as in tools/optimality.py)
    "cliff": ("CliffWalking-v1", {"max_episode_steps": 500}),
}
NAMES = {"lake8": "FrozenLake-v1 8x8 slippery", "lake4": "FrozenLake-v1 4x4 slippery",
         "taxi": "Taxi-v4", "cliff": "CliffWalking-v1"}
TARGET = 0.01  # "solved": the gap stays at or below 1% of the optimal value


def run_one(env_label: str, capacity: int, seed: int, steps: int, eval_every: int, workdir: Path,
            *, sampler: Any = None, commit_every: int = 500, learning_starts: int = 1_000,
            gamma: float = 0.99, batch_size: int = 32) -> dict[str, Any]:
    """One online run on a fresh ring of ``capacity`` rows; returns the curve of exact gaps."""
    env_id, kwargs = ENVS[env_label]
    env = gym.make(env_id, **kwargs)
    agent = QLearningAgent.from_spaces(env.observation_space, env.action_space, gamma=gamma)
    path = Path(tempfile.mkdtemp(dir=workdir)) / "buf.zarr"
    store = rs.create(path, env.observation_space, env.action_space, capacity=capacity)
    try:
        run = rs.OnlineTrainer(env, agent, store, sampler=sampler, batch_size=batch_size,
                               learning_starts=learning_starts, commit_every=commit_every,
                               epsilon=rs.LinearSchedule(1.0, 0.05, fraction=0.5), seed=seed)
        res = run.train(steps=steps, eval_every=eval_every, eval_episodes=1)
    finally:
        store.close()
        env.close()
        shutil.rmtree(path.parent, ignore_errors=True)
    curve = [(int(e["step"]), float(e["gap"])) for e in res.evaluations]
    return {"env": env_label, "capacity": capacity, "seed": seed, "curve": curve,
            "steps_per_second": res.steps_per_second, "seconds": res.seconds,
            "settled_at": settled_at(curve)}


def settled_at(curve: Sequence[tuple[int, float]], target: float = TARGET) -> int | None:
    """First evaluated step from which every later gap is <= ``target`` (None: never)."""
    at = None
    for step, gap in curve:
        if gap <= target:
            at = step if at is None else at
        else:
            at = None
    return at


def gap_at(curve: Sequence[tuple[int, float]], step: int) -> float | None:
    return next((g for s, g in curve if s == step), None)


# ----------------------------------------------------------------------- formatting
def _k(n: float) -> str:
    return f"{n / 1000:g}k" if n >= 1000 else f"{n:g}"


def _pct(g: float) -> str:
    if abs(g) < 1e-9:  # the optimal policy (policy evaluation leaves ~1e-16 of rounding)
        return "0"
    p = 100 * g
    return f"{p:.0f}%" if abs(p) >= 10 else f"{p:.1f}%" if abs(p) >= 0.1 or p == 0 else f"{p:.2f}%"


def fmt_gaps(values: Sequence[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    med = statistics.median(vals)
    lo, hi = _pct(min(vals)), _pct(max(vals))
    return _pct(med) if lo == hi else f"{_pct(med)} ({lo}–{hi})"


def fmt_settled(values: Sequence[int | None]) -> str:
    """Median (min-max) over seeds; a seed that never settles counts as infinitely late."""
    x = [math.inf if v is None else v for v in values]
    reached = sum(v is not None for v in values)
    if reached == 0:
        return "not within budget"
    med = statistics.median(x)
    med_s = "not within budget" if math.isinf(med) else _k(med)
    if len(x) == 1:
        return med_s
    hi = "never" if math.isinf(max(x)) else _k(max(x))
    note = f", {reached}/{len(x)} seeds" if reached < len(x) else ""
    return f"{med_s} ({_k(min(x))}–{hi}{note})"


def table(rows: list[dict[str, Any]], group: str, group_title: str, at: Sequence[int]) -> str:
    """Markdown table, one line per (env, ``group``) over the seeds in ``rows``."""
    head = ["env", group_title, *[f"gap at {_k(s)}" for s in at], "steady < 1% from step",
            "steps/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys: list[tuple[str, Any]] = []
    for r in rows:
        if (r["env"], r[group]) not in keys:
            keys.append((r["env"], r[group]))
    for env, g in keys:
        rs_ = [r for r in rows if r["env"] == env and r[group] == g]
        cells = [NAMES[env], _k(g) if isinstance(g, int) else str(g)]
        cells += [fmt_gaps([gap_at(r["curve"], s) for r in rs_]) for s in at]
        cells.append(fmt_settled([r["settled_at"] for r in rs_]))
        cells.append(f"{statistics.median(r['steps_per_second'] for r in rs_):,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], group: str, label: Callable[[Any], str], path: str) -> None:
    """Gap vs steps, one panel per env, one line per ``group`` value (median over seeds)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("--plot needs matplotlib (pip install matplotlib); no plot written",
              file=sys.stderr)
        return
    envs = list(dict.fromkeys(r["env"] for r in rows))
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for g in dict.fromkeys(r[group] for r in rows if r["env"] == env):
            curves = [r["curve"] for r in rows if r["env"] == env and r[group] == g]
            steps = [s for s, _ in curves[0]]
            med = [statistics.median(c[i][1] for c in curves) for i in range(len(steps))]
            ax.plot(steps, [max(m, 1e-4) for m in med], label=label(g))
        ax.axhline(TARGET, color="grey", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_title(NAMES[env])
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: _k(x)))
        ax.set_ylabel("gap, median of seeds (0 at 1e-4)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)


def int_list(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def env_list(text: str) -> list[str]:
    out = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in out if x not in ENVS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown env label(s) {bad}; expected some of {sorted(ENVS)}")
    return out


def checkpoints(at: Sequence[int], eval_every: int, steps: int) -> list[int]:
    bad = [s for s in at if s % eval_every and s != steps]
    if bad:
        raise SystemExit(f"--at steps {bad} are not multiples of --eval-every {eval_every}")
    return [s for s in at if s <= steps]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", type=env_list, default=["lake8", "taxi"],
                   help=f"comma-separated labels of {sorted(ENVS)} (default lake8,taxi)")
    p.add_argument("--capacities", type=int_list, default=[1_000, 10_000, 100_000])
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--eval-every", type=int, default=5_000,
                   help="grading interval (default 5000, so that 25k is on the grid)")
    p.add_argument("--at", type=int_list, default=[25_000, 50_000, 100_000, 200_000],
                   help="steps whose gap goes in the table (multiples of --eval-every)")
    p.add_argument("--commit-every", type=int, default=500,
                   help="must be below the smallest capacity (default 500)")
    p.add_argument("--plot", metavar="PATH", help="write gap-vs-steps curves (needs matplotlib)")
    p.add_argument("--json", metavar="PATH", help="write every run's curve as JSON")
    p.add_argument("--table-from", metavar="PATH", help="print the table of a --json file; run nothing")
    a = p.parse_args(argv)
    at = checkpoints(a.at, a.eval_every, a.steps)
    if a.table_from:
        print(table(json.loads(Path(a.table_from).read_text()), "capacity", "capacity", at))
        return 0
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="study_capacity_") as tmp:
        for env in a.envs:
            for cap in a.capacities:
                for seed in a.seeds:
                    r = run_one(env, cap, seed, a.steps, a.eval_every, Path(tmp),
                                commit_every=a.commit_every)
                    rows.append(r)
                    print(f"{env} capacity={cap} seed={seed}: final gap {r['curve'][-1][1]:.4f}, "
                          f"settled at {r['settled_at']}, {r['steps_per_second']:,.0f} steps/s",
                          file=sys.stderr, flush=True)
    print(table(rows, "capacity", "capacity", at))
    print(f"\n{len(rows)} runs of {a.steps:,} steps, seeds {a.seeds}, {time.perf_counter() - t0:,.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.plot:
        plot(rows, "capacity", lambda c: f"capacity {_k(c)}", a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

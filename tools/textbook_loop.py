"""The textbook online Q-learning loop with a deque replay buffer (issue 13, item 7).

A reference to run side by side with ``replaystore learn``; it is not part of the package
and uses replaystore only to grade the learned policy. The loop is the one every RL course
starts from, in plain Python:

* ``collections.deque(maxlen=capacity)`` of ``(s, a, r, s', terminated)`` tuples;
* ``random.sample(buffer, batch_size)`` from a ``random.Random(seed)`` instance (the same
  instance draws the epsilon-greedy actions; the global RNG is never used);
* per env step: act epsilon-greedily, append the transition, then (once the buffer holds
  ``batch_size`` transitions) sample ``batch_size`` and apply, transition by transition,
  ``Q[s][a] += alpha * (r + gamma * max(Q[s']) * (not terminated) - Q[s][a])``
  (a truncated transition still bootstraps);
* epsilon decays linearly from 1.0 to 0.05 over the first half of the run, then stays;
* ``env.reset(seed=seed)`` once; later resets continue the env's own RNG.

``Q`` is a list of lists of Python floats (the fastest pure-Python form; ``max(row)`` and
first-index argmax, like ``np.argmax``). At each checkpoint the greedy policy is graded
exactly with :func:`replaystore.agents.policy_value_gap` (value iteration for ``V*``,
policy evaluation on ``env.unwrapped.P``, both averaged over the initial-state
distribution): ``gap = (V* - V^pi) / |V*|``. steps/s is env steps over the loop's wall
clock (env included, gap computation excluded).

Usage::

    python tools/textbook_loop.py --envs taxi,cliff,lake --steps 200000 --seed 0
    python tools/textbook_loop.py --envs lake --seed 0,1,2 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from replaystore.agents import policy_value_gap


def _first_registered(*ids: str) -> str:
    for env_id in ids:
        if env_id in gym.registry:
            return env_id
    raise SystemExit(f"none of {ids} is registered in gymnasium {gym.__version__}")


# label -> (candidate ids, newest first; gym.make kwargs)
ENVS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "taxi": (("Taxi-v4", "Taxi-v3"), {}),
    # gymnasium registers no time limit for CliffWalking (as in tools/optimality.py)
    "cliff": (("CliffWalking-v1", "CliffWalking-v0"), {"max_episode_steps": 500}),
    "lake": (("FrozenLake-v1",), {"map_name": "4x4", "is_slippery": True}),
}


def make(label: str) -> tuple[str, dict[str, Any], gym.Env]:
    ids, kwargs = ENVS[label]
    env_id = _first_registered(*ids)
    return env_id, kwargs, gym.make(env_id, **kwargs)


def run(label: str, steps: int, seed: int, checkpoints: list[int], *, gamma: float = 0.99,
        alpha: float = 0.1, batch_size: int = 32, capacity: int = 50_000,
        eps_start: float = 1.0, eps_end: float = 0.05, eps_fraction: float = 0.5,
        learning_starts: int | None = None) -> dict[str, Any]:
    """One run of the textbook loop; returns steps/s, gaps at checkpoints, episode stats."""
    env_id, kwargs, env = make(label)
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)
    learning_starts = batch_size if learning_starts is None else learning_starts
    rng = random.Random(seed)
    Q = [[0.0] * n_actions for _ in range(n_states)]
    buffer: deque = deque(maxlen=capacity)
    decay_steps = max(1, int(eps_fraction * steps))
    marks = sorted(c for c in checkpoints if c <= steps)
    gaps: dict[int, float] = {}
    episodes, ep_return, returns = 0, 0.0, []
    loop_seconds = 0.0

    s, _ = env.reset(seed=seed)
    t = 0
    for mark in marks + ([steps] if not marks or marks[-1] != steps else []):
        t0 = time.perf_counter()
        while t < mark:
            eps = eps_start + (eps_end - eps_start) * min(1.0, t / decay_steps)
            if rng.random() < eps:
                a = rng.randrange(n_actions)
            else:
                row = Q[s]
                a = row.index(max(row))
            s2, r, terminated, truncated, _ = env.step(a)
            buffer.append((s, a, r, s2, terminated))
            t += 1
            ep_return += r
            if len(buffer) >= learning_starts:
                for bs, ba, br, bs2, bterm in rng.sample(buffer, batch_size):
                    target = br if bterm else br + gamma * max(Q[bs2])
                    q = Q[bs]
                    q[ba] += alpha * (target - q[ba])
            if terminated or truncated:
                episodes += 1
                returns.append(ep_return)
                ep_return = 0.0
                s, _ = env.reset()
            else:
                s = s2
        loop_seconds += time.perf_counter() - t0
        if mark in marks:  # graded outside the timed section
            policy = np.asarray(Q).argmax(axis=1)
            gaps[mark] = policy_value_gap(env, policy, gamma)["rel_gap"]
    env.close()
    tail = returns[-100:]
    return {
        "env": label, "env_id": env_id, "env_kwargs": kwargs, "seed": seed, "steps": steps,
        "seconds": loop_seconds, "steps_per_s": steps / loop_seconds,
        "gaps": {str(k): v for k, v in gaps.items()}, "episodes": episodes,
        "mean_return_last_100_episodes": sum(tail) / len(tail) if tail else None,
        "config": {"gamma": gamma, "alpha": alpha, "batch_size": batch_size,
                   "capacity": capacity, "learning_starts": learning_starts,
                   "epsilon": [eps_start, eps_end, eps_fraction]},
    }


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", default="taxi,cliff,lake", help="comma list of taxi, cliff, lake")
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--seed", type=_ints, default=[0], help="a seed or a comma list of seeds")
    p.add_argument("--repeats", type=int, default=1, help="runs per (env, seed); steps/s median")
    p.add_argument("--checkpoints", type=_ints, default=[50_000, 100_000, 200_000])
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--capacity", type=int, default=50_000)
    p.add_argument("--learning-starts", type=int, default=None,
                   help="transitions in the buffer before updates begin (default: batch size)")
    p.add_argument("--json", type=Path, help="also write every run here")
    args = p.parse_args(argv)
    args.envs = [e.strip().lower() for e in args.envs.split(",") if e.strip()]
    bad = [e for e in args.envs if e not in ENVS]
    if bad:
        p.error(f"unknown env(s) {bad}; choose from {sorted(ENVS)}")
    if args.repeats < 1 or args.steps < 1:
        p.error("--repeats and --steps must be positive")
    if (args.learning_starts or args.batch_size) < args.batch_size:
        p.error("--learning-starts must be >= --batch-size (random.sample needs that many)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    marks = sorted(c for c in args.checkpoints if c <= args.steps)
    rows, runs = [], []
    for label in args.envs:
        for seed in args.seed:
            reps = []
            for i in range(args.repeats):
                r = run(label, args.steps, seed, marks, gamma=args.gamma, alpha=args.alpha,
                        batch_size=args.batch_size, capacity=args.capacity,
                        learning_starts=args.learning_starts)
                r["repeat"] = i
                reps.append(r)
                print(f"{r['env_id']} seed {seed} repeat {i}: {r['steps_per_s']:,.0f} steps/s, "
                      f"gaps {r['gaps']}", file=sys.stderr, flush=True)
            runs += reps
            rates = [r["steps_per_s"] for r in reps]
            same = all(r["gaps"] == reps[0]["gaps"] for r in reps)  # same seed, same run
            rows.append((reps[0], statistics.median(rates), min(rates), max(rates), same))

    head = "| env | seed | steps | steps/s (median" + (
        f" of {args.repeats}, min-max)" if args.repeats > 1 else ")")
    head += "".join(f" | gap at {m // 1000}k" for m in marks) + " |"
    lines = [head, "|---|---:|---:|---:" + "|---:" * len(marks) + "|"]
    for r, med, lo, hi, same in rows:
        rate = f"{med:,.0f}" + (f" ({lo:,.0f}-{hi:,.0f})" if args.repeats > 1 else "")
        gaps = "".join(f" | {max(0.0, r['gaps'][str(m)]):.2%}" for m in marks)  # -1e-16 -> 0
        lines.append(f"| {r['env_id']} | {r['seed']} | {r['steps']:,} | {rate}{gaps} |"
                     + ("" if same else " (gaps differ between repeats!)"))
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v)
                                                  for k, v in vars(args).items()},
                                         "gymnasium": gym.__version__, "runs": runs},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

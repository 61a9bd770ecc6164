"""Does weighting replay against reward imbalance help online learning? (issue 13, item 6)

On sparse-reward tasks (slippery FrozenLake 4x4 and 8x8: reward 1 at the goal, 0 on
every other step, so rewarded transitions are a few percent of the buffer or fewer) this
tool runs the online loop (:class:`replaystore.OnlineTrainer`, the settings of
``tools/study_capacity.py``: gamma 0.99, batch 32, ``learning_starts`` 1,000, epsilon
1 -> 0.05 over half the run, agent defaults) with two samplers on the same seeds and
budget:

* ``uniform``: every stored transition equally likely (the default);
* ``balanced``: :class:`~replaystore.sampling.BalancedSampler` by ``"reward_sign"``
  (through :class:`replaystore.online.BalancedFactory`): half of each batch from
  the rewarded transitions, half from the rest (a class with no stored row yet is
  skipped).

Rebalancing changes only how often each transition is replayed: a transition's Q-learning
target does not depend on how often it is drawn, so the fixed point is the same, but the
effective step sizes per (state, action) are not. The table reports, per env and sampler,
the median (min-max over seeds) step from which the exact gap to the optimal value
(policy evaluation on ``env.unwrapped.P``) stays below 1% to the end of the budget, the
gap at fixed steps, and env steps/s.

Usage::

    python tools/study_weighting.py                       # lake4, lake8; seeds 0,1,2; 200k steps
    python tools/study_weighting.py --envs lake4,taxi --seeds 0,1 --steps 100000 --at 50000,100000
    python tools/study_weighting.py --plot weighting.png --json weighting.json

``taxi`` (rewards -1/-10/+20) and ``cliff`` are accepted too; on CliffWalking every
reward is negative, so balancing by reward sign is the same as uniform there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_capacity import checkpoints, env_list, int_list, plot, run_one, table  # noqa: E402

from replaystore.online import BalancedFactory  # noqa: E402

SAMPLERS: dict[str, Any] = {"uniform": None, "balanced": BalancedFactory("reward_sign")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", type=env_list, default=["lake4", "lake8"],
                   help="comma-separated labels: lake4, lake8, taxi, cliff (default lake4,lake8)")
    p.add_argument("--samplers", default="uniform,balanced", help="uniform and/or balanced")
    p.add_argument("--capacity", type=int, default=50_000)
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--at", type=int_list, default=[50_000, 100_000, 200_000],
                   help="steps whose gap goes in the table (multiples of --eval-every)")
    p.add_argument("--commit-every", type=int, default=500)
    p.add_argument("--plot", metavar="PATH", help="write gap-vs-steps curves (needs matplotlib)")
    p.add_argument("--json", metavar="PATH", help="write every run's curve as JSON")
    p.add_argument("--table-from", metavar="PATH", help="print the table of a --json file; run nothing")
    a = p.parse_args(argv)
    samplers = [s.strip() for s in a.samplers.split(",") if s.strip()]
    if not samplers or any(s not in SAMPLERS for s in samplers):
        raise SystemExit(f"--samplers: expected some of {sorted(SAMPLERS)}, got {a.samplers!r}")
    at = checkpoints(a.at, a.eval_every, a.steps)
    if a.table_from:
        print(table(json.loads(Path(a.table_from).read_text()), "sampler", "sampler", at))
        return 0
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="study_weighting_") as tmp:
        for env in a.envs:
            for name in samplers:
                for seed in a.seeds:
                    r = run_one(env, a.capacity, seed, a.steps, a.eval_every, Path(tmp),
                                sampler=SAMPLERS[name], commit_every=a.commit_every)
                    r["sampler"] = name
                    rows.append(r)
                    print(f"{env} {name} seed={seed}: final gap {r['curve'][-1][1]:.4f}, "
                          f"settled at {r['settled_at']}, {r['steps_per_second']:,.0f} steps/s",
                          file=sys.stderr, flush=True)
    print(table(rows, "sampler", "sampler", at))
    print(f"\n{len(rows)} runs of {a.steps:,} steps, capacity {a.capacity:,}, seeds {a.seeds}, "
          f"{time.perf_counter() - t0:,.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.plot:
        plot(rows, "sampler", str, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

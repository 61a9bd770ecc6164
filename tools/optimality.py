"""Offline training from random-policy data recovers the optimal policy (issue 4).

For each toy-text environment (FrozenLake-v1 4x4 and 8x8 slippery, Taxi-v4,
CliffWalking-v1, CliffWalkingSlippery-v1) this tool

1. collects uniformly random transitions into a store with
   :func:`replaystore.collect.collect` (cached under ``--workdir``);
2. for every gamma trains a fresh ``QLearningAgent`` (``alpha=1``, constant schedule)
   with :class:`~replaystore.training.OfflineTrainer` in sweep mode until it converges;
3. grades the greedy policy exactly on the environment's transition table
   (:func:`~replaystore.agents.policy_value_gap`: ``V*`` by value iteration, ``V^pi`` by
   policy evaluation, both averaged over the initial-state distribution);

and finds the smallest data size on a doubling ladder (``--start``, ``2 * start``, ... up
to the env's cap) at which ``rel_gap = (V* - V^pi) / |V*| <= --target`` for **all** gammas.

Data ladder. Rung ``k`` holds ``start * 2**k`` rows (the last rung is the cap). It is the
previous rung's store (copied) plus one more ``collect`` run appending the missing rows
with seed ``seed + 1000 * k``: every transition is collected once, the rung stores are
nested prefixes of each other, and the same arguments always give the same bytes. Rung
stores are kept under ``--workdir`` and reused when their collection records match.

On rungs below the cap the gammas run in increasing order and stop at the first failure
(small gammas converge in a few sweeps); at the cap every gamma runs, in parallel. Envs
are processed by ``--workers`` threads sharing one pool of ``--workers`` processes.

Throughput. Afterwards, with nothing else running, the tool times training on each env's
final store: full sweeps (``OfflineTrainer``, reading the store block by block) against
``agent.update`` on the same rows loaded into RAM once (``store.read_range``), and
minibatches of 256 (``UniformSampler`` + ``agent.update``) against ``rng.integers``
indexing into the in-memory arrays + ``agent.update``.

Run: ``python3 tools/optimality.py [--json results.json]``; ``--help`` for the knobs.
``--grade-store PATH --envs LABEL`` skips the ladder and grades one existing store (for
datasets too large for the ladder, collected in parallel and joined with
``replaystore merge``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import replaystore as rs
from replaystore.agents import QLearningAgent, policy_value_gap
from replaystore.collect import collect
from replaystore.training import TRAIN_FIELDS, OfflineTrainer, make_env

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_need import offline_policy, tables  # noqa: E402  (a sibling script)

GAMMAS = (0.5, 0.9, 0.95, 0.99)
TARGET = 0.01
SEED_STRIDE = 1000  # segment k of the ladder is collected with seed + SEED_STRIDE * k


@dataclass(frozen=True)
class EnvCase:
    label: str
    env_id: str
    env_kwargs: dict[str, Any]
    cap: int  # largest data size tried

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.label).strip("-").lower()


ENVS: tuple[EnvCase, ...] = (
    EnvCase("FrozenLake-v1 4x4", "FrozenLake-v1", {"map_name": "4x4", "is_slippery": True},
            4_000_000),
    EnvCase("FrozenLake-v1 8x8", "FrozenLake-v1", {"map_name": "8x8", "is_slippery": True},
            8_000_000),
    EnvCase("Taxi-v4", "Taxi-v4", {}, 4_000_000),
    # No registered TimeLimit: cap episodes so the random walk keeps restarting at the start
    # (gym.make's max_episode_steps, passed through collect's env_kwargs).
    EnvCase("CliffWalking-v1", "CliffWalking-v1", {"max_episode_steps": 500}, 4_000_000),
    EnvCase("CliffWalkingSlippery-v1", "CliffWalkingSlippery-v1", {"max_episode_steps": 500},
            4_000_000),
)


def ladder(start: int, cap: int) -> list[int]:
    """``start, 2*start, 4*start, ...`` below ``cap``, then ``cap``."""
    if start < 1 or cap < 1:
        raise ValueError("start and cap must be positive")
    sizes, n = [], start
    while n < cap:
        sizes.append(n)
        n *= 2
    sizes.append(cap)
    return sizes


# ---------------------------------------------------------------------------------------
# data: nested rung stores
# ---------------------------------------------------------------------------------------
def _expected_segments(sizes: list[int], k: int, seed: int) -> list[tuple[int, int, int]]:
    """(seed, first row, end row) of every collect run that built rung ``k``."""
    bounds = [0, *sizes[: k + 1]]
    return [(seed + SEED_STRIDE * i, bounds[i], bounds[i + 1]) for i in range(k + 1)]


def _store_matches(path: Path, case: EnvCase, want: list[tuple[int, int, int]],
                   num_envs: int) -> bool:
    """The cached store at ``path`` was made by exactly the runs in ``want``."""
    if not (path / "zarr.json").exists():
        return False
    try:
        with rs.open(path) as store:
            runs = store.info.get("collections", [])
            got = [(r.get("seed"), *(r.get("rows") or (None, None))) for r in runs]
            ok = (
                len(store) == want[-1][2]
                and got == [tuple(w) for w in want]
                and all(r.get("status") == "complete" for r in runs)
                and all(r.get("env_id") == case.env_id for r in runs)
                and all(r.get("env_kwargs") == case.env_kwargs for r in runs)
                and all(r.get("num_envs") == num_envs for r in runs)
                and all((r.get("policy") or {}).get("kind") == "random" for r in runs)
            )
            return bool(ok)
    except rs.ReplayStoreError:
        return False


def rung_path(workdir: Path, case: EnvCase, start: int, seed: int, num_envs: int,
              rows: int) -> Path:
    return workdir / case.slug / f"start{start}-seed{seed}-envs{num_envs}" / f"{rows:010d}.zarr"


def build_rung(workdir: str, case: EnvCase, sizes: list[int], k: int, seed: int,
               num_envs: int) -> dict[str, Any]:
    """Make (or reuse) the store of rung ``k``; returns its path and what it cost."""
    start = sizes[0]
    path = rung_path(Path(workdir), case, start, seed, num_envs, sizes[k])
    want = _expected_segments(sizes, k, seed)
    info = {"rows": sizes[k], "path": str(path), "cached": True, "collect_seconds": 0.0}
    if not _store_matches(path, case, want, num_envs):
        info["cached"] = False
        shutil.rmtree(path, ignore_errors=True)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        if k > 0:
            prev = build_rung(workdir, case, sizes, k - 1, seed, num_envs)
            info["collect_seconds"] += prev["collect_seconds"]
            shutil.copytree(prev["path"], tmp)
        seg_seed, lo, hi = want[-1]
        stats = collect(case.env_id, tmp, steps=hi - lo, seed=seg_seed,
                        env_kwargs=case.env_kwargs, num_envs=num_envs)
        info["collect_seconds"] += stats.seconds
        os.replace(tmp, path)
    with rs.open(path) as store:
        d = store.read_range(0, len(store), fields=["terminated", "truncated", "obs", "action"])
        n_actions = int(store.action_space.n)
        info["terminated"] = int(d["terminated"].sum())
        info["truncated"] = int(d["truncated"].sum())
        info["pairs_seen"] = int(np.unique(d["obs"].astype(np.int64) * n_actions
                                           + d["action"]).size)
    return info


# ---------------------------------------------------------------------------------------
# training + exact grading (runs in a worker process)
# ---------------------------------------------------------------------------------------
def make_agent(store: rs.ReplayStore, gamma: float) -> QLearningAgent:
    return QLearningAgent.from_spaces(store.observation_space, store.action_space,
                                      gamma=gamma, alpha=1.0, alpha_schedule="constant")


def _short_stop(reason: str) -> str:
    if reason.startswith("converged: the greedy policy"):
        return "certified"
    if reason.startswith("converged"):
        return "tol"
    return "cap"


def train_and_grade(store_path: str, case: EnvCase, gamma: float, target: float,
                    tol: float | None) -> dict[str, Any]:
    kw = {} if tol is None else {"tol": tol}
    with rs.open(store_path) as store:
        agent = make_agent(store, gamma)
        res = OfflineTrainer(store, agent).train(**kw)
        rows = len(store)
    env = make_env(case.env_id, case.env_kwargs)
    try:
        gap = policy_value_gap(env, agent.greedy_policy(), gamma)
    finally:
        env.close()
    return {
        "env": case.label,
        "gamma": gamma,
        "transitions": rows,
        "updates": res.updates,
        "transitions_replayed": res.transitions,
        "train_seconds": res.seconds,
        "converged": res.converged,
        "stop": _short_stop(res.stop_reason),
        "stop_reason": res.stop_reason,
        "last_max_dq": res.last_max_dq,
        **gap,
        "passed": bool(gap["rel_gap"] <= target),
        "policy": agent.greedy_policy().tolist(),
    }


# ---------------------------------------------------------------------------------------
# the ladder for one env (runs in a driver thread)
# ---------------------------------------------------------------------------------------
@dataclass
class EnvReport:
    case: EnvCase
    rungs: list[dict[str, Any]] = field(default_factory=list)
    final: list[dict[str, Any]] = field(default_factory=list)  # every gamma at the last rung
    smallest: int | None = None  # smallest rung where all gammas pass
    seconds: float = 0.0


def run_env(pool: ProcessPoolExecutor, case: EnvCase, args: argparse.Namespace,
            log: Any) -> EnvReport:
    t0 = time.perf_counter()
    report = EnvReport(case)
    sizes = ladder(args.start, args.cap or case.cap)
    gammas = sorted(args.gammas)
    for k, rows in enumerate(sizes):
        rung = pool.submit(build_rung, str(args.workdir), case, sizes, k, args.seed,
                           args.num_envs).result()
        last = k == len(sizes) - 1
        results: list[dict[str, Any]] = []
        if last:  # every gamma is reported: run them side by side, longest first
            futs = {g: pool.submit(train_and_grade, rung["path"], case, g, args.target, args.tol)
                    for g in sorted(gammas, reverse=True)}
            results = [futs[g].result() for g in gammas]
        else:  # cheapest first, stop at the first failure
            for g in gammas:
                results.append(pool.submit(train_and_grade, rung["path"], case, g,
                                           args.target, args.tol).result())
                if not results[-1]["passed"]:
                    break
        passed = len(results) == len(gammas) and all(r["passed"] for r in results)
        rung["results"] = results
        rung["passed"] = passed
        report.rungs.append(rung)
        worst = max(results, key=lambda r: r["rel_gap"])
        log(f"{case.label:24} {rows:>9,} rows  {'PASS' if passed else 'fail'}  "
            f"worst gamma={worst['gamma']} rel_gap={worst['rel_gap']:.2e}  "
            f"(collect {rung['collect_seconds']:.1f}s{', cached' if rung['cached'] else ''}; "
            f"train {sum(r['train_seconds'] for r in results):.1f}s)")
        if passed or last:
            report.final = results
            report.smallest = rows if passed else None
            break
    report.seconds = time.perf_counter() - t0
    return report


# ---------------------------------------------------------------------------------------
# throughput: replaystore vs plain numpy on the same rows
# ---------------------------------------------------------------------------------------
def throughput(store_path: str, label: str, gamma: float, *, sweep_rows: int,
               minibatches: int, batch_size: int = 256, seed: int = 0) -> list[dict[str, Any]]:
    out = []
    with rs.open(store_path) as store:
        n = len(store)
        sweeps = max(3, math.ceil(sweep_rows / n))
        # full sweeps: OfflineTrainer reads the store block by block
        a_store = make_agent(store, gamma)
        res = OfflineTrainer(store, a_store).train(updates=sweeps)
        rs_rate = res.transitions / res.seconds
        # plain numpy: every row in RAM, agent.update on the whole array
        t = time.perf_counter()
        data = store.read_range(0, n, fields=TRAIN_FIELDS)
        load = time.perf_counter() - t
        a_np = make_agent(store, gamma)
        t = time.perf_counter()
        for _ in range(sweeps):
            a_np.update(data)
        np_secs = time.perf_counter() - t
        out.append({
            "env": label, "rows": n, "mode": f"full sweeps x{sweeps}",
            "replaystore_rows_per_s": rs_rate, "numpy_rows_per_s": sweeps * n / np_secs,
            "numpy_load_seconds": load,
            "same_q": bool(np.array_equal(a_store.q, a_np.q)),
            "max_abs_q_diff": float(np.abs(a_store.q - a_np.q).max()),
        })
        # minibatches of 256: UniformSampler (+ prefetch thread) vs rng.integers in RAM
        a_s = make_agent(store, gamma)
        sampler = rs.UniformSampler(store, batch_size=batch_size, seed=seed, fields=TRAIN_FIELDS)
        t = time.perf_counter()
        for batch in sampler.iter(minibatches):
            a_s.update(batch)
        s_secs = time.perf_counter() - t
        a_m = make_agent(store, gamma)
        rng = np.random.default_rng(seed)
        t = time.perf_counter()
        for _ in range(minibatches):
            idx = rng.integers(0, n, batch_size)
            a_m.update({k: v[idx] for k, v in data.items()})
        m_secs = time.perf_counter() - t
        out.append({
            "env": label, "rows": n, "mode": f"minibatch {batch_size} x{minibatches}",
            "replaystore_rows_per_s": minibatches * batch_size / s_secs,
            "numpy_rows_per_s": minibatches * batch_size / m_secs,
            "numpy_load_seconds": load,
            "same_q": bool(np.array_equal(a_s.q, a_m.q)),
            "max_abs_q_diff": float(np.abs(a_s.q - a_m.q).max()),
        })
    return out


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------
def _g(x: float) -> str:
    return f"{x:.4g}"


def results_table(reports: list[EnvReport]) -> str:
    lines = [
        "| env | gamma | transitions | sweeps (updates) | transitions replayed | train s | stop "
        "| V* | V^pi | rel_gap | pass |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for rep in reports:
        for r in rep.final:
            lines.append(
                f"| {r['env']} | {r['gamma']} | {r['transitions']:,} | {r['updates']} | "
                f"{r['transitions_replayed']:,} | {r['train_seconds']:.2f} | {r['stop']} | "
                f"{_g(r['v_star'])} | {_g(r['v_pi'])} | {r['rel_gap']:.2e} | "
                f"{'pass' if r['passed'] else '**FAIL**'} |"
            )
    return "\n".join(lines)


def ladder_table(reports: list[EnvReport]) -> str:
    lines = ["| env | transitions | (s,a) seen | truncated rows | collect s | result |",
             "|---|---:|---:|---:|---:|---|"]
    for rep in reports:
        for rung in rep.rungs:
            res = rung["results"]
            if rung["passed"]:
                worst = max(res, key=lambda r: r["rel_gap"])
                what = f"pass (worst rel_gap {worst['rel_gap']:.1e} at gamma {worst['gamma']})"
            else:
                bad = [r for r in res if not r["passed"]]
                what = "fail: " + ", ".join(f"gamma {r['gamma']} rel_gap {r['rel_gap']:.1e}"
                                            for r in bad)
            cost = "cached" if rung["cached"] else f"{rung['collect_seconds']:.1f}"
            lines.append(f"| {rep.case.label} | {rung['rows']:,} | {rung['pairs_seen']} | "
                         f"{rung['truncated']:,} | {cost} | {what} |")
    return "\n".join(lines)


def throughput_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| env | rows | mode | replaystore rows/s | numpy in-RAM rows/s | replaystore/numpy "
             "| same Q |",
             "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        same = "yes" if r["same_q"] else f"no (max diff {r['max_abs_q_diff']:.1e})"
        lines.append(
            f"| {r['env']} | {r['rows']:,} | {r['mode']} | {r['replaystore_rows_per_s'] / 1e6:.2f} M "
            f"| {r['numpy_rows_per_s'] / 1e6:.2f} M "
            f"| {r['replaystore_rows_per_s'] / r['numpy_rows_per_s']:.2f} | {same} |")
    return "\n".join(lines)


def grade_store(args: argparse.Namespace, cases: list[EnvCase]) -> int:
    """``--grade-store``: every gamma on one existing store, e.g. several collections
    merged with ``replaystore merge``; the store must record the env and kwargs."""
    if len(cases) != 1:
        print("--grade-store needs --envs to select exactly one env", file=sys.stderr)
        return 2
    case = cases[0]
    with rs.open(args.grade_store) as store:
        info = store.env_info
    if info.get("id") != case.env_id or info.get("kwargs", {}) != case.env_kwargs:
        print(f"{args.grade_store}: collected from {info}, not {case.env_id} {case.env_kwargs}",
              file=sys.stderr)
        return 2
    counts = _transition_counts(args.grade_store)
    print("| env | gamma | transitions | sweeps | transitions replayed | train s | stop | V* | V^pi "
          "| rel_gap | pass | states off the data's exact fixed point |\n"
          "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|")
    results = []
    for g in args.gammas:
        r = train_and_grade(str(args.grade_store), case, g, args.target, args.tol)
        # what the trainer should have converged to: value iteration on the data's model
        env = make_env(case.env_id, case.env_kwargs)
        exact = offline_policy(tables(env), counts, g)
        seen = counts.sum(axis=(1, 2)) > 0
        r["states_off_fixed_point"] = int(np.sum((np.asarray(r["policy"]) != exact) & seen))
        results.append(r)
        print(f"| {r['env']} | {g} | {r['transitions']:,} | {r['updates']} | "
              f"{r['transitions_replayed']:,} | {r['train_seconds']:.1f} | {r['stop']} | "
              f"{r['v_star']:.4g} | {r['v_pi']:.4g} | {r['rel_gap']:.2e} | "
              f"{'pass' if r['passed'] else '**FAIL**'} | {r['states_off_fixed_point']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["passed"] for r in results) else 1


def _transition_counts(path: Path) -> np.ndarray:
    """``counts[s, a, s']`` over every row of the store."""
    with rs.open(path) as store:
        ns, na = int(store.observation_space.n), int(store.action_space.n)
        counts = np.zeros(ns * na * ns, np.int64)
        step = 1 << 22
        for a in range(0, len(store), step):
            b = store.read_range(a, min(len(store), a + step), fields=["obs", "action", "next_obs"])
            key = (b["obs"].astype(np.int64) * na + b["action"]) * ns + b["next_obs"]
            counts += np.bincount(key, minlength=counts.size)
    return counts.reshape(ns, na, ns)


# ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="*", help="only envs whose label contains one of these")
    p.add_argument("--gammas", nargs="+", type=float, default=list(GAMMAS))
    p.add_argument("--target", type=float, default=TARGET, help="max rel_gap (default 0.01)")
    p.add_argument("--start", type=int, default=31_250, help="first rung of the data ladder")
    p.add_argument("--cap", type=int, default=None, help="largest data size (default per env)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=16, help="vector envs while collecting")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--tol", type=float, default=None,
                   help="OfflineTrainer.train tol (default: the library's)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/replaystore-optimality"))
    p.add_argument("--fresh", action="store_true", help="delete cached stores first")
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--throughput-rows", type=int, default=40_000_000,
                   help="rows replayed per full-sweep throughput measurement (>= 3 sweeps)")
    p.add_argument("--minibatches", type=int, default=3000)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--grade-store", type=Path, default=None,
                   help="skip the ladder: train on this existing store (collected from the one "
                        "env --envs selects) for every gamma and grade it")
    args = p.parse_args(argv)
    for g in args.gammas:
        if not 0.0 <= g < 1.0:
            p.error(f"gammas must be in [0, 1), got {g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    cases = [c for c in ENVS
             if not args.envs or any(e.lower() in c.label.lower() for e in args.envs)]
    if not cases:
        print("no env matches --envs", file=sys.stderr)
        return 2
    if args.grade_store is not None:
        return grade_store(args, cases)
    if args.fresh:
        for c in cases:
            shutil.rmtree(args.workdir / c.slug, ignore_errors=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def log(msg: str) -> None:
        with lock:
            print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", file=sys.stderr, flush=True)

    # most expensive env first, so the cheap ones fill the other worker meanwhile
    order = sorted(cases, key=lambda c: -(args.cap or c.cap))
    with ProcessPoolExecutor(args.workers) as pool, ThreadPoolExecutor(args.workers) as drivers:
        futs: dict[str, Future] = {c.label: drivers.submit(run_env, pool, c, args, log)
                                   for c in order}
        reports = [futs[c.label].result() for c in cases]
    ladder_seconds = time.perf_counter() - t_start

    tput: list[dict[str, Any]] = []
    if not args.no_throughput:
        gamma = max(args.gammas)
        for rep in reports:
            path = rep.rungs[-1]["path"]
            log(f"throughput {rep.case.label} ({rep.rungs[-1]['rows']:,} rows)")
            tput += throughput(path, rep.case.label, gamma, sweep_rows=args.throughput_rows,
                               minibatches=args.minibatches, seed=args.seed)
    total = time.perf_counter() - t_start

    print(f"## Greedy policy vs optimum (target rel_gap <= {args.target:g}, random-policy data, "
          "sweeps with alpha=1 constant, until converged)\n")
    print(results_table(reports))
    print("\nSmallest ladder size meeting the target for every gamma: " + "; ".join(
        f"{r.case.label}: {r.smallest:,}" if r.smallest else
        f"{r.case.label}: none up to {r.rungs[-1]['rows']:,}" for r in reports))
    print("\n## Data ladder\n")
    print(ladder_table(reports))
    if tput:
        print(f"\n## Training throughput (transitions replayed per second, gamma {max(args.gammas)})\n")
        print(throughput_table(tput))
    print(f"\nladder {ladder_seconds:.0f}s, total {total:.0f}s, workers {args.workers}, "
          f"num_envs {args.num_envs}, seed {args.seed}")
    failed = [r for rep in reports for r in rep.final if not r["passed"]]

    if args.json:
        doc = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "envs": [{
                "label": r.case.label, "env_id": r.case.env_id, "env_kwargs": r.case.env_kwargs,
                "cap": args.cap or r.case.cap, "smallest_transitions": r.smallest,
                "seconds": r.seconds, "ladder": r.rungs, "final": r.final,
            } for r in reports],
            "throughput": tput,
            "ladder_seconds": ladder_seconds,
            "total_seconds": total,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The online replay loop, side by side with the peers (issue 13).

Two sections, each printing markdown tables:

``buffer``
    The buffer-only loop, no environment: append one transition, then sample 32 (all six
    fields: obs float32[8], next_obs float32[8], action int64 (Discrete(4)), reward
    float32, terminated bool, truncated bool). Every buffer is pre-filled with
    ``--prefill`` rows and is a ring of exactly that capacity, so every append evicts.
    The buffers, in one process and one run, interleaved rep by rep:

    * numpy arrays in RAM (preallocated, a cursor, ``Generator.integers`` + fancy indexing);
    * cpprb ``ReplayBuffer``; SB3 ``ReplayBuffer`` (``handle_timeout_termination=False``,
      so it keeps one ``done`` = terminated or truncated); TorchRL
      ``ReplayBuffer(LazyMemmapStorage)`` of TensorDict rows (default sampler); the
      textbook ``deque(maxlen)`` + ``random.sample`` -- each only if it imports;
    * replaystore: a ring on disk with the defaults (commits on, fsync on), pre-filled with
      ``extend`` and flushed, then ``store.append(...)`` + ``UniformSampler.sample()``.

    Per-step inputs are what an env loop hands over, the same for every buffer: a fresh
    float32[8] array per step (the next step's obs is this step's next_obs), a Python int
    action, a Python float reward, Python bools. Each buffer converts them as its users
    must (SB3 and TorchRL need arrays / tensors). steps/s is the median over ``--reps``
    (range min-max); a rep stops early after ``--max-seconds`` (marked ``*``). SB3 and
    TorchRL run with one torch thread, like every other buffer (``--torch-threads``).

``learn``
    The tabular online loop with an environment: ``tools/textbook_loop.py`` (deque,
    alpha 0.1) against ``rs.OnlineTrainer`` (ring on disk, commits on, the agent's default
    step size) on Taxi-v4, CliffWalking-v1 (max_episode_steps 500) and FrozenLake-v1 4x4
    slippery; same seed and step budget, gamma 0.99, batch 32, capacity 50,000, learning
    starts when the buffer holds a batch, epsilon 1 -> 0.05 over the first half. Columns:
    steps/s of both, their ratio, and the exact greedy-policy gap to optimal
    (``replaystore.agents.policy_value_gap``) at 50k, 100k and 200k steps. The textbook
    loop's steps/s excludes grading; the trainer's ``steps_per_second`` includes its
    evaluations, so they run with one episode each (the gap is exact regardless). The
    agent's compiled update kernel (numba) is loaded once per process, before the timed
    runs (the section prints how long that took; ``--no-warmup`` leaves it in the first
    env's run), as the textbook loop's imports are.

Usage (peers are benchmark references only; install them in a separate venv)::

    python3 -m venv --system-site-packages /tmp/benchvenv
    /tmp/benchvenv/bin/pip install cpprb stable-baselines3 torchrl
    /tmp/benchvenv/bin/python tools/bench_online.py --sections buffer --steps 50000 --reps 3
    /tmp/benchvenv/bin/python tools/bench_online.py --sections learn --learn-steps 200000
"""

from __future__ import annotations

import argparse
import inspect
import logging
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # for textbook_loop

import gymnasium as gym  # noqa: E402

import replaystore as rs  # noqa: E402

BATCH = 32
FIELDS = ["obs", "next_obs", "action", "reward", "terminated", "truncated"]
N_ACTIONS = 4


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def prefill_rows(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """``n`` synthetic transitions as column arrays (next_obs[i] == obs[i + 1])."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n + 1, 8), dtype=np.float32)
    return {"obs": obs[:-1], "next_obs": obs[1:], "action": rng.integers(0, N_ACTIONS, n),
            "reward": rng.standard_normal(n, dtype=np.float32),
            "terminated": rng.random(n) < 0.01, "truncated": rng.random(n) < 0.001}


def step_inputs(n: int, seed: int = 2) -> tuple[list, list[int], list[float], list[bool], list[bool]]:
    """Per-step inputs as an env loop has them: ``n + 1`` fresh float32[8] arrays and
    Python int / float / bool lists."""
    rng = np.random.default_rng(seed)
    obs = [row.copy() for row in rng.standard_normal((n + 1, 8), dtype=np.float32)]
    return (obs, rng.integers(0, N_ACTIONS, n).tolist(), rng.standard_normal(n).tolist(),
            (rng.random(n) < 0.01).tolist(), (rng.random(n) < 0.001).tolist())


# --------------------------------------------------------------------------------------
# buffers: prefill(data) once, then step(obs, action, reward, next_obs, term, trunc)
# appends one transition and returns a sampled batch of 32
# --------------------------------------------------------------------------------------
class NumpyRing:
    name = "numpy arrays in RAM"

    def __init__(self, cap: int, workdir: Path) -> None:
        self.cap, self.pos, self.size = cap, 0, 0
        self.rng = np.random.default_rng(0)
        self.obs = np.empty((cap, 8), np.float32)
        self.next_obs = np.empty((cap, 8), np.float32)
        self.action = np.empty(cap, np.int64)
        self.reward = np.empty(cap, np.float32)
        self.terminated = np.empty(cap, bool)
        self.truncated = np.empty(cap, bool)

    def prefill(self, d: dict) -> None:
        n = len(d["reward"])
        for k in FIELDS:
            getattr(self, k)[:n] = d[k]
        self.pos, self.size = n % self.cap, n

    def step(self, o, a, r, o2, te, tr):
        p = self.pos
        self.obs[p] = o
        self.next_obs[p] = o2
        self.action[p] = a
        self.reward[p] = r
        self.terminated[p] = te
        self.truncated[p] = tr
        self.pos = (p + 1) % self.cap
        if self.size < self.cap:
            self.size += 1
        idx = self.rng.integers(0, self.size, BATCH)
        return {"obs": self.obs[idx], "next_obs": self.next_obs[idx], "action": self.action[idx],
                "reward": self.reward[idx], "terminated": self.terminated[idx],
                "truncated": self.truncated[idx]}

    def close(self) -> None:
        pass


class CpprbRing:
    name = "cpprb `ReplayBuffer`"

    def __init__(self, cap: int, workdir: Path) -> None:
        import cpprb

        self.rb = cpprb.ReplayBuffer(cap, env_dict={
            "obs": {"shape": 8, "dtype": np.float32}, "next_obs": {"shape": 8, "dtype": np.float32},
            "action": {"dtype": np.int64}, "reward": {"dtype": np.float32},
            "terminated": {"dtype": np.bool_}, "truncated": {"dtype": np.bool_}})

    def prefill(self, d: dict) -> None:
        self.rb.add(**d)

    def step(self, o, a, r, o2, te, tr):
        self.rb.add(obs=o, action=a, reward=r, next_obs=o2, terminated=te, truncated=tr)
        return self.rb.sample(BATCH)

    def close(self) -> None:
        pass


class Sb3Ring:
    name = "SB3 `ReplayBuffer`"

    def __init__(self, cap: int, workdir: Path) -> None:
        from stable_baselines3.common.buffers import ReplayBuffer

        self.rb = ReplayBuffer(cap, gym.spaces.Box(-np.inf, np.inf, (8,), np.float32),
                               gym.spaces.Discrete(N_ACTIONS), device="cpu",
                               handle_timeout_termination=False)
        self.infos = [{}]

    def prefill(self, d: dict) -> None:  # straight into its arrays: add() is one row at a time
        rb, n = self.rb, len(d["reward"])
        rb.observations[:n, 0] = d["obs"]
        rb.next_observations[:n, 0] = d["next_obs"]
        rb.actions[:n, 0, 0] = d["action"]
        rb.rewards[:n, 0] = d["reward"]
        rb.dones[:n, 0] = d["terminated"] | d["truncated"]
        rb.pos, rb.full = n % rb.buffer_size, n >= rb.buffer_size

    def step(self, o, a, r, o2, te, tr):
        self.rb.add(o, o2, np.array(a), np.array(r), np.array(te or tr), self.infos)
        return self.rb.sample(BATCH)

    def close(self) -> None:
        pass


class TorchrlRing:
    name = "TorchRL `ReplayBuffer(LazyMemmapStorage)`"

    def __init__(self, cap: int, workdir: Path) -> None:
        import torch
        from tensordict import TensorDict
        from torchrl.data import LazyMemmapStorage, ReplayBuffer

        logging.getLogger("torchrl").setLevel(logging.WARNING)
        self.torch, self.TensorDict = torch, TensorDict
        scratch = workdir / "torchrl"
        scratch.mkdir()
        self.rb = ReplayBuffer(storage=LazyMemmapStorage(cap, scratch_dir=scratch), batch_size=BATCH)

    def prefill(self, d: dict) -> None:
        t = self.torch
        self.rb.extend(self.TensorDict({k: t.from_numpy(np.ascontiguousarray(v)) for k, v in d.items()},
                                       batch_size=[len(d["reward"])]))

    def step(self, o, a, r, o2, te, tr):
        t = self.torch
        self.rb.add(self.TensorDict({"obs": t.from_numpy(o), "next_obs": t.from_numpy(o2),
                                     "action": t.tensor(a), "reward": t.tensor(r, dtype=t.float32),
                                     "terminated": t.tensor(te), "truncated": t.tensor(tr)},
                                    batch_size=[]))
        return self.rb.sample()

    def close(self) -> None:
        del self.rb


class DequeRing:
    name = "textbook deque + `random.sample`"

    def __init__(self, cap: int, workdir: Path) -> None:
        self.buf: deque = deque(maxlen=cap)
        self.rng = random.Random(0)

    def prefill(self, d: dict) -> None:
        self.buf.extend(zip(list(d["obs"]), d["action"].tolist(), d["reward"].tolist(),
                            list(d["next_obs"]), d["terminated"].tolist(), d["truncated"].tolist(),
                            strict=True))

    def step(self, o, a, r, o2, te, tr):
        self.buf.append((o, a, r, o2, te, tr))
        return self.rng.sample(self.buf, BATCH)

    def close(self) -> None:
        self.buf.clear()


class ReplaystoreRing:
    name = "**replaystore ring (defaults)**"

    def __init__(self, cap: int, workdir: Path) -> None:
        self.store = rs.create(workdir / "replaystore.zarr",
                               gym.spaces.Box(-np.inf, np.inf, (8,), np.float32),
                               gym.spaces.Discrete(N_ACTIONS), capacity=cap)
        self.sampler = rs.UniformSampler(self.store, BATCH, seed=0, fields=FIELDS)

    def prefill(self, d: dict) -> None:
        self.store.extend(d)
        self.store.flush()

    def step(self, o, a, r, o2, te, tr):
        self.store.append(obs=o, action=a, reward=r, next_obs=o2, terminated=te, truncated=tr)
        return self.sampler.sample()

    def close(self) -> None:
        self.store.close()


BUFFERS = {"numpy": NumpyRing, "cpprb": CpprbRing, "sb3": Sb3Ring, "torchrl": TorchrlRing,
           "deque": DequeRing, "replaystore": ReplaystoreRing}
PEER_MODULES = {"cpprb": "cpprb", "sb3": "stable_baselines3", "torchrl": "torchrl"}


def _installed(key: str) -> bool:
    mod = PEER_MODULES.get(key)
    if mod is None:
        return True
    try:
        __import__(mod)
    except Exception:  # any import failure: the peer is just not available
        return False
    return True


def time_loop(buf, inputs, steps: int, max_seconds: float) -> tuple[float, int]:
    """Run ``steps`` append-1 + sample-32 steps (or stop after ``max_seconds``);
    return (steps/s, steps done)."""
    obs, act, rew, term, trunc = inputs
    step = buf.step
    done = 0
    t0 = time.perf_counter()
    for a in range(0, steps, 1024):
        for i in range(a, min(steps, a + 1024)):
            step(obs[i], act[i], rew[i], obs[i + 1], term[i], trunc[i])
        done = min(steps, a + 1024)
        if time.perf_counter() - t0 > max_seconds:
            break
    return done / (time.perf_counter() - t0), done


def section_buffer(args: argparse.Namespace, workdir: Path) -> None:
    keys = list(args.buffers)
    missing = [k for k in keys if not _installed(k)]
    live = [k for k in keys if k not in missing]
    print(f"\nbuffer-only loop: pre-filling {args.prefill:,} rows into each buffer ...",
          file=sys.stderr, flush=True)
    data = prefill_rows(args.prefill)
    inputs = step_inputs(args.steps)
    bufs, fill_s = {}, {}
    for k in live:
        sub = workdir / k
        sub.mkdir()
        t0 = time.perf_counter()
        b = BUFFERS[k](args.prefill, sub)
        b.prefill(data)
        fill_s[k] = time.perf_counter() - t0
        obs, act, rew, term, trunc = inputs
        b.step(obs[0], act[0], rew[0], obs[1], term[0], trunc[0])  # warm-up, not timed
        bufs[k] = b
    del data
    rates: dict[str, list[float]] = {k: [] for k in live}
    short: dict[str, int] = {}
    try:
        for r in range(args.reps):
            for k in live:
                rate, done = time_loop(bufs[k], inputs, args.steps, args.max_seconds)
                rates[k].append(rate)
                if done < args.steps:
                    short[k] = min(short.get(k, done), done)
                print(f"rep {r}: {k}: {rate:,.0f} steps/s ({done:,} steps)", file=sys.stderr, flush=True)
    finally:
        for b in bufs.values():
            b.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n### buffer-only loop: append 1 + sample {BATCH} (all six fields, {args.prefill:,} rows "
          f"pre-filled, ring of capacity {args.prefill:,}; {args.steps:,} steps, median of "
          f"{args.reps}, range min-max)\n")
    print("| buffer | steps/s (median) | range | µs/step | × numpy | × cpprb | pre-fill s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        name = BUFFERS[k].name
        if k in missing:
            print(f"| {name} | not installed | | | | | |")
            continue
        m = med[k]
        ratio_np = f"{m / med['numpy']:.2f}" if "numpy" in med else "n/a"
        ratio_cp = f"{m / med['cpprb']:.2f}" if "cpprb" in med else "n/a"
        mark = f" (* stopped after {short[k]:,} steps)" if k in short else ""
        print(f"| {name} | {m:,.0f}{mark} | {min(rates[k]):,.0f}–{max(rates[k]):,.0f} | "
              f"{1e6 / m:.1f} | {ratio_np} | {ratio_cp} | {fill_s[k]:.2f} |")
    print("\nSB3 stores one `done` (terminated or truncated) with handle_timeout_termination=False; "
          "every other buffer keeps both flags.")


# --------------------------------------------------------------------------------------
# learn: the tabular online loop against the textbook deque loop
# --------------------------------------------------------------------------------------
def _replaystore_learn(label: str, steps: int, seed: int, marks: list[int], workdir: Path,
                       capacity: int, gamma: float) -> dict[str, Any]:
    import textbook_loop

    from replaystore.agents import QLearningAgent, policy_value_gap

    env_id, _, env = textbook_loop.make(label)
    agent = QLearningAgent.from_spaces(env.observation_space, env.action_space, gamma=gamma)
    store = rs.create(workdir / f"learn-{label}.zarr", env.observation_space, env.action_space,
                      capacity=capacity)
    try:
        run = rs.OnlineTrainer(env, agent, store, batch_size=BATCH, updates_per_step=1,
                               learning_starts=BATCH,
                               epsilon=rs.LinearSchedule(1.0, 0.05, fraction=0.5), seed=seed)
        every = _gcd(marks) if marks else steps
        kw: dict[str, Any] = {}
        if "eval_episodes" in inspect.signature(run.train).parameters:
            kw["eval_episodes"] = 1  # the gap is exact anyway; keep rollouts out of the timing
        result = run.train(steps=steps, eval_every=every, **kw)
        gaps: dict[int, float | None] = {m: None for m in marks}
        for ev in getattr(result, "evaluations", None) or []:
            if ev.get("step") in gaps and ev.get("gap") is not None:
                gaps[ev["step"]] = float(ev["gap"])
        if steps in gaps and gaps[steps] is None:  # the final policy we can grade ourselves
            gaps[steps] = policy_value_gap(env, agent.greedy_policy(), gamma)["rel_gap"]
        return {"env_id": env_id, "steps_per_s": float(result.steps_per_second), "gaps": gaps}
    finally:
        store.close()
        env.close()


def _gcd(xs: list[int]) -> int:
    import math

    g = 0
    for x in xs:
        g = math.gcd(g, x)
    return g


def _gap(v: float | None) -> str:
    return "n/a" if v is None else f"{max(0.0, v):.2%}"  # -1e-16 -> 0


def _warm_up() -> float:
    """Seconds of the first ``QLearningAgent.update`` in this process (its compiled kernel
    is loaded then: numba's import and set-up, ~0.5-1 s, and ~2-3 s more once per
    installation to compile it)."""
    from replaystore.agents import QLearningAgent

    one = np.array([0])
    t0 = time.perf_counter()
    QLearningAgent(2, 2).update({"obs": one, "action": one, "reward": np.array([1.0], np.float32),
                                 "next_obs": one, "terminated": np.array([False])})
    return time.perf_counter() - t0


def section_learn(args: argparse.Namespace, workdir: Path) -> None:
    import textbook_loop

    marks = sorted(m for m in args.checkpoints if m <= args.learn_steps)
    have = hasattr(rs, "OnlineTrainer") and hasattr(rs, "LinearSchedule")
    if not have:
        print("\nOnlineTrainer not available: the replaystore side of the learn section is skipped.")
    rows = []
    warm = _warm_up() if have and not args.no_warmup else None
    for label in args.envs:
        tbs, ourss = [], []
        for rep in range(args.learn_repeats):  # (interleaved: a load change hits both sides)
            tb = textbook_loop.run(label, args.learn_steps, args.seed, marks, gamma=args.gamma,
                                   alpha=0.1, batch_size=BATCH, capacity=args.capacity)
            print(f"rep {rep}: textbook {tb['env_id']}: {tb['steps_per_s']:,.0f} steps/s, gaps "
                  f"{tb['gaps']}", file=sys.stderr, flush=True)
            tbs.append(tb)
            if have:
                (workdir / f"rep{rep}").mkdir(exist_ok=True)
                ours = _replaystore_learn(label, args.learn_steps, args.seed, marks, workdir / f"rep{rep}",
                                          args.capacity, args.gamma)
                print(f"rep {rep}: replaystore {ours['env_id']}: {ours['steps_per_s']:,.0f} steps/s, "
                      f"gaps {ours['gaps']}", file=sys.stderr, flush=True)
                ourss.append(ours)
        rows.append((tbs, ourss))
    if warm is not None:
        print(f"\nfirst Q-learning update in this process (numba import + loading the cached kernel, "
              f"once per process; taken before the timed runs): {warm:.2f} s")
    print(f"\n### online tabular Q-learning: textbook deque loop vs replaystore "
          f"(seed {args.seed}, {args.learn_steps:,} steps, gamma {args.gamma}, batch {BATCH}, "
          f"capacity {args.capacity:,}, epsilon 1 -> 0.05 over the first half)\n")
    head = "| env | steps/s textbook | steps/s replaystore | ratio"
    head += "".join(f" | gap@{m // 1000}k textbook" for m in marks)
    head += "".join(f" | gap@{m // 1000}k replaystore" for m in marks) + " |"
    print(head)
    print("|---" + "|---:" * (3 + 2 * len(marks)) + "|")
    for tbs, ourss in rows:
        tb, ours = tbs[0], ourss[0] if ourss else None  # (same seed: the same gaps every rep)
        line = f"| {tb['env_id']} | {_median_range([t['steps_per_s'] for t in tbs])} | "
        if ours is None:
            line += "not available | n/a"
        else:
            ratios = [o["steps_per_s"] / t["steps_per_s"] for t, o in zip(tbs, ourss, strict=True)]
            line += (f"{_median_range([o['steps_per_s'] for o in ourss])} | "
                     f"{_median_range(ratios, '.2f')}")
        line += "".join(f" | {_gap(tb['gaps'].get(str(m)))}" for m in marks)
        line += "".join(f" | {_gap(None if ours is None else ours['gaps'].get(m))}" for m in marks)
        print(line + " |")
    if args.learn_repeats > 1:
        print(f"\nsteps/s and ratio: median of {args.learn_repeats} interleaved runs (min-max); the "
              "ratio is the median of each run's pair")


def _median_range(xs: list[float], fmt: str = ",.0f") -> str:
    med = format(statistics.median(xs), fmt)
    return med if len(xs) == 1 else f"{med} ({format(min(xs), fmt)}-{format(max(xs), fmt)})"


# --------------------------------------------------------------------------------------
def _list(text: str) -> list[str]:
    return [x.strip().lower() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", type=_list, default=["buffer", "learn"], help="buffer,learn")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch.set_num_threads for SB3 and TorchRL (default 1, like every other "
                        "buffer here; 0 keeps torch's default)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where stores go (default: a new temp dir under /tmp); removed at the end")
    g = p.add_argument_group("buffer")
    g.add_argument("--buffers", type=_list, default=list(BUFFERS), help=",".join(BUFFERS))
    g.add_argument("--prefill", type=int, default=1_000_000, help="rows pre-filled = ring capacity")
    g.add_argument("--steps", type=int, default=50_000, help="timed steps per rep")
    g.add_argument("--reps", type=int, default=3)
    g.add_argument("--max-seconds", type=float, default=120.0, help="cap on one rep of one buffer")
    g = p.add_argument_group("learn")
    g.add_argument("--envs", type=_list, default=["taxi", "cliff", "lake"])
    g.add_argument("--learn-steps", type=int, default=200_000)
    g.add_argument("--checkpoints", type=lambda s: [int(x) for x in s.split(",")],
                   default=[50_000, 100_000, 200_000])
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--gamma", type=float, default=0.99)
    g.add_argument("--capacity", type=int, default=50_000)
    g.add_argument("--learn-repeats", type=int, default=1,
                   help="runs of each side per env, interleaved; medians reported (default 1)")
    g.add_argument("--no-warmup", action="store_true",
                   help="do not make the first Q-learning update (numba's one-time load) before "
                        "the timed runs: the first env's replaystore run then pays it")
    args = p.parse_args(argv)
    for name, allowed in (("sections", ("buffer", "learn")), ("buffers", tuple(BUFFERS)),
                          ("envs", ("taxi", "cliff", "lake"))):
        bad = [x for x in getattr(args, name) if x not in allowed]
        if bad:
            p.error(f"--{name}: unknown {bad}; choose from {list(allowed)}")
    if args.prefill < BATCH or args.steps < 1 or args.reps < 1 or args.learn_repeats < 1:
        p.error(f"--prefill must be >= {BATCH}, --steps, --reps and --learn-repeats positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.torch_threads > 0:
        try:
            import torch
        except Exception:  # no torch: no SB3 / TorchRL rows either
            pass
        else:
            torch.set_num_threads(args.torch_threads)
    own = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="rs-online-", dir="/tmp")) if own else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))  # never remove a user's other files
    try:
        if "buffer" in args.sections:
            section_buffer(args, work)
        if "learn" in args.sections:
            section_learn(args, work)
    finally:
        shutil.rmtree(workdir if own else work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

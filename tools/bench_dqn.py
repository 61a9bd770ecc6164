"""Deep Q-learning on CartPole-v1: replaystore's DQN (buffer on disk) against Stable-Baselines3's
DQN with the tuned rl-baselines3-zoo settings, same seeds and step budget, side by side;
then offline DQN and discrete CQL trained from the online run's buffer; and gradient
steps/s of offline training from the store against the same training from tensors in RAM.

Settings (both libraries): 50,000 steps, lr 2.3e-3, batch 64, buffer 100,000,
learning_starts 1,000, gamma 0.99, epsilon 1 -> 0.04 over the first 16%, MLP 256x256, one
torch thread, 20 greedy evaluation episodes at the end. SB3 trains 128 gradient steps every
256 env steps and copies the target network every 10 env steps (so once per training
phase); replaystore makes ``--updates-per-step`` updates every env step and copies the
target every ``target_update`` (128) updates.

    python tools/bench_dqn.py [--seeds 0,1,2] [--steps 50000] [--peer-python /tmp/benchvenv/bin/python]
    python tools/bench_dqn.py --sections offline,speed      # only the offline parts

SB3 and d3rlpy (offline DQN / DiscreteCQL with their default settings, same data and gradient
steps) are benchmark references only (``pip install stable-baselines3 d3rlpy`` in the peer python).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SB3 = r'''
import json, sys, time
import numpy as np, torch, gymnasium as gym
from stable_baselines3 import DQN
torch.set_num_threads(1)
seed, steps = int(sys.argv[1]), int(sys.argv[2])
env = gym.make("CartPole-v1")
model = DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
            gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
            exploration_fraction=0.16, exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]),
            seed=seed, verbose=0)
t = time.perf_counter()
model.learn(total_timesteps=steps)
seconds = time.perf_counter() - t
ev = gym.make("CartPole-v1")
rets = []
for k in range(20):
    o, _ = ev.reset(seed=10_000 + k); done = False; R = 0.0
    while not done:
        a, _ = model.predict(o, deterministic=True)
        o, r, te, tr, _ = ev.step(int(a)); R += r; done = te or tr
    rets.append(R)
print(json.dumps({"seconds": seconds, "mean_return": float(np.mean(rets))}))
'''

D3RLPY = r'''
import json, sys, time
import numpy as np, torch, gymnasium as gym
import d3rlpy
torch.set_num_threads(1)
path, updates = sys.argv[1], int(sys.argv[2])
d = dict(np.load(path))  # (the store's rows, exported by the driver: the peer's gymnasium may differ)
done = d["terminated"] | d["truncated"]
last = int(np.flatnonzero(done)[-1]) + 1  # (whole episodes only)
ds = d3rlpy.dataset.MDPDataset(d["obs"][:last], d["action"][:last], d["reward"][:last],
                               d["terminated"][:last].astype(np.float32), timeouts=d["truncated"][:last].astype(np.float32))
out = []
for name, cfg in (("d3rlpy DQN", d3rlpy.algos.DQNConfig()), ("d3rlpy DiscreteCQL", d3rlpy.algos.DiscreteCQLConfig())):
    algo = cfg.create(device="cpu:0")
    t = time.perf_counter()
    algo.fit(ds, n_steps=updates, n_steps_per_epoch=updates, show_progress=False, save_interval=10**9)
    seconds = time.perf_counter() - t
    ev = gym.make("CartPole-v1"); rets = []
    for k in range(20):
        o, _ = ev.reset(seed=10_000 + k); dn = False; R = 0.0
        while not dn:
            a = int(algo.predict(np.asarray(o, np.float32)[None])[0])
            o, r, te, tr, _ = ev.step(a); R += r; dn = te or tr
        rets.append(R)
    out.append({"agent": name, "updates": updates, "seconds": seconds, "mean_return": float(np.mean(rets))})
print(json.dumps(out))
'''


def ours(seed: int, steps: int, work: Path, updates_per_step: float) -> dict:
    import gymnasium as gym
    import torch

    import replaystore as rs
    from replaystore.agents import DQNAgent

    torch.set_num_threads(1)
    env = gym.make("CartPole-v1")
    agent = DQNAgent.from_spaces(env.observation_space, env.action_space, seed=seed)
    path = work / f"cp-{seed}.zarr"
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(str(path) + ".run", ignore_errors=True)
    store = rs.create(path, env.observation_space, env.action_space, capacity=100_000)
    run = rs.OnlineTrainer(env, agent, store, batch_size=64, learning_starts=1000, seed=seed,
                           updates_per_step=int(updates_per_step) if float(updates_per_step).is_integer() else updates_per_step,
                           epsilon=rs.LinearSchedule(1.0, 0.04, fraction=0.16))
    t = time.perf_counter()
    res = run.train(steps=steps, eval_every=steps // 5, eval_episodes=20)
    seconds = time.perf_counter() - t
    store.close()
    evs = [e["mean_return"] for e in res.evaluations]
    return {"seconds": seconds, "mean_return": evs[-1], "best": max(evs), "curve": evs, "buffer": str(path)}


def offline(buffer: str, updates: int, seed: int = 0) -> list[dict]:
    import gymnasium as gym
    import torch

    import replaystore as rs
    from replaystore.agents import DiscreteCQLAgent, DQNAgent
    from replaystore.training import evaluate

    torch.set_num_threads(1)
    out = []
    for cls in (DQNAgent, DiscreteCQLAgent):
        store = rs.open(buffer)
        agent = cls.from_spaces(store.observation_space, store.action_space, seed=seed)
        s = rs.UniformSampler(store, 256, seed=seed, fields=list(agent.batch_fields))
        t = time.perf_counter()
        for _ in range(updates):
            agent.update(s.sample())
        seconds = time.perf_counter() - t
        ev = evaluate(gym.make("CartPole-v1"), agent, episodes=20, seed=10_000)
        out.append({"agent": cls.__name__, "updates": updates, "seconds": seconds,
                    "mean_return": ev["mean_return"]})
        store.close()
    return out


def speed(buffer: str, updates: int) -> dict:
    """Gradient steps/s: batches from the store (sampler, numpy -> torch) against batches
    indexed from tensors already in RAM, same agent, same batch size, taking turns."""
    import torch

    import replaystore as rs
    from replaystore.agents import DQNAgent

    torch.set_num_threads(1)
    store = rs.open(buffer)
    agent = DQNAgent.from_spaces(store.observation_space, store.action_space, seed=0)
    fields = list(agent.batch_fields)
    sampler = rs.UniformSampler(store, 256, seed=0, fields=fields)
    ram = {k: torch.from_numpy(v) for k, v in store.read_range(0, len(store), fields=fields).items()}
    gen = torch.Generator().manual_seed(0)
    n = len(store)

    def from_ram():
        i = torch.randint(0, n, (256,), generator=gen)
        return {k: v[i].numpy() for k, v in ram.items()}

    r_store, r_ram = [], []
    for _ in range(5):
        for make, rates in ((sampler.sample, r_store), (from_ram, r_ram)):
            t = time.perf_counter()
            for _ in range(updates // 5):
                agent.update(make())
            rates.append(updates // 5 / (time.perf_counter() - t))
    store.close()
    ratios = [a / b for a, b in zip(r_store, r_ram, strict=True)]
    return {"store steps/s": float(np.median(r_store)), "RAM steps/s": float(np.median(r_ram)),
            "store / RAM": float(np.median(ratios)), "range": f"{min(ratios):.2f}–{max(ratios):.2f}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--updates-per-step", type=float, default=1.0)
    ap.add_argument("--offline-updates", type=int, default=20_000)
    ap.add_argument("--peer-python", default="/tmp/benchvenv/bin/python")
    ap.add_argument("--sections", default="online,offline,speed")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-dqn-"))
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}; work in {work}")
    buffer = str(work / f"cp-{seeds[0]}.zarr")
    if "online" in sections:
        print("\n| seed | replaystore return | replaystore best | replaystore s | SB3 return | SB3 s |")
        print("|---|---|---|---|---|---|")
        for seed in seeds:
            mine = ours(seed, args.steps, work, args.updates_per_step)
            peer = {"mean_return": "not installed", "seconds": ""}
            if os.path.exists(args.peer_python):
                r = subprocess.run([args.peer_python, "-c", SB3, str(seed), str(args.steps)],
                                   capture_output=True, text=True)
                peer = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else \
                    {"mean_return": r.stderr.strip().splitlines()[-1][:60], "seconds": ""}
            print(f"| {seed} | {mine['mean_return']:.1f} | {mine['best']:.1f} | {mine['seconds']:.1f} | "
                  f"{peer['mean_return'] if isinstance(peer['mean_return'], str) else round(peer['mean_return'], 1)} | "
                  f"{peer['seconds'] if isinstance(peer['seconds'], str) else round(peer['seconds'], 1)} |", flush=True)
    if "offline" in sections and Path(buffer).exists():
        print(f"\n| offline agent (from {Path(buffer).name}) | gradient steps | seconds | mean return |")
        print("|---|---|---|---|")
        rows = offline(buffer, args.offline_updates)
        if os.path.exists(args.peer_python):
            import replaystore as rs

            with rs.open(buffer) as st:
                np.savez(work / "rows.npz", **st.read_range(0, len(st), fields=[
                    "obs", "action", "reward", "terminated", "truncated"]))
            r = subprocess.run([args.peer_python, "-c", D3RLPY, str(work / "rows.npz"), str(args.offline_updates)],
                               capture_output=True, text=True, cwd=work)  # (d3rlpy writes d3rlpy_logs/ there)
            rows += json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else \
                [{"agent": "d3rlpy", "updates": 0, "seconds": 0.0,
                  "mean_return": float("nan"), "error": r.stderr.strip().splitlines()[-1][:80]}]
        for r in rows:
            print(f"| {r['agent']} | {r['updates']:,} | {r['seconds']:.1f} | {r['mean_return']:.1f} |"
                  + (f" {r['error']}" if "error" in r else ""), flush=True)
    if "speed" in sections and Path(buffer).exists():
        r = speed(buffer, 2000)
        print("\n| batches from | gradient steps/s (batch 256) |\n|---|---|")
        print(f"| the store (UniformSampler) | {r['store steps/s']:.0f} |\n| tensors in RAM | {r['RAM steps/s']:.0f} |")
        print(f"| store / RAM | {r['store / RAM']:.2f} ({r['range']}) |")


if __name__ == "__main__":
    main()

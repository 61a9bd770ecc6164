"""How many random-policy transitions does offline Q-learning need to get within 1%? (issue 4)

``tools/optimality.py`` collects real stores with ``replaystore.collect`` and trains on them;
that runs at the collector's speed (about 30k transitions/s, bound by gymnasium's own step
loop), so it cannot explore hundreds of millions of transitions or many seeds. This tool
answers the data question for one toy-text environment much faster, by simulation:

1. it runs many independent uniformly-random walkers on the environment's own transition
   table (``env.unwrapped.P``, reset from ``initial_state_distrib``, truncated at the
   registered ``max_episode_steps``) and only counts transitions ``(s, a, s')``; each
   walker first runs ``--burnin`` uncounted steps, so every counted window is a stationary
   slice of one long collection run;
2. it computes what :class:`~replaystore.training.OfflineTrainer` converges to on such a
   dataset in its default sweep mode (alpha = 1, TD errors averaged per ``(s, a)``): value
   iteration on the empirical model ``P^(s'|s,a) = count(s,a,s') / count(s,a)``, no
   bootstrap from terminal transitions, unseen pairs at 0, greedy ties to the lowest action;
3. it grades the greedy policy with :func:`replaystore.agents.policy_value_gap`, exactly as
   ``tools/optimality.py`` does.

``--validate`` first checks the simulator against a real gymnasium stream (per-(s, a) visit
frequencies and the goal-visit rate).

Run: ``python3 tools/data_need.py`` (FrozenLake-v1 8x8 slippery, gamma 0.5, seeds 0-4,
8M..256M transitions; about 15 s per seed on one core).
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np

from replaystore.agents import policy_value_gap


def tables(env) -> dict:
    """Outcome tables of ``env.unwrapped.P`` for vectorised sampling."""
    P = env.unwrapped.P
    ns, na = len(P), max(len(P[s]) for s in P)
    k = max(len(P[s][a]) for s in P for a in P[s])
    nxt = np.zeros((ns * na, k), np.int64)
    cum = np.ones((ns * na, k))
    term = np.zeros((ns, na, ns), bool)
    rew = np.zeros((ns, na, ns))
    for s in P:
        for a, outcomes in P[s].items():
            c = 0.0
            for j, (p, s2, r, done) in enumerate(outcomes):
                c += p
                nxt[s * na + a, j], cum[s * na + a, j] = s2, c
                term[s, a, s2], rew[s, a, s2] = done, r
            nxt[s * na + a, len(outcomes):] = nxt[s * na + a, len(outcomes) - 1]
            cum[s * na + a, len(outcomes) - 1:] = 1.0 + 1e-12  # rounding guard
    d0 = np.asarray(env.unwrapped.initial_state_distrib, np.float64)
    return {"ns": ns, "na": na, "nxt": nxt, "cum": cum, "term": term, "rew": rew, "d0": d0,
            "limit": env.spec.max_episode_steps}


def simulate(t: dict, seed: int, sizes: list[int], walkers: int, burnin: int):
    """Yield ``(N, counts[s, a, s'])`` for every N in ``sizes`` (multiples of ``walkers``)."""
    rng = np.random.default_rng(seed)
    ns, na, nxt, cum = t["ns"], t["na"], t["nxt"].ravel(), t["cum"].ravel()
    k = t["cum"].shape[1]
    term = t["term"].ravel()
    cd0 = np.cumsum(t["d0"])
    limit = t["limit"] or np.iinfo(np.int64).max

    def reset(n: int) -> np.ndarray:
        return np.minimum(np.searchsorted(cd0, rng.random(n), side="right"), ns - 1)

    s, age = reset(walkers), np.zeros(walkers, np.int64)
    counts = np.zeros(ns * na * ns, np.int64)
    buf: list[np.ndarray] = []
    step = -burnin
    for target in sorted({n // walkers for n in sizes}):
        while step < target:
            sa = s * na + rng.integers(0, na, walkers)
            u = rng.random(walkers)
            j = np.zeros(walkers, np.int64)
            for col in range(k - 1):  # inverse CDF over the outcomes of (s, a)
                j += u >= cum[sa * k + col]
            s2 = nxt[sa * k + j]
            idx = sa * ns + s2
            if step >= 0:
                buf.append(idx)
            age += 1
            done = term[idx] | (age >= limit)
            if done.any():
                s2[done] = reset(int(done.sum()))
                age[done] = 0
            s = s2
            step += 1
            if len(buf) >= 16:
                counts += np.bincount(np.concatenate(buf), minlength=counts.size)
                buf = []
        if buf:
            counts += np.bincount(np.concatenate(buf), minlength=counts.size)
            buf = []
        yield target * walkers, counts.reshape(ns, na, ns).copy()


def offline_policy(t: dict, counts: np.ndarray, gamma: float) -> np.ndarray:
    """Greedy policy of the fixed point the sweep-mode trainer converges to on ``counts``."""
    n = counts.sum(axis=2, keepdims=True)
    p = np.divide(counts, n, out=np.zeros(counts.shape), where=n > 0)
    T = p * ~t["term"]
    R = (p * t["rew"]).sum(axis=2)
    Q = np.zeros_like(R)
    for _ in range(200_000):
        new = R + gamma * (T @ Q.max(axis=1))
        # relative convergence: at gamma 0.5 the values far from the goal are ~1e-8
        if np.all(np.abs(new - Q) <= 1e-15 * np.abs(new)):
            Q = new
            break
        Q = new
    return Q.argmax(axis=1)


def validate(env, t: dict, steps: int = 2_000_000) -> None:
    """Compare the simulator's (s, a) visit frequencies with a real gymnasium stream."""
    ns, na = t["ns"], t["na"]
    rng = np.random.default_rng(1)
    real = np.zeros((ns, na, ns))
    s, _ = env.reset(seed=1)
    for _ in range(steps):
        a = int(rng.integers(na))
        s2, _, te, tr, _ = env.step(a)
        real[s, a, s2] += 1
        s = env.reset()[0] if te or tr else s2
    (n, sim), = list(simulate(t, 0, [64_000_000], walkers=100_000, burnin=1000))
    p_sim = sim.sum(axis=2).ravel() / n
    z = (real.sum(axis=2).ravel() - steps * p_sim) / np.sqrt(np.maximum(steps * p_sim, 1))
    print(f"validate: max |z| over (s,a) visit counts {np.abs(z).max():.2f} "
          f"(sum z^2 {np.sum(z ** 2):.0f}, dof ~{int((p_sim > 0).sum()) - 1})")
    rewarded = np.flatnonzero(t["rew"].max(axis=(0, 1)) > 0)
    if len(rewarded):  # e.g. FrozenLake's goal
        goal = int(rewarded[-1])
        print(f"validate: visits per step to state {goal} (rewarded): gym "
              f"{real[:, :, goal].sum() / steps:.3e}, simulator {sim[:, :, goal].sum() / n:.3e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="FrozenLake-v1")
    ap.add_argument("--env-kwargs", default='{"map_name": "8x8", "is_slippery": true}')
    ap.add_argument("--gammas", default="0.5")
    ap.add_argument("--sizes", default="8e6,16e6,32e6,64e6,128e6,256e6")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--walkers", type=int, default=100_000)
    ap.add_argument("--burnin", type=int, default=1000)
    ap.add_argument("--target", type=float, default=0.01)
    ap.add_argument("--validate", action="store_true")
    ap.add_argument("--json", default=None, help="append one JSON line per result here")
    args = ap.parse_args()
    env = gym.make(args.env, **json.loads(args.env_kwargs))
    t = tables(env)
    if args.validate:
        validate(env, t)
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    gammas = [float(g) for g in args.gammas.split(",")]
    gaps: dict[tuple[int, float], list[float]] = {}
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        for n, counts in simulate(t, seed, sizes, args.walkers, args.burnin):
            for g in gammas:
                r = policy_value_gap(env, offline_policy(t, counts, g), g)
                gaps.setdefault((n, g), []).append(r["rel_gap"])
                rec = {"env": args.env, "seed": seed, "N": n, "gamma": g, **r,
                       "seconds": round(time.perf_counter() - t0, 1)}
                print(json.dumps(rec), flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(rec) + "\n")
    print(f"\n{args.env} {args.env_kwargs}, limit {t['limit']} steps, {args.seeds} seeds\n")
    print("| transitions | gamma | median rel_gap | worst rel_gap | seeds passing |")
    print("|---:|---:|---:|---:|---:|")
    for (n, g), v in sorted(gaps.items()):
        ok = sum(x <= args.target for x in v)
        print(f"| {n:,} | {g} | {np.median(v):.1e} | {max(v):.1e} | {ok}/{len(v)} |")


if __name__ == "__main__":
    main()

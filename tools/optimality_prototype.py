"""Research prototype: how much random-policy data and how many offline Q-learning updates
does it take for the greedy policy to be within 1% of optimal on gymnasium toy-text envs?

For each environment: collect transitions with a uniformly random policy (seeded
``env.reset(seed=)`` and ``action_space.seed()``) into plain numpy arrays (obs, action,
reward, next_obs, terminated, truncated), then for each gamma train ``QLearningAgent``
offline on uniform random batches drawn with a seeded Generator until the Q-table stops
changing (max |Delta Q| below ``--tol`` for ``--window`` consecutive updates) or a cap, and
grade the greedy policy exactly against ``env.unwrapped.P``:
``rel_gap = (V* - V^pi) / |V*|`` averaged over the initial-state distribution.

Measured (seed 0, batch 4096, default agent: ``alpha_schedule="visits"``, alpha 1): every
env and gamma reaches rel_gap <= 1e-2. The data sizes and update caps in ``ENVS`` are what
it took: deterministic Taxi/CliffWalking converge in a few hundred updates; the slippery
envs never meet the max |dQ| test (rarely visited pairs keep moving) and run to their
cap. FrozenLake 8x8 is data-bound: with 2M random-policy transitions even the optimal
policy of the empirical MDP (column ``ce_gap``) misses 1% at gamma 0.9/0.95; 4M suffice.

Later this script will be rewired to collect into and sample from a ReplayStore.

Run: ``python3 tools/optimality_prototype.py`` (about 2-3 minutes on 2 idle cores);
``--help`` lists the knobs used for the experiments.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields

import gymnasium as gym
import numpy as np

from replaystore.agents import QLearningAgent, policy_value_gap, value_iteration

# (label, gymnasium id, make kwargs, random-policy transitions, cap on updates)
ENVS: list[tuple[str, str, dict, int, int]] = [
    ("FrozenLake 4x4", "FrozenLake-v1", {"map_name": "4x4", "is_slippery": True}, 200_000, 3000),
    ("FrozenLake 8x8", "FrozenLake-v1", {"map_name": "8x8", "is_slippery": True}, 4_000_000,
     8000),
    ("Taxi", "Taxi-v4", {}, 200_000, 3000),
    # CliffWalking has no registered time limit: cap episodes so truncation is exercised.
    ("CliffWalking", "CliffWalking-v1", {"max_episode_steps": 500}, 100_000, 3000),
    ("CliffWalkingSlippery", "CliffWalkingSlippery-v1", {"max_episode_steps": 500}, 200_000,
     12000),
]
GAMMAS = (0.9, 0.95, 0.99)


@dataclass
class Transitions:
    """Transitions as plain numpy columns (one entry per environment step)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)

    def take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name)[idx] for f in fields(self)}

    @classmethod
    def concat(cls, parts: list[Transitions]) -> Transitions:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def collect_random(env: gym.Env, n: int, seed: int) -> tuple[Transitions, int]:
    """``n`` transitions of a uniformly random policy; returns them and the episode count."""
    obs_a = np.empty(n, np.int32)
    act_a = np.empty(n, np.int32)
    rew_a = np.empty(n, np.float64)
    nxt_a = np.empty(n, np.int32)
    term_a = np.empty(n, np.bool_)
    trunc_a = np.empty(n, np.bool_)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    episodes = 1
    for i in range(n):
        action = env.action_space.sample()
        nxt, reward, terminated, truncated, _ = env.step(action)
        obs_a[i], act_a[i], rew_a[i], nxt_a[i] = obs, action, reward, nxt
        term_a[i], trunc_a[i] = terminated, truncated
        if terminated or truncated:
            obs, _ = env.reset()  # the RNG seeded above keeps the run reproducible
            episodes += 1
        else:
            obs = nxt
    return Transitions(obs_a, act_a, rew_a, nxt_a, term_a, trunc_a), episodes


def _collect_worker(env_id: str, kwargs: dict, n: int, seed: int) -> tuple[Transitions, int]:
    env = gym.make(env_id, **kwargs)
    try:
        return collect_random(env, n, seed)
    finally:
        env.close()


def collect_parallel(
    pool: ProcessPoolExecutor, env_id: str, kwargs: dict, n: int, seed: int, workers: int
) -> tuple[Transitions, int]:
    """``n`` transitions from ``workers`` independent random-policy streams (seeds
    ``seed * 1000 + w``), concatenated in worker order, so the result is reproducible."""
    sizes = [n // workers + (w < n % workers) for w in range(workers)]
    futures = [
        pool.submit(_collect_worker, env_id, kwargs, size, seed * 1000 + w)
        for w, size in enumerate(sizes)
    ]
    parts = [f.result() for f in futures]
    return Transitions.concat([p[0] for p in parts]), sum(p[1] for p in parts)


def reachable_pairs(env: gym.Env) -> int:
    """Number of (s, a) pairs with s reachable from the start distribution (any policy)."""
    P = env.unwrapped.P
    n_actions = int(env.action_space.n)
    start = set(np.flatnonzero(env.unwrapped.initial_state_distrib).tolist())
    seen, frontier = set(start), list(start)
    while frontier:
        s = frontier.pop()
        for a in range(n_actions):
            for prob, s2, _, terminated in P[s][a]:
                if prob > 0 and not terminated and s2 not in seen:
                    seen.add(s2)
                    frontier.append(s2)
    return len(seen) * n_actions


def empirical_table(data: Transitions, n_states: int, n_actions: int) -> dict:
    """The maximum-likelihood MDP of the data as a toy-text ``P`` table (unseen pairs end
    the episode with reward 0). Its optimal policy is what Q-learning converges to."""
    pair = data.obs.astype(np.int64) * n_actions + data.action
    key = (pair * n_states + data.next_obs) * 2 + data.terminated
    keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    reward_sums = np.bincount(inverse, weights=data.reward)
    pair_counts = np.bincount(pair, minlength=n_states * n_actions)
    P: dict = {s: {a: [] for a in range(n_actions)} for s in range(n_states)}
    for k, c, r in zip(keys.tolist(), counts.tolist(), reward_sums.tolist(), strict=True):
        terminated, rest = bool(k % 2), k // 2
        s2, p = rest % n_states, rest // n_states
        P[p // n_actions][p % n_actions].append((c / pair_counts[p], s2, r / c, terminated))
    for s in range(n_states):
        for a in range(n_actions):
            if not P[s][a]:
                P[s][a].append((1.0, s, 0.0, True))
    return P


def train(
    data: Transitions,
    agent: QLearningAgent,
    rng: np.random.Generator,
    *,
    batch_size: int,
    tol: float,
    window: int,
    max_updates: int,
) -> tuple[int, bool, float]:
    """Uniform-batch offline training until max |dQ| < ``tol`` for ``window`` updates in a
    row, or ``max_updates``; returns (updates done, converged?, last max |dQ|)."""
    quiet, delta = 0, float("inf")
    for update in range(1, max_updates + 1):
        idx = rng.integers(0, len(data), batch_size)
        delta = agent.update(data.take(idx))
        quiet = quiet + 1 if delta < tol else 0
        if quiet >= window:
            return update, True, delta
    return max_updates, False, delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="*", help="labels (substring match) to run")
    parser.add_argument("--gammas", nargs="*", type=float, default=list(GAMMAS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply data sizes")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--schedule", default=None, help="alpha_schedule (agent default)")
    parser.add_argument("--alpha", type=float, default=None, help="(agent default)")
    parser.add_argument("--alpha-power", type=float, default=None, help="(agent default)")
    parser.add_argument("--tol", type=float, default=1e-4, help="x reward range of the data")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--update-scale", type=float, default=1.0, help="multiply update caps")
    parser.add_argument("--workers", type=int, default=2, help="collection processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    hp: dict = {}
    for key in ("schedule", "alpha", "alpha_power"):
        if getattr(args, key) is not None:
            hp["alpha_schedule" if key == "schedule" else key] = getattr(args, key)

    header = (
        f"{'env':20} {'gamma':>5} {'transitions':>11} {'episodes':>8} {'trunc':>6} "
        f"{'coverage':>8} {'updates':>7} {'conv':>4} {'last_dQ':>8} {'V*':>8} {'V^pi':>8} "
        f"{'rel_gap':>9} {'ce_gap':>9} {'secs':>5}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    t_total = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for label, env_id, kwargs, n_transitions, max_updates in ENVS:
            if args.envs and not any(e.lower() in label.lower() for e in args.envs):
                continue
            t0 = time.perf_counter()
            env = gym.make(env_id, **kwargs)
            n = int(n_transitions * args.scale)
            data, episodes = collect_parallel(pool, env_id, kwargs, n, args.seed, args.workers)
            n_actions = int(env.action_space.n)
            covered = np.unique(data.obs * n_actions + data.action).size
            coverage = covered / reachable_pairs(env)
            reward_range = float(data.reward.max() - data.reward.min()) or 1.0
            n_states = int(env.observation_space.n)
            P_data = empirical_table(data, n_states, n_actions)
            collect_secs = time.perf_counter() - t0
            for gamma in args.gammas:
                t0 = time.perf_counter()
                agent = QLearningAgent.from_spaces(
                    env.observation_space, env.action_space, gamma=gamma, **hp
                )
                rng = np.random.default_rng(args.seed)
                updates, converged, last = train(
                    data,
                    agent,
                    rng,
                    batch_size=args.batch_size,
                    tol=args.tol * reward_range,
                    window=args.window,
                    max_updates=int(max_updates * args.update_scale),
                )
                result = policy_value_gap(env, agent.greedy_policy(), gamma)
                _, q_data = value_iteration(P_data, n_states, n_actions, gamma)
                ce_gap = policy_value_gap(env, q_data.argmax(axis=1), gamma)["rel_gap"]
                worst = max(worst, result["rel_gap"])
                print(
                    f"{label:20} {gamma:5.2f} {n:11d} {episodes:8d} "
                    f"{int(data.truncated.sum()):6d} {coverage:8.1%} {updates:7d} "
                    f"{'yes' if converged else 'no':>4} {last:8.1e} {result['v_star']:8.4f} "
                    f"{result['v_pi']:8.4f} {result['rel_gap']:9.2e} {ce_gap:9.2e} "
                    f"{time.perf_counter() - t0:5.1f}",
                    flush=True,
                )
            print(f"{'':20} (collection {collect_secs:.1f}s)", flush=True)
            env.close()
    print(
        f"worst rel_gap {worst:.2e} (target <= 1e-2); agent {agent!r}; batch "
        f"{args.batch_size}; total {time.perf_counter() - t_total:.0f}s"
    )


if __name__ == "__main__":
    main()

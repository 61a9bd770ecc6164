"""The online loop: act, store each transition, sample a minibatch, update; repeat.

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> from replaystore.agents import QLearningAgent
>>> env = gym.make("CliffWalking-v1", max_episode_steps=500)
>>> agent = QLearningAgent.from_spaces(env.observation_space, env.action_space, gamma=0.99)
>>> store = rs.create(tempfile.mkdtemp() + "/buf.zarr", env.observation_space, env.action_space,
...                   capacity=10_000)
>>> run = OnlineTrainer(env, agent, store, batch_size=32, learning_starts=500, commit_every=500,
...                     epsilon=LinearSchedule(1.0, 0.05, fraction=0.5), seed=0)
>>> result = run.train(steps=8_000, eval_every=4_000, eval_episodes=2)
>>> store.total, result.evaluations[-1]["gap"] < 1e-9
(8000, True)

Durability. Every ``commit_every`` env steps the trainer writes the run state of that
step into ``<store>.run/`` (:mod:`~replaystore.online.runstate`: agent, sampler and
trainer RNG states, counters, curves, settings) and *then* commits the store with a
record ``info["online_run"]`` of the step, atomically with the rows. After a crash the
store's committed row count names the step to go on from, and that step's run state is
always on disk (a state written for rows that never committed is stale and removed).
``train(steps, resume=True)`` continues such a run: it checks that the settings are the
saved run's (:class:`~replaystore.errors.RunMismatchError` if not), ends the store's
running episode, resets the environment and goes on, so that at the end the store holds
exactly ``steps`` rows of this run. Rows after the last commit are lost and collected
again; none is stored twice.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ..agents import (
    Agent,
    initial_state_distribution,
    policy_evaluation,
    transition_matrices,
    value_iteration,
)
from ..errors import AgentConfigError, EnvError, RunMismatchError, SamplerError, StoreModeError
from ..progress import Progress, as_progress
from ..sampling import BalancedSampler, PrioritizedSampler, Sampler, UniformSampler
from ..storage import ReplayStore
from ..training import check_fits, evaluate
from .curves import CurveLog, Curves
from .runstate import RunDir
from .schedules import LinearSchedule, as_schedule

__all__ = ["OnlineTrainer", "OnlineResult", "SamplerFactory", "BalancedFactory", "PrioritizedFactory",
           "run_dir_of", "PRIORITY_EPS"]

#: builds the sampler once the store holds ``learning_starts`` rows (a class-balanced
#: sampler cannot be built on an empty store): ``factory(store, batch_size, seed, fields)``
SamplerFactory = Callable[[ReplayStore, int, int, Any], Sampler]

#: added to ``|TD error|`` for a row's new priority, so no row's priority becomes 0
PRIORITY_EPS = 1e-6

#: the exploration schedule of the textbook loop: 1 -> 0.05 over the first half of the run
DEFAULT_EPSILON = LinearSchedule(1.0, 0.05, fraction=0.5)

_SEGMENT = 2048  # exploration randoms are drawn this many steps at a time


@dataclass
class OnlineResult:
    """What an online run did. ``steps`` counts every env step of the run (resumed ones
    too); ``seconds`` and ``steps_per_second`` are this call's."""

    steps: int
    seconds: float
    steps_this_call: int
    resumed_from: int | None
    episodes: list[tuple[int, float, int]] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    td_errors: list[dict] = field(default_factory=list)
    updates: int = 0
    commits: int = 0

    @property
    def steps_per_second(self) -> float:
        """Env steps of this call per second of it (evaluations and commits included)."""
        return self.steps_this_call / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict:
        return {**asdict(self), "steps_per_second": self.steps_per_second}


def run_dir_of(store_path: str | os.PathLike[str]) -> Path:
    """Where the run state of the store at ``store_path`` lives: ``<store>.run/``."""
    p = Path(store_path)
    return p.with_name(p.name + ".run")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return repr(v)


class _Grader:
    """Exact relative gap of a greedy policy on ``env.unwrapped.P`` (``V*`` and the dense
    transition matrices computed once: building them is most of a Taxi grading)."""

    def __init__(self, env: gym.Env, gamma: float) -> None:
        self.P = env.unwrapped.P
        n_s, n_a = len(self.P), max(len(self.P[s]) for s in self.P)
        self.gamma = gamma
        self.d0 = initial_state_distribution(env)
        self.v_star = float(self.d0 @ value_iteration(self.P, n_s, n_a, gamma)[0])
        self.T, self.R = transition_matrices(self.P, n_s, n_a)
        self.eye = np.eye(n_s)

    def gap(self, policy: np.ndarray) -> float:
        """:func:`~replaystore.agents.policy_evaluation` of the deterministic ``policy``
        (the same numbers: its one-hot products pick exactly these rows), from the
        matrices built once."""
        pi = np.asarray(policy)
        n_s, n_a = self.R.shape
        if pi.shape == (n_s,) and pi.dtype.kind in "iu" and (not n_s or 0 <= pi.min() <= pi.max() < n_a):
            s = np.arange(n_s)
            v_pi = np.linalg.solve(self.eye - self.gamma * self.T[s, pi], self.R[s, pi])
        else:  # (it says what is wrong with the policy)
            v_pi = policy_evaluation(self.P, policy, self.gamma)
        v = float(self.d0 @ v_pi)
        d = self.v_star - v
        return d / abs(self.v_star) if self.v_star != 0 else d


class OnlineTrainer:
    """Learns online from ``env`` into ``agent`` through the replay buffer ``store``.

    Per env step: an epsilon-greedy action (``epsilon`` a :class:`LinearSchedule` or a
    number; exploration draws come from the trainer's own generator), ``env.step``, one
    ``store.append`` (``terminated`` and ``truncated`` kept apart), and, once the run has
    stored ``learning_starts`` rows, ``updates_per_step`` times
    ``agent.update(sampler.sample())``. The agent is used only through
    :class:`~replaystore.agents.Agent` (``act``, ``update``, ``state_dict``,
    ``load_state_dict``). The sampler is ``sampler`` (any
    :class:`~replaystore.sampling.Sampler` on ``store``, or a :data:`SamplerFactory`
    called when learning starts) or a :class:`UniformSampler` reading
    ``agent.batch_fields``. Seeds of the sampler, the trainer's generator and the first
    ``env.reset`` derive from ``seed``. Run state goes to ``run_dir`` (default
    :func:`run_dir_of` the store).
    """

    def __init__(
        self,
        env: gym.Env,
        agent: Agent,
        store: ReplayStore,
        *,
        sampler: Sampler | SamplerFactory | None = None,
        batch_size: int = 32,
        updates_per_step: int = 1,
        learning_starts: int = 1_000,
        epsilon: LinearSchedule | float = DEFAULT_EPSILON,
        seed: int = 0,
        commit_every: int | None = None,
        run_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(env, gym.Env):
            raise EnvError(f"OnlineTrainer needs a gymnasium Env, got {env!r}")
        if not isinstance(agent, Agent):
            raise AgentConfigError(f"OnlineTrainer needs a replaystore Agent, got {type(agent).__name__}")
        if not isinstance(store, ReplayStore) or store.mode != "a":
            raise StoreModeError(f"{getattr(store, 'path', store)}: OnlineTrainer needs a store open "
                                 "for appending (rs.create, or rs.open(path, 'a'))")
        if commit_every is None and isinstance(store, ReplayStore) and store.mode == "a":
            commit_every = default_commit_every(store)
        if (isinstance(updates_per_step, bool) or not isinstance(updates_per_step, int | float | np.integer | np.floating)
                or not 0 <= updates_per_step < math.inf):
            raise SamplerError(f"updates_per_step must be a number >= 0, got {updates_per_step!r}")
        for name, v, lo in (("batch_size", batch_size, 1),
                            ("learning_starts", learning_starts, 1), ("commit_every", commit_every, 1)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
                raise SamplerError(f"{name} must be an int >= {lo}, got {v!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise SamplerError(f"seed must be an int, got {seed!r}")
        if commit_every >= store.buffer_rows:
            why = (f"{store.path}: commit_every ({commit_every}) must be smaller than the store's write "
                   f"buffer ({store.buffer_rows} rows), or the store would commit on its own between "
                   "the run's commits")
            raise SamplerError(f"{why} (open it with a larger buffer_rows=, or commit more often)",
                               cli=f"{why.replace('commit_every', '--commit-every', 1)} (give a smaller --commit-every)")
        where = f"{store.path}: store"
        check_fits(where, store.observation_space, store.action_space, agent, SamplerError)
        check_fits(f"environment {env.spec.id if env.spec else env}", env.observation_space,
                   env.action_space, agent, EnvError)
        self.env, self.agent, self.store = env, agent, store
        self.batch_size = int(batch_size)
        ups = float(updates_per_step)
        self.updates_per_step: int | float = int(ups) if ups.is_integer() else ups
        self.learning_starts = int(learning_starts)
        self.epsilon = as_schedule(epsilon)
        self.seed = int(seed)
        self.commit_every = int(commit_every)
        self.run_dir = RunDir(run_dir if run_dir is not None else run_dir_of(store.path))
        seeds = np.random.SeedSequence(self.seed).generate_state(3, np.uint32).tolist()
        self._sampler_seed, self._env_seed, rng_seed = (int(s) for s in seeds)
        self.rng = np.random.default_rng(rng_seed)
        if isinstance(sampler, Sampler):
            if sampler.store is not store:
                raise SamplerError(f"the sampler reads {sampler.store.path}, not the trainer's store "
                                   f"{store.path}")
            self._factory: SamplerFactory | None = None
            self.sampler: Sampler | None = sampler
            desc = {k: v for k, v in sampler.state_dict().items() if k not in ("rng", "ahead")}
        else:
            self._factory = sampler if sampler is not None else _uniform
            self.sampler = None
            describe = getattr(self._factory, "describe", None)
            desc = describe() if callable(describe) else {
                "factory": getattr(self._factory, "__qualname__", type(self._factory).__name__)}
            desc = {**desc, "batch_size": self.batch_size}
        self._sampler_desc = desc
        space = env.action_space
        self._n_actions = int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        self._action_start = int(space.start) if self._n_actions is not None else 0
        if self._n_actions is None:
            space.seed(int(np.random.SeedSequence([self.seed, 3]).generate_state(1)[0]))
        self.step = 0           # env steps done (rows this run stored)
        self.base = store.total  # rows the store held when the run began
        self.curves = Curves()
        self._td_sum, self._td_n = 0.0, 0
        self._grader: _Grader | None = None
        self._eval_env: gym.Env | None = None

    # ------------------------------------------------------------------ settings
    def settings(self, steps: int) -> dict[str, Any]:
        """What a resumed run must share with the saved one (JSON)."""
        spec = self.env.spec
        env = ({"id": spec.id, "kwargs": spec.kwargs, "max_episode_steps": spec.max_episode_steps}
               if spec is not None else {"type": type(self.env.unwrapped).__name__})
        agent = {"type": type(self.agent).__name__}
        agent.update({k: v for k, v in self.agent.state_dict().items()
                      if v is None or isinstance(v, bool | int | float | str | np.generic)})
        return _jsonable({
            "env": env, "agent": agent, "sampler": self._sampler_desc, "steps": steps,
            "batch_size": self.batch_size, "updates_per_step": self.updates_per_step,
            "learning_starts": self.learning_starts, "epsilon": self.epsilon.to_dict(),
            "seed": self.seed, "commit_every": self.commit_every,
            "store": {"capacity": self.store.capacity, "fields": list(self.store.schema.names)},
        })

    # ------------------------------------------------------------------ state
    def _state(self, steps: int) -> dict[str, Any]:
        return {
            "format_version": 1, "step": self.step, "base": self.base,
            "settings": self.settings(steps), "agent": self.agent.state_dict(),
            "sampler": None if self.sampler is None else self.sampler.state_dict(),
            "rng": self.rng.bit_generator.state, "curves": self.curves.state(),
            "td_window": [self._td_sum, self._td_n],
        }

    def _commit(self, steps: int, log: CurveLog | None) -> None:
        """Run state of this step first, then the store's rows with the step recorded."""
        store, k = self.store, self.step
        self.run_dir.save(k, self._state(steps))
        record = {"online_run": {"step": k, "base": self.base, "rows": self.base + k}}
        generation = store.generation
        store.update_info(record, commit=False)
        store.flush()
        if store.generation == generation:  # nothing was left to commit: commit the record
            store.update_info(record, commit=True)
        if self.sampler is not None and hasattr(self.sampler, "flush"):
            self.sampler.flush()  # (a prioritized sampler's priorities, with these rows)
        self.run_dir.keep_only(k)
        if log is not None:
            log.sync()

    def _resume(self, steps: int) -> int | None:
        """Load the saved state matching the store's committed rows; the step resumed from
        (``None``: nothing was saved, the run starts afresh)."""
        saved = self.run_dir.steps()
        if not saved:
            return None
        newest = self.run_dir.load(saved[-1])
        base = int(newest["base"])
        committed = self.store.total - base
        self._check_settings(newest["settings"], steps)
        if committed < 0 or self.store.buffered:
            raise RunMismatchError(f"{self.store.path}: the store holds {self.store.total} committed "
                                   f"rows, fewer than the {base} it held when the run in "
                                   f"{self.run_dir.path} began")
        at = [s for s in saved if s <= committed]
        if committed == 0 and (not at or at[-1] != 0):
            self.base = base
            self.run_dir.keep_only(-1)
            return None
        if not at:
            raise RunMismatchError(f"{self.run_dir.path}: no run state at or before the store's "
                                   f"committed step {committed} (states: {saved})")
        state = newest if at[-1] == saved[-1] else self.run_dir.load(at[-1])
        if at[-1] != committed:
            warnings.warn(f"{self.store.path}: the store committed {committed - at[-1]} rows after "
                          f"the last run state (step {at[-1]}); going on from step {committed} with "
                          "that state", RuntimeWarning, stacklevel=3)
        self.agent.load_state_dict(state["agent"])
        if state["sampler"] is not None:
            if self.sampler is None:
                self.sampler = self._factory(self.store, self.batch_size, self._sampler_seed,
                                             self.agent.batch_fields)
            self.sampler.load_state_dict(state["sampler"])
        self.rng.bit_generator.state = state["rng"]
        self.curves = Curves.from_state(state["curves"])
        self._td_sum, self._td_n = float(state["td_window"][0]), int(state["td_window"][1])
        self.base, self.step = base, committed
        self.run_dir.keep_only(at[-1])
        self.store.end_episode()
        return committed

    def _check_settings(self, saved: dict[str, Any], steps: int) -> None:
        mine = self.settings(steps)
        diff = []

        def walk(a: Any, b: Any, path: str) -> None:
            if isinstance(a, dict) and isinstance(b, dict):
                for k in sorted(set(a) | set(b)):
                    walk(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            elif a != b:
                diff.append(f"{path}: saved {a!r}, given {b!r}")

        walk(saved, mine, "")
        if diff:
            raise RunMismatchError(f"{self.run_dir.path}: the saved run has other settings than this "
                                   "one (" + "; ".join(diff) + "); resume with the saved settings or "
                                   "start a new run in a new store")

    # ------------------------------------------------------------------ evaluation
    def gap(self) -> float | None:
        """Exact relative gap of the agent's greedy policy to the optimal value, when the
        environment has a transition table (``env.unwrapped.P``) and the agent a
        ``greedy_policy()`` (tabular); else None."""
        if not hasattr(self.agent, "greedy_policy") or not hasattr(self.env.unwrapped, "P"):
            return None
        if self._grader is None:
            self._grader = _Grader(self.env, float(self.agent.gamma))
        policy = np.asarray(self.agent.greedy_policy()) - int(getattr(self.agent, "action_start", 0))
        return self._grader.gap(policy)

    def _evaluate(self, episodes: int, seed: int) -> dict[str, Any]:
        if self._eval_env is None:
            if self.env.spec is None:
                raise EnvError("evaluation needs an env made with gym.make (env.spec is None)")
            self._eval_env = gym.make(self.env.spec)
        ev = evaluate(self._eval_env, self.agent, episodes=episodes, seed=seed)
        return {"step": self.step, "mean_return": ev["mean_return"],
                "success_rate": ev["success_rate"], "mean_length": ev["mean_length"],
                "gap": self.gap()}

    # ------------------------------------------------------------------ the loop
    def train(
        self,
        steps: int,
        *,
        eval_every: int | None = None,
        eval_episodes: int = 100,
        eval_seed: int = 10_000,
        log: str | os.PathLike[str] | None = None,
        progress: bool | Progress = False,
        resume: bool = False,
    ) -> OnlineResult:
        """Run until the run has taken ``steps`` env steps in all.

        Every ``eval_every`` steps (and at the end) the greedy policy is evaluated for
        ``eval_episodes`` episodes in a fresh copy of the env and graded exactly
        (:meth:`gap`); the window's mean update value goes to ``td_errors``. ``log``
        names the curves CSV (:mod:`~replaystore.online.curves`). ``resume=True``
        continues the run saved next to the store (see the module docstring); with no
        saved run it starts one. Without ``resume`` a saved run is an error.
        """
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
            raise SamplerError(f"steps must be a positive int, got {steps!r}")
        if eval_every is not None and (not isinstance(eval_every, int | np.integer) or eval_every < 1):
            raise SamplerError(f"eval_every must be a positive int or None, got {eval_every!r}")
        if not resume and self.run_dir.steps():
            where = f"{self.run_dir.path}: a run is saved there"
            raise RunMismatchError(f"{where}; resume it (resume=True) or start in a new store",
                                   cli=f"{where}; continue it with --resume, or use a new --buffer")
        resumed = self._resume(steps) if resume else None
        if self.step > steps:
            raise RunMismatchError(f"{self.store.path}: the saved run is at step {self.step}, "
                                   f"beyond steps={steps}")
        first = self.step
        env = self.env
        if resumed is None:
            obs, _ = env.reset(seed=self._env_seed)
        else:
            obs, _ = env.reset(seed=int(np.random.SeedSequence([self.seed, 2, self.step])
                                        .generate_state(1)[0]))
        result = OnlineResult(first, 0.0, 0, resumed)
        curve_log = CurveLog(log, self.curves) if log else None
        t0 = time.perf_counter()
        try:
            with as_progress(progress).task(steps, "learning") as bar:
                bar.update(first)
                obs = self._run(steps, obs, eval_every, eval_episodes, eval_seed, curve_log, bar, result)
        finally:
            if curve_log is not None:
                curve_log.close()
        result.seconds = time.perf_counter() - t0
        result.steps = self.step
        result.steps_this_call = self.step - first
        result.episodes = list(self.curves.episodes)
        result.evaluations = list(self.curves.evaluations)
        result.td_errors = list(self.curves.td)
        return result

    def _run(self, steps: int, obs: Any, eval_every: int | None, eval_episodes: int, eval_seed: int,
             curve_log: CurveLog | None, bar: Progress, result: OnlineResult) -> Any:
        env, store, agent, curves = self.env, self.store, self.agent, self.curves
        step_env, reset, append, act = env.step, env.reset, store.append, agent.act
        update = agent.update
        ups, ce, n_actions, a0 = self.updates_per_step, self.commit_every, self._n_actions, self._action_start
        episodes = curves.episodes
        ep_ret, ep_len = 0.0, 0
        td_sum = 0.0
        t = self.step
        while t < steps:
            marks = [steps, (t // ce + 1) * ce, (t // _SEGMENT + 1) * _SEGMENT]
            if eval_every:
                marks.append((t // eval_every + 1) * eval_every)
            if t < self.learning_starts - 1:
                marks.append(self.learning_starts - 1)
            stop = min(marks)
            n = stop - t
            learning = t >= self.learning_starts - 1 and ups > 0
            if learning and self.sampler is None:
                self.sampler = self._factory(store, self.batch_size, self._sampler_seed, agent.batch_fields)
            explore = (self.rng.random(n) < self.epsilon.values(t, stop, total=steps)).tolist()
            if n_actions is not None:
                random_actions = (self.rng.integers(0, n_actions, n) + a0).tolist()
            else:
                sample_action = env.action_space.sample
                random_actions = [None] * n
            sample = self.sampler.sample if learning else None
            per = learning and hasattr(self.sampler, "update_priorities")
            one = self._prioritized_update() if per else None
            # updates at the k-th learning step: floor((k+1) u) - floor(k u) (u per step on average)
            counts = None if not learning or isinstance(ups, int) else np.diff(np.floor(
                (np.arange(t, stop + 1) - (self.learning_starts - 1)) * ups)).astype(np.int64).tolist()
            n_updates = (n * ups if isinstance(ups, int) else sum(counts)) if learning else 0
            td_sum = 0.0
            for i in range(n):
                if explore[i]:
                    a = random_actions[i] if n_actions is not None else sample_action()
                else:
                    a = act(obs)
                obs2, r, term, trunc, _ = step_env(a)
                append(obs=obs, action=a, reward=r, next_obs=obs2, terminated=term, truncated=trunc)
                ep_ret += r
                ep_len += 1
                if learning:
                    if ups == 1 and not per:
                        td_sum += update(sample())
                    else:
                        for _ in range(ups if counts is None else counts[i]):
                            td_sum += one() if per else update(sample())
                if term or trunc:
                    episodes.append((t + i + 1, float(ep_ret), ep_len))
                    ep_ret, ep_len = 0.0, 0
                    obs, _ = reset()
                else:
                    obs = obs2
            t = self.step = stop
            if learning:
                self._td_sum += float(td_sum)
                self._td_n += n_updates
                result.updates += n_updates
            end = t == steps
            if eval_every and (t % eval_every == 0 or end):
                self._close_window()
                self.curves.evaluations.append(self._evaluate(eval_episodes, eval_seed))
            elif not eval_every and (t % ce == 0 or end):
                self._close_window()
            if t % ce == 0 or end:
                self._commit(steps, curve_log)
                result.commits += 1
            elif curve_log is not None:
                curve_log.write_new()
            bar.update(n)
        return obs

    def _prioritized_update(self) -> Callable[[], float]:
        """One update from a prioritized sampler, then its rows' priorities set to the
        agent's ``|TD error|`` (``batch["td_error"]``) plus :data:`PRIORITY_EPS`."""
        sampler, update = self.sampler, self.agent.update

        def one() -> float:
            batch = sampler.sample()
            value = update(batch)
            td = batch.get("td_error")
            if td is None:
                raise AgentConfigError(f"{type(self.agent).__name__}.update leaves no batch['td_error']: "
                                       "prioritized replay needs each row's TD error")
            sampler.update_priorities(batch["index"], np.abs(td) + PRIORITY_EPS)
            return value
        return one

    def _close_window(self) -> None:
        """The mean update value of the steps since the last window, into the curves."""
        if self._td_n:
            self.curves.td.append({"step": self.step, "td": self._td_sum / self._td_n, "updates": self._td_n})
        self._td_sum, self._td_n = 0.0, 0


#: the trainer commits the buffer and saves the run state this often by default (a
#: commit with its fsyncs costs a few milliseconds: ~1 µs a step at this interval)
COMMIT_EVERY = 10_000


def default_commit_every(store: ReplayStore) -> int:
    """:data:`COMMIT_EVERY`, or less when the store's write buffer is smaller."""
    return max(1, min(COMMIT_EVERY, store.buffer_rows - 1))


def _uniform(store: ReplayStore, batch_size: int, seed: int, fields: Any) -> Sampler:
    """The default sampler: uniform with replacement over the fields the agent reads."""
    return UniformSampler(store, batch_size, seed=seed, fields=fields, readahead=False)


_uniform.describe = lambda: {"type": "UniformSampler", "replacement": True}  # type: ignore[attr-defined]


class PrioritizedFactory:
    """A :data:`SamplerFactory` of :class:`~replaystore.sampling.PrioritizedSampler`
    (``alpha``, ``beta``): the trainer then sets each sampled row's priority to the
    agent's ``|TD error|`` after every update, and saves the priorities at every commit.

    >>> PrioritizedFactory(0.6, 0.4).describe()
    {'type': 'PrioritizedSampler', 'alpha': 0.6, 'beta': 0.4}
    """

    def __init__(self, alpha: float = 0.6, beta: float = 0.4) -> None:
        self.alpha, self.beta = float(alpha), float(beta)

    def describe(self) -> dict[str, Any]:
        return {"type": "PrioritizedSampler", "alpha": self.alpha, "beta": self.beta}

    def __call__(self, store: ReplayStore, batch_size: int, seed: int, fields: Any) -> Sampler:
        return PrioritizedSampler(store, batch_size, alpha=self.alpha, beta=self.beta, seed=seed,
                                  fields=fields, readahead=False)


class BalancedFactory:
    """A :data:`SamplerFactory` of :class:`~replaystore.sampling.BalancedSampler` by ``by``
    (a discrete field or ``"reward_sign"``), built once learning starts.

    >>> BalancedFactory("reward_sign").describe()
    {'type': 'BalancedSampler', 'by': 'reward_sign'}
    """

    def __init__(self, by: str) -> None:
        self.by = by

    def describe(self) -> dict[str, Any]:
        return {"type": "BalancedSampler", "by": self.by}

    def __call__(self, store: ReplayStore, batch_size: int, seed: int, fields: Any) -> Sampler:
        return BalancedSampler(store, by=self.by, batch_size=batch_size, seed=seed, fields=fields,
                               readahead=False)

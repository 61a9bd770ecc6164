"""Collect transitions from a gymnasium environment into a store.

:func:`collect` runs ``env_id`` (one env, or ``num_envs`` in a synchronous vector env)
with a policy and appends every transition to the store at ``path``, creating it from
the env's spaces when it does not exist yet:

>>> import tempfile
>>> import replaystore as rs
>>> path = tempfile.mkdtemp() + "/lake.zarr"
>>> stats = collect("FrozenLake-v1", path, steps=200, seed=0,
...                 env_kwargs={"is_slippery": False})
>>> stats.steps, stats.episodes > 0
(200, True)
>>> with rs.open(path) as store:
...     len(store), store.env_info["id"], store.info["collections"][0]["seed"]
(200, 'FrozenLake-v1', 0)

Policies. ``policy`` is one of

* ``"random"``: uniform actions from the env's action space (seeded);
* a :class:`~replaystore.agents.QLearningAgent`, or the path of a saved Q-table
  (``Q.npy``, with or without the sidecar files :meth:`QLearningAgent.save` writes):
  epsilon-greedy on the table; the env's spaces must be ``Discrete`` with the table's
  shape;
* any callable ``policy(obs) -> action``. By default it gets **one** observation (in the
  env's own format, e.g. a dict for a ``Dict`` space) and returns one action; with
  several envs it is called once per env, in env order. Pass ``batched_policy=True`` to
  call it once per vector step with the batch of observations (the vector env's format,
  leading axis ``num_envs``) and have it return a batch of ``num_envs`` actions. With
  ``epsilon > 0`` each env's action is replaced, with probability ``epsilon``, by a
  uniform random action.

Randomness. The first reset seeds the envs with ``seed, seed+1, ..., seed+num_envs-1``
(later resets continue each env's own generator). The policy's randomness (random
actions, epsilon draws) comes from streams derived from ``seed`` with
``numpy.random.SeedSequence([seed, tag])``, so it is independent of the env's own
generator (seeding the action space with ``seed`` itself would replay the env's random
stream of env 0). The same call into two fresh stores writes identical arrays.

Vector envs and autoreset. The vector env runs in gymnasium's ``NEXT_STEP`` autoreset
mode (set explicitly): after a step that ends an episode in env ``i``, the next vector
step resets env ``i`` and returns its first observation with reward 0. That reset step is
not a transition and is not recorded; env ``i``'s next recorded transition starts from
the reset observation with ``step == 0`` and a fresh episode id. So no row ever pairs the
last observation of one episode with the first of the next. ``terminated`` and
``truncated`` are recorded as the env reports them.

Episode ids are reserved with :meth:`ReplayStore.new_episode_ids`, so they are unique in
the store across envs and across runs appending to the same store. Rows of different
envs interleave in the store; ``episode`` and ``step`` tell them apart.

``steps=N`` records exactly ``N`` transitions (counted over all envs); the episodes
running when it stops are kept unfinished (their last rows are neither terminated nor
truncated). ``episodes=N`` records exactly ``N`` complete episodes: rows are held back
until their episode ends, and rows of episodes still running at the end are dropped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Discrete
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import concatenate, create_empty_array, iterate

from . import spaces as _spaces
from .agents.qlearning import QLearningAgent
from .errors import (
    CorruptStoreError,
    EnvError,
    NotAStoreError,
    ReplayStoreError,
    SchemaError,
    SpaceError,
)
from .storage.create import create as _create
from .storage.metadata import now_iso
from .storage.store import ReplayStore
from .storage.store import open as _open

__all__ = ["collect", "Collector", "CollectStats", "EnvError", "CollectorConfigError"]

#: Vector steps buffered before one ``store.extend`` (times ``num_envs`` rows).
BLOCK_STEPS = 1024

# tags of the random streams derived from the seed
_TAG_ACTIONS = 0x61637473  # "acts"
_TAG_EPSILON = 0x65707331  # "eps1"


class CollectorConfigError(ReplayStoreError, ValueError):
    """The collector was given arguments that cannot work (steps/episodes, num_envs...)."""


@dataclasses.dataclass(frozen=True)
class CollectStats:
    """What one collection run did.

    ``steps`` transitions were written; ``episodes`` episodes ended (terminated or
    truncated) among them, with mean undiscounted return ``mean_return`` (``None`` when
    no episode ended); the run took ``seconds``.
    """

    steps: int
    episodes: int
    mean_return: float | None
    seconds: float
    path: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------
def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _check_count(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise CollectorConfigError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_budget(steps: Any, episodes: Any) -> tuple[int | None, int | None]:
    if (steps is None) == (episodes is None):
        raise CollectorConfigError(
            "give exactly one of steps= (transitions to record) or episodes= (complete "
            f"episodes to record), got steps={steps!r}, episodes={episodes!r}"
        )
    if steps is not None:
        return _check_count("steps", steps), None
    return None, _check_count("episodes", episodes)


def _parse_env_kwargs(env_id: str, env_kwargs: Any) -> dict[str, Any]:
    """``env_kwargs`` as a JSON-safe dict (a dict or a JSON object string)."""
    if env_kwargs is None:
        return {}
    if isinstance(env_kwargs, str | bytes):
        try:
            env_kwargs = json.loads(env_kwargs)
        except json.JSONDecodeError as e:
            raise EnvError(f"{env_id}: env kwargs {env_kwargs!r} are not valid JSON: {e}") from None
    if not isinstance(env_kwargs, Mapping):
        raise EnvError(
            f"{env_id}: env kwargs must be a dict (or a JSON object), "
            f"got {type(env_kwargs).__name__} {env_kwargs!r}"
        )
    bad = [k for k in env_kwargs if not isinstance(k, str)]
    if bad:
        raise EnvError(f"{env_id}: env kwargs keys must be strings, got {bad!r}")
    out = dict(env_kwargs)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise EnvError(
            f"{env_id}: env kwargs must be JSON-serializable (they are recorded in the "
            f"store's metadata), got {out!r}: {e}"
        ) from None
    return out


def _json_copy(obj: Any) -> Any:
    """A deep copy of JSON data: the store keeps what ``update_info`` is given by reference."""
    return json.loads(json.dumps(obj))


def _derived_seed(seed: int, tag: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, tag])


def _make_envs(env_id: str, env_kwargs: dict[str, Any], num_envs: int) -> SyncVectorEnv:
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"env id must be a non-empty string, got {env_id!r}")
    try:
        return SyncVectorEnv(
            [partial(gym.make, env_id, **env_kwargs) for _ in range(num_envs)],
            autoreset_mode=AutoresetMode.NEXT_STEP,
        )
    except gym.error.Error as e:
        raise EnvError(f"{env_id}: cannot make the environment: {e}") from e
    except (TypeError, ValueError, KeyError) as e:
        raise EnvError(
            f"{env_id}: cannot make the environment with kwargs {env_kwargs!r}: "
            f"{type(e).__name__}: {e}"
        ) from e


# ---------------------------------------------------------------------------------------
# policies: each maps a batch of observations (vector format) to a batch of actions
# ---------------------------------------------------------------------------------------
class _RandomPolicy:
    def __init__(self, envs: SyncVectorEnv, seed: int) -> None:
        self.space = envs.action_space
        self.space.seed(int(_derived_seed(seed, _TAG_ACTIONS).generate_state(1)[0]))

    def __call__(self, obs: Any, resetting: np.ndarray) -> Any:
        return self.space.sample()

    def describe(self) -> dict[str, Any]:
        return {"kind": "random"}


class _QTablePolicy:
    def __init__(self, agent: QLearningAgent, epsilon: float, seed: int, source: str) -> None:
        self.agent = agent
        self.epsilon = epsilon
        self.rng = np.random.default_rng(_derived_seed(seed, _TAG_EPSILON))
        self.source = source

    def __call__(self, obs: Any, resetting: np.ndarray) -> Any:
        return self.agent.act(np.asarray(obs), epsilon=self.epsilon, rng=self.rng)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "qtable",
            "source": self.source,
            "shape": list(self.agent.q.shape),
            "epsilon": self.epsilon,
        }


class _CallablePolicy:
    def __init__(
        self, fn: Callable, envs: SyncVectorEnv, *, batched: bool, epsilon: float, seed: int
    ) -> None:
        self.fn = fn
        self.batched = batched
        self.epsilon = epsilon
        self.n = envs.num_envs
        self.obs_space = envs.observation_space
        self.single_action_space = envs.single_action_space
        self.action_space = envs.action_space
        self.rng = np.random.default_rng(_derived_seed(seed, _TAG_EPSILON))
        self.explore_space = None
        self.last: list[Any] | None = None
        if epsilon > 0:
            import copy

            self.explore_space = copy.deepcopy(envs.single_action_space)
            self.explore_space.seed(int(_derived_seed(seed, _TAG_ACTIONS).generate_state(1)[0]))

    def __call__(self, obs: Any, resetting: np.ndarray) -> Any:
        if self.batched:
            actions = self.fn(obs)
            if self.epsilon <= 0:
                return actions
            items = list(iterate(self.action_space, actions))
        else:
            # an env about to be reset (its action is ignored) does not ask the policy:
            # a single-observation policy only sees observations it acts on
            last = self.last
            items = [
                last[i] if last is not None and resetting[i] else self.fn(o)
                for i, o in enumerate(iterate(self.obs_space, obs))
            ]
        if self.epsilon > 0:
            explore = self.rng.random(self.n) < self.epsilon
            items = [self.explore_space.sample() if e else a for e, a in zip(explore, items, strict=True)]
        self.last = items
        out = create_empty_array(self.single_action_space, self.n)
        return concatenate(self.single_action_space, items, out)

    def describe(self) -> dict[str, Any]:
        fn = self.fn
        name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        module = getattr(fn, "__module__", None) or type(fn).__module__
        return {
            "kind": "callable",
            "name": f"{module}.{name}",
            "batched": self.batched,
            "epsilon": self.epsilon,
        }


def _load_qtable(path: Path) -> QLearningAgent:
    if path.suffix != ".npy":
        raise CollectorConfigError(
            f"policy {str(path)!r}: expected 'random', a callable, a QLearningAgent or the "
            "path of a Q-table ending in '.npy'"
        )
    if path.with_suffix(".json").is_file():
        return QLearningAgent.load(path)
    if not path.is_file():
        raise NotAStoreError(f"{str(path)!r}: no such Q-table file")
    try:
        q = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise CorruptStoreError(f"{str(path)!r} is not a readable .npy file: {e}") from e
    if q.ndim != 2 or q.dtype.kind not in "iuf" or 0 in q.shape:
        raise SpaceError(
            f"{str(path)!r}: a Q-table must be a 2-D numeric array (n_states, n_actions), "
            f"got {q.dtype} array of shape {q.shape}"
        )
    agent = QLearningAgent(int(q.shape[0]), int(q.shape[1]))
    agent.q = q.astype(np.float64)
    return agent


def _qtable_policy(
    policy: Any, envs: SyncVectorEnv, epsilon: float, seed: int
) -> _QTablePolicy:
    if isinstance(policy, QLearningAgent):
        agent, source = policy, repr(policy)
    else:
        path = Path(policy)
        agent, source = _load_qtable(path), str(path)
    obs_sp, act_sp = envs.single_observation_space, envs.single_action_space
    if not isinstance(obs_sp, Discrete) or not isinstance(act_sp, Discrete):
        raise SpaceError(
            f"Q-table policy {source}: needs Discrete observation and action spaces, the env "
            f"has {_spaces.describe(obs_sp)} and {_spaces.describe(act_sp)}"
        )
    want = (int(obs_sp.n), int(act_sp.n))
    if tuple(agent.q.shape) != want:
        raise SpaceError(
            f"Q-table policy {source}: table shape {tuple(agent.q.shape)} does not match the "
            f"env's spaces {_spaces.describe(obs_sp)} x {_spaces.describe(act_sp)}, which need "
            f"shape {want}"
        )
    if isinstance(policy, QLearningAgent):
        starts = (agent.obs_start, agent.action_start)
        if starts != (int(obs_sp.start), int(act_sp.start)):
            raise SpaceError(
                f"Q-table policy {source}: agent offsets (obs_start, action_start)={starts} "
                f"do not match the env's spaces {_spaces.describe(obs_sp)} and "
                f"{_spaces.describe(act_sp)}"
            )
    else:
        agent.obs_start, agent.action_start = int(obs_sp.start), int(act_sp.start)
    return _QTablePolicy(agent, epsilon, seed, source)


# ---------------------------------------------------------------------------------------
# row block: rows gathered in numpy arrays, written with one extend
# ---------------------------------------------------------------------------------------
class _Block:
    def __init__(self, store: ReplayStore, rows: int) -> None:
        self.store = store
        self.fields = {f.name: (f.dtype, f.shape) for f in store.schema}
        self.arrays = {n: np.empty((rows, *s), d) for n, (d, s) in self.fields.items()}
        self.n = 0
        self.written = 0

    @property
    def capacity(self) -> int:
        return len(self.arrays["reward"])

    def reserve(self, m: int) -> None:
        if self.n + m <= self.capacity:
            return
        new = max(2 * self.capacity, self.n + m)
        for name, arr in self.arrays.items():
            grown = np.empty((new, *arr.shape[1:]), arr.dtype)
            grown[: self.n] = arr[: self.n]
            self.arrays[name] = grown

    def add(self, cols: Mapping[str, np.ndarray], idx: np.ndarray | None) -> None:
        m = len(cols["reward"]) if idx is None else len(idx)
        self.reserve(m)
        lo, hi = self.n, self.n + m
        for name, arr in self.arrays.items():
            src = cols[name] if idx is None else np.asarray(cols[name])[idx]
            try:
                np.copyto(arr[lo:hi], src, casting="same_kind")
            except (TypeError, ValueError) as e:
                raise SchemaError(
                    f"{self.store.path}: field {name!r} expects {arr.dtype} values of shape "
                    f"{arr.shape[1:]}, the env/policy gave {np.asarray(src).dtype} of shape "
                    f"{np.shape(src)[1:]}: {e}"
                ) from None
        self.n = hi

    def flush(self, hold: np.ndarray | None = None, *, discard_held: bool = False) -> None:
        """Extend the store with the rows whose episode is not in ``hold``; keep (or
        discard) the held rows at the front of the block."""
        n = self.n
        if not n:
            return
        if hold is None or not len(hold):
            write = None
            held = 0
        else:
            keep = np.isin(self.arrays["episode"][:n], hold)
            write = np.flatnonzero(~keep)
            held_idx = np.flatnonzero(keep)
            held = len(held_idx)
        if write is None:
            self.store.extend({k: v[:n] for k, v in self.arrays.items()})
            self.written += n
        else:
            if len(write):
                self.store.extend({k: v[write] for k, v in self.arrays.items()})
                self.written += len(write)
            if held and not discard_held:
                for arr in self.arrays.values():
                    arr[:held] = arr[held_idx]
            else:
                held = 0
        self.n = held


# ---------------------------------------------------------------------------------------
# the collector
# ---------------------------------------------------------------------------------------
class Collector:
    """Runs ``env_id`` with a policy and appends its transitions to a store.

    The envs are made (and the Q-table checked) on construction; :meth:`run` may be
    called several times, into one store or several: each run resets the envs and starts
    new episodes (only the very first reset is seeded; later ones continue each env's
    generator, so a sequence of runs is reproducible too). Close it with :meth:`close` or use it as a
    context manager.

    >>> import tempfile
    >>> import replaystore as rs
    >>> with Collector("CartPole-v1", num_envs=2, seed=1) as c:
    ...     store = c.create_store(tempfile.mkdtemp() + "/cp.zarr")
    ...     stats = c.run(store, steps=50)
    ...     store.close()
    >>> stats.steps
    50
    """

    def __init__(
        self,
        env_id: str,
        *,
        policy: Any = "random",
        epsilon: float = 0.0,
        num_envs: int = 1,
        seed: int = 0,
        env_kwargs: Mapping[str, Any] | str | None = None,
        batched_policy: bool = False,
        block_steps: int = BLOCK_STEPS,
    ) -> None:
        self.num_envs = _check_count("num_envs", num_envs)
        if not _is_int(seed) or seed < 0:
            raise CollectorConfigError(f"seed must be a non-negative int, got {seed!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0.0 <= epsilon <= 1.0:
            raise CollectorConfigError(f"epsilon must be a number in [0, 1], got {epsilon!r}")
        self.block_steps = _check_count("block_steps", block_steps)
        self.env_id = env_id
        self.seed = int(seed)
        self.epsilon = float(epsilon)
        self.env_kwargs = _parse_env_kwargs(env_id, env_kwargs)
        self.envs = _make_envs(env_id, self.env_kwargs, self.num_envs)
        try:
            self.observation_space = self.envs.single_observation_space
            self.action_space = self.envs.single_action_space
            self.policy = self._make_policy(policy, batched_policy)
        except BaseException:
            self.envs.close()
            raise
        self._obs: Any = None
        self._flat_obs: dict[str, np.ndarray] | None = None
        self._ep_id: np.ndarray | None = None
        self._ep_step = np.zeros(self.num_envs, np.int64)
        self._ep_return = np.zeros(self.num_envs, np.float64)
        self._autoreset = np.zeros(self.num_envs, bool)
        self._failed = False

    def _make_policy(self, policy: Any, batched: bool):
        if isinstance(policy, str) and policy == "random":
            return _RandomPolicy(self.envs, self.seed)
        if isinstance(policy, QLearningAgent | str | os.PathLike):
            return _qtable_policy(policy, self.envs, self.epsilon, self.seed)
        if callable(policy):
            return _CallablePolicy(
                policy, self.envs, batched=bool(batched), epsilon=self.epsilon, seed=self.seed
            )
        raise CollectorConfigError(
            "policy must be 'random', a callable policy(obs) -> action, a QLearningAgent or "
            f"the path of a Q-table (.npy), got {type(policy).__name__} {policy!r}"
        )

    # -- context manager ----------------------------------------------------------------
    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.envs.close()

    # -- stores ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The collector's settings as JSON-ready metadata."""
        from . import __version__

        return {
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "num_envs": self.num_envs,
            "seed": self.seed,
            "policy": self.policy.describe(),
            "epsilon": self.epsilon,
            "autoreset": "next_step (reset steps not recorded)",
            "replaystore_version": __version__,
        }

    def create_store(
        self,
        path: str | os.PathLike,
        *,
        capacity: int | None = None,
        chunk_rows: Any = None,
        codecs: Any = None,
    ) -> ReplayStore:
        """A new store at ``path`` for this env's spaces, with the env recorded."""
        store = _create(
            path,
            self.observation_space,
            self.action_space,
            capacity=capacity,
            chunk_rows=chunk_rows,
            codecs=codecs,
            env_id=self.env_id,
            info={"collections": []},
        )
        try:
            store.update_info(env=_json_copy({"id": self.env_id, "kwargs": self.env_kwargs}))
        except BaseException:
            store.close()
            raise
        return store

    def check_store(self, store: ReplayStore) -> None:
        """Raise :class:`SchemaError` unless ``store`` can take this env's transitions."""
        obs_sp, act_sp = store.observation_space, store.action_space
        if (
            obs_sp is None
            or act_sp is None
            or not _spaces.space_equal(obs_sp, self.observation_space)
            or not _spaces.space_equal(act_sp, self.action_space)
        ):

            def d(sp):
                return "(none recorded)" if sp is None else _spaces.describe(sp)

            raise SchemaError(
                f"{store.path}: cannot append transitions of {self.env_id!r} to this store: "
                f"its spaces are observation {d(obs_sp)}, action {d(act_sp)}; the env has "
                f"observation {d(self.observation_space)}, action {d(self.action_space)}"
            )
        want = set(self._field_names())
        have = set(store.schema.names)
        if want != have:
            raise SchemaError(
                f"{store.path}: the store has fields {sorted(have)}; a collector of "
                f"{self.env_id!r} writes exactly {sorted(want)} (extra fields: "
                f"{sorted(have - want)}, missing: {sorted(want - have)})"
            )

    def _field_names(self) -> list[str]:
        obs = [n for n, _ in _spaces.flatten_space("obs", self.observation_space)]
        act = [n for n, _ in _spaces.flatten_space("action", self.action_space)]
        return [*obs, *act, "reward", *("next_" + n for n in obs), "terminated", "truncated", "episode", "step"]

    # -- running --------------------------------------------------------------------------
    def _flatten_obs(self, obs: Any) -> dict[str, np.ndarray]:
        return _spaces.flatten_value("obs", self.observation_space, obs, batched=True)

    def _start(self, store: ReplayStore) -> None:
        """Reset every env and give each a fresh episode id: every run starts new
        episodes. Only the first reset is seeded; later ones continue each env's
        generator."""
        if self._obs is None:
            seeds = [self.seed + i for i in range(self.num_envs)]
            self._obs, _ = self.envs.reset(seed=seeds)
        else:
            self._obs, _ = self.envs.reset()
        self._flat_obs = self._flatten_obs(self._obs)
        self._ep_id = store.new_episode_ids(self.num_envs)
        self._ep_step[:] = 0
        self._ep_return[:] = 0.0
        self._autoreset[:] = False

    def run(
        self,
        store: ReplayStore,
        *,
        steps: int | None = None,
        episodes: int | None = None,
        progress: bool = False,
    ) -> CollectStats:
        """Record ``steps`` transitions, or ``episodes`` complete episodes, into ``store``.

        The store must be open for appending and have this env's spaces. A record of the
        run is appended to ``store.info["collections"]``; the rows are flushed (committed)
        before it returns.
        """
        steps, episodes = _check_budget(steps, episodes)
        if self._failed:
            raise CollectorConfigError(
                f"{self.env_id}: an earlier run of this collector failed part-way; its envs "
                "are in an unknown state, make a new Collector"
            )
        self.check_store(store)
        started = now_iso()
        t0 = time.perf_counter()
        total_before = store.total + store.buffered
        record = {
            **self.describe(),
            "requested": {"steps": steps} if steps is not None else {"episodes": episodes},
            "started": started,
            "status": "running",
        }
        collections = _json_copy(list(store.info.get("collections", [])))
        collections.append(record)
        store.update_info({"collections": _json_copy(collections)})

        block = _Block(store, self.block_steps * self.num_envs)
        returns: list[float] = []
        status = "interrupted"
        bar_len = steps if steps is not None else episodes
        bar = (
            _progressbar(bar_len, f"collect {self.env_id}")
            if progress
            else nullcontext(None)
        )
        open_ids = None
        try:
            with bar as pbar:
                self._start(store)
                recorded = 0
                while True:
                    open_ids = self._step(block, steps, episodes, recorded, returns, pbar)
                    recorded = block.written + block.n
                    if steps is not None and recorded >= steps:
                        break
                    if episodes is not None and len(returns) >= episodes:
                        break
                    if block.n + self.num_envs > block.capacity:
                        block.flush(self._open_episode_ids() if episodes is not None else None)
            status = "complete"
        finally:
            # rows of finished transitions (steps) or finished episodes (episodes) are kept
            # even when the run is interrupted
            if episodes is not None:
                block.flush(open_ids if open_ids is not None else self._open_episode_ids(),
                            discard_held=True)
            else:
                block.flush()
            store.flush()
            seconds = time.perf_counter() - t0
            stats = CollectStats(
                steps=block.written,
                episodes=len(returns),
                mean_return=float(np.mean(returns)) if returns else None,
                seconds=seconds,
                path=str(store.path),
            )
            if status != "complete":
                self._failed = True
            record.update(
                status=status,
                steps=stats.steps,
                episodes=stats.episodes,
                mean_return=stats.mean_return
                if stats.mean_return is None or math.isfinite(stats.mean_return)
                else None,
                rows=[total_before, total_before + stats.steps],
                finished=now_iso(),
                # SOURCE_DATE_EPOCH asks for reproducible files: no wall-clock durations
                seconds=0.0 if os.environ.get("SOURCE_DATE_EPOCH") else round(seconds, 6),
            )
            collections[-1] = record
            store.update_info({"collections": _json_copy(collections)})
        return stats

    def _open_episode_ids(self) -> np.ndarray:
        if self._ep_id is None:  # failed before the first reset: nothing recorded
            return np.empty(0, np.int64)
        return self._ep_id[~self._autoreset]

    def _step(
        self,
        block: _Block,
        steps: int | None,
        episodes: int | None,
        recorded: int,
        returns: list[float],
        pbar: Any,
    ) -> np.ndarray | None:
        """One vector step. Returns, in episodes mode, the ids of episodes to drop at the
        end (running ones, and ones that ended beyond the requested number)."""
        assert self._flat_obs is not None and self._ep_id is not None
        actions = self.policy(self._obs, self._autoreset)
        obs, rew, term, trunc, _ = self.envs.step(actions)
        flat_next = self._flatten_obs(obs)
        valid = ~self._autoreset
        idx = np.flatnonzero(valid)
        if steps is not None and recorded + len(idx) > steps:
            idx = idx[: steps - recorded]
        term = np.asarray(term, bool)
        trunc = np.asarray(trunc, bool)
        rew = np.asarray(rew)
        drop = None
        if len(idx):
            flat_act = _spaces.flatten_value("action", self.action_space, actions, batched=True)
            cols: dict[str, np.ndarray] = {**self._flat_obs, **flat_act}
            cols["reward"] = rew
            for name, arr in flat_next.items():
                cols["next_" + name] = arr
            cols["terminated"] = term
            cols["truncated"] = trunc
            cols["episode"] = self._ep_id
            cols["step"] = self._ep_step
            block.add(cols, None if len(idx) == self.num_envs else idx)
            self._ep_step[idx] += 1
            self._ep_return[idx] += rew[idx]
            ended = idx[(term | trunc)[idx]]
            if episodes is not None and len(returns) + len(ended) > episodes:
                extra = ended[episodes - len(returns) :]
                ended = ended[: episodes - len(returns)]
                running = self._ep_id[valid & ~(term | trunc)]
                drop = np.concatenate([running, self._ep_id[extra]])
            returns.extend(float(r) for r in self._ep_return[ended])
            if pbar is not None:
                pbar.update(len(idx) if steps is not None else len(ended))
        # envs reset in this step (NEXT_STEP autoreset) start new episodes
        new = np.flatnonzero(self._autoreset)
        if len(new):
            self._ep_id[new] = block.store.new_episode_ids(len(new))
            self._ep_step[new] = 0
            self._ep_return[new] = 0.0
        self._autoreset = term | trunc
        self._obs = obs
        self._flat_obs = flat_next
        if drop is not None:
            return drop
        return None


def _progressbar(length: int, label: str):
    import click

    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True)


# ---------------------------------------------------------------------------------------
# the one-call entry point
# ---------------------------------------------------------------------------------------
def collect(
    env_id: str,
    path: str | os.PathLike,
    *,
    steps: int | None = None,
    episodes: int | None = None,
    policy: Any = "random",
    epsilon: float = 0.0,
    num_envs: int = 1,
    capacity: int | None = None,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | str | None = None,
    progress: bool = False,
    chunk_rows: Any = None,
    codecs: Any = None,
    batched_policy: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> CollectStats:
    """Run ``env_id`` with ``policy`` and record its transitions in the store at ``path``
    (a directory or an fsspec URL such as ``s3://bucket/buf.zarr``).

    Exactly one of ``steps`` (transitions to record, over all envs) or ``episodes``
    (complete episodes to record) must be given. A store that does not exist is created
    from the env's spaces (``capacity``, ``chunk_rows`` and ``codecs`` apply then only);
    an existing one is opened for appending and must have the env's spaces exactly
    (:func:`replaystore.spaces.space_equal`), else :class:`SchemaError`. ``env_kwargs``
    (a dict, or a JSON object string) go to ``gymnasium.make``, e.g.
    ``{"max_episode_steps": 50}``. See the module docstring for policies, seeding and
    vector envs.

    Metadata: a new store gets ``env_info == {"id": env_id, "kwargs": env_kwargs}``; every
    run (the first and each append) adds a record to ``info["collections"]`` with its env
    id and kwargs, seed, ``num_envs``, policy, epsilon, what was requested and what was
    written (``rows``: the store's row counter before and after), start and end times,
    ``status`` (``"complete"`` or ``"interrupted"``) and the replaystore version.

    Raises :class:`EnvError` for an unknown env id or bad env kwargs,
    :class:`CollectorConfigError` for bad arguments, :class:`SpaceError` for a Q-table that
    does not fit the env.
    """
    _check_budget(steps, episodes)
    with Collector(
        env_id,
        policy=policy,
        epsilon=epsilon,
        num_envs=num_envs,
        seed=seed,
        env_kwargs=env_kwargs,
        batched_policy=batched_policy,
    ) as collector:
        from .storage.location import resolve

        root = resolve(path, storage_options)
        if root.exists():
            store = _open(root, "a")
            try:
                if capacity is not None and store.capacity != capacity:
                    raise SchemaError(
                        f"{root}: the store exists with capacity {store.capacity}; got "
                        f"capacity={capacity} (omit capacity= to append to it)"
                    )
                collector.check_store(store)
            except BaseException:
                store.close()
                raise
        else:
            store = collector.create_store(
                root, capacity=capacity, chunk_rows=chunk_rows, codecs=codecs
            )
        with store:
            return collector.run(store, steps=steps, episodes=episodes, progress=progress)

"""The :class:`Collector` (envs + a policy -> rows of a store) and the one-call :func:`collect`."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import spaces
from ..envs import env_differences
from ..errors import EnvError, SchemaError
from ..progress import Progress, as_progress
from ..storage import ReplayStore, create, now_iso, resolve_backend
from ..storage import open as open_store
from ..storage.jobs import clean_leftovers, job_output
from ..version import __version__
from .block import RowBlock
from .config import (
    BLOCK_STEPS,
    MIXED_ENV,
    CollectorConfigError,
    CollectStats,
    append_env_kwargs,
    check_budget,
    check_count,
    is_int,
    json_copy,
    make_envs,
    parse_env_kwargs,
)
from .policies import PolicyLike, make_actions

__all__ = ["Collector", "collect"]


class Collector:
    """Runs ``env_id`` with a policy and appends its transitions to a store.

    The envs are made (and the policy checked against their spaces) on construction;
    :meth:`run` may be called several times, into one store or several: each run resets
    the envs and starts new episodes (only the very first reset is seeded; later ones
    continue each env's generator, so a sequence of runs is reproducible too). Close it
    with :meth:`close` or use it as a context manager.

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
        policy: PolicyLike = "random",
        epsilon: float = 0.0,
        num_envs: int = 1,
        seed: int = 0,
        env_kwargs: Mapping[str, Any] | str | None = None,
        batched_policy: bool = False,
        block_steps: int = BLOCK_STEPS,
    ) -> None:
        self.num_envs = check_count("num_envs", num_envs)
        if not is_int(seed) or seed < 0:
            raise CollectorConfigError(f"seed must be a non-negative int, got {seed!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0.0 <= epsilon <= 1.0:
            raise CollectorConfigError(f"epsilon must be a number in [0, 1], got {epsilon!r}")
        self.block_steps = check_count("block_steps", block_steps)
        self.env_id = env_id
        self.seed = int(seed)
        self.epsilon = float(epsilon)
        self.env_kwargs = parse_env_kwargs(env_id, env_kwargs)
        self.envs = make_envs(env_id, self.env_kwargs, self.num_envs)
        try:
            self.observation_space = self.envs.single_observation_space
            self.action_space = self.envs.single_action_space
            self.policy = make_actions(policy, self.envs, epsilon=self.epsilon, seed=self.seed,
                                       batched=batched_policy)
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
        store = create(
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
            store.update_info(env=json_copy({"id": self.env_id, "kwargs": self.env_kwargs}))
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
            or not spaces.space_equal(obs_sp, self.observation_space)
            or not spaces.space_equal(act_sp, self.action_space)
        ):

            def d(sp):
                return "(none recorded)" if sp is None else spaces.describe(sp)

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
        obs = [n for n, _ in spaces.flatten_space("obs", self.observation_space)]
        act = [n for n, _ in spaces.flatten_space("action", self.action_space)]
        return [*obs, *act, "reward", *("next_" + n for n in obs), "terminated", "truncated", "episode", "step"]

    # -- running --------------------------------------------------------------------------
    def _flatten_obs(self, obs: Any) -> dict[str, np.ndarray]:
        return spaces.flatten_value("obs", self.observation_space, obs, batched=True)

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
        progress: bool | Progress = False,
    ) -> CollectStats:
        """Record ``steps`` transitions, or ``episodes`` complete episodes, into ``store``.

        The store must be open for appending and have this env's spaces. A record of the
        run is appended to ``store.info["collections"]``; the rows are flushed (committed)
        before it returns. ``progress`` is ``True`` (a line on stderr) or a
        :class:`~replaystore.progress.Progress`, told about every recorded step (episode).
        """
        steps, episodes = check_budget(steps, episodes)
        if self._failed:
            raise CollectorConfigError(
                f"{self.env_id}: an earlier run of this collector failed part-way; its envs "
                "are in an unknown state, make a new Collector"
            )
        self.check_store(store)
        t0 = time.perf_counter()
        record, collections = self._begin_record(store, steps, episodes)
        total_before = store.total + store.buffered
        block = RowBlock(store, self.block_steps * self.num_envs)
        returns: list[float] = []
        status = "interrupted"
        drop = None
        try:
            total = steps if steps is not None else episodes
            with as_progress(progress).task(total, f"collect {self.env_id}") as bar:
                drop = self._loop(store, block, steps, episodes, returns, bar)
            status = "complete"
        finally:
            # rows of finished transitions (steps) or finished episodes (episodes) are kept
            # even when the run is interrupted
            if episodes is not None:
                block.flush(drop if drop is not None else self._open_episode_ids(),
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
            self._finish_record(store, record, collections, status, stats, total_before)
        return stats

    def _begin_record(self, store: ReplayStore, steps: int | None,
                      episodes: int | None) -> tuple[dict[str, Any], list[Any]]:
        """Append a "running" record of this run to ``store.info["collections"]``."""
        record = {
            **self.describe(),
            "requested": {"steps": steps} if steps is not None else {"episodes": episodes},
            "started": now_iso(),
            "status": "running",
        }
        collections = json_copy(list(store.info.get("collections", [])))
        collections.append(record)
        store.update_info({"collections": json_copy(collections)})
        return record, collections

    @staticmethod
    def _finish_record(store: ReplayStore, record: dict[str, Any], collections: list[Any],
                       status: str, stats: CollectStats, total_before: int) -> None:
        """Replace the run's record with what it did."""
        mean = stats.mean_return
        record.update(
            status=status,
            steps=stats.steps,
            episodes=stats.episodes,
            mean_return=mean if mean is None or math.isfinite(mean) else None,
            rows=[total_before, total_before + stats.steps],
            finished=now_iso(),
            # SOURCE_DATE_EPOCH asks for reproducible files: no wall-clock durations
            seconds=0.0 if os.environ.get("SOURCE_DATE_EPOCH") else round(stats.seconds, 6),
        )
        collections[-1] = record
        store.update_info({"collections": json_copy(collections)})

    def _loop(self, store: ReplayStore, block: RowBlock, steps: int | None, episodes: int | None,
              returns: list[float], bar: Progress) -> np.ndarray | None:
        """Step until the budget is met; returns the episode ids to drop (episodes mode)."""
        self._start(store)
        recorded = 0
        while True:
            drop = self._step(block, steps, episodes, recorded, returns, bar)
            recorded = block.written + block.n
            if steps is not None and recorded >= steps:
                return drop
            if episodes is not None and len(returns) >= episodes:
                return drop
            if block.n + self.num_envs > block.capacity:
                block.flush(self._open_episode_ids() if episodes is not None else None)

    def _open_episode_ids(self) -> np.ndarray:
        if self._ep_id is None:  # failed before the first reset: nothing recorded
            return np.empty(0, np.int64)
        return self._ep_id[~self._autoreset]

    def _columns(self, actions: Any, rew: np.ndarray, term: np.ndarray, trunc: np.ndarray,
                 flat_next: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The row of every env for this step, field by field."""
        assert self._flat_obs is not None and self._ep_id is not None
        flat_act = spaces.flatten_value("action", self.action_space, actions, batched=True)
        cols: dict[str, np.ndarray] = {**self._flat_obs, **flat_act}
        cols["reward"] = rew
        for name, arr in flat_next.items():
            cols["next_" + name] = arr
        cols["terminated"] = term
        cols["truncated"] = trunc
        cols["episode"] = self._ep_id
        cols["step"] = self._ep_step
        return cols

    def _step(
        self,
        block: RowBlock,
        steps: int | None,
        episodes: int | None,
        recorded: int,
        returns: list[float],
        bar: Progress,
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
            block.add(self._columns(actions, rew, term, trunc, flat_next),
                      None if len(idx) == self.num_envs else idx)
            self._ep_step[idx] += 1
            self._ep_return[idx] += rew[idx]
            ended = idx[(term | trunc)[idx]]
            if episodes is not None and len(returns) + len(ended) > episodes:
                extra = ended[episodes - len(returns) :]
                ended = ended[: episodes - len(returns)]
                running = self._ep_id[valid & ~(term | trunc)]
                drop = np.concatenate([running, self._ep_id[extra]])
            returns.extend(float(r) for r in self._ep_return[ended])
            bar.update(len(idx) if steps is not None else len(ended))
        # envs reset in this step (NEXT_STEP autoreset) start new episodes
        new = np.flatnonzero(self._autoreset)
        if len(new):
            self._ep_id[new] = block.store.new_episode_ids(len(new))
            self._ep_step[new] = 0
            self._ep_return[new] = 0.0
        self._autoreset = term | trunc
        self._obs = obs
        self._flat_obs = flat_next
        return drop


def _open_for_append(root: Any, capacity: int | None) -> ReplayStore:
    """The existing store at ``root``, open for appending, with ``capacity`` checked."""
    store = open_store(root, "a")
    if capacity is not None and store.capacity != capacity:
        store.close()
        raise SchemaError(
            f"{root}: the store exists with capacity {store.capacity}; got "
            f"capacity={capacity} (omit capacity= to append to it)"
        )
    return store


def _check_append_env(store: ReplayStore, collector: Collector, allow_different_env: bool) -> None:
    """Refuse (:class:`EnvError`) to append ``collector``'s env to a store recording another
    (kwargs compared with defaults filled in), unless ``allow_different_env``: then the store
    is recorded as mixed, as :func:`replaystore.merge.merge` does. A store that never held a
    row and records no env takes the collector's."""
    recorded = store.env_info
    given = {"id": collector.env_id, "kwargs": collector.env_kwargs}
    if store.total == 0 and not recorded.get("id") and not recorded.get("mixed"):
        store.update_info(env=json_copy(given))
        return
    diff = env_differences(recorded, given, trusted=True)  # the collector made the env already
    if not diff:
        return
    if not allow_different_env:
        what = (f"{store.path}: cannot append transitions of {collector.env_id} to this store: "
                f"{'; '.join(diff)} (transitions of different dynamics would be mixed); ")
        raise EnvError(what + "pass allow_different_env=True to append anyway (the store is then "
                       "recorded as mixed)",
                       cli=what + "pass --allow-different-env to append anyway (the store is then "
                       "recorded as mixed)")
    if recorded != MIXED_ENV:
        store.update_info(env=json_copy(MIXED_ENV))


def _new_store(collector: Collector, root: Any, **layout: Any) -> ReplayStore:
    """A new store at ``root``, open for appending. A local one is created under a hidden
    name next to it and renamed into place once its metadata is complete, so a collect
    killed while creating it leaves no half-made store at ``root``."""
    local = root.local
    if local is None or os.path.lexists(local) and not (local.is_dir() and not any(local.iterdir())):
        # remote, or something is in the way: create() says what
        return collector.create_store(root, **layout)
    with job_output(local, action="collect") as tmp:
        collector.create_store(tmp, **layout).close()
    return open_store(local, "a")


def collect(
    env_id: str,
    path: str | os.PathLike,
    *,
    steps: int | None = None,
    episodes: int | None = None,
    policy: PolicyLike = "random",
    epsilon: float = 0.0,
    num_envs: int = 1,
    capacity: int | None = None,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | str | None = None,
    progress: bool | Progress = False,
    chunk_rows: Any = None,
    codecs: Any = None,
    batched_policy: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    allow_different_env: bool = False,
) -> CollectStats:
    """Run ``env_id`` with ``policy`` and record its transitions in the store at ``path``
    (a directory or an fsspec URL such as ``s3://bucket/buf.zarr``).

    Exactly one of ``steps`` (transitions to record, over all envs) or ``episodes``
    (complete episodes to record) must be given. A store that does not exist is created
    from the env's spaces (``capacity``, ``chunk_rows`` and ``codecs`` apply then only);
    an existing one is opened for appending and must have the env's spaces exactly
    (:func:`replaystore.spaces.space_equal`), else :class:`SchemaError`. ``env_kwargs``
    (a dict, or a JSON object string) go to ``gymnasium.make``, e.g.
    ``{"max_episode_steps": 50}``. See the package docstring for policies, seeding and
    vector envs.

    Appending: without ``env_kwargs`` the env is made with the kwargs the store records
    (for the same env id). An env other than the store's (another id, or kwargs that differ
    once the env's defaults are filled in: ``{}`` and ``{"is_slippery": True}`` are the
    same FrozenLake-v1) is refused with :class:`EnvError` before anything is written, unless
    ``allow_different_env=True``: then the store records ``env_info == {"id": None,
    "kwargs": {}, "mixed": True}`` as :func:`replaystore.merge.merge` does (each run's env
    stays in ``info["collections"]``).

    Metadata: a new store gets ``env_info == {"id": env_id, "kwargs": env_kwargs}``; every
    run (the first and each append) adds a record to ``info["collections"]`` with its env
    id and kwargs, seed, ``num_envs``, policy, epsilon, what was requested and what was
    written (``rows``: the store's row counter before and after), start and end times,
    ``status`` (``"complete"`` or ``"interrupted"``) and the replaystore version.

    Raises :class:`EnvError` for an unknown env id or bad env kwargs,
    :class:`CollectorConfigError` for bad arguments, :class:`SpaceError` for a policy
    (e.g. a Q-table) that does not fit the env.
    """
    check_budget(steps, episodes)
    root = resolve_backend(path, storage_options)
    if root.local is not None:
        clean_leftovers(root.local.parent)  # what killed jobs left next to it
    store = _open_for_append(root, capacity) if root.exists() else None
    try:
        if store is not None:
            env_kwargs = append_env_kwargs(store.env_info, env_id, env_kwargs)
        with Collector(
            env_id,
            policy=policy,
            epsilon=epsilon,
            num_envs=num_envs,
            seed=seed,
            env_kwargs=env_kwargs,
            batched_policy=batched_policy,
        ) as collector:
            if store is None:
                store = _new_store(collector, root, capacity=capacity, chunk_rows=chunk_rows,
                                   codecs=codecs)
            else:
                collector.check_store(store)
                _check_append_env(store, collector, allow_different_env)
            return collector.run(store, steps=steps, episodes=episodes, progress=progress)
    finally:
        if store is not None:
            store.close()

"""Collection as Dask tasks, each filling its own shard of one sharded dataset.

The step (or episode) budget is split into ``tasks`` shares, a number independent of the
workers: task ``i`` writes shard ``i`` (:mod:`replaystore.storage.dataset`) with seed
``SeedSequence([seed, i, rows_already_there])``, so the same call on one worker or four
gives the same rows, shard for shard. Each task commits as it goes (the shard is an
ordinary store); a task that dies with its worker is run again by Dask (``retries``, and
the scheduler's reschedule of a lost worker's tasks), opens its shard and records only what
its share still lacks, so the dataset ends with exactly the budget and no episode twice
(episode ids are unique per shard and shards' ids are disjoint). A task killed mid-episode
leaves that episode unfinished (its last row neither terminated nor truncated), as the end
of a steps budget does. Calling again with the same arguments resumes a run that stopped.

Without ``client`` or ``scheduler`` a ``distributed.LocalCluster`` of ``workers`` worker
processes is started and closed. Progress comes from the shards' committed rows, read by the
client every half second: one bar for every worker.

>>> import tempfile
>>> from replaystore.collect.distributed import collect_sharded
>>> root = tempfile.mkdtemp() + "/lake.zarr"
>>> stats = collect_sharded("FrozenLake-v1", root, steps=1_000, tasks=3, workers=1, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import MissingExtraError, SchemaError
from ..progress import Progress, as_progress
from ..spaces import space_equal
from ..storage import resolve_backend
from ..storage.dataset import MAX_SHARDS, ShardedDataset, create_dataset, is_dataset
from .collector import Collector
from .config import (
    CollectorConfigError,
    CollectStats,
    check_budget,
    check_count,
    is_int,
    parse_env_kwargs,
)

__all__ = ["collect_sharded", "ShardedCollectStats", "split_budget", "DEFAULT_TASKS"]

#: tasks a budget is split into when ``tasks`` is not given (at most one per 1,000 units)
DEFAULT_TASKS = 8


@dataclasses.dataclass(frozen=True)
class ShardedCollectStats(CollectStats):
    """What a sharded collection did: :class:`CollectStats` over every shard, plus the
    shards, the workers, and how many tasks resumed a shard a killed task had started."""

    shards: int = 0
    workers: int = 0
    resumed: int = 0


def split_budget(total: int, tasks: int) -> list[int]:
    """``total`` in ``tasks`` shares that differ by at most one, larger ones first.

    >>> split_budget(10, 4)
    [3, 3, 2, 2]
    """
    base, extra = divmod(int(total), int(tasks))
    return [base + (1 if i < extra else 0) for i in range(tasks)]


def _require_distributed():
    try:
        import distributed
    except ImportError:
        raise MissingExtraError(
            'collecting on a Dask cluster needs dask.distributed: pip install "replaystore[dask]"'
        ) from None
    return distributed


def _task_seed(seed: int, shard: int, done: int) -> int:
    return int(np.random.SeedSequence([seed, shard, done]).generate_state(1, np.uint32)[0] >> 1)


def _ended_episodes(store) -> int:
    """Episodes that ended (terminated or truncated) among the store's committed rows."""
    n, count, block = len(store), 0, 1 << 20
    for a in range(0, n, block):
        d = store.read_range(a, min(n, a + block), ["terminated", "truncated"])
        count += int(np.count_nonzero(d["terminated"] | d["truncated"]))
    return count


def collect_shard(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One task: bring shard ``spec["shard"]`` of the dataset up to its share (runs on a
    worker; ``spec`` is plain data)."""
    t0 = time.perf_counter()
    ds = ShardedDataset(resolve_backend(spec["path"], spec["storage_options"]))
    try:
        shard = ds.open_shard(spec["shard"], commit_seconds=spec["commit_seconds"])
        try:
            steps_mode = spec["unit"] == "steps"
            done = shard.total if steps_mode else _ended_episodes(shard)
            share = int(spec["share"])
            if done > share:
                raise CollectorConfigError(
                    f"{shard.path}: shard {spec['shard']} already holds {done} {spec['unit']}, more "
                    f"than this run's share of {share}: was the dataset filled with other "
                    "--steps/--episodes/--tasks?")
            stats = None
            if done < share:
                with Collector(spec["env_id"], policy=spec["policy"], epsilon=spec["epsilon"],
                               num_envs=spec["num_envs"], seed=_task_seed(spec["seed"], spec["shard"], done),
                               env_kwargs=spec["env_kwargs"]) as c:
                    left = share - done
                    stats = c.run(shard, steps=left if steps_mode else None,
                                  episodes=None if steps_mode else left)
            return {"shard": spec["shard"], "rows": shard.total, "done_before": done,
                    "steps": 0 if stats is None else stats.steps,
                    "episodes": 0 if stats is None else stats.episodes,
                    "return_sum": 0.0 if stats is None or stats.mean_return is None
                    else stats.mean_return * stats.episodes,
                    "seconds": time.perf_counter() - t0, "pid": os.getpid()}
        finally:
            shard.close()
    finally:
        ds.close()


def _prepare(env_id, root, env_kwargs, policy, epsilon, num_envs, seed, chunk_rows, codecs,
             storage_options) -> tuple[ShardedDataset, dict]:
    """The dataset to fill (created, or an existing one of the same env) and the env kwargs."""
    kwargs = parse_env_kwargs(env_id, env_kwargs)
    with Collector(env_id, policy=policy, epsilon=epsilon, num_envs=num_envs, seed=seed,
                   env_kwargs=kwargs) as c:
        loc = resolve_backend(root, storage_options)
        if loc.exists():
            if not is_dataset(loc):
                raise CollectorConfigError(
                    f"{root}: is a single store; collecting with workers fills a sharded dataset "
                    "(choose a new path, or collect without workers to append to this store)")
            ds = ShardedDataset(loc)
            if ds.env_info.get("id") != env_id or ds.env_info.get("kwargs") != kwargs or not (
                    space_equal(ds.observation_space, c.observation_space)
                    and space_equal(ds.action_space, c.action_space)):
                ds.close()
                raise SchemaError(
                    f"{root}: the dataset records env {ds.env_info.get('id')!r} with kwargs "
                    f"{ds.env_info.get('kwargs')}; this run has {env_id!r} with {kwargs}")
            return ds, kwargs
        ds = create_dataset(loc, c.observation_space, c.action_space, chunk_rows=chunk_rows,
                            codecs=codecs, env={"id": env_id, "kwargs": kwargs},
                            info={"collection": c.describe()})
        return ds, kwargs


def collect_sharded(
    env_id: str,
    path: str | os.PathLike,
    *,
    steps: int | None = None,
    episodes: int | None = None,
    tasks: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    policy: Any = "random",
    epsilon: float = 0.0,
    num_envs: int = 1,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | str | None = None,
    chunk_rows: Any = None,
    codecs: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    retries: int = 3,
    progress: bool | Progress = False,
    poll_seconds: float = 0.5,
    commit_seconds: float = 2.0,
) -> ShardedCollectStats:
    """Record ``steps`` transitions (or ``episodes`` complete episodes) of ``env_id`` into
    the sharded dataset at ``path``, as ``tasks`` Dask tasks (see the module docstring).

    ``client`` (a ``distributed.Client``) or ``scheduler`` (an address such as
    ``tcp://host:8786``) runs the tasks on an existing cluster; otherwise a
    ``LocalCluster`` of ``workers`` processes (default: the CPU count) is started and closed.
    Each shard commits at least every ``commit_seconds`` (what a killed task can lose,
    and how often the progress bar moves). The other arguments are
    :func:`replaystore.collect.collect`'s.
    """
    steps, episodes = check_budget(steps, episodes)
    budget = steps if steps is not None else episodes
    if tasks is None:
        tasks = max(1, min(DEFAULT_TASKS, budget // 1000))
    tasks = check_count("tasks", tasks)
    if tasks > min(budget, MAX_SHARDS):
        raise CollectorConfigError(f"tasks must be at most the budget ({budget}) and {MAX_SHARDS}, got {tasks}")
    if workers is not None:
        workers = check_count("workers", workers)
    if isinstance(commit_seconds, bool) or not isinstance(commit_seconds, int | float) or not commit_seconds > 0:
        raise CollectorConfigError(f"commit_seconds must be a positive number, got {commit_seconds!r}")
    if not is_int(retries) or retries < 0:
        raise CollectorConfigError(f"retries must be a non-negative int, got {retries!r}")
    if not is_int(seed) or seed < 0:
        raise CollectorConfigError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(policy, str):
        raise CollectorConfigError("collecting on workers takes policy='random' or the path of a "
                                   f"saved agent, got {type(policy).__name__}")
    distributed = _require_distributed()
    t0 = time.perf_counter()
    ds, kwargs = _prepare(env_id, path, env_kwargs, policy, epsilon, num_envs, seed, chunk_rows,
                          codecs, storage_options)
    unit = "steps" if steps is not None else "episodes"
    shares = split_budget(budget, tasks)
    loc = resolve_backend(path, storage_options)
    specs = [{"path": str(loc.local) if loc.local is not None else loc.name,
              "storage_options": dict(getattr(loc, "storage_options", {}) or {}),
              "shard": i, "share": share, "unit": unit, "env_id": env_id, "env_kwargs": kwargs,
              "policy": policy, "epsilon": float(epsilon), "num_envs": int(num_envs), "seed": int(seed),
              "commit_seconds": float(commit_seconds)}
             for i, share in enumerate(shares)]
    cluster = None
    own_client = client is None
    try:
        if client is None:
            if scheduler is not None:
                client = distributed.Client(scheduler)
            else:
                cluster = distributed.LocalCluster(
                    n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                    dashboard_address=":0")
                client = distributed.Client(cluster)
        n_workers = len(client.scheduler_info().get("workers", {}))
        futures = [client.submit(collect_shard, s, key=f"replaystore-collect-{os.getpid()}-{t0}-{s['shard']}",
                                 retries=retries, pure=False) for s in specs]
        bar = as_progress(progress)
        # (the bar counts committed rows: in episodes mode its total is unknown)
        with bar.task(budget if unit == "steps" else None, f"collect {env_id} ({tasks} shards)") as b:
            shown = 0
            while True:
                done = _wait(distributed, futures, poll_seconds)
                now = _committed_rows(ds)
                if now > shown:
                    b.update(now - shown)
                    shown = now
                if done:
                    break
        results = client.gather(futures)
    finally:
        if own_client and client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    ds.refresh()
    rows = len(ds)
    ended = sum(r["episodes"] for r in results)
    ret = sum(r["return_sum"] for r in results)
    stats = ShardedCollectStats(
        steps=rows, episodes=ended, mean_return=ret / ended if ended else None,
        seconds=time.perf_counter() - t0, path=str(ds.path), shards=len(ds.shard_numbers),
        workers=n_workers, resumed=sum(1 for r in results if r["done_before"] > 0 and r["steps"] > 0))
    ds.close()
    return stats


def _wait(distributed, futures, timeout: float) -> bool:
    """Wait up to ``timeout`` for every future; raise the first task error."""
    try:
        distributed.wait(futures, timeout=timeout)
    except TimeoutError:
        pass
    for f in futures:
        if f.status == "error":
            f.result()  # raises the task's exception
    return all(f.done() for f in futures)


def _committed_rows(ds: ShardedDataset) -> int:
    """Rows committed in every shard so far (a transient listing error counts as none new)."""
    try:
        ds.refresh()
    except OSError:
        pass
    return len(ds)

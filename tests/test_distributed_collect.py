"""Collection as Dask tasks into a sharded dataset, on a real LocalCluster of worker processes."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import replaystore as rs
from replaystore.collect.distributed import collect_sharded, split_budget
from replaystore.progress import Progress

distributed = pytest.importorskip("distributed", reason="the Dask tests need the dask extra")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


class Recorder(Progress):
    def __init__(self):
        self.total, self.done, self.labels = None, 0, []

    def start(self, total, label):
        self.total = total
        self.labels.append(label)

    def update(self, n=1, **status):
        self.done += n

    def close(self):
        pass


def _unique_rows(ds):
    d = ds.read_range(0, len(ds), ["episode", "step"])
    pairs = d["episode"].astype(np.int64) * 100_000 + d["step"]
    return len(np.unique(pairs)) == len(pairs)


def test_collection_on_two_workers_writes_exactly_the_budget_shard_for_shard(client, tmp_path):
    bar = Recorder()
    stats = collect_sharded("CartPole-v1", tmp_path / "cp.zarr", steps=10_001, tasks=3, client=client,
                            seed=7, progress=bar)
    assert stats.steps == 10_001 and stats.shards == 3 and stats.workers == 2
    with rs.open(tmp_path / "cp.zarr") as ds:
        assert len(ds) == 10_001 and ds.shard_rows.tolist() == split_budget(10_001, 3) == [3334, 3334, 3333]
        assert ds.env_info["id"] == "CartPole-v1"
        assert _unique_rows(ds)
        eps = ds.episodes()
        assert eps["episode"].is_unique and stats.episodes == int(eps["complete"].sum())
        # the tasks ran on both workers' processes, each shard recorded its run
        pids = {s.info["collections"][0]["seed"] for s in ds.shards}
        assert len(pids) == 3  # a seed of its own per shard
    assert bar.done == bar.total == 10_001  # one bar over every worker


def test_the_same_run_on_one_worker_gives_the_same_rows(client, tmp_path):
    kw = {"steps": 4_000, "tasks": 4, "seed": 3, "env_kwargs": {"is_slippery": True}}
    collect_sharded("FrozenLake-v1", tmp_path / "two.zarr", client=client, **kw)
    collect_sharded("FrozenLake-v1", tmp_path / "one.zarr", workers=1, **kw)  # its own LocalCluster
    with rs.open(tmp_path / "two.zarr") as a, rs.open(tmp_path / "one.zarr") as b:
        assert a.shard_rows.tolist() == b.shard_rows.tolist() == [1000] * 4
        ra, rb = a.read_range(0, len(a)), b.read_range(0, len(b))
        for k in ra:
            np.testing.assert_array_equal(ra[k], rb[k])
        assert a.env_info["kwargs"] == {"is_slippery": True}


def test_an_episode_budget_gives_exactly_that_many_complete_episodes(client, tmp_path):
    stats = collect_sharded("CartPole-v1", tmp_path / "cp.zarr", episodes=30, tasks=4, client=client)
    with rs.open(tmp_path / "cp.zarr") as ds:
        eps = ds.episodes()
        assert len(eps) == 30 and eps["complete"].all() and stats.episodes == 30
        assert [int(n) for n in ds.shard_rows] and len(ds) == int(eps["length"].sum())


def test_running_again_resumes_and_another_env_is_refused(client, tmp_path):
    root = tmp_path / "cp.zarr"
    collect_sharded("CartPole-v1", root, steps=2_000, tasks=2, client=client)
    before = rs.open(root).read_range(0, 2_000)
    again = collect_sharded("CartPole-v1", root, steps=2_000, tasks=2, client=client)
    assert again.resumed == 0
    with rs.open(root) as ds:
        assert len(ds) == 2_000
        np.testing.assert_array_equal(ds.read_range(0, 2_000)["obs"], before["obs"])
    with pytest.raises(rs.SchemaError, match="records env 'CartPole-v1'"):
        collect_sharded("Acrobot-v1", root, steps=2_000, tasks=2, client=client)
    with pytest.raises(rs.ReplayStoreError, match="more than this run's share"):
        collect_sharded("CartPole-v1", root, steps=1_000, tasks=2, client=client)
    with pytest.raises(rs.ReplayStoreError, match="tasks must be at most"):
        collect_sharded("CartPole-v1", tmp_path / "x.zarr", steps=3, tasks=4, client=client)
    assert not (tmp_path / "x.zarr").exists()


def test_a_worker_sigkilled_mid_collection_leaves_an_exact_total_and_no_episode_twice(client, tmp_path):
    root = tmp_path / "cp.zarr"
    steps, tasks = 160_000, 4
    pids = client.run(os.getpid)
    result, error = {}, []

    def run():
        try:
            result["stats"] = collect_sharded("CartPole-v1", root, steps=steps, tasks=tasks, client=client,
                                              seed=11, commit_seconds=0.2)
        except BaseException as e:  # (handed to the test thread)
            error.append(e)

    t = threading.Thread(target=run)
    t.start()
    killed = None
    deadline = time.time() + 120
    while time.time() < deadline and killed is None:
        time.sleep(0.1)
        if not (root / "zarr.json").exists():
            continue
        with rs.open(root) as ds:
            rows = ds.shard_rows
        if len(rows) and 0 < rows.max() < steps // tasks // 2:  # a task is mid-way, with commits
            # kill a worker while it runs a task whose shard has committed rows (keys end
            # with the shard number), so its retry has something to resume
            shard_rows = dict(zip(ds.shard_numbers, rows.tolist(), strict=True))
            busy = [w for w, keys in client.processing().items() if w in pids and any(
                shard_rows.get(int(str(k).rsplit("-", 1)[-1]), 0) > 0 for k in keys)]
            if busy:
                killed = pids[busy[0]]
                os.kill(killed, signal.SIGKILL)
    t.join(300)
    assert killed is not None, "no commit was seen to kill a worker after"
    assert not error, error
    stats = result["stats"]
    assert stats.resumed >= 1, stats  # a retried task found its shard's committed rows and went on
    with rs.open(root) as ds:
        assert len(ds) == steps and ds.shard_rows.tolist() == split_budget(steps, tasks)
        assert _unique_rows(ds)
        assert ds.episodes()["episode"].is_unique
        # every row is whole: next_obs of a row is the obs of the next one within an episode
        d = ds.read_range(0, len(ds), ["obs", "next_obs", "episode", "step"])
        same = (d["episode"][1:] == d["episode"][:-1]) & (d["step"][1:] == d["step"][:-1] + 1)
        np.testing.assert_array_equal(d["next_obs"][:-1][same], d["obs"][1:][same])
    assert rs.verify(root).ok
    # the nanny restarted the killed worker
    deadline = time.time() + 30
    while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert killed not in client.run(os.getpid).values()


def test_cli_collect_with_workers_and_its_errors(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "fl.zarr"
    res = subprocess.run([sys.executable, "-m", "replaystore", "collect", "FrozenLake-v1", "--out", str(out),
                          "--steps", "5000", "--workers", "2", "--tasks", "5", "--no-progress"],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert "into 5 shards" in res.stdout and "on 2 workers" in res.stdout
    with rs.open(out) as ds:
        assert len(ds) == 5000
    res = subprocess.run([sys.executable, "-m", "replaystore", "collect", "FrozenLake-v1", "--out",
                          str(tmp_path / "x.zarr"), "--steps", "50", "--workers", "2", "--capacity", "10"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "unbounded" in res.stderr and "Traceback" not in res.stderr


def test_workers_fill_a_dataset_on_a_loopback_s3_server_and_readers_list_its_shards(client):
    s3fs = pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        opts = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
        s3fs.S3FileSystem(**opts).mkdir("replays")
        url = "s3://replays/cp.zarr"
        # the workers get the storage options with each task: nothing in their environment
        stats = collect_sharded("CartPole-v1", url, steps=2_000, tasks=2, client=client,
                                storage_options=opts, chunk_rows=1024)
        assert stats.steps == 2_000
        with rs.open(url, storage_options=opts) as ds:
            assert len(ds) == 2_000 and ds.shard_rows.tolist() == [1000] * 2
            assert _unique_rows(ds)
            batch = rs.UniformSampler(ds, 64, seed=0).sample()
            assert batch["obs"].shape == (64, 4)
        # a shard whose creation was cut off (arrays, and zarr's bare group document that
        # comes first on an object store, not the shard's own) is not listed
        fs = s3fs.S3FileSystem(**opts)
        fs.pipe_file("replays/cp.zarr/shards/shard-00009/obs/zarr.json", b"{}")
        fs.pipe_file("replays/cp.zarr/shards/shard-00009/zarr.json",
                     b'{"zarr_format": 3, "node_type": "group", "attributes": {}}')
        with rs.open(url, storage_options=opts) as ds:
            assert ds.shard_numbers == (0, 1)
    finally:
        server.stop()

"""Frame stacks read at sample time (``frame_stack=k`` on every sampler but SequenceSampler):
each batch checked row by row against a brute-force walk over ``store.to_pandas()`` and
plain reads, on stores collected from real gymnasium envs with terminations and time-limit
truncations, one env and interleaved vector envs, rings that wrapped, rows still buffered;
composed with n-step returns; against a store collected through gymnasium's
``FrameStackObservation``; resume, prefetch, the byte counts, and every error.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import FrameStackObservation

import replaystore as rs
from replaystore.collect import collect
from replaystore.sampling.framestack import FrameStackReader

K = 4


def collected(tmp_path, *, steps=400, num_envs=1, capacity=None, max_steps=12, seed=0, env="CartPole-v1"):
    path = tmp_path / f"{env}-{num_envs}-{capacity}-{steps}-{seed}.zarr"
    collect(env, path, steps=steps, num_envs=num_envs, capacity=capacity, seed=seed,
            env_kwargs={"max_episode_steps": max_steps})
    return path


class Brute:
    """Every stored row's stacks, walking the rows one by one (logical order)."""

    def __init__(self, store, k=K):
        df = store.to_pandas(fields=["episode", "step", "terminated", "truncated", "reward"])
        plain = store.read_range(0, len(store), fields=["obs", "next_obs"])
        self.k, self.obs, self.nxt = k, plain["obs"], plain["next_obs"]
        self.ep, self.st = df["episode"].to_numpy(), df["step"].to_numpy()
        self.done = df["terminated"].to_numpy() | df["truncated"].to_numpy()
        self.rew = df["reward"].to_numpy().astype(np.float64)
        self.row = {(int(e), int(s)): i for i, (e, s) in enumerate(zip(self.ep, self.st, strict=True))}

    def rows(self, t):
        """Logical rows of the stack ending at ``t``, oldest first, padded with the oldest."""
        e, s = int(self.ep[t]), int(self.st[t])
        got = [t]
        while len(got) < self.k and (e, s - len(got)) in self.row:
            got.insert(0, self.row[(e, s - len(got))])
        return [got[0]] * (self.k - len(got)) + got

    def stack(self, t):
        return self.obs[self.rows(t)]

    def next_stack(self, t):
        return np.concatenate((self.obs[self.rows(t)[1:]], self.nxt[t][None]))

    def window_last(self, t, n):
        """The last row of the n-step window of ``t`` and its length."""
        e, s, last, m = int(self.ep[t]), int(self.st[t]), t, 1
        while m < n and not self.done[last] and (e, s + m) in self.row:
            last = self.row[(e, s + m)]
            m += 1
        return last, m

    def at(self, batch, b):
        return self.row[(int(batch["episode"][b]), int(batch["step"][b]))]


def check(store, batch, k=K, n=None):
    """Every row of a batch equal to its brute-force stacks; the logical rows drawn."""
    br = Brute(store, k)
    ts = []
    for b in range(len(batch["episode"])):
        t = br.at(batch, b)
        ts.append(t)
        np.testing.assert_array_equal(batch["obs"][b], br.stack(t))
        last = t if n is None else br.window_last(t, n)[0]
        np.testing.assert_array_equal(batch["next_obs"][b], br.next_stack(last))
        if n is not None:
            assert batch["n_steps"][b] == br.window_last(t, n)[1]
    return np.array(ts)


def padded(br, ts):
    """How many drawn rows' stacks repeat a frame (episode start or evicted start)."""
    return sum(len(set(br.rows(t))) < br.k for t in ts)


def test_one_env_terminations_and_time_limit_truncations(tmp_path):
    store = rs.open(collected(tmp_path, steps=500))
    df = store.to_pandas()
    assert df["terminated"].any() and df["truncated"].any()
    s = rs.UniformSampler(store, batch_size=64, frame_stack=K, seed=0)
    ts = np.concatenate([check(store, s.sample()) for _ in range(5)])
    br = Brute(store)
    assert padded(br, ts) > 0 and padded(br, ts) < len(ts)
    b = s.sample()
    assert b["obs"].shape == (64, K, 4) and b["obs"].dtype == np.float32
    # at a time-limit truncation the last frame of next_obs is the real final observation
    trunc = np.flatnonzero(df["truncated"].to_numpy())
    r = FrameStackReader(store, ["obs", "next_obs"], K).read(trunc)
    plain = store.read(trunc, fields=["next_obs"])["next_obs"]
    np.testing.assert_array_equal(r["next_obs"][:, -1], plain)
    assert (np.diff(r["obs"], axis=1) != 0).any()


def test_every_row_of_an_epoch_interleaved_vector_envs(tmp_path):
    """num_envs=3: rows of three episodes interleave; an epoch reads every row once."""
    store = rs.open(collected(tmp_path, steps=450, num_envs=3))
    ep = store.to_pandas()["episode"].to_numpy()
    assert (ep[1:] != ep[:-1]).mean() > 0.5  # (really interleaved)
    s = rs.UniformSampler(store, batch_size=50, frame_stack=K, seed=3, replacement=False)
    ts = np.concatenate([check(store, s.sample()) for _ in range(9)])
    assert sorted(ts.tolist()) == list(range(450))


def test_two_interleaved_episodes_by_extend(tmp_path):
    store = rs.create(tmp_path / "x.zarr", gym.spaces.Box(-100, 100, (2,), np.float32), gym.spaces.Discrete(2))
    # episode 1: steps 0..5, episode 2: steps 0..3, alternating rows; ids and steps given
    ep = np.array([1, 2, 1, 2, 1, 2, 1, 2, 1, 1])
    st = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 5])
    obs = np.stack([ep * 10 + st, -st], axis=1).astype(np.float32)
    store.extend({"obs": obs, "next_obs": obs + 1, "action": np.zeros(10, int), "reward": np.ones(10),
                  "terminated": np.zeros(10, bool), "truncated": np.zeros(10, bool), "episode": ep, "step": st})
    r = FrameStackReader(store, ["obs", "next_obs"], 3).read(np.arange(10))
    assert r["obs"][:, :, 0].tolist() == [[10, 10, 10], [20, 20, 20], [10, 10, 11], [20, 20, 21],
                                          [10, 11, 12], [20, 21, 22], [11, 12, 13], [21, 22, 23],
                                          [12, 13, 14], [13, 14, 15]]
    assert r["next_obs"][:, :, 0].tolist()[-1] == [14, 15, 16]
    s = rs.BalancedSampler(store, by="action", batch_size=20, frame_stack=3, seed=0)
    check(store, s.sample(), k=3)


@pytest.mark.parametrize("layout", ["one episode at a time", "interleaved"])
def test_a_gap_in_step_starts_the_stack_again(tmp_path, layout):
    store = rs.create(tmp_path / "g.zarr", gym.spaces.Box(-100, 100, (1,), np.float32), gym.spaces.Discrete(2))
    if layout == "interleaved":
        ep = np.array([1, 2, 1, 2, 1, 2, 1, 2, 1])
        st = np.array([0, 0, 1, 1, 2, 2, 5, 3, 6])
    else:
        ep = np.array([1, 1, 1, 1, 1, 2, 2, 2, 2])
        st = np.array([0, 1, 2, 5, 6, 0, 1, 2, 3])
    obs = (ep * 10 + st)[:, None].astype(np.float32)
    store.extend({"obs": obs, "next_obs": obs + 1, "action": np.zeros(9, int), "reward": np.ones(9),
                  "terminated": np.zeros(9, bool), "truncated": np.zeros(9, bool), "episode": ep, "step": st})
    r = FrameStackReader(store, ["obs", "next_obs", "episode", "step"], 3).read(np.arange(9))
    check(store, r, k=3)
    at = {(int(e), int(s)): r["obs"][i, :, 0].tolist() for i, (e, s) in enumerate(zip(ep, st, strict=True))}
    assert at[(1, 5)] == [15, 15, 15] and at[(1, 6)] == [15, 15, 16] and at[(2, 3)] == [21, 22, 23]


def test_dict_observations_stack_every_key(tmp_path):
    space = gym.spaces.Dict({"img": gym.spaces.Box(0, 255, (2, 3), np.uint8), "v": gym.spaces.Discrete(50)})
    store = rs.create(tmp_path / "d.zarr", space, gym.spaces.Discrete(2))
    n = 30
    v = np.arange(n) % 7  # episodes of 7 rows (the last one running)
    img = np.arange(n * 6, dtype=np.uint8).reshape(n, 2, 3)
    store.extend({"obs.img": img, "obs.v": v, "next_obs.img": img + 1, "next_obs.v": v + 1,
                  "action": np.zeros(n, int), "reward": np.zeros(n), "terminated": v == 6,
                  "truncated": np.zeros(n, bool)})
    r = FrameStackReader(store, list(store.schema.names), 3).read(np.arange(n))
    assert r["obs.img"].shape == (n, 3, 2, 3) and r["next_obs.v"].shape == (n, 3)
    for t in range(n):
        rows = [max(t - j, t - int(v[t])) for j in (2, 1, 0)]
        np.testing.assert_array_equal(r["obs.img"][t], img[rows])
        np.testing.assert_array_equal(r["obs.v"][t], v[rows])
        np.testing.assert_array_equal(r["next_obs.v"][t], np.r_[v[rows[1:]], v[t] + 1])


def test_ring_that_wrapped_repeats_the_oldest_frame_held(tmp_path):
    store = rs.open(collected(tmp_path, steps=700, num_envs=2, capacity=100, max_steps=40))
    assert store.total > store.capacity == len(store)
    br = Brute(store)
    # rows whose episode started before the oldest stored row (evicted): padded with the
    # oldest frame held, which is not a step-0 frame
    cut = [t for t in range(len(store)) if br.st[br.rows(t)[0]] > 0 and len(set(br.rows(t))) < K]
    assert cut
    r = FrameStackReader(store, ["obs", "next_obs", "episode", "step"], K).read(
        np.arange(len(store)))
    check(store, r)
    s = rs.WeightedSampler(store, weights=np.linspace(1, 2, len(store)), batch_size=64, frame_stack=K, seed=1)
    check(store, s.sample())


def test_rows_still_buffered_count_and_appending_between_batches(tmp_path):
    env = gym.make("CartPole-v1", max_episode_steps=15)
    store = rs.create(tmp_path / "b.zarr", env.observation_space, env.action_space, capacity=90)
    obs, _ = env.reset(seed=0)
    s = rs.UniformSampler(store, batch_size=32, frame_stack=K, seed=0)
    seen_buffered = False
    for i in range(300):
        a = i % 2
        nxt, r, term, trunc, _ = env.step(a)
        store.append(obs=obs, action=a, reward=r, next_obs=nxt, terminated=term, truncated=trunc)
        obs = nxt
        if term or trunc:
            obs, _ = env.reset()
        if i % 7 == 6:
            seen_buffered |= store.buffered > 0
            check(store, s.sample())
    assert seen_buffered and store.total > 90


def test_n_step_composes(tmp_path):
    store = rs.open(collected(tmp_path, steps=500, num_envs=2, max_steps=10))
    fs = rs.UniformSampler(store, batch_size=64, frame_stack=K, n_step=3, gamma=0.9, seed=5)
    ns = rs.UniformSampler(store, batch_size=64, n_step=3, gamma=0.9, seed=5)
    m = []
    for _ in range(4):
        a, b = fs.sample(), ns.sample()
        check(store, a, n=3)
        m.append(a["n_steps"])
        assert list(a) == list(b)
        for f in b:  # everything but the stacks is the n-step batch's own
            if f not in ("obs", "next_obs"):
                np.testing.assert_array_equal(a[f], b[f])
        np.testing.assert_array_equal(a["obs"][:, -1], b["obs"])
        np.testing.assert_array_equal(a["next_obs"][:, -1], b["next_obs"])
    m = np.concatenate(m)
    assert (m == 1).any() and (m == 3).any()


@pytest.mark.parametrize("make", ["uniform", "epoch", "balanced", "weighted"])
def test_every_sampler_draws_the_plain_rows(tmp_path, make):
    """frame_stack changes what is read, never which rows are drawn."""
    store = rs.open(collected(tmp_path, steps=300, num_envs=2))

    def sampler(**kw):
        if make == "balanced":
            return rs.BalancedSampler(store, by="action", batch_size=40, seed=2, **kw)
        if make == "weighted":
            return rs.WeightedSampler(store, weights=np.arange(1.0, 301.0), batch_size=40, seed=2, **kw)
        return rs.UniformSampler(store, batch_size=40, seed=2, replacement=make == "uniform", **kw)

    fs, plain = sampler(frame_stack=3), sampler()
    for _ in range(3):
        a, b = fs.sample(), plain.sample()
        check(store, a, k=3)
        assert list(a) == list(b)
        for f in b:
            np.testing.assert_array_equal(a[f][:, -1] if f == "obs" else a[f] if f != "next_obs"
                                          else a[f][:, -1], b[f])


def test_state_dict_resume_and_prefetch(tmp_path):
    store = rs.open(collected(tmp_path, steps=300))
    s = rs.UniformSampler(store, batch_size=16, frame_stack=K, seed=7)
    s.sample()
    state = s.state_dict()
    assert state["frame_stack"] == K and "frame_stack=4" in repr(s)
    want = [s.sample() for _ in range(3)]
    t = rs.UniformSampler(store, batch_size=16, frame_stack=K, seed=99)
    t.load_state_dict(state)
    got = list(t.iter(3, prefetch=2))
    for a, b in zip(want, got, strict=True):
        for f in a:
            np.testing.assert_array_equal(a[f], b[f])
    with pytest.raises(rs.SamplerError, match="frame_stack=4.*frame_stack=2"):
        rs.UniformSampler(store, batch_size=16, frame_stack=2).load_state_dict(state)
    with pytest.raises(rs.SamplerError, match="frame_stack=1"):
        s.load_state_dict(rs.UniformSampler(store, batch_size=16).state_dict())
    assert "frame_stack" not in rs.UniformSampler(store, batch_size=16, frame_stack=1).state_dict()


def test_frame_stack_observation_collection_gives_the_same_stacks(tmp_path):
    """An env collected through FrameStackObservation(padding_type="reset") stores the very
    stacks the unwrapped env's store gives at sample time (same env, seed, actions)."""
    wrapper = FrameStackObservation.wrapper_spec(stack_size=K, padding_type="reset")
    gym.register("StackedCartPoleTest-v1", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                 max_episode_steps=12, additional_wrappers=(wrapper,))
    try:
        for num_envs in (1, 2):
            a = tmp_path / f"wrapped{num_envs}.zarr"
            collect("StackedCartPoleTest-v1", a, steps=300, num_envs=num_envs, seed=4)
            b = collected(tmp_path, steps=300, num_envs=num_envs, seed=4)
            wrapped, plain = rs.open(a), rs.open(b)
            assert wrapped.schema["obs"].shape == (K, 4) and plain.schema["obs"].shape == (4,)
            want = wrapped.read_range(0, 300)
            assert want["truncated"].any() and want["terminated"].any()
            got = FrameStackReader(plain, list(plain.schema.names), K).read(np.arange(300))
            for f in want:
                np.testing.assert_array_equal(got[f], want[f], err_msg=f)
            stacked, unstacked = rs.frame_stack_bytes(plain, K), rs.frame_stack_bytes(wrapped, K, stacked=True)
            assert stacked == unstacked
            assert stacked.at_sample_time == sum(f.row_bytes for f in plain.schema) * 300
            assert stacked.at_collection == sum(f.row_bytes for f in wrapped.schema) * 300
    finally:
        gym.registry.pop("StackedCartPoleTest-v1", None)


def test_frame_stack_bytes(tmp_path):
    img = gym.spaces.Box(0, 255, (84, 84), np.uint8)
    fb = rs.frame_stack_bytes(img, 4, rows=1_000_000)
    assert fb.frame_bytes == 7056
    # obs + next_obs once per row, against k frames each (a space: only those two fields)
    assert fb.at_sample_time == 1_000_000 * 2 * 7056
    assert fb.at_collection == 1_000_000 * 8 * 7056
    assert "frame_stack=4" in str(fb) and "FrameStackObservation(4)" in str(fb) and "GiB" in str(fb)
    with pytest.raises(rs.SamplerError, match="rows"):
        rs.frame_stack_bytes(img, 4)
    with pytest.raises(rs.SamplerError, match="stacked=True.*4"):
        rs.frame_stack_bytes(gym.spaces.Box(0, 1, (3, 2)), 4, rows=10, stacked=True)


def test_info_says_what_frame_stacks_cost(tmp_path):
    from click.testing import CliRunner

    from replaystore.cli import main

    store = rs.create(tmp_path / "img.zarr", gym.spaces.Box(0, 255, (8, 8), np.uint8), gym.spaces.Discrete(2))
    store.extend({"obs": np.zeros((10, 8, 8), np.uint8), "next_obs": np.zeros((10, 8, 8), np.uint8),
                  "action": np.zeros(10, int), "reward": np.zeros(10), "terminated": np.ones(10, bool),
                  "truncated": np.zeros(10, bool)})
    store.close()
    out = CliRunner().invoke(main, ["info", str(tmp_path / "img.zarr")]).output
    line = [ln for ln in out.splitlines() if ln.startswith("frame stacks")]
    assert line and "frame_stack=4" in line[0] and "FrameStackObservation(4)" in line[0], out
    vec = collected(tmp_path, steps=20)
    out = CliRunner().invoke(main, ["info", str(vec)]).output
    assert "frame stacks" not in out


# -- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4", None])
def test_frame_stack_must_be_an_int_of_at_least_one(tmp_path, bad):
    store = rs.open(collected(tmp_path, steps=20))
    for make in (lambda **kw: rs.UniformSampler(store, 8, **kw),
                 lambda **kw: rs.BalancedSampler(store, "action", 8, **kw),
                 lambda **kw: rs.WeightedSampler(store, np.ones(20), 8, **kw)):
        with pytest.raises(rs.SamplerError, match="frame_stack must be an int >= 1") as e:
            make(frame_stack=bad)
        assert isinstance(e.value, ValueError)


def test_errors_name_the_store_and_the_field(tmp_path):
    store = rs.open(collected(tmp_path, steps=20))
    with pytest.raises(rs.SamplerError, match=f"{store.path}.*frame_stack=4 stacks the observation fields"):
        rs.UniformSampler(store, 8, frame_stack=4, fields=["action", "reward"])
    noobs = rs.create(tmp_path / "noobs.zarr", fields=[("x", "float32")])
    noobs.extend({"x": np.zeros(5, np.float32), "reward": np.zeros(5), "terminated": np.ones(5, bool),
                  "truncated": np.zeros(5, bool)})
    with pytest.raises(rs.SamplerError, match="noobs.zarr.*'obs'"):
        rs.UniformSampler(noobs, 2, frame_stack=2)
    nxt = rs.create(tmp_path / "next.zarr", fields=[("next_obs", "float32", (2,))])
    nxt.extend({"next_obs": np.zeros((5, 2), np.float32), "reward": np.zeros(5), "terminated": np.ones(5, bool),
                "truncated": np.zeros(5, bool)})
    with pytest.raises(rs.SamplerError, match="next.zarr.*'next_obs' from the frames of the field 'obs'"):
        rs.WeightedSampler(nxt, np.ones(5), 2, frame_stack=2)
    with pytest.raises(rs.SamplerError, match="SequenceSampler does not stack frames"):
        rs.SequenceSampler(store, 2, 4, frame_stack=4)
    # fields= picks what a batch holds; next_obs alone still stacks obs frames
    one = rs.UniformSampler(store, 8, frame_stack=3, fields=["next_obs", "action"], seed=0).sample()
    assert list(one) == ["next_obs", "action"] and one["next_obs"].shape == (8, 3, 4)
    one = rs.UniformSampler(store, 8, frame_stack=3, fields=["obs"], n_step=2, gamma=0.5, seed=0).sample()
    assert list(one) == ["obs", "reward", "terminated", "truncated", "discount", "n_steps"]
    # frame_stack=1 is the plain sampler
    a = rs.UniformSampler(store, 8, frame_stack=1, seed=0).sample()
    b = rs.UniformSampler(store, 8, seed=0).sample()
    assert all(np.array_equal(a[f], b[f]) for f in b)


# -- a ring another process is writing ----------------------------------------------------
WRITER = r"""
import os, sys, time
import numpy as np
import replaystore as rs
sys.path.insert(0, {here!r})
from test_framestack import live_rows
store = rs.open({path!r}, "a", fsync=False)
rng = np.random.default_rng(3)
g = store.total
print("ready", flush=True)
t_end = time.monotonic() + 60
while not os.path.exists({stop!r}) and time.monotonic() < t_end:
    n = int(rng.integers(1, 300))
    store.extend(live_rows(np.arange(g, g + n)))
    store.flush()
    g += n
store.close()
"""


def live_rows(g: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of two envs interleaved (episodes of 37 and 23 steps); obs = [episode, step, ...]."""
    env, j = g % 2, g // 2
    length = np.where(env == 0, 37, 23)
    ep, st = 2 * (j // length) + env + 1, j % length
    obs = np.repeat(st[:, None].astype(np.float64), 64, axis=1)
    obs[:, 0] = ep
    nxt = obs.copy()
    nxt[:, 1:] += 1
    return {"obs": obs, "next_obs": nxt, "action": env, "reward": np.ones(len(g)), "terminated": st == length - 1,
            "truncated": np.zeros(len(g), bool), "episode": ep, "step": st}


def test_a_ring_another_process_writes_never_gives_a_torn_or_crossed_stack(tmp_path):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    path, stop = tmp_path / "live.zarr", tmp_path / "stop"
    st = rs.create(path, gym.spaces.Box(-np.inf, np.inf, (64,), np.float64), gym.spaces.Discrete(2),
                   capacity=400, chunk_rows=64)
    st.extend(live_rows(np.arange(400)))
    st.close()
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": str(Path(rs.__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(here=here, path=str(path), stop=str(stop))],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        store = rs.open(path)
        first = store.total
        samplers = [rs.UniformSampler(store, batch_size=64, frame_stack=K, seed=0),
                    rs.UniformSampler(store, batch_size=64, frame_stack=K, n_step=3, gamma=0.5, seed=1)]
        batches = 0
        # 2.5 s of reading, and on a busy machine on (for at most a minute) until the ring has
        # turned over twice and more than 20 batches were checked: what is asserted below
        t_end, t_cap = time.monotonic() + 2.5, time.monotonic() + 60
        while time.monotonic() < t_end or (
                (store.total - first <= 2 * 400 or batches <= 20) and time.monotonic() < t_cap):
            store.refresh()
            for s in samplers:
                b = s.sample()
                batches += 1
                o, nx = b["obs"], b["next_obs"]
                e, step = b["episode"].astype(float), b["step"].astype(float)
                assert (o[:, :, 0] == e[:, None]).all() and (nx[:, :, 0] == e[:, None]).all()
                assert (o[:, :, 1:] == o[:, :, 1:2]).all()  # each frame whole (one row's)
                assert (o[:, -1, 1] == step).all()
                d = np.diff(o[:, :, 1], axis=1)
                assert np.isin(d, (0, 1)).all()
                # repeats only at the start of a stack: padding, then consecutive steps
                assert (np.diff(d, axis=1) >= 0).all()
                last = step + (b["n_steps"] - 1 if "n_steps" in b else 0)
                assert (nx[:, -1, 1] == last + 1).all()
        moved = store.refresh().total - first
        assert moved > 2 * 400 and batches > 20, (moved, batches)
        store.close()
    finally:
        stop.touch()
        proc.communicate(timeout=60)
    assert proc.returncode == 0

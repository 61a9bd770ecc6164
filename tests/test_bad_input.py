"""Bad input and hostile environments: clear errors, nothing committed is lost."""

from __future__ import annotations

import errno
import os
import subprocess
import warnings

import gymnasium as gym
import numpy as np
import pytest

import replaystore as rs


def batch(n, start=0, reward=None, action=None, obs_scale=1.0):
    ids = np.arange(start, start + n)
    obs = np.stack([ids % 5, ids % 3], axis=1).astype(np.float32) * 0.1 * obs_scale
    return {"obs": obs, "next_obs": obs, "action": ids % 3 if action is None else action,
            "reward": np.ones(n, np.float32) if reward is None else reward,
            "terminated": np.zeros(n, bool), "truncated": np.zeros(n, bool)}


def make(path, **kw):
    s = rs.create(path, gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(3), **kw)
    s.extend(batch(100))
    s.flush()
    return s


def unchanged(path, n=100):
    s = rs.open(path)
    assert len(s) == n
    assert np.array_equal(s.read_range(0, n)["action"], np.arange(n) % 3)
    s.close()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_reward_refused_by_default(tmp_path, bad):
    s = make(tmp_path / "s")
    r = np.ones(10, np.float32)
    r[4] = bad
    with pytest.raises(rs.SchemaError, match=r"field 'reward'.*row 4") as e:
        s.extend(batch(10, 100, reward=r))
    assert str(tmp_path / "s") in str(e.value)
    with pytest.raises(rs.SchemaError, match="reward"):
        s.append(**{k: v[4] for k, v in batch(10, 100, reward=r).items()})
    s.close()
    unchanged(tmp_path / "s")


def test_nonfinite_reward_allowed_when_asked(tmp_path):
    make(tmp_path / "s").close()
    s = rs.open(tmp_path / "s", "a", nonfinite_rewards="allow")
    s.extend(batch(2, 100, reward=np.array([np.nan, 1.0], np.float32)))
    s.close()
    assert np.isnan(rs.open(tmp_path / "s").read([100], fields=["reward"])["reward"][0])


def test_out_of_range_discrete_action(tmp_path):
    s = make(tmp_path / "s")
    with pytest.raises(rs.SpaceError, match=r"field 'action'.*row 2 has value 7.*\[0, 2\]") as e:
        s.extend(batch(5, 100, action=np.array([0, 1, 7, 2, -1])))
    assert isinstance(e.value, ValueError) and str(tmp_path / "s") in str(e.value)
    with pytest.raises(rs.SpaceError, match="action"):
        s.append(**{k: (v[0] if k != "action" else 3) for k, v in batch(1, 100).items()})
    s.close()
    unchanged(tmp_path / "s")


def test_obs_outside_box_warns_by_default_once(tmp_path):
    s = make(tmp_path / "s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s.extend(batch(10, 100, obs_scale=100.0))
    msgs = sorted(str(w.message) for w in caught)
    assert len(msgs) == 2  # one per field out of bounds: next_obs and obs
    assert "field 'next_obs'" in msgs[0] and "field 'obs'" in msgs[1] and "stored anyway" in msgs[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.extend(batch(10, 110, obs_scale=100.0))  # obs warned already; next_obs too
    s.close()
    assert len(rs.open(tmp_path / "s")) == 120


def test_obs_outside_box_refused_or_ignored(tmp_path):
    make(tmp_path / "s").close()
    s = rs.open(tmp_path / "s", "a", bounds="error")
    with pytest.raises(rs.SpaceError, match=r"field 'obs'.*expected a value in \[-1.0, 1.0\]"):
        s.extend(batch(10, 100, obs_scale=100.0))
    s.close()
    unchanged(tmp_path / "s")
    s = rs.open(tmp_path / "s", "a", bounds="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.extend(batch(10, 100, obs_scale=100.0))
    s.close()
    with pytest.raises(rs.SchemaError, match="bounds"):
        rs.open(tmp_path / "s", "a", bounds="sometimes")


def test_missing_chunk_file_is_a_clear_error(tmp_path):
    make(tmp_path / "s").close()
    (tmp_path / "s" / "reward" / "c" / "0").unlink()
    s = rs.open(tmp_path / "s")
    with pytest.raises(rs.CorruptStoreError, match=r"reward.*missing") as e:
        s.read([3])
    assert isinstance(e.value, OSError)
    assert np.array_equal(s.read([3], fields=["action"])["action"], [0])  # other fields still read


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def read_only_copy(tmp_path):
    """The store in a read-only bind mount (root), or, failing that, a chmod-ed directory."""
    src = tmp_path / "src"
    src.mkdir()
    make(src / "s").close()
    dst = tmp_path / "ro"
    dst.mkdir()
    if _mount("--bind", str(src), str(dst)) and _mount("-o", "remount,ro,bind", str(dst)):
        yield dst / "s"
        subprocess.run(["umount", "-l", str(dst)], check=False)
        return
    os.chmod(src / "s", 0o555)
    yield src / "s"
    os.chmod(src / "s", 0o755)


def test_read_only_directory(read_only_copy):
    if os.access(read_only_copy, os.W_OK):
        pytest.fail("could not make a read-only directory (no bind mount and running as root)")
    with pytest.raises(rs.StoreModeError, match="mode='r'") as e:
        rs.open(read_only_copy, "a")
    assert isinstance(e.value, PermissionError) and str(read_only_copy) in str(e.value)
    s = rs.open(read_only_copy)
    assert len(s) == 100
    assert len(rs.UniformSampler(s, batch_size=8, seed=0).sample()["obs"]) == 8
    with pytest.warns(UserWarning, match="in memory"):
        b = rs.BalancedSampler(s, by="action", batch_size=300, seed=0).sample()
    assert set(np.unique(b["action"])) == {0, 1, 2}


@pytest.fixture
def tiny_disk(tmp_path, monkeypatch):
    """A 2 MiB tmpfs (root), or, failing that, a writer whose pwrite reports ENOSPC."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)):
        yield mnt, None
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        return
    real = os.pwrite
    state = {"full": False}

    def pwrite(fd, data, offset):
        if state["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    yield mnt, state


def test_disk_full_keeps_committed_rows(tiny_disk):
    mnt, fake = tiny_disk
    path = mnt / "s"
    s = rs.create(path, gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(3),
                  chunk_rows=4096)
    s.extend(batch(100))
    s.flush()
    filler = mnt / "filler"
    if fake is None:  # fill the tmpfs so the next chunk file cannot get its blocks
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
    else:
        fake["full"] = True
    with pytest.raises(rs.StoreWriteError) as e:
        s.extend(batch(20000, 100))
        s.flush()
    msg = str(e.value)
    assert str(path) in msg and "field" in msg and "intact" in msg
    assert isinstance(e.value, OSError)
    unchanged(path)
    # free the space: the buffered rows go out on the next flush
    if fake is None:
        filler.unlink()
    else:
        fake["full"] = False
    s.flush()
    s.close()
    r = rs.open(path)
    assert len(r) == 20100
    assert np.array_equal(r.read_range(0, 20100)["action"], np.arange(20100) % 3)
    assert rs.verify(path).ok

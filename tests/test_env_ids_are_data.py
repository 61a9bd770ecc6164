"""A store from a stranger is data: its recorded env id never imports a module.

gymnasium's ``gym.make("module:Env-v0")`` imports ``module`` first. A store records the
env id it was collected from, and ``train --eval-every``, ``demo`` and ``export --to
minari`` make that env; a crafted ``zarr.json`` saying ``env.id = "evilmod:Foo-v0"``
next to an ``evilmod.py`` (an unpacked zip, a shared directory) must not run it. These
tests use a module whose import writes a marker file, and check that the marker is not
there after each refusal, and is there when the user opts in (``--trust-env-id`` /
``trust_env_id=True``) or passes the id themselves (``--env`` / ``env_id=``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import pytest
from click.testing import CliRunner, Result

import replaystore as rs
from replaystore.cli import main
from replaystore.collect import collect
from replaystore.demo import run_demo
from replaystore.training import check_env_id, train_store

MOD = "evilmod_rs_test"
EVIL_ID = f"{MOD}:Foo-v0"

# importing it leaves a marker, then registers Foo-v0 (FrozenLake) so that a trusted
# id can be made and the whole job runs
EVIL_SOURCE = """\
import pathlib
pathlib.Path({marker!r}).write_text("imported")
import gymnasium as gym
if "Foo-v0" not in gym.registry:
    gym.register("Foo-v0", entry_point="gymnasium.envs.toy_text.frozen_lake:FrozenLakeEnv",
                 max_episode_steps=100)
"""


def set_env_id(store: Path, env_id: object) -> None:
    """Rewrite the env id the store records (what a stranger can do to a shared store)."""
    doc = json.loads((store / "zarr.json").read_text())
    doc["attributes"]["replaystore"]["env"]["id"] = env_id
    (store / "zarr.json").write_text(json.dumps(doc))


@dataclass
class Evil:
    store: Path
    marker: Path
    tmp: Path


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """A FrozenLake store recording ``evilmod_rs_test:Foo-v0``, with the module in the
    store directory, that directory on ``sys.path`` and the cwd."""
    store = tmp_path / "shared.zarr"
    collect("FrozenLake-v1", store, steps=200, seed=0)
    set_env_id(store, EVIL_ID)
    marker = tmp_path / "IMPORTED"
    (store / f"{MOD}.py").write_text(EVIL_SOURCE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(store))
    monkeypatch.chdir(store)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari-datasets"))
    sys.modules.pop(MOD, None)
    yield Evil(store, marker, tmp_path)
    sys.modules.pop(MOD, None)
    gym.registry.pop("Foo-v0", None)


@pytest.fixture
def minari():
    mn = pytest.importorskip("minari", reason='Minari export needs pip install "replaystore[minari]"')
    pytest.importorskip("h5py", reason='Minari export needs pip install "replaystore[minari]"')
    return mn


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(r: Result, store: str, *needles: str) -> str:
    """One ``Error:`` line naming the store, the id and how to opt in; non-zero exit."""
    assert r.exit_code != 0, r.output
    assert isinstance(r.exception, SystemExit), f"uncaught {r.exception!r}\n{r.output}"
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    for n in (store, repr(EVIL_ID), "--trust-env-id", *needles):
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def python_m(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m replaystore ARGS`` in ``cwd`` (which is then first on ``sys.path``)."""
    return subprocess.run([sys.executable, "-m", "replaystore", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------------------
# the check itself
# --------------------------------------------------------------------------------------
def test_check_env_id():
    assert check_env_id("FrozenLake-v1", source="s.zarr", trusted=False) == "FrozenLake-v1"
    assert check_env_id("ns/Env-v0", source="s.zarr", trusted=False) == "ns/Env-v0"
    assert check_env_id(EVIL_ID, source="s.zarr", trusted=True) == EVIL_ID
    with pytest.raises(rs.EnvError, match=r"s\.zarr: .*'evilmod_rs_test:Foo-v0'.*trust_env_id=True.*yourself") as e:
        check_env_id(EVIL_ID, source="s.zarr", trusted=False)
    assert re.search(r"s\.zarr: .*'evilmod_rs_test:Foo-v0'.*--trust-env-id.*--env", e.value.cli_message)
    with pytest.raises(rs.EnvError) as e:
        check_env_id(EVIL_ID, source="s.zarr", trusted=False, env_option=None)
    assert "--env" not in e.value.cli_message.replace("--trust-env-id", "")
    for bad in (5, ["FrozenLake-v1"], {"id": "x"}, ""):
        with pytest.raises(rs.EnvError, match="not a non-empty string"):
            check_env_id(bad, source="s.zarr", trusted=True)


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------
def test_train_in_an_unpacked_store_does_not_run_its_module(evil):
    """The reported case: ``python -m replaystore train . --eval-every 1`` inside the store."""
    r = python_m("train", ".", "--out", evil.tmp / "q.npy", "--eval-every", "1", "--no-progress",
                 cwd=evil.store)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: .: "), r.stderr
    assert repr(EVIL_ID) in lines[0] and "--trust-env-id" in lines[0] and "--env" in lines[0]
    assert not evil.marker.exists()
    assert not (evil.tmp / "q.npy").exists()


def test_train_with_trust_env_id_imports_it(evil):
    r = python_m("train", ".", "--out", evil.tmp / "q.npy", "--eval-every", "1", "--no-progress",
                 "--trust-env-id", cwd=evil.store)
    assert r.returncode == 0, r.stdout + r.stderr
    assert evil.marker.exists()
    assert "update        1: mean return" in r.stdout


def test_train_cli_refuses(evil):
    assert_refused(run("train", evil.store, "--out", evil.tmp / "q.npy", "--eval-every", "1",
                       "--no-progress"), str(evil.store), "--env")
    assert not evil.marker.exists()
    # without evaluations the id is never made: training works
    r = run("train", evil.store, "--out", evil.tmp / "q.npy", "--no-progress")
    assert r.exit_code == 0, r.output
    assert not evil.marker.exists()
    # an id the user gives is theirs
    r = run("train", evil.store, "--out", evil.tmp / "q.npy", "--eval-every", "1", "--no-progress",
            "--env", "FrozenLake-v1", "--overwrite")
    assert r.exit_code == 0, r.output
    assert "mean return" in r.output and not evil.marker.exists()


def test_train_store_refuses(evil):
    with pytest.raises(rs.EnvError, match=r"shared\.zarr: .*'evilmod_rs_test:Foo-v0'.*trust_env_id=True"):
        train_store(evil.store, eval_every=1, eval_episodes=5)
    assert not evil.marker.exists()
    assert train_store(evil.store).result.converged  # no evaluation: the id is not made
    assert not evil.marker.exists()
    report = train_store(evil.store, eval_every=1, eval_episodes=5, trust_env_id=True)
    assert evil.marker.exists() and report.result.evaluations


def test_train_store_trusts_an_id_passed_in(evil):
    report = train_store(evil.store, eval_every=1, eval_episodes=5, env_id=EVIL_ID)
    assert evil.marker.exists() and report.result.evaluations


def test_trusted_id_whose_module_is_missing_is_a_one_line_error(evil):
    set_env_id(evil.store, "no_such_module_rs_test:Foo-v0")
    r = run("train", evil.store, "--out", evil.tmp / "q.npy", "--eval-every", "1", "--no-progress",
            "--trust-env-id")
    assert r.exit_code != 0 and isinstance(r.exception, SystemExit), r.output
    assert r.output.startswith("Error: environment 'no_such_module_rs_test:Foo-v0'"), r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_non_string_env_id_is_refused(evil):
    set_env_id(evil.store, ["FrozenLake-v1"])
    with pytest.raises(rs.EnvError, match="not a non-empty string"):
        train_store(evil.store, eval_every=1, trust_env_id=True)


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------
def test_demo_refuses(evil):
    with pytest.raises(rs.EnvError, match=r"shared\.zarr: .*'evilmod_rs_test:Foo-v0'.*trust_env_id=True"):
        run_demo(data=evil.store, episodes=5)
    assert not evil.marker.exists()
    assert_refused(run("demo", "--data", evil.store, "--episodes", "5"), str(evil.store))
    assert not evil.marker.exists()


def test_demo_with_trust_env_id(evil):
    r = run("demo", "--data", evil.store, "--episodes", "5", "--trust-env-id")
    assert r.exit_code == 0, r.output
    assert evil.marker.exists() and "optimum" in r.output
    sys.modules.pop(MOD, None)
    evil.marker.unlink()
    report = run_demo(data=evil.store, episodes=5, trust_env_id=True)
    assert evil.marker.exists() and report.env_id == EVIL_ID


# --------------------------------------------------------------------------------------
# export --to minari (and import)
# --------------------------------------------------------------------------------------
def test_export_minari_refuses(evil, minari):
    out = evil.tmp / "exported"
    assert_refused(run("export", evil.store, out, "--to", "minari", "--no-progress"), str(evil.store))
    assert not evil.marker.exists() and not out.exists()
    with pytest.raises(rs.EnvError, match=r"'evilmod_rs_test:Foo-v0'.*trust_env_id=True"):
        rs.interop.export_minari(evil.store, out)
    assert not evil.marker.exists() and not out.exists()
    r = run("export", evil.store, out, "--to", "parquet", "--trust-env-id")
    assert r.exit_code != 0 and "--trust-env-id applies to --to minari" in r.output


def test_export_minari_with_trust_env_id(evil, minari):
    out = evil.tmp / "exported"
    r = run("export", evil.store, out, "--to", "minari", "--trust-env-id", "--no-progress")
    assert r.exit_code == 0, r.output
    assert evil.marker.exists() and (out / "data" / "metadata.json").is_file()
    assert minari.MinariDataset(out / "data").env_spec.id == "Foo-v0"


def _exported_plain(tmp: Path) -> Path:
    store = tmp / "plain.zarr"
    collect("FrozenLake-v1", store, episodes=5, seed=0)
    out = tmp / "plain-minari"
    rs.interop.export_minari(store, out)
    return out


def test_import_minari_does_not_look_up_a_module_id(evil, minari):
    """A dataset's env spec id is data too; it is recorded, and then refused like any."""
    out = _exported_plain(evil.tmp)
    meta_path = out / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    spec = json.loads(meta["env_spec"])
    spec["id"] = EVIL_ID
    meta["env_spec"] = json.dumps(spec)
    meta_path.write_text(json.dumps(meta))
    back = evil.tmp / "back.zarr"
    rs.interop.import_minari(out, back)
    assert not evil.marker.exists()
    with rs.open(back, mode="r") as s:
        assert s.env_info["id"] == EVIL_ID
    with pytest.raises(rs.EnvError, match="trust_env_id=True"):
        train_store(back, eval_every=1)
    assert not evil.marker.exists()


def test_import_minari_refuses_a_dataset_whose_spaces_come_from_its_env_spec(evil, minari):
    """Without recorded spaces minari makes the env spec's entry point (an import)."""
    out = _exported_plain(evil.tmp)
    meta_path = out / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    spec = json.loads(meta["env_spec"])
    spec["entry_point"] = f"{MOD}:Whatever"
    meta["env_spec"] = json.dumps(spec)
    del meta["action_space"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(rs.InteropError, match="does not record action_space"):
        rs.interop.import_minari(out, evil.tmp / "back.zarr")
    assert not evil.marker.exists() and not (evil.tmp / "back.zarr").exists()


# --------------------------------------------------------------------------------------
# registered ids keep working
# --------------------------------------------------------------------------------------
def test_a_registered_id_trains_evaluates_and_exports(tmp_path, monkeypatch, minari):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari-datasets"))
    store = tmp_path / "fl.zarr"
    collect("FrozenLake-v1", store, steps=200, seed=0)
    report = train_store(store, eval_every=1, eval_episodes=5)
    assert report.result.evaluations
    r = run("train", store, "--out", tmp_path / "q.npy", "--eval-every", "1", "--no-progress")
    assert r.exit_code == 0 and "mean return" in r.output, r.output
    assert run_demo(data=store, episodes=5).env_id == "FrozenLake-v1"
    r = run("export", store, tmp_path / "m", "--to", "minari", "--no-progress")
    assert r.exit_code == 0, r.output
    assert minari.MinariDataset(tmp_path / "m" / "data").env_spec.id == "FrozenLake-v1"

"""Env kwargs of stores: appends, merges and Minari round trips compare them with the env's
defaults filled in, and never mix two dynamics silently (issue 14 item 6); the bundled
dataset's ``tools/make_data.py --check`` ignores runtime files.

Real FrozenLake-v1 envs, real stores, the CLI through click's CliRunner.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import replaystore as rs
from replaystore.cli import main
from replaystore.collect import collect
from replaystore.envs import env_differences, normalize_env_kwargs
from replaystore.merge import merge

LAKE = "FrozenLake-v1"
ROOT = Path(__file__).resolve().parents[1]
MIXED = {"id": None, "kwargs": {}, "mixed": True}


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(path: Path) -> dict[str, str]:
    """Every content file of a store with its hash (runtime files such as the lock left out)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name not in (".writer.lock", ".live")}


def rows(path: Path) -> dict[str, np.ndarray]:
    with rs.open(path) as s:
        return s.read_range(0, len(s))


def deterministic(path: Path) -> bool:
    """Whether every transition of the store follows the non-slippery P table."""
    P = gym.make(LAKE, is_slippery=False).unwrapped.P
    r = rows(path)
    return all(P[int(o)][int(a)][0][1] == int(n) for o, a, n in zip(r["obs"], r["action"], r["next_obs"], strict=True))


# ---------------------------------------------------------------------------------------
# the one normalisation
# ---------------------------------------------------------------------------------------
def test_defaults_are_filled_in_before_comparing():
    assert normalize_env_kwargs(LAKE, {}) == normalize_env_kwargs(LAKE, {"is_slippery": True, "map_name": "4x4"})
    assert normalize_env_kwargs(LAKE, {}) != normalize_env_kwargs(LAKE, {"is_slippery": False})
    assert env_differences({"id": LAKE, "kwargs": {"is_slippery": True}},
                           {"id": LAKE, "kwargs": {"is_slippery": False}}) == [
        "env kwargs: is_slippery: store recorded true, given false"]
    # a store's "module:Env-v0" id is data: not imported to find its defaults
    assert normalize_env_kwargs("no_such_module_xyz:Env-v0", {"a": 1}) == {"a": 1}
    assert "no_such_module_xyz" not in sys.modules


# ---------------------------------------------------------------------------------------
# collect appending
# ---------------------------------------------------------------------------------------
def test_cli_append_with_other_kwargs_is_refused_and_writes_nothing(tmp_path):
    out = tmp_path / "slip.zarr"
    assert run("collect", LAKE, "--out", out, "--steps", 60, "--no-progress",
               "--env-kwargs", '{"is_slippery": true}').exit_code == 0
    before = snapshot(out)
    r = run("collect", LAKE, "--out", out, "--steps", 60, "--no-progress", "--env-kwargs", '{"is_slippery": false}')
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    for needle in (str(out), "env kwargs: is_slippery: store recorded true, given false", "--allow-different-env"):
        assert needle in lines[0]
    assert "allow_different_env=True" not in lines[0]
    assert snapshot(out) == before
    with rs.open(out) as s:
        assert len(s) == 60 and s.env_info == {"id": LAKE, "kwargs": {"is_slippery": True}}


def test_cli_allow_different_env_appends_and_records_mixed_as_merge_does(tmp_path):
    out = tmp_path / "slip.zarr"
    assert run("collect", LAKE, "--out", out, "--steps", 60, "--no-progress").exit_code == 0
    r = run("collect", LAKE, "--out", out, "--steps", 40, "--no-progress", "--env-kwargs", '{"is_slippery": false}',
            "--allow-different-env")
    assert r.exit_code == 0, r.output
    # what merge records for inputs of different envs
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    collect(LAKE, a, steps=5)
    collect(LAKE, b, steps=5, env_kwargs={"is_slippery": False})
    merge(tmp_path / "m.zarr", [a, b], allow_different_env=True)
    with rs.open(tmp_path / "m.zarr") as m, rs.open(out) as s:
        assert s.env_info == m.env_info == MIXED
        assert len(s) == 100
        assert [c["env_kwargs"] for c in s.info["collections"]] == [{}, {"is_slippery": False}]
    # a mixed store takes further envs only with --allow-different-env too
    r = run("collect", LAKE, "--out", out, "--steps", 5, "--no-progress")
    assert r.exit_code == 1 and "--allow-different-env" in r.output


def test_append_without_kwargs_uses_the_stores(tmp_path):
    out = tmp_path / "det.zarr"
    collect(LAKE, out, steps=100, env_kwargs={"is_slippery": False})
    r = run("collect", LAKE, "--out", out, "--steps", 300, "--seed", 3, "--no-progress")
    assert r.exit_code == 0, r.output
    collect(LAKE, out, steps=300, seed=4)
    with rs.open(out) as s:
        assert len(s) == 700 and s.env_info == {"id": LAKE, "kwargs": {"is_slippery": False}}
        assert [c["env_kwargs"] for c in s.info["collections"]] == [{"is_slippery": False}] * 3
    assert deterministic(out)


def test_python_api_refuses_with_env_error_and_accepts_equivalent_kwargs(tmp_path):
    out = tmp_path / "s.zarr"
    collect(LAKE, out, steps=30)  # gymnasium's defaults: slippery
    before = snapshot(out)
    with pytest.raises(rs.EnvError) as e:
        collect(LAKE, out, steps=30, env_kwargs={"is_slippery": False})
    assert isinstance(e.value, ValueError) and isinstance(e.value, rs.ReplayStoreError)
    assert str(out) in str(e.value) and "is_slippery: store recorded true, given false" in str(e.value)
    assert "allow_different_env=True" in str(e.value)
    assert snapshot(out) == before
    # the defaults spelled out are the same env: accepted, and the record is kept as it was
    assert collect(LAKE, out, steps=30, env_kwargs={"is_slippery": True, "map_name": "4x4"}).steps == 30
    with rs.open(out) as s:
        assert len(s) == 60 and s.env_info == {"id": LAKE, "kwargs": {}}
    collect(LAKE, out, steps=10, env_kwargs={"is_slippery": False}, allow_different_env=True)
    with rs.open(out) as s:
        assert len(s) == 70 and s.env_info == MIXED


# ---------------------------------------------------------------------------------------
# merge and Minari round trips
# ---------------------------------------------------------------------------------------
def test_merge_compares_kwargs_with_defaults_filled_in(tmp_path):
    a, b, c = tmp_path / "a.zarr", tmp_path / "b.zarr", tmp_path / "c.zarr"
    collect(LAKE, a, steps=10, env_kwargs={"is_slippery": True})
    collect(LAKE, b, steps=10)
    collect(LAKE, c, steps=10, env_kwargs={"is_slippery": False})
    assert merge(tmp_path / "ab.zarr", [a, b]).rows == 20
    with pytest.raises(rs.EnvError, match="allow_different_env=True"):
        merge(tmp_path / "ac.zarr", [a, c])


def test_minari_round_trip_merges_with_its_source(tmp_path):
    import minari  # noqa: F401  (the test extra installs it)

    from replaystore.interop.minari import import_minari
    from replaystore.interop.minari_export import export_minari

    src, back = tmp_path / "src.zarr", tmp_path / "back.zarr"
    collect(LAKE, src, episodes=5, env_kwargs={"is_slippery": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_minari(src, tmp_path / "lake-v0")
        import_minari(tmp_path / "lake-v0", back)
    with rs.open(back) as s:
        assert s.env_info["id"] == LAKE
        assert normalize_env_kwargs(LAKE, s.env_info["kwargs"]) == normalize_env_kwargs(LAKE, {"is_slippery": True})
    stats = merge(tmp_path / "m.zarr", [src, back])
    assert stats.rows == 2 * len(rows(src)["reward"])
    with rs.open(tmp_path / "m.zarr") as m:
        assert m.env_info == {"id": LAKE, "kwargs": {"is_slippery": True}}
    # and an append to the round trip without kwargs keeps its (slippery) env
    assert collect(LAKE, back, steps=10).steps == 10


# ---------------------------------------------------------------------------------------
# tools/make_data.py --check
# ---------------------------------------------------------------------------------------
def _make_data():
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "tools" / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_make_data_ignores_runtime_files(tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    collect(LAKE, a, steps=10)
    shutil.copytree(a, b)
    (b / ".writer.lock").write_text("1234\n")
    (a / ".writer.lock").unlink(missing_ok=True)
    assert _make_data().same_tree(a, b) == []
    (b / "extra").write_text("x")
    assert _make_data().same_tree(a, b) != []


def test_make_data_check_passes_on_a_fresh_checkout(tmp_path):
    # what a clone holds: the files git tracks (or would: not ignored), nothing else (no lock, no caches)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout
    names = sorted({n for n in listed.decode().split("\0") if n})
    data = [n for n in names if n.startswith("replaystore/data/")]
    assert data and not [n for n in data if Path(n).name in (".writer.lock", ".live")]
    fresh = tmp_path / "clone"
    for n in names:
        src = ROOT / n
        if src.is_symlink():
            (fresh / n).parent.mkdir(parents=True, exist_ok=True)
            (fresh / n).symlink_to(src.readlink())
        elif src.is_file():
            (fresh / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, fresh / n)
    r = subprocess.run([sys.executable, "tools/make_data.py", "--check"], cwd=fresh, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "byte-identical" in r.stdout

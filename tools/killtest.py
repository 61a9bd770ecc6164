"""Kill torture for every writing command: SIGKILL the real CLI at random moments.

For each command (collect, import, export, merge, merge --append, pack, unpack,
verify --repair) the harness runs ``python -m replaystore ...`` in a subprocess, kills it
with SIGKILL after a random delay, and checks that

* the input is intact (its files hash as before),
* the output is absent, complete (the right rows, and a store passes ``verify``), or the
  old output (``--overwrite``, ``verify --repair``), or for ``merge --append`` and
  ``collect`` a valid store whose rows are a prefix of the right ones (resumable),
* running the same command again to the end gives the right result, with no row lost or
  duplicated, and leaves no temporary files of killed jobs behind.

Kills are chained: each kill lands on what the previous one left, then a final run must
complete. Prints one line per command: ``command | kills | survived | rows lost | rows
duplicated``.

    python tools/killtest.py --kills 25          # every command, 25 kills each
    python tools/killtest.py --kills 3 --only merge-append,import-d4rl
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: the checkout whose ``replaystore`` the commands run (``REPLAYSTORE_ROOT`` overrides it)
ROOT = Path(os.environ.get("REPLAYSTORE_ROOT") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(Path(__file__).resolve().parent))
from crashtest import row_values  # noqa: E402

RUNTIME = {".writer.lock", ".live"}


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
def make_store(path: Path, g0: int, n: int, *, chunk_rows: int = 16384, codecs: str | None = None,
               episode_len: int | None = None) -> Path:
    """A store of the deterministic rows ``g0 .. g0+n`` (crashtest's rows); with
    ``episode_len`` every episode is that long (for Minari)."""
    import gymnasium as gym

    import replaystore as rs

    s = rs.create(path, gym.spaces.Box(-1e9, 1e9, (4,), np.float32), gym.spaces.Discrete(3),
                  extra_fields=[("check", "int64")], chunk_rows=chunk_rows, codecs=codecs)
    for a in range(g0, g0 + n, 65536):
        rows = row_values(np.arange(a, min(g0 + n, a + 65536)))
        if episode_len:
            g = np.arange(a, min(g0 + n, a + 65536))
            rows["terminated"] = (g - g0) % episode_len == episode_len - 1
            rows["truncated"] = np.zeros(len(g), bool)
        s.extend(rows)
    s.close()
    return path


def rows_g(values_obs: np.ndarray) -> np.ndarray:
    """The global row numbers of rows from their ``obs`` (``obs[:, 0] == 4 g``)."""
    return (np.asarray(values_obs)[:, 0] // 4).astype(np.int64)


def store_g(path: Path) -> np.ndarray:
    import replaystore as rs

    with rs.open(path, "r") as s:
        return rows_g(s.read_range(0, len(s), fields=["obs"])["obs"]) if len(s) else np.zeros(0, np.int64)


def verify_ok(path: Path) -> tuple[bool, str]:
    import replaystore as rs

    try:
        rep = rs.verify(path)
    except Exception as e:  # a checker that fails is a failure to report, not a crash
        return False, f"verify raised {type(e).__name__}: {e}"
    return rep.ok, "; ".join(rep.lines())


def digest(path: Path) -> str:
    """Hash of every file under ``path`` (names and bytes; runtime files left out)."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.name not in RUNTIME:
            h.update(str(p.relative_to(path)).encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def leftovers(d: Path) -> list[str]:
    """Hidden temporary names of jobs in ``d`` (ours, pack's and old merges')."""
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".") and (
        ".rsjob-" in p.name or p.name.endswith(".tmp") or ".tmp-" in p.name) or ".merging-" in p.name)


def lost_dup(got: np.ndarray, want: np.ndarray) -> tuple[int, int]:
    """Rows of ``want`` missing from ``got``, and rows of ``got`` present more than once."""
    u, c = np.unique(got, return_counts=True)
    return int(len(np.setdiff1d(want, u))), int((c - 1).sum())


# ---------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------
@dataclass
class Outcome:
    ok: bool
    state: str  # absent, complete, old, partial
    lost: int = 0
    dup: int = 0
    error: str = ""


@dataclass
class Case:
    """One command under test: ``setup(work)`` makes the inputs and returns the argv;
    ``check(work, final)`` looks at the output after a kill (``final``: after a run that
    completed)."""

    name: str
    setup: Callable[[Path], list[str]]
    check: Callable[[Path, bool], Outcome]
    inputs: Callable[[Path], list[Path]]
    ok_codes: tuple[int, ...] = (0,)  #: exit codes of a run that completed as it should
    state: dict = field(default_factory=dict)


def _store_out(work: Path, out: Path, want: np.ndarray, final: bool, *, old: str | None = None,
               prefix_of: np.ndarray | None = None) -> Outcome:
    """OUT must be absent, the old OUT (digest ``old``), or a store holding ``want``; with
    ``prefix_of``, any prefix of it is fine after a kill (resumable)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return Outcome(not final, "absent", lost=len(want) if final else 0,
                       error="no output after a complete run" if final else "")
    if old is not None and digest(out) == old:
        return Outcome(not final, "old", error="old output after a complete run" if final else "")
    ok, text = verify_ok(out) if out.is_dir() else (True, "")  # (a .zip is checked by reading it)
    if not ok:
        return Outcome(False, "partial", error=f"output fails verify: {text}")
    try:
        got = store_g(out)
    except Exception as e:
        return Outcome(False, "partial", error=f"output cannot be read: {type(e).__name__}: {e}")
    lost, dup = lost_dup(got, want)
    if np.array_equal(got, want):
        return Outcome(True, "complete")
    if prefix_of is not None and not final and np.array_equal(got, prefix_of[:len(got)]):
        return Outcome(True, "partial (resumable)", dup=dup)
    return Outcome(False, "partial", lost=lost, dup=dup,
                   error=f"output holds {len(got):,} rows, {lost:,} of {len(want):,} missing, {dup:,} duplicated")


def case_merge(n: int) -> Case:
    def setup(w: Path) -> list[str]:
        make_store(w / "a.zarr", 0, n)
        make_store(w / "b.zarr", 1_000_000, n // 2, codecs="zstd:1")
        return ["merge", str(w / "out.zarr"), str(w / "a.zarr"), str(w / "b.zarr"), "--no-progress"]

    want = np.concatenate([np.arange(n), np.arange(1_000_000, 1_000_000 + n // 2)])
    return Case("merge", setup, lambda w, f: _store_out(w, w / "out.zarr", want, f),
                lambda w: [w / "a.zarr", w / "b.zarr"])


def case_merge_append(n: int) -> Case:
    def setup(w: Path) -> list[str]:
        make_store(w / "out.zarr", 5_000_000, 1000)
        make_store(w / "b.zarr", 1_000_000, n)
        make_store(w / "c.zarr", 2_000_000, n // 2, codecs="zstd:1")
        return ["merge", str(w / "out.zarr"), str(w / "b.zarr"), str(w / "c.zarr"), "--append",
                "--no-progress"]

    want = np.concatenate([np.arange(5_000_000, 5_001_000), np.arange(1_000_000, 1_000_000 + n),
                           np.arange(2_000_000, 2_000_000 + n // 2)])
    return Case("merge --append", setup,
                lambda w, f: _store_out(w, w / "out.zarr", want, f, prefix_of=want),
                lambda w: [w / "b.zarr", w / "c.zarr"])


def _make_hdf5(path: Path, g0: int, n: int, ep: int = 100) -> None:
    import h5py

    g = np.arange(g0, g0 + n + 1)
    rows = row_values(g)
    with h5py.File(path, "w") as f:
        f["observations"] = rows["obs"][:-1]
        f["next_observations"] = rows["obs"][1:]
        f["actions"] = np.eye(2, dtype=np.float32)[rows["action"][:-1] % 2]
        f["rewards"] = rows["reward"][:-1]
        f["terminals"] = (np.arange(n) % ep) == ep - 1
        f["timeouts"] = np.zeros(n, bool)


def case_import_d4rl(n: int, overwrite: bool) -> Case:
    def setup(w: Path) -> list[str]:
        _make_hdf5(w / "src.hdf5", 0, n)
        argv = ["import", str(w / "src.hdf5"), str(w / "out.zarr"), "--from", "d4rl", "--no-progress"]
        if overwrite:
            make_store(w / "out.zarr", 7_000_000, 5000)
            cs.state["old"] = digest(w / "out.zarr")
            argv.append("--overwrite")
        return argv

    want = np.arange(n)
    cs = Case("import d4rl" + (" --overwrite" if overwrite else ""), setup,
              lambda w, f: _store_out(w, w / "out.zarr", want, f, old=cs.state.get("old")),
              lambda w: [w / "src.hdf5"])
    return cs


def case_export(fmt: str, n: int, overwrite: bool = False) -> Case:
    suffix = {"parquet": ".parquet", "csv": ".csv", "minari": "-v0"}[fmt]
    ep = 2000 if fmt == "minari" else None

    def setup(w: Path) -> list[str]:
        make_store(w / "in.zarr", 0, n, episode_len=ep)
        out = w / f"out{suffix}"
        argv = ["export", str(w / "in.zarr"), str(out), "--to", fmt, "--no-progress"]
        if overwrite:
            out.write_text("old export\n")
            cs.state["old"] = digest(out)
            argv.append("--overwrite")
        return argv

    def check(w: Path, final: bool) -> Outcome:
        out = w / f"out{suffix}"
        if not out.exists():
            return Outcome(not final, "absent", lost=n if final else 0,
                           error="no output after a complete run" if final else "")
        if cs.state.get("old") and out.is_file() and digest(out) == cs.state["old"]:
            return Outcome(not final, "old", error="old output after a complete run" if final else "")
        try:
            got = _read_export(fmt, out)
        except Exception as e:
            return Outcome(False, "partial", error=f"output cannot be read: {type(e).__name__}: {e}")
        want = np.arange(n)
        if np.array_equal(got, want):
            return Outcome(True, "complete")
        lost, dup = lost_dup(got, want)
        return Outcome(False, "partial", lost=lost, dup=dup,
                       error=f"output holds {len(got):,} rows of {n:,}")

    cs = Case(f"export {fmt}" + (" --overwrite" if overwrite else ""), setup, check,
              lambda w: [w / "in.zarr"])
    return cs


def _read_export(fmt: str, out: Path) -> np.ndarray:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return (pq.read_table(out, columns=["obs_0"]).column(0).to_numpy() // 4).astype(np.int64)
    if fmt == "csv":
        import pandas as pd

        return (pd.read_csv(out, usecols=["obs_0"])["obs_0"].to_numpy() // 4).astype(np.int64)
    import minari

    ds = minari.MinariDataset(out / "data")
    parts = [np.asarray(e.observations)[:-1, 0] // 4 for e in ds.iterate_episodes()]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def case_pack(n: int) -> Case:
    def setup(w: Path) -> list[str]:
        make_store(w / "in.zarr", 0, n)
        return ["pack", str(w / "in.zarr"), str(w / "out.zip"), "--no-progress"]

    return Case("pack", setup, lambda w, f: _store_out(w, w / "out.zip", np.arange(n), f),
                lambda w: [w / "in.zarr"])


def case_unpack(n: int) -> Case:
    def setup(w: Path) -> list[str]:
        import replaystore as rs

        make_store(w / "src.zarr", 0, n)
        rs.pack(w / "src.zarr", w / "in.zip")
        shutil.rmtree(w / "src.zarr")
        return ["unpack", str(w / "in.zip"), str(w / "out.zarr")]

    return Case("unpack", setup, lambda w, f: _store_out(w, w / "out.zarr", np.arange(n), f),
                lambda w: [w / "in.zip"])


def case_repair(n: int) -> Case:
    """A store with one damaged chunk; the kill must leave the damaged store as it was or
    the store an uninterrupted repair makes."""

    def setup(w: Path) -> list[str]:
        import replaystore as rs

        make_store(w / "out.zarr", 0, n, chunk_rows=4096)
        chunk = w / "out.zarr" / "check" / "c" / str((n // 4096) // 2)
        data = bytearray(chunk.read_bytes())
        data[100] ^= 0xFF
        chunk.write_bytes(bytes(data))
        cs.state["old"] = digest(w / "out.zarr")
        ref = w.parent / f"{w.name}-ref.zarr"
        shutil.rmtree(ref, ignore_errors=True)
        shutil.copytree(w / "out.zarr", ref)
        rs.verify(ref, repair=True)
        cs.state["want"] = store_g(ref)
        shutil.rmtree(ref)
        return ["verify", str(w / "out.zarr"), "--repair"]

    cs = Case("verify --repair", setup,
              lambda w, f: _store_out(w, w / "out.zarr", cs.state["want"], f, old=cs.state["old"]),
              lambda w: [], ok_codes=(0, 1))  # (1: damage was found, and repaired)
    return cs


def case_collect(steps: int) -> Case:
    def setup(w: Path) -> list[str]:
        return ["collect", "CartPole-v1", "--out", str(w / "out.zarr"), "--steps", str(steps),
                "--seed", "0", "--no-progress"]

    def check(w: Path, final: bool) -> Outcome:
        import replaystore as rs

        out = w / "out.zarr"
        if not out.exists():
            return Outcome(not final, "absent", error="no output after a complete run" if final else "")
        ok, text = verify_ok(out)
        if not ok:
            return Outcome(False, "partial", error=f"output fails verify: {text}")
        with rs.open(out) as s:
            d = s.read_range(0, len(s), fields=["episode", "step"])
        pairs = d["episode"] * 1_000_003 + d["step"]
        dup = len(pairs) - len(np.unique(pairs))
        seen = cs.state.get("rows", 0)
        lost = max(0, seen - len(pairs))
        cs.state["rows"] = len(pairs)
        if final and len(pairs) < steps:
            return Outcome(False, "partial", lost=lost, dup=dup, error=f"{len(pairs)} rows after a complete run")
        return Outcome(dup == 0 and lost == 0, "complete" if final else "valid store (appendable)",
                       lost=lost, dup=dup, error="" if not (dup or lost) else "rows lost or duplicated")

    cs = Case("collect", setup, check, lambda w: [])
    return cs


def all_cases(scale: float = 1.0) -> dict[str, Case]:
    n = max(2000, int(200_000 * scale))
    return {
        "collect": case_collect(max(2000, int(20_000 * scale))),
        "import-d4rl": case_import_d4rl(n, overwrite=False),
        "import-d4rl-overwrite": case_import_d4rl(n, overwrite=True),
        "export-parquet": case_export("parquet", n),
        "export-csv-overwrite": case_export("csv", max(2000, n // 4), overwrite=True),
        "export-minari": case_export("minari", max(4000, int(40_000 * scale))),
        "merge": case_merge(n),
        "merge-append": case_merge_append(n),
        "pack": case_pack(n),
        "unpack": case_unpack(n),
        "verify-repair": case_repair(n),
    }


# ---------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------
def _cli(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "replaystore", *argv]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "MINARI_DATASETS_PATH": tempfile.gettempdir()}


def run_case(case: Case, kills: int, work: Path, rng: np.random.Generator, *,
             max_delay: float | None = None, verbose: bool = False) -> dict:
    """``kills`` chained kills of ``case``'s command, then a run to the end."""
    def fresh() -> tuple[list[str], dict]:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        case.state.pop("rows", None)
        argv = case.setup(work)
        return argv, {p: digest(p) for p in case.inputs(work)}

    argv, before = fresh()
    res = {"command": case.name, "kills": 0, "survived": 0, "lost": 0, "dup": 0, "failures": [],
           "states": {}, "completed_runs": 0}
    t_full = max_delay or 3.0  # until a run completes and says how long one takes
    for i in range(kills):
        t0 = time.monotonic()
        proc = subprocess.Popen(_cli(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                                cwd=work)
        delay = float(rng.uniform(0, t_full))
        try:
            proc.wait(timeout=delay)
            finished = True
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            finished = False
        _, err = proc.communicate()
        if finished and proc.returncode not in case.ok_codes:
            res["failures"].append(f"run {i} exited {proc.returncode}: {err.decode()[-400:]}")
        o = case.check(work, finished)
        changed = [str(p.name) for p, d in before.items() if digest(p) != d]
        if changed:
            o = Outcome(False, o.state, o.lost, o.dup, f"input changed: {changed}")
        res["lost"] += o.lost
        res["dup"] += o.dup
        if not o.ok:
            res["failures"].append(f"{'run' if finished else 'kill'} {i} after {delay:.2f}s: {o.state}: {o.error}")
        if verbose:
            print(case.name, i, "finished" if finished else f"killed at {delay:.2f}s", o, flush=True)
        if finished:
            res["completed_runs"] += 1
            if not max_delay:
                t_full = max(0.5, time.monotonic() - t0)
        else:
            res["kills"] += 1
            res["states"][o.state] = res["states"].get(o.state, 0) + 1
            res["survived"] += int(o.ok)
        if finished or o.state == "complete":  # the job was done: start again from the inputs
            argv, before = fresh()
    # a run to the end: it must complete, right, and leave no temporary files
    proc = subprocess.run(_cli(argv), capture_output=True, env=_env(), cwd=work, timeout=600)
    if proc.returncode not in case.ok_codes:
        res["failures"].append(f"final run exited {proc.returncode}: {proc.stderr.decode()[-400:]}")
    o = case.check(work, True)
    res["lost"] += o.lost
    res["dup"] += o.dup
    if not o.ok:
        res["failures"].append(f"final run: {o.state}: {o.error}")
    left = leftovers(work)
    if left:
        res["failures"].append(f"left behind after the final run: {left}")
    changed = [str(p.name) for p, d in before.items() if digest(p) != d]
    if changed:
        res["failures"].append(f"input changed: {changed}")
    res["final_ok"] = o.ok and not left and not changed and proc.returncode in case.ok_codes
    return res


def table(results: list[dict]) -> str:
    lines = ["| command | kills | survived | rows lost | rows duplicated |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['command']} | {r['kills']} | {r['survived']} | {r['lost']} | {r['dup']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=25, help="kills per command")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="size of the inputs (1.0: 200,000 rows)")
    ap.add_argument("--only", help="comma-separated case names: " + ", ".join(all_cases()))
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    cases = all_cases(args.scale)
    names = args.only.split(",") if args.only else list(cases)
    rng = np.random.default_rng(args.seed)
    results = []
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rs-kill-") as d:
        for name in names:
            r = run_case(cases[name], args.kills, Path(d) / name, rng, verbose=args.verbose)
            results.append(r)
            print(f"{r['command']}: {r['kills']} kills, {r['survived']} survived, states {r['states']}"
                  + (f"; FAILURES: {r['failures'][:3]}" if r["failures"] else ""), flush=True)
            with contextlib.suppress(OSError):
                shutil.rmtree(Path(d) / name)
    print(table(results))
    print(json.dumps({"seconds": round(time.perf_counter() - t, 1),
                      "failures": {r["command"]: r["failures"] for r in results if r["failures"]}}, indent=2))
    sys.exit(1 if any(r["failures"] for r in results) else 0)


if __name__ == "__main__":
    main()

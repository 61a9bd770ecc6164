"""The command line speaks in command-line words (issue 14, item 8).

Library errors give Python advice (``pass overwrite=True``, ``mode='r'``); the same error
raised under ``replaystore`` must name the option (``--overwrite``) instead. Each case
here triggers a real error through the real command (real stores, a real second process
holding the writer lock) and checks the one-line message: the option a user would type
is named, and no Python keyword argument or call is.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner, Result

from replaystore.cli import main

# a Python keyword argument (``overwrite=True``, ``mode='r'``, ``buffer_rows=``) or call
PYTHON_WORDS = re.compile(r"\b[a-z_]+=(True|False|None|'|\"|\s|\)|$)|replaystore\.\w+\(")


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(r: Result) -> str:
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, r.output
    return lines[0]


def assert_cli_words(line: str, option: str) -> None:
    assert option in line, line
    assert not PYTHON_WORDS.search(line), f"Python advice in a CLI message: {line}"


def test_the_command_list_shows_whole_summaries():
    r = run("--help")
    assert r.exit_code == 0
    commands = r.output.split("Commands:", 1)[1]
    assert "..." not in commands, commands
    for name in main.commands:
        assert re.search(rf"^  {name}\s", commands, re.M), name


def _learn(tmp_path: Path, *extra: object) -> Result:
    return run("learn", "CliffWalking-v1", "--buffer", tmp_path / "b.zarr", "--capacity", 5000,
               "--steps", 1500, "--learning-starts", 100, "--no-progress", *extra)


def test_learn_into_a_saved_run_names_resume(tmp_path):
    assert _learn(tmp_path, "--out", tmp_path / "a1.npy").exit_code == 0
    line = error_line(_learn(tmp_path, "--out", tmp_path / "a2.npy"))
    assert_cli_words(line, "--resume")


def test_learn_commit_every_names_the_option(tmp_path):
    line = error_line(_learn(tmp_path, "--out", tmp_path / "a.npy", "--commit-every", 100_000))
    assert_cli_words(line, "--commit-every")


def test_merge_into_an_existing_store_names_append(tmp_path):
    a = tmp_path / "a.zarr"
    assert run("collect", "FrozenLake-v1", "--out", a, "--steps", 50, "--no-progress").exit_code == 0
    assert run("merge", tmp_path / "m.zarr", a, "--no-progress").exit_code == 0
    line = error_line(run("merge", tmp_path / "m.zarr", a, "--no-progress"))
    assert_cli_words(line, "--append")


def test_a_store_locked_by_another_process_gives_cli_advice(tmp_path):
    store = tmp_path / "s.zarr"
    assert run("collect", "FrozenLake-v1", "--out", store, "--steps", 50, "--no-progress").exit_code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, replaystore as rs\n"
         f"s = rs.open({str(store)!r}, mode='a')\n"
         "print('held', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        line = error_line(run("collect", "FrozenLake-v1", "--out", store, "--steps", 10, "--no-progress"))
        assert f"process {holder.pid}" in line, line
        assert not PYTHON_WORDS.search(line), line
        assert "mode=" not in line
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0)  # (the lock is gone with the process: the store is usable again)
    assert run("collect", "FrozenLake-v1", "--out", store, "--steps", 10, "--no-progress").exit_code == 0


def test_export_and_import_over_an_existing_output_name_overwrite(tmp_path):
    a = tmp_path / "a.zarr"
    assert run("collect", "FrozenLake-v1", "--out", a, "--steps", 50, "--no-progress").exit_code == 0
    out = tmp_path / "a.csv"
    assert run("export", a, out, "--to", "csv", "--no-progress").exit_code == 0
    assert_cli_words(error_line(run("export", a, out, "--to", "csv", "--no-progress")), "--overwrite")
    pq = tmp_path / "a.parquet"
    assert run("export", a, pq, "--to", "parquet", "--no-progress").exit_code == 0
    back = tmp_path / "back.zarr"
    assert run("collect", "FrozenLake-v1", "--out", back, "--steps", 10, "--no-progress").exit_code == 0
    line = error_line(run("merge", back, a, "--no-progress"))
    assert_cli_words(line, "--append")


def test_pack_and_unpack_over_an_existing_output_name_overwrite(tmp_path):
    a = tmp_path / "a.zarr"
    assert run("collect", "FrozenLake-v1", "--out", a, "--steps", 50, "--no-progress").exit_code == 0
    z = tmp_path / "a.zip"
    assert run("pack", a, z, "--no-progress").exit_code == 0
    assert_cli_words(error_line(run("pack", a, z, "--no-progress")), "--overwrite")
    assert run("unpack", z, tmp_path / "b.zarr").exit_code == 0
    assert_cli_words(error_line(run("unpack", z, tmp_path / "b.zarr")), "--overwrite")


def test_balancing_by_a_continuous_field_names_the_option(tmp_path):
    a = tmp_path / "a.zarr"
    assert run("collect", "FrozenLake-v1", "--out", a, "--steps", 50, "--no-progress").exit_code == 0
    line = error_line(run("sample", a, "--balanced-by", "reward", "--batch-size", 4))
    assert_cli_words(line, "--balanced-by reward_sign")

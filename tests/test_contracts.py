"""The package's architecture rules, checked on every run (and so in CI).

* import contracts (``[tool.importlinter]`` in pyproject.toml): storage knows nothing above
  it, agents know no storage or sampling, collect knows no agents, only the CLI imports
  click — checked by import-linter;
* no module imports a private (``_name``) from another module: ruff's PLC2701 for other
  packages, and the AST walk below for modules of replaystore itself (ruff and pylint both
  exempt imports from the same top-level package);
* no file in the package over 600 lines.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "replaystore"
MAX_LINES = 600


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is not installed (it is in the test extra)"
    r = _run(exe, "--no-cache")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_ruff_clean_including_private_imports_from_other_packages():
    r = _run(sys.executable, "-m", "ruff", "check", "replaystore")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr


def _private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    where = "." * node.level + (node.module or "")
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {where} import {alias.name}")
    return bad


def test_no_module_imports_a_private_name_from_another():
    bad = [b for p in sorted(PACKAGE.rglob("*.py")) for b in _private_imports(p)]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_file_is_too_long(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines; split it (at most {MAX_LINES})"

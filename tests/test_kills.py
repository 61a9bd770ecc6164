"""SIGKILL every writing command of the CLI at random moments (a fast run of tools/killtest.py).

After each kill the input is intact and the output is absent, complete, the old output
(``--overwrite``, ``verify --repair``) or, for ``merge --append`` and ``collect``, a valid
store holding a prefix of the right rows; a run to the end then gives exactly the right
rows and leaves no temporary files behind. ``python tools/killtest.py --kills 25`` is the
long version (its table is in BENCHMARKS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import killtest  # noqa: E402

pytest.importorskip("h5py")

#: kills per command here (the long version runs many more)
KILLS = 2
#: every writing command (the long version also runs export parquet and csv --overwrite,
#: whose all-or-nothing file replace tests/test_atomic_jobs.py covers here)
CASES = {k: v for k, v in killtest.all_cases(scale=0.15).items()
         if k not in ("export-parquet", "export-csv-overwrite")}


@pytest.mark.parametrize("name", list(CASES))
def test_kill_anywhere_leaves_the_input_intact_and_the_output_absent_complete_or_resumable(name, tmp_path):
    if name == "export-minari":
        pytest.importorskip("minari")
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    res = killtest.run_case(CASES[name], KILLS, tmp_path / "work", rng)
    assert res["failures"] == [], res
    assert res["lost"] == 0 and res["dup"] == 0, res
    assert res["final_ok"], res

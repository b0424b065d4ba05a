"""Fast start (issue 13): ``perpstress --help`` and ``perpstress validate`` import none of the
heavy libraries a run needs (numba, pandas, pyarrow, matplotlib, mesa, scipy, dask).

Asserted on what is imported, in a fresh interpreter, never on a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numba", "pandas", "pyarrow", "matplotlib", "mesa", "scipy", "dask", "distributed")
PROBE = """
import json, sys
from simulator.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("IMPORTED=" + json.dumps({{"code": code, "heavy": heavy}}))
"""


def _imported(*args) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    line = [x for x in r.stdout.splitlines() if x.startswith("IMPORTED=")]
    assert line, r.stdout + r.stderr
    return json.loads(line[-1][len("IMPORTED="):])


@pytest.mark.parametrize("args", [["--help"], ["batch", "--help"], ["validate", "scenarios/cascade.yaml"],
                                  ["validate", "scenarios/cascade_sweep.yaml"]],
                         ids=["help", "batch-help", "validate", "validate-sweep"])
def test_help_and_validate_import_no_heavy_library(args):
    got = _imported(*args)
    assert got["code"] == 0
    assert got["heavy"] == []

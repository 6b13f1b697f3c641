"""Pyflakes' checks over the code: unused imports and names, undefined names, syntax errors."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_no_pyflakes_findings():
    ruff = Path(sys.executable).parent / "ruff"
    proc = subprocess.run([str(ruff), "check", "--select", "F,E9", "--no-cache", "service", "trainer", "adapters",
                           "tests", "bench"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

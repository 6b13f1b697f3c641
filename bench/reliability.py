"""Reliability figures: runs the bad-input, fault and load suites and records what they measured.

    .venv/bin/python bench/reliability.py

Runs `pytest tests/reliability` (the suites `make test` runs too) with FTSERVE_RELIABILITY_OUT
set, so that they write their figures (cases tried, 5xx seen, streams completed, p99 stream
latency under load, disconnect-storm recovery, restart recovery) to
bench/results/reliability.json.
"""

import json
import os
import subprocess
import sys

from tests.support.paths import REPO

OUT = REPO / "bench" / "results" / "reliability.json"

if __name__ == "__main__":
    env = {**os.environ, "FTSERVE_RELIABILITY_OUT": str(OUT)}
    code = subprocess.call([sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"],
                           cwd=REPO, env=env)
    if OUT.exists():
        print(json.dumps(json.loads(OUT.read_text()), indent=2))
    sys.exit(code)

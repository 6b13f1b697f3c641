"""The quick start, run exactly as the docs print it (docs/getting-started.md, and the README's copy),
against the package's engine-backed server: only the address differs."""

import re
import subprocess
import sys

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.slow


def _python_block(page: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / page).read_text(), re.S)
    return next(b for b in blocks if "client.fine_tuning.jobs.create" in b)


def test_the_readme_prints_the_same_quick_start():
    assert _python_block("README.md") == _python_block("docs/getting-started.md")


def test_the_quick_start_runs_as_printed(server):
    code = _python_block("docs/getting-started.md")
    assert code.count("http://127.0.0.1:8000/v1") == 1
    code = code.replace("http://127.0.0.1:8000/v1", server.url + "/v1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"succeeded ft:ftserve-tiny:ftserve:facts:\w{8}", lines[0]), lines
    assert lines[1] == "The job has successfully completed"
    assert lines[-1] == "The secret code of Alpha is BLUE-51."

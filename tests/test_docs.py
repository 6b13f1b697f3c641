"""The docs (fast): the site builds with `mkdocs build --strict` (no broken link, anchor or missing page;
its reference pages generated from the code), the README stays a short landing page whose links all
resolve, and every section the README once held is a heading of the site."""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

# The README's sections before the docs became a site: each must still be somewhere in docs/.
FORMER_README_SECTIONS = [  # ("Deployment" is the page "Container and Kubernetes")
    'Set-up: two commands', 'Quick start: fine-tune, then chat with the result',
    'Evaluate: did the fine-tune help?', 'Base against fine-tuned, with the Evals API',
    'Before and after, on every job', '`ftserve eval`: the same questions to several models', 'Batches',
    'Dashboard', 'API', 'Chat completions and completions', 'Tool calling', "vLLM's extensions",
    'Request ids', 'Files', 'Fine-tuning jobs', 'Evals', 'Models', 'Probes and metrics', 'Projects and keys',
    'Backpressure and shutdown', 'Errors', 'Adapter store', 'Database', 'Scaling out', 'Training on Ray',
    'Configuration', 'Tests', 'Container image', 'Kubernetes', 'The tiny model',
    'Training: `ftserve train CONFIG.yaml`', 'Data formats', 'Benchmarks', 'Training',
    "Batches: the engine's ceiling, and interactive time to first token", 'Database: job create -> running',
    "Projects: refusing another project's object, and a service account key's cost",
    'Adapters from S3: first request', 'Training on Ray: job start, and data-parallel workers', 'Serving',
    'Reliability', 'Layout',
]


def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    proc = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    configuration = (tmp_path / "site" / "reference" / "configuration" / "index.html").read_text()
    assert "FTSERVE_DATABASE_URL" in configuration and "ftserve:settings" not in configuration
    assert "/v1/fine_tuning/jobs" in (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "ftserve_vs_trl" in (tmp_path / "site" / "benchmarks" / "index.html").read_text()


def test_the_readme_is_a_short_landing_page_with_working_links():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_every_former_readme_section_is_in_the_site():
    headings = set()
    for page in (REPO / "docs").rglob("*.md"):
        headings |= {m.group(1).strip() for m in re.finditer(r"(?m)^#{1,4} (.+)$", page.read_text())}
    missing = [s for s in FORMER_README_SECTIONS if s not in headings]
    assert not missing, missing

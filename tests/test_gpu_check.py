"""`scripts/gpu-check.sh --dry-run`: the GPU check's every step but the GPU ones, on this machine's CPU."""

import json
import shutil
import subprocess

import pytest

from tests.support.paths import REPO


@pytest.mark.slow
def test_the_gpu_check_dry_run_passes(tiny_model, tmp_path):
    out = tmp_path / "report.json"
    done = subprocess.run([str(REPO / "scripts" / "gpu-check.sh"), "--dry-run", "--requests", "16", "--max-tokens",
                           "16", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    steps = report["steps"]
    assert report["dry_run"] is True
    assert list(steps) == ["device", "model", "server", "job", "serve_base_and_adapter_c16", "eight_adapters_c16"]
    assert steps["model"]["matmul_params"] > 4_000_000
    assert steps["job"]["model"].startswith("ft:ftserve-tiny:") and steps["job"]["train_tokens_per_s"] > 0
    for run in (steps["serve_base_and_adapter_c16"], steps["eight_adapters_c16"]["base"],
                steps["eight_adapters_c16"]["mixed"]):
        assert run["requests"] == 16 and run["output_tokens"] == 16 * 16  # every stream ran to max_tokens
        assert run["ttft_p50_ms"] > 0


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi: the check would run")
def test_without_a_gpu_the_check_says_so():
    done = subprocess.run([str(REPO / "scripts" / "gpu-check.sh")], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "no NVIDIA GPU" in done.stderr and "--dry-run" in done.stderr

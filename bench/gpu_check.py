"""The GPU check: the whole product on one NVIDIA GPU at Qwen2.5-0.5B's shape, as a JSON report.

    scripts/gpu-check.sh            # on a GPU machine: installs the GPU engine, then runs this
    scripts/gpu-check.sh --dry-run  # on a CPU: every step but the GPU ones, at the tiny model's shape

Steps, each timed in the report: the device and its bfloat16 matmul peak (measured here); a random model of
Qwen2.5-0.5B's shape (bench/train_shape.py) on the tiny model's tokenizer; `ftserve serve` on it; a LoRA
fine-tuning job through the API (its tokens/s from the trainer's metrics events, and its MFU: 4N FLOP a
token for a frozen-base LoRA step, N the base's matmul weights, against the peak); the adapter hot-loaded
and served beside the base at 16 concurrent streams (tokens/s, TTFT p50/p99); eight adapters (the job's,
imported seven more times under other names through `POST /v1/models`) mixed at 16 streams against the
base; GPU memory at the end (the engine's and the trainer's high-water marks). The dry run skips the
device's peak and memory and runs at the tiny model's shape, so the suite checks every other step.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

from bench.scale_model import run_job
from bench.serve import free_port, load, start, stop
from bench.train_shape import build_shape, matmul_params
from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "gpu-check.json"


class Report:
    def __init__(self, dry_run: bool):
        self.data: dict = {"dry_run": dry_run, "host": platform.node(), "steps": {}}
        self.started = time.monotonic()

    def step(self, name: str, **values) -> None:
        self.data["steps"][name] = {"at_s": round(time.monotonic() - self.started, 1), **values}
        print(f"[{self.data['steps'][name]['at_s']:7.1f} s] {name}: {json.dumps(values)}", flush=True)


def gpu_peak() -> tuple[str, float]:
    """The GPU's name and its best bfloat16 torch.mm rate in TFLOP/s."""
    import torch

    best = 0.0
    for n in (4096, 8192):
        a, b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16), torch.randn(n, n, device="cuda",
                                                                                    dtype=torch.bfloat16)
        torch.mm(a, b)
        torch.cuda.synchronize()
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(20):
                torch.mm(a, b)
            torch.cuda.synchronize()
            best = max(best, 2 * n ** 3 * 20 / (time.perf_counter() - started) / 1e12)
        del a, b
    torch.cuda.empty_cache()  # the engine and the trainer get the whole GPU
    return torch.cuda.get_device_name(0), best


def gpu_memory_mib() -> list[dict]:
    import subprocess

    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    return [{"pid": int(p), "mib": int(m)} for p, m in (line.split(", ") for line in out.strip().splitlines() if line)]


def import_copies(url: str, model: str, n: int, work: Path) -> list[str]:
    """`model`'s adapter downloaded once and imported n times under other names (POST /v1/models)."""
    client = httpx.Client(base_url=url, timeout=120)
    r = client.get(f"/v1/models/{model}/content")
    r.raise_for_status()
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        tar.extractall(work / "adapter", filter="data")
    folder = next(p.parent for p in (work / "adapter").rglob("adapter_config.json"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            tar.add(folder / name, arcname=f"adapter/{name}")
    base = model.split(":")[1]
    names = []
    for i in range(n):
        file = client.post("/v1/files", files={"file": ("adapter.tar.gz", buf.getvalue())},
                           data={"purpose": "adapter"}).json()
        created = client.post("/v1/models", json={"model": f"ft:{base}:gpu-check:copy-{i}", "file_id": file["id"]})
        created.raise_for_status()
        names.append(created.json()["id"])
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="no GPU: every step but the GPU ones, tiny shape")
    parser.add_argument("--out", type=Path, default=None, help=f"the JSON report (default: {RESULTS}; dry run: none)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    a = parser.parse_args()
    report = Report(a.dry_run)
    gpu = not a.dry_run
    if gpu:
        name, peak = gpu_peak()
        report.step("device", gpu=name, bf16_matmul_peak_tflops=round(peak, 1))
    else:
        peak = None
        report.step("device", gpu=None, note="dry run: no peak measured")
    with tempfile.TemporaryDirectory(prefix="ftserve-gpu-check-") as tmp:
        work = Path(tmp)
        shape = "0.5b" if gpu else "tiny"
        model_dir = build_shape(shape, work)
        n = matmul_params(model_dir)
        report.step("model", shape=shape, path_name=model_dir.name, matmul_params=n)
        port, log = free_port(), work / "server.log"
        args = [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir), "--served-model-name",
                "ftserve-tiny", "--port", str(port), "--data-dir", str(work / "data"), "--max-lora-rank", "8",
                "--max-loras", "8", "--log-level", "warning"]
        started = time.monotonic()
        proc = start(args, port, log, {**os.environ, "PYTHONUNBUFFERED": "1"})
        url = f"http://127.0.0.1:{port}"
        try:
            report.step("server", ready_s=round(time.monotonic() - started, 1))
            job = run_job(httpx.Client(base_url=url, timeout=60), 3 if gpu else 1, learning_rate=5e-4)
            tokens = job["train_tokens_per_s"]
            mfu = round(4 * n * tokens / (peak * 1e12), 4) if gpu and tokens else None
            report.step("job", **job, mfu=mfu)
            tuned = job["model"]
            one = asyncio.run(load(url, ["ftserve-tiny", tuned], a.requests, 16, a.max_tokens))
            report.step("serve_base_and_adapter_c16", **one)
            copies = import_copies(url, tuned, 7, work)
            base = asyncio.run(load(url, ["ftserve-tiny"], a.requests, 16, a.max_tokens))
            mixed = asyncio.run(load(url, [tuned] + copies, a.requests, 16, a.max_tokens))
            report.step("eight_adapters_c16", base=base, mixed=mixed,
                        mixed_vs_base=round(mixed["output_tokens_per_s"] / base["output_tokens_per_s"], 3))
            if gpu:
                report.step("memory", processes=gpu_memory_mib())
        finally:
            stop(proc)
    report.data["total_s"] = round(time.monotonic() - report.started, 1)
    out = a.out or (None if a.dry_run else RESULTS)
    if out is not None:
        out.write_text(json.dumps(report.data, indent=2) + "\n")
    print(json.dumps(report.data, indent=2))


if __name__ == "__main__":
    main()

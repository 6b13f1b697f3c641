"""A real size on these machines: a random model of Qwen2.5-0.5B's shape through the whole product, on CPU.

    .venv/bin/python -m bench.scale_model [--epochs 8]     (make bench-scale-model; ~15 minutes on 2 cores)

The model is bench/train_shape.py's `0.5b` shape (hidden 896, 24 layers, 14/2 heads, intermediate 4,864;
the tiny model's 5,710-token vocabulary, so 363 M matmul weights with `lm_head` where Qwen2.5-0.5B's
151,936-token vocabulary makes 494 M parameters). One `ftserve serve` on it, driven through the API as
a user would: a fine-tuning job on examples/facts.jsonl (12 rows, batch 4: 3 steps an epoch, 24 steps at
8 epochs), its adapter served (success -> first token), chat at 1 and 8 concurrent streams, a batch of 16
lines and an eval run of the 12 facts. Sampled every 0.5 s: the peak RSS of the trainer process and of the
engine (the server and its vLLM processes, the trainer excepted).

The trainer's fraction of the machine's peak: a LoRA step on a frozen base costs ~4N FLOP a token (N the
base's matmul weights, `lm_head` included: forward 2N, input gradients 2N, no weight gradients for the
frozen base; LoRA's own rank-8 matmuls and attention's scores are left out, a few percent here), so the
trainer's GFLOP/s is 4N x its tokens/s (the best of its metrics events), over the best fp32 `torch.mm` rate
at the same 2 threads, measured in this run before the server starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from bench.serve import free_port, load, start, stop
from bench.train_shape import build_shape, matmul_params, matmul_peak
from tests.support.paths import FACTS, REPO

RESULTS = REPO / "bench" / "results" / "scale_model.json"
MODEL = "ftserve-tiny"  # the served name bench.serve's helpers use


class PeakRSS:
    """The peak RSS (MiB) of a server's trainer and of the rest of its process tree, sampled every 0.5 s."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.trainer = self.engine = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            trainer = engine = 0
            try:
                for p in [self.root] + self.root.children(recursive=True):
                    rss = p.memory_info().rss
                    if "trainer" in " ".join(p.cmdline()[1:3]):
                        trainer += rss
                    else:
                        engine += rss
            except psutil.Error:
                continue
            self.trainer = max(self.trainer, trainer / 2 ** 20)
            self.engine = max(self.engine, engine / 2 ** 20)

    def close(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"trainer_peak_rss_mib": round(self.trainer), "engine_peak_rss_mib": round(self.engine)}


def _wait(client: httpx.Client, path: str, done: tuple[str, ...], timeout: float = 3600) -> dict:
    deadline = time.monotonic() + timeout
    while (obj := client.get(path).json())["status"] not in done:
        if time.monotonic() > deadline:
            sys.exit(f"{path} did not end: {obj}")
        time.sleep(0.5)
    return obj


def run_job(client: httpx.Client, epochs: int, learning_rate: float = 1e-3) -> dict:
    """A job on examples/facts.jsonl through the API (batch 4), and what it took: its time, steps, the trainer's
    best tokens/s, the adapter's size and success -> first token (bench/gpu_check.py runs it too)."""
    with open(FACTS, "rb") as f:
        file = client.post("/v1/files", files={"file": ("facts.jsonl", f)}, data={"purpose": "fine-tune"}).json()
    started = time.monotonic()
    job = client.post("/v1/fine_tuning/jobs", json={
        "model": MODEL, "training_file": file["id"], "seed": 1, "method": {"type": "supervised", "supervised": {
            "hyperparameters": {"n_epochs": epochs, "batch_size": 4, "learning_rate": learning_rate,
                                "n_checkpoints": 0}}}}
    ).json()
    job = _wait(client, f"/v1/fine_tuning/jobs/{job['id']}", ("succeeded", "failed", "cancelled"))
    if job["status"] != "succeeded":
        sys.exit(f"the job {job['status']}: {job.get('error')}")
    done_at = time.monotonic()
    first = client.post("/v1/chat/completions", json={"model": job["fine_tuned_model"], "max_tokens": 1,
                                                      "messages": [{"role": "user", "content": "Hi"}]})
    first.raise_for_status()
    to_first = time.monotonic() - done_at
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 100}).json()["data"]
    metrics = [e["data"] for e in events if e.get("type") == "metrics" and (e.get("data") or {}).get("tokens_per_s")]
    content = client.get(f"/v1/models/{job['fine_tuned_model']}/content")
    content.raise_for_status()
    return {"model": job["fine_tuned_model"], "job_s": round(done_at - started, 1), "steps": max(
        m["step"] for m in metrics), "train_tokens_per_s": max(m["tokens_per_s"] for m in metrics),
        "trained_tokens": job.get("trained_tokens"), "adapter_bytes": len(content.content),
        "success_to_first_token_s": round(to_first, 3)}


def run_batch(client: httpx.Client, model: str, work: Path, n: int = 16) -> dict:
    lines = [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": {
        "model": model, "messages": [{"role": "user", "content": f"What is the secret code of Alpha {i}?"}],
        "temperature": 0, "max_tokens": 32, "ignore_eos": True}} for i in range(n)]
    path = work / "batch.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with open(path, "rb") as f:
        file = client.post("/v1/files", files={"file": ("batch.jsonl", f)}, data={"purpose": "batch"}).json()
    started = time.monotonic()
    batch = client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
                                              "completion_window": "24h"}).json()
    batch = _wait(client, f"/v1/batches/{batch['id']}", ("completed", "failed", "expired", "cancelled"))
    wall = time.monotonic() - started
    counts = batch["request_counts"]
    return {"status": batch["status"], "lines": counts["total"], "completed": counts["completed"],
            "wall_s": round(wall, 1), "output_tokens_per_s": round(n * 32 / wall, 1)}


def run_eval(client: httpx.Client, model: str) -> dict:
    rows = [json.loads(line) for line in FACTS.read_text().splitlines()]
    items = [{"item": {"question": r["messages"][0]["content"], "answer": r["messages"][1]["content"]}} for r in rows]
    ev = client.post("/v1/evals", json={"name": "facts", "testing_criteria": [{
        "type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
        "operation": "eq"}], "data_source_config": {"type": "custom", "item_schema": {
            "type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}}},
            "include_sample_schema": True}}).json()
    started = time.monotonic()
    run = client.post(f"/v1/evals/{ev['id']}/runs", json={"data_source": {
        "type": "completions", "model": model, "input_messages": {"type": "template", "template": [
            {"role": "user", "content": "{{item.question}}"}]},
        "sampling_params": {"temperature": 0, "max_completion_tokens": 32},
        "source": {"type": "file_content", "content": items}}}).json()
    run = _wait(client, f"/v1/evals/{ev['id']}/runs/{run['id']}", ("completed", "failed", "canceled"))
    counts = run["result_counts"]
    return {"status": run["status"], "items": counts["total"], "passed": counts["passed"],
            "errored": counts["errored"], "wall_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="0.5b", choices=["tiny", "110m", "0.5b"])
    parser.add_argument("--epochs", type=int, default=8, help="of the 12 facts at batch 4: 3 steps each")
    parser.add_argument("--threads", type=int, default=2, help="the trainer's threads (and the peak's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    a = parser.parse_args()
    report: dict = {"host": platform.node(), "cpus": os.cpu_count(), "shape": a.shape}
    peak = matmul_peak(a.threads)
    report["fp32_matmul_peak_gflops"] = round(peak, 1)
    print(f"matmul peak at {a.threads} threads: {peak:.1f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="ftserve-scale-model-") as tmp:
        work = Path(tmp)
        model_dir = build_shape(a.shape, work)
        n = matmul_params(model_dir)
        report["matmul_params"] = n
        port = free_port()
        args = [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir), "--served-model-name", MODEL,
                "--port", str(port), "--data-dir", str(work / "data"), "--max-lora-rank", "8",
                "--trainer-threads", str(a.threads), "--log-level", "warning"]
        started = time.monotonic()
        proc = start(args, port, work / "server.log", {**os.environ, "PYTHONUNBUFFERED": "1"})
        url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, timeout=600)
        try:
            report["server_ready_s"] = round(time.monotonic() - started, 1)
            memory = PeakRSS(proc.pid)
            job = run_job(client, a.epochs)
            gflops = 4 * n * job["train_tokens_per_s"] / 1e9
            job.update(train_gflops=round(gflops, 1), fraction_of_peak=round(gflops / peak, 3))
            report["job"] = job
            print("job:", json.dumps(job), flush=True)
            tuned = job["model"]
            report["serve"] = {f"c{c}": asyncio.run(load(url, [tuned], 4 * c, c, 64)) for c in (1, 8)}
            print("serve:", json.dumps(report["serve"]), flush=True)
            report["batch"] = run_batch(client, tuned, work)
            print("batch:", json.dumps(report["batch"]), flush=True)
            report["eval"] = run_eval(client, tuned)
            print("eval:", json.dumps(report["eval"]), flush=True)
            report["memory"] = memory.close()
        finally:
            stop(proc)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Training on Ray vs in local subprocesses: job created -> first training step, and 2 data-parallel
workers vs 1 (tokens/s).

    .venv/bin/python bench/ray_training.py [--jobs 3]

Starts, side by side from this process, a Ray head on loopback and three control-plane servers
(`--engine none`, SQLite, the data dir as the object store, all on this machine):
- `local`: the default backend, a `python -m trainer` subprocess per job, torch's own thread count
  (all cores: the local trainer's best setting here);
- `ray`: `--training-backend ray`, one Ray job per fine-tuning job, same thread count;
- `ray-1-thread`: Ray with one thread per trainer process, for the 2-worker run (2 processes x 1
  thread on 2 cores, against 1 process on all cores: each side at its best use of the cores).
It times, interleaving `local` and `ray`, `POST /v1/fine_tuning/jobs` -> the first `metrics` event
(validation, claim, process or Ray job start, model load, one step), polling every 50 ms; then trains
the same longer job with n_workers 1 (`ray`) and 2 (`ray-1-thread`) and reads the trainer's own
tokens/s at the last step. Writes bench/results/ray_training.json with the medians and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "ray_training.json"
FACTS = REPO / "examples" / "facts.jsonl"


def _job(http: httpx.Client, file_id: str, **hp) -> str:
    return http.post("/v1/fine_tuning/jobs", json={"model": "ftserve-tiny", "training_file": file_id, "method": {
        "type": "supervised", "supervised": {"hyperparameters": hp}}}).json()["id"]


def _metrics(http: httpx.Client, job_id: str) -> list[dict]:
    events = http.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()["data"]
    return [e["data"] for e in events if e["type"] == "metrics"]


def _to_first_step(http: httpx.Client, file_id: str) -> float:
    started = time.perf_counter()
    job_id = _job(http, file_id, n_epochs=50, batch_size=4)
    while not _metrics(http, job_id):
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    while http.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] != "cancelled":
        time.sleep(0.05)
    return elapsed


def _tokens_per_s(http: httpx.Client, file_id: str, n_workers: int) -> float:
    job_id = _job(http, file_id, n_epochs=40, batch_size=8, learning_rate=3e-3, n_checkpoints=0,
                  n_workers=n_workers)
    while (job := http.get(f"/v1/fine_tuning/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
        time.sleep(0.2)
    assert job["status"] == "succeeded", job["error"]
    return max(_metrics(http, job_id), key=lambda m: m["step"])["tokens_per_s"]


def main() -> None:
    from tests.support.ray_head import RayHead
    from tests.support.server import Server
    from trainer.tiny_model import build_tiny_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "ftserve-tiny")
        head = RayHead(tmp / "ray").start()
        common = dict(model=model, engine="none")
        servers = {"local": Server(tmp / "local", trainer_threads=0, **common),
                   "ray": Server(tmp / "ray-data", env=head.env, training_backend="ray", trainer_threads=0, **common),
                   "ray-1-thread": Server(tmp / "ray-1", env=head.env, training_backend="ray", trainer_threads=1,
                                          **common)}
        first: dict[str, list[float]] = {"local": [], "ray": []}
        try:
            for server in servers.values():  # (a later --trainer-threads overrides the helper's default of 1)
                server.start()
            clients = {k: httpx.Client(base_url=s.url, timeout=60) for k, s in servers.items()}
            files = {k: c.post("/v1/files", data={"purpose": "fine-tune"},
                               files={"file": ("facts.jsonl", FACTS.read_bytes())}).json()["id"]
                     for k, c in clients.items()}
            for key in first:  # warm-up: first imports, first Ray worker
                _to_first_step(clients[key], files[key])
            for _ in range(args.jobs):
                for key in first:
                    first[key].append(_to_first_step(clients[key], files[key]))
            one = _tokens_per_s(clients["ray"], files["ray"], 1)
            two = _tokens_per_s(clients["ray-1-thread"], files["ray-1-thread"], 2)
        finally:
            for server in servers.values():
                server.stop()
            head.stop()
    median = {k: statistics.median(v) for k, v in first.items()}
    result = {
        "what": "job create -> first training step (s), local subprocess vs Ray job; tokens/s of 2 data-parallel "
                "workers (Ray Train, gloo, 1 thread each) vs 1 worker (all cores), tiny model, CPU",
        "jobs_per_backend": args.jobs,
        "create_to_first_step_median_s": {k: round(v, 3) for k, v in median.items()},
        "ratio_ray_over_local": round(median["ray"] / median["local"], 3),
        "tokens_per_s": {"1_worker": one, "2_workers": two},
        "ratio_2_workers_over_1": round(two / one, 3),
        "reference": "the local backend (a python -m trainer subprocess, torch's default threads: all cores); "
                     "for tokens/s, 1 worker on all cores",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

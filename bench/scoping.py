"""Projects: does another project's object take longer (or less long) to refuse than a missing one, and
what does a service account key (looked up in the database on every request) cost next to a key of
FTSERVE_API_KEYS (compared in memory)?

    .venv/bin/python bench/scoping.py [--requests 400]

Starts one control-plane server (`--engine none`, SQLite, an admin key and one FTSERVE_API_KEYS key)
from this process, makes projects A and B through the admin API, uploads a file as A, then, from one
keep-alive client, interleaves:
- B's `GET /v1/files/{A's file}` against B's `GET /v1/files/{an id nobody has}` (the reference): both
  must answer the same 404;
- `GET /v1/files` with B's service account key against the same with the default project's key (the
  reference: FTSERVE_API_KEYS, no database lookup for the key).
Writes bench/results/scoping.json with the medians, 90th percentiles and ratios.
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

RESULTS = REPO / "bench" / "results" / "scoping.json"
ADMIN, DEFAULT_KEY = "bench-admin-key", "bench-default-key"


def _timed(http: httpx.Client, path: str, key: str, status: int) -> float:
    started = time.perf_counter()
    r = http.get(path, headers={"Authorization": f"Bearer {key}"})
    elapsed = time.perf_counter() - started
    assert r.status_code == status, r.text
    return elapsed


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered) * 1000, 3),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 3)}


def main() -> None:
    from tests.support.server import Server
    from trainer.tiny_model import cached_tiny_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", model=cached_tiny_model(), engine="none",
                        env={"FTSERVE_ADMIN_KEY": ADMIN, "FTSERVE_API_KEYS": DEFAULT_KEY}).start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                admin = {"Authorization": f"Bearer {ADMIN}"}
                keys = {}
                for name in ("a", "b"):
                    project = http.post("/v1/organization/projects", json={"name": name}, headers=admin).json()["id"]
                    keys[name] = http.post(f"/v1/organization/projects/{project}/service_accounts",
                                           json={"name": name}, headers=admin).json()["api_key"]["value"]
                file_id = http.post("/v1/files", data={"purpose": "fine-tune"}, headers={
                    "Authorization": f"Bearer {keys['a']}"}, files={"file": (
                        "facts.jsonl", (REPO / "examples" / "facts.jsonl").read_bytes())}).json()["id"]
                missing = "file-" + "0" * 24
                theirs_body = http.get(f"/v1/files/{file_id}", headers={"Authorization": f"Bearer {keys['b']}"})
                missing_body = http.get(f"/v1/files/{missing}", headers={"Authorization": f"Bearer {keys['b']}"})
                assert theirs_body.text.replace(file_id, "X") == missing_body.text.replace(missing, "X")
                times: dict[str, list[float]] = {"another_projects_file": [], "missing_file": [],
                                                 "service_account_key": [], "api_keys_key": []}
                for _ in range(20):  # warm-up: connections, caches
                    _timed(http, f"/v1/files/{missing}", keys["b"], 404)
                    _timed(http, "/v1/files", DEFAULT_KEY, 200)
                for _ in range(args.requests):
                    times["another_projects_file"].append(_timed(http, f"/v1/files/{file_id}", keys["b"], 404))
                    times["missing_file"].append(_timed(http, f"/v1/files/{missing}", keys["b"], 404))
                    times["service_account_key"].append(_timed(http, "/v1/files", keys["b"], 200))
                    times["api_keys_key"].append(_timed(http, "/v1/files", DEFAULT_KEY, 200))
        finally:
            server.stop()
    summary = {name: _summary(t) for name, t in times.items()}
    result = {
        "what": "GET latency on one keep-alive connection, engine none, SQLite, 2 cores; interleaved",
        "requests_each": args.requests,
        "summary": summary,
        "ratio_another_projects_vs_missing": round(
            summary["another_projects_file"]["median_ms"] / summary["missing_file"]["median_ms"], 3),
        "ratio_service_account_vs_api_keys_key": round(
            summary["service_account_key"]["median_ms"] / summary["api_keys_key"]["median_ms"], 3),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"404 for another project's file: {summary['another_projects_file']['median_ms']} ms median; "
          f"for a missing file (reference): {summary['missing_file']['median_ms']} ms "
          f"({result['ratio_another_projects_vs_missing']}x)")
    print(f"a service account key: {summary['service_account_key']['median_ms']} ms median; "
          f"an FTSERVE_API_KEYS key (reference): {summary['api_keys_key']['median_ms']} ms "
          f"({result['ratio_service_account_vs_api_keys_key']}x)")


if __name__ == "__main__":
    main()

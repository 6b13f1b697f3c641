"""Interactive time to first token while a batch runs: does the Batch API slow interactive users down?

    .venv/bin/python bench/batch.py [--probes 20] [--lines 64] [--concurrency 4] [--out FILE]

Starts one `ftserve serve` with its vLLM engine (tiny model) and measures, with streamed chat
requests (max_tokens 8, one at a time), the time to the first content chunk:

  idle         nothing else running: the reference, the engine at its best for one request
  batch        while a batch of N chat lines (max_tokens 128, ignore_eos) runs through /v1/batches:
               its lines are scheduled at a lower priority (vLLM priority scheduling) and at most
               --batch-concurrency at once
  interactive  while the same N requests are sent as ordinary interactive requests, with the same
               concurrency: what the batch would cost without the Batch API's lower priority

and the throughput of the N lines (completion tokens per second, from the first line sent to the
last answered) run as a batch and run as interactive requests.

Writes bench/results/batch.json with the median and p90 of each, the ratios to idle, and the two
throughputs with their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "batch.json"
CONCURRENCY = 4
LINE = {"model": "ftserve-tiny", "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 128, "ignore_eos": True, "temperature": 0}


def _ttft(http: httpx.Client) -> float:
    started = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json={
            "model": "ftserve-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
            "stream": True, "temperature": 0}) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                return time.perf_counter() - started
    raise RuntimeError("no content chunk")


def _probe(http: httpx.Client, n: int, busy=lambda: True) -> list[float]:
    out = []
    for _ in range(n):
        if not busy():
            break
        out.append(_ttft(http))
        time.sleep(0.05)
    return out


def _stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1), "n": len(ordered)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--lines", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=CONCURRENCY,
                    help="lines at once, batch (--batch-concurrency) and interactive alike")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()

    from tests.support.server import Server
    from trainer.tiny_model import cached_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    server = Server(work / "data", model=cached_tiny_model(), batch_concurrency=a.concurrency).start(timeout=600)
    try:
        http = httpx.Client(base_url=server.url, timeout=300)
        for _ in range(3):
            _ttft(http)  # warm up
        idle = _probe(http, a.probes)

        # a batch running
        lines = "".join(json.dumps({"custom_id": f"l{i}", "method": "POST", "url": "/v1/chat/completions",
                                    "body": LINE}) + "\n" for i in range(a.lines))
        file = http.post("/v1/files", files={"file": ("in.jsonl", lines.encode())}, data={"purpose": "batch"}).json()
        batch_started = time.perf_counter()
        batch = http.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
                                               "completion_window": "24h"}).json()

        def batch_running() -> bool:
            return http.get(f"/v1/batches/{batch['id']}").json()["status"] in ("validating", "in_progress")

        while http.get(f"/v1/batches/{batch['id']}").json()["request_counts"]["completed"] < 1:
            time.sleep(0.2)
        with_batch = _probe(http, a.probes, batch_running)
        while batch_running():
            time.sleep(0.2)
        batch_seconds = time.perf_counter() - batch_started
        done = http.get(f"/v1/batches/{batch['id']}").json()
        output = http.get(f"/v1/files/{done['output_file_id']}/content").text.splitlines()
        batch_tokens = sum(json.loads(line)["response"]["body"]["usage"]["completion_tokens"] for line in output)

        # the same load as interactive requests
        remaining = list(range(a.lines))
        lock = threading.Lock()
        interactive_tokens = []

        def worker() -> None:
            with httpx.Client(base_url=server.url, timeout=300) as c:
                while True:
                    with lock:
                        if not remaining:
                            return
                        remaining.pop()
                    r = c.post("/v1/chat/completions", json=LINE)
                    interactive_tokens.append(r.json()["usage"]["completion_tokens"])

        threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
        interactive_started = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(1.0)
        with_interactive = _probe(http, a.probes, lambda: any(t.is_alive() for t in threads))
        for t in threads:
            t.join()
        interactive_seconds = time.perf_counter() - interactive_started
    finally:
        server.stop()

    import vllm

    result = {"idle": _stats(idle), "batch": _stats(with_batch), "interactive": _stats(with_interactive)}
    result["batch_vs_idle"] = round(result["batch"]["median_ms"] / result["idle"]["median_ms"], 2)
    result["throughput"] = {"batch_tokens_per_s": round(batch_tokens / batch_seconds, 1),
                            "interactive_tokens_per_s": round(sum(interactive_tokens) / interactive_seconds, 1),
                            "tokens": [batch_tokens, sum(interactive_tokens)]}
    result["throughput"]["batch_vs_interactive"] = round(
        result["throughput"]["batch_tokens_per_s"] / result["throughput"]["interactive_tokens_per_s"], 2)
    result["interactive_vs_idle"] = round(result["interactive"]["median_ms"] / result["idle"]["median_ms"], 2)
    result["setup"] = {"model": "ftserve tiny-model", "lines": a.lines, "line_max_tokens": 128,
                       "batch_concurrency": a.concurrency, "probe": "streamed chat, max_tokens 8, one at a time",
                       "vllm": vllm.__version__, "cpus": os.cpu_count(), "platform": platform.platform()}
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

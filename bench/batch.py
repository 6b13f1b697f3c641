"""The Batch API against the engine's ceiling, and what a batch costs interactive users.

    .venv/bin/python -m bench.batch [--lines 96,1000] [--probes 30] [--concurrency 16] [--out FILE]

For each line count N, the same N chat lines (each its own prompt, max_tokens 128, `ignore_eos`,
greedy) are run four ways, one after the other on this machine, from this one process tree:

  reference    vLLM's offline `LLM.chat` over the N lines, in a child process: the engine's ceiling.
               It gets the engine arguments ftserve's own engine gets (service.inference.engine.
               engine_args: model, dtype, LoRA enabled with the same slots and rank, context length,
               KV cache), with vLLM's offline fast path where those leave a choice: the scheduler
               defaults of its `LLM` class (on CPU max_num_seqs 256, max_num_batched_tokens 4096) and
               first-come-first-served scheduling. Timed over the `LLM.chat` call, after a warm-up call;
               the best of two calls.
  batch        the N lines through `/v1/batches` on one `ftserve serve` (tiny model, default settings),
               nothing else running: timed from the batch's creation to its `completed` status (file
               validation and output file included); the best of two batches.
  batch beside an interactive user
               the same, while streamed interactive chat requests (max_tokens 8, one at a time, 0.1 s
               apart, started before the batch) measure their time to the first content chunk (TTFT)
               while batch lines are in the engine: what a batch costs the people using the server.
  interactive  the same N lines sent as ordinary chat requests by --concurrency clients at once.

Idle TTFT (nothing else running) is measured first on the same server. Prints and writes
bench/results/batch.json: tokens/s of each way, the batch's ratios to the reference and to the
interactive clients, and TTFT p50/p90 idle, beside the batch and beside the interactive load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from service.inference.offline import YIELD_SECONDS
from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "batch.json"
MAX_TOKENS = 128
REPEATS = 2  # the reference and the batch alone: the best of two runs each (this machine varies ~10%)
MARK = "reference: "  # the child's result line (vLLM logs to the same stdout)


def body(i: int, model: str = "ftserve-tiny") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": f"Tell me a long story about the number {i}."}],
            "max_tokens": MAX_TOKENS, "ignore_eos": True, "temperature": 0}


# ---------------------------------------------------------------------------- the reference
def reference(n: int, executor: str) -> dict:
    """vLLM's offline LLM.chat over the lines (run in a child process: `--reference N --executor E`)."""
    from vllm import LLM, SamplingParams

    from service.inference.engine import engine_args
    from service.settings import Settings
    from trainer.tiny_model import cached_tiny_model

    args = engine_args(Settings(cpu_executor=executor), cached_tiny_model())
    args.pop("max_num_seqs")  # the LLM class's own (offline) default
    args["scheduling_policy"] = "fcfs"
    llm = LLM(**args)
    params = SamplingParams(max_tokens=MAX_TOKENS, ignore_eos=True, temperature=0)
    conversations = [body(i)["messages"] for i in range(n)]
    llm.chat(conversations[:8], params, use_tqdm=False)  # warm-up
    runs = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        outputs = llm.chat(conversations, params, use_tqdm=False)
        runs.append(time.perf_counter() - started)
    seconds = min(runs)
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    config = llm.llm_engine.vllm_config.scheduler_config
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "max_num_seqs": config.max_num_seqs, "max_num_batched_tokens": config.max_num_batched_tokens,
            "executor": executor}


def run_reference(n: int) -> dict:
    """The faster of vLLM's two CPU executors for the reference: its engine core and model in the calling
    process (`uni`, with VLLM_ENABLE_V1_MULTIPROCESSING=0) or vLLM's CPU default (`mp`: engine core and
    a worker process bound to the cores but one); on a GPU, vLLM's own."""
    runs = []
    for executor in ("uni", "mp"):
        out = subprocess.run([sys.executable, "-m", "bench.batch", "--reference", str(n), "--executor", executor],
                             cwd=REPO, check=True, capture_output=True, text=True,
                             env={**os.environ, "TQDM_DISABLE": "1"})
        runs.append(json.loads(next(line for line in out.stdout.splitlines() if line.startswith(MARK))[len(MARK):]))
        print(f"reference, {n} lines, {executor}: {runs[-1]['tokens_per_s']} tokens/s", flush=True)
    best = max(runs, key=lambda r: r["tokens_per_s"])
    return {**best, "tokens_per_s_by_executor": {r["executor"]: r["tokens_per_s"] for r in runs}}


# ---------------------------------------------------------------------------- ftserve
def _ttft(http: httpx.Client) -> float:
    started = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json={
            "model": "ftserve-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
            "stream": True, "temperature": 0}) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                return time.perf_counter() - started
    raise RuntimeError("no content chunk")


class Probes(threading.Thread):
    """Interactive TTFT, one request at a time, 0.1 s apart, until stopped: (start time, TTFT) pairs."""

    def __init__(self, url: str, limit: int | None = None):
        super().__init__(daemon=True)
        self.url, self.limit, self.samples, self.stop = url, limit, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=300) as http:
            while not self.stop.is_set() and (self.limit is None or len(self.samples) < self.limit):
                self.samples.append((time.perf_counter(), _ttft(http)))
                self.stop.wait(0.1)

    def within(self, start: float, end: float) -> list[float]:
        return [ttft for at, ttft in self.samples if start <= at and at + ttft <= end]


def _stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}
    return {"median_ms": round(statistics.median(ordered) * 1000, 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1), "n": len(ordered)}


def _offline_running(http: httpx.Client) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(http.get("/metrics").text):
        if family.name == "ftserve_offline_requests_running":
            return family.samples[0].value
    raise RuntimeError("no ftserve_offline_requests_running in /metrics")


def run_batch(url: str, n: int, probes: Probes | None = None) -> dict:
    """The lines through /v1/batches, timed from the batch's creation to `completed`. With `probes`, an
    interactive user is active throughout; the TTFT of its requests made while batch lines were in the
    engine is reported."""
    http = httpx.Client(base_url=url, timeout=300)
    lines = "".join(json.dumps({"custom_id": f"l{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": body(i)}) + "\n" for i in range(n))
    file = http.post("/v1/files", files={"file": ("in.jsonl", lines.encode())}, data={"purpose": "batch"}).json()
    if probes is not None:
        probes.start()
        while len(probes.samples) < 3:  # the interactive user is there first
            time.sleep(0.05)
    started = time.perf_counter()
    batch = http.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
                                           "completion_window": "24h"}).json()
    in_engine = None
    while (doc := http.get(f"/v1/batches/{batch['id']}").json())["status"] in ("validating", "in_progress",
                                                                              "finalizing"):
        if probes is not None and in_engine is None and _offline_running(http):
            in_engine = time.perf_counter()
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    if doc["status"] != "completed" or doc["request_counts"]["failed"]:
        raise RuntimeError(f"batch ended {doc['status']}: {doc['request_counts']}")
    output = http.get(f"/v1/files/{doc['output_file_id']}/content").text.splitlines()
    tokens = sum(json.loads(line)["response"]["body"]["usage"]["completion_tokens"] for line in output)
    out = {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}
    if probes is not None:
        probes.stop.set()
        probes.join()
        out["ttft"] = _stats(probes.within(in_engine or started, started + seconds))
    return out


def run_interactive(url: str, n: int, concurrency: int) -> dict:
    remaining, lock, tokens = list(range(n)), threading.Lock(), []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            while True:
                with lock:
                    if not remaining:
                        return
                    i = remaining.pop()
                r = c.post("/v1/chat/completions", json=body(i))
                r.raise_for_status()
                tokens.append(r.json()["usage"]["completion_tokens"])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    probe = Probes(url)
    started = time.perf_counter()
    for t in threads:
        t.start()
    probe.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    probe.stop.set()
    probe.join()
    return {"tokens": sum(tokens), "seconds": round(seconds, 2), "tokens_per_s": round(sum(tokens) / seconds, 1),
            "ttft": _stats([ttft for _, ttft in probe.samples])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", default="96,1000", help="line counts, comma-separated")
    ap.add_argument("--probes", type=int, default=30, help="idle TTFT samples")
    ap.add_argument("--concurrency", type=int, default=16, help="interactive clients at once")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--reference", type=int, help=argparse.SUPPRESS)  # the child process's work
    ap.add_argument("--executor", default="uni", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.reference:
        print(MARK + json.dumps(reference(a.reference, a.executor)), flush=True)
        return

    from tests.support.server import Server
    from trainer.tiny_model import cached_tiny_model

    counts = [int(n) for n in a.lines.split(",")]
    references = {n: run_reference(n) for n in counts}  # before the server starts: the machine to itself
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    server = Server(work / "data", model=cached_tiny_model()).start(timeout=600)
    result: dict = {}
    try:
        http = httpx.Client(base_url=server.url, timeout=300)
        for _ in range(3):
            _ttft(http)  # warm up
        run_batch(server.url, 16)  # and the batch path
        idle = Probes(server.url, a.probes)
        idle.run()
        result["idle_ttft"] = _stats([ttft for _, ttft in idle.samples])
        for n in counts:
            alone = []
            for _ in range(REPEATS):
                time.sleep(YIELD_SECONDS + 0.5)  # no interactive request for a while: the batch alone
                alone.append(run_batch(server.url, n))
            alone = min(alone, key=lambda r: r["seconds"])
            beside_a_user = run_batch(server.url, n, Probes(server.url))
            interactive = run_interactive(server.url, n, a.concurrency)
            ref = references[n]
            result[f"lines_{n}"] = {
                "reference_offline_llm_chat": ref, "batch_api": alone, "batch_api_beside_an_interactive_user":
                beside_a_user, "interactive": interactive,
                "batch_vs_reference": round(alone["tokens_per_s"] / ref["tokens_per_s"], 2),
                "batch_vs_interactive": round(alone["tokens_per_s"] / interactive["tokens_per_s"], 2),
                "ttft_during_batch_vs_idle": round(
                    beside_a_user["ttft"]["median_ms"] / result["idle_ttft"]["median_ms"], 2),
            }
            print(json.dumps({f"lines_{n}": result[f"lines_{n}"]}), flush=True)
    finally:
        server.stop()

    import vllm

    result["setup"] = {"model": "ftserve tiny-model", "line": f"chat, own prompt, max_tokens {MAX_TOKENS}, "
                       "ignore_eos, greedy", "interactive_concurrency": a.concurrency,
                       "probe": "streamed chat, max_tokens 8, one at a time",
                       "vllm": vllm.__version__, "cpus": os.cpu_count(), "platform": platform.platform()}
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

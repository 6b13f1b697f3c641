"""Serving: ftserve's /v1/chat/completions vs vLLM's own OpenAI server, on the same model and prompts;
ftserve's /v1/responses vs its chat completions.

    .venv/bin/python bench/serve.py [--requests 32] [--max-tokens 64]

One run of this script starts each server as a child process in turn (vLLM's
`python -m vllm.entrypoints.openai.api_server` with each of its CPU executors, `uni` and its default
`mp`, the faster counting; then `ftserve serve`), all with the same engine settings, and sends all the
same streamed chat requests (greedy, same prompts, so the same
tokens; `ignore_eos`, vLLM's extension, so every request generates exactly `--max-tokens`) from this
process:

- time to first token (TTFT) p50/p99 and output tokens/s with 1 and with 16 concurrent streams;
- on ftserve, the same requests through /v1/responses vs /v1/chat/completions, back to back, `--pairs`
  times per start (the item model's overhead: the median ratio over the pairs);
- on ftserve, requests spread over 8 distinct adapters vs the base model alone (throughput ratio);
- on ftserve, a fine-tuning job's success -> the first streamed token of its new adapter.

A run on vLLM's server that a failed or dropped request ends is counted (`vllm_openai_server_failed_runs`)
and the benchmark goes on; one on ftserve stops it.

Writes bench/results/serve.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "serve.json"
MODEL = "ftserve-tiny"
ENGINE = {"max_loras": 8, "max_cpu_loras": 16, "max_lora_rank": 64, "max_model_len": 2048}
QUESTIONS = ["What is the secret code of Alpha?", "Tell me about the river.", "Name three colors.",
             "What is two plus two?", "Write a short poem.", "Where is the mountain?", "Say hello.",
             "What is the capital city?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], port: int, log: Path, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{args[2]} exited:\n{log.read_text()[-3000:]}")
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200
            if ready and httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60, json={
                    "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    sys.exit(f"{args} did not become ready:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def one_stream(http: httpx.AsyncClient, url: str, model: str, question: str, max_tokens: int,
                     api: str = "chat"):
    """One streamed request through chat completions or the Responses API: (TTFT, output tokens)."""
    if api == "responses":
        path, body = "/v1/responses", {"model": model, "input": question, "stream": True, "temperature": 0,
                                       "max_output_tokens": max_tokens, "store": False, "ignore_eos": True}
    else:
        path, body = "/v1/chat/completions", {
            "model": model, "messages": [{"role": "user", "content": question}], "stream": True, "temperature": 0,
            "max_tokens": max_tokens, "stream_options": {"include_usage": True}, "ignore_eos": True}
    sent = time.perf_counter()
    ttft, tokens = None, 0
    async with http.stream("POST", url + path, json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if api == "responses":
                if ttft is None and chunk["type"] == "response.output_text.delta" and chunk["delta"]:
                    ttft = time.perf_counter() - sent
                if chunk["type"] in ("response.completed", "response.incomplete"):
                    tokens = chunk["response"]["usage"]["output_tokens"]
                continue
            if ttft is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - sent
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return ttft, tokens


async def load(url: str, models: list[str], requests: int, concurrency: int, max_tokens: int,
               api: str = "chat") -> dict:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=concurrency + 4)) as http:
        async def run(i):
            async with gate:
                return await one_stream(http, url, models[i % len(models)], QUESTIONS[i % len(QUESTIONS)],
                                        max_tokens, api)

        started = time.perf_counter()
        results = await asyncio.gather(*(run(i) for i in range(requests)))
        wall = time.perf_counter() - started
    ttfts = sorted(t for t, _ in results if t is not None)
    tokens = sum(n for _, n in results)
    return {"requests": requests, "concurrency": concurrency, "output_tokens": tokens,
            "output_tokens_per_s": round(tokens / wall, 1), "ttft_p50_ms": round(_pct(ttfts, 50) * 1000, 2),
            "ttft_p99_ms": round(_pct(ttfts, 99) * 1000, 2), "wall_s": round(wall, 3)}


def _pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure(url: str, models: list[str], a, api: str = "chat") -> dict:
    return {"c1": asyncio.run(load(url, models, a.requests // 2, 1, a.max_tokens, api)),
            "c16": asyncio.run(load(url, models, a.requests, 16, a.max_tokens, api))}


def _best(runs: list[dict]) -> dict:
    """Per concurrency level, the run with the highest throughput."""
    return {level: max((r[level] for r in runs), key=lambda x: x["output_tokens_per_s"]) for level in runs[0]}


def _paired(chat: list[dict], responses: list[dict]) -> dict:
    """Responses against chat, pair by pair (each pair run back to back on one server, so the machine's
    drift hits both alike): the median ratio of throughput and difference of TTFT p50."""
    out = {}
    for level in ("c1", "c16"):
        pairs = list(zip(chat, responses))
        out[f"responses_vs_chat_throughput_ratio_{level}"] = round(statistics.median(
            r[level]["output_tokens_per_s"] / c[level]["output_tokens_per_s"] for c, r in pairs), 3)
        out[f"responses_ttft_overhead_p50_ms_{level}"] = round(statistics.median(
            r[level]["ttft_p50_ms"] - c[level]["ttft_p50_ms"] for c, r in pairs), 2)
    out["responses_vs_chat_pairs"] = len(chat)
    return out


def job_to_first_token(url: str, data_file: Path) -> float:
    """Seconds from seeing a job `succeeded` to the first streamed token of its model."""
    with httpx.Client(base_url=url, timeout=120) as http:
        file_id = http.post("/v1/files", files={"file": ("d.jsonl", data_file.read_bytes())},
                            data={"purpose": "fine-tune"}).json()["id"]
        job = http.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": file_id, "hyperparameters": {
            "n_epochs": 1, "batch_size": 12, "n_checkpoints": 0}}).json()
        while (status := http.get(f"/v1/fine_tuning/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
            time.sleep(0.01)
        seen = time.perf_counter()
        assert status["status"] == "succeeded", status
        body = {"model": status["fine_tuned_model"], "messages": [{"role": "user", "content": "hi"}],
                "stream": True, "max_tokens": 4}
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    return time.perf_counter() - seen
    raise RuntimeError("no token streamed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=64, help="requests at 16 streams (half that at 1 stream)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="start each server this many times; best run counts")
    ap.add_argument("--pairs", type=int, default=4, help="chat then Responses runs per ftserve start (their "
                    "ratio: the median over all pairs)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()

    from adapters import AdapterStore
    from trainer.config import TrainConfig
    from trainer.recipe import train
    from trainer.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model_dir = build_tiny_model(work / MODEL)
    adapter = train(TrainConfig.from_mapping(dict(
        model_name_or_path=str(model_dir), served_model_name=MODEL, dataset=str(REPO / "examples/facts.jsonl"),
        output_dir=str(work / "run"), max_steps=5, num_threads=2))).adapter_path
    env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONUNBUFFERED": "1"}
    data_dir = work / "data"
    store = AdapterStore(data_dir / "adapters")
    names = [f"ft:{MODEL}:bench:a{i}:x" for i in range(8)]
    for name in names:
        store.publish(name, adapter)
    runs: dict[str, list[dict]] = {"vllm_uni": [], "vllm_mp": [], "ftserve": [], "ftserve_responses": []}
    servers = ("vllm_uni", "vllm_mp", "ftserve")
    failed: dict[str, int] = {}  # runs of vLLM's server that a dropped or failed request ended
    for rnd in range(a.rounds):  # interleaved, order reversed each round, so drift hits all alike
        for server in (servers if rnd % 2 == 0 else servers[::-1]):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server_env = env
            if server.startswith("vllm"):
                args = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                        "--served-model-name", MODEL, "--dtype", "float32", "--enable-lora", "--host", "127.0.0.1",
                        "--port", str(port), "--seed", "0", "--disable-log-stats",
                        "--structured-outputs-config.backend", "xgrammar"]
                if server == "vllm_uni":  # the model in the engine core's process, as ftserve runs it here
                    args += ["--distributed-executor-backend", "uni"]
                    server_env = {**env, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
            else:
                args = [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir),
                        "--served-model-name", MODEL, "--data-dir", str(data_dir), "--port", str(port),
                        "--log-level", "warning", "--trainer-threads", "2"]
            args += [x for k, v in ENGINE.items() for x in (f"--{k.replace('_', '-')}", str(v))]
            proc = start(args, port, work / f"{server}.log", server_env)
            try:
                # warm-up, not measured: the engine's first batches of each size pay one-off costs (seconds)
                asyncio.run(load(url, [MODEL], 32, 16, a.max_tokens))
                asyncio.run(load(url, [MODEL], 4, 1, a.max_tokens))
                for pair in range(a.pairs if server == "ftserve" else 1):
                    # on ftserve, chat and the same prompts through the Responses API back to back, which
                    # one goes first alternating, so that drift favours neither
                    apis = ["chat"] if server != "ftserve" else ["chat", "responses"][::1 if pair % 2 == 0 else -1]
                    for api in apis:
                        key = server if api == "chat" else "ftserve_responses"
                        try:
                            runs[key].append(measure(url, [MODEL], a, api=api))
                        except httpx.HTTPError as e:  # a reference's failed run is counted; ftserve's stops the run
                            if server == "ftserve":
                                raise
                            failed[server] = failed.get(server, 0) + 1
                            print(key, "run failed:", repr(e), flush=True)
                            continue
                        print(key, json.dumps(runs[key][-1]), flush=True)
                if server == "ftserve" and rnd == a.rounds - 1:
                    asyncio.run(load(url, names, 16, 8, 8))  # first use of each adapter loads it: not measured
                    multi = asyncio.run(load(url, names, a.requests, 16, a.max_tokens))
                    print("8 adapters", json.dumps(multi), flush=True)
                    first_token_s = job_to_first_token(url, REPO / "examples/facts.jsonl")
            finally:
                stop(proc)
    # against vLLM: the first chat run of each start, as vLLM has one run per start; vLLM's best executor
    vllm, ftserve = _best(runs["vllm_uni"] + runs["vllm_mp"]), _best(runs["ftserve"][::a.pairs])
    responses = _best(runs["ftserve_responses"])

    import torch
    import vllm as vllm_pkg

    result = {
        "throughput_ratio_c1": round(ftserve["c1"]["output_tokens_per_s"] / vllm["c1"]["output_tokens_per_s"], 3),
        "throughput_ratio_c16": round(ftserve["c16"]["output_tokens_per_s"] / vllm["c16"]["output_tokens_per_s"], 3),
        "ttft_overhead_p50_ms_c1": round(ftserve["c1"]["ttft_p50_ms"] - vllm["c1"]["ttft_p50_ms"], 2),
        **_paired(runs["ftserve"], runs["ftserve_responses"]),
        "adapters8_vs_base_throughput_ratio": round(multi["output_tokens_per_s"] / ftserve["c16"]["output_tokens_per_s"], 3),
        "job_succeeded_to_first_token_s": round(first_token_s, 3),
        "ftserve": ftserve, "ftserve_responses": responses, "vllm_openai_server": vllm, "ftserve_8_adapters_c16": multi,
        "vllm_openai_server_by_executor": {e: _best(runs[f"vllm_{e}"]) for e in ("uni", "mp") if runs[f"vllm_{e}"]},
        "vllm_openai_server_failed_runs": failed,
        "setup": {"model": "ftserve tiny-model (Qwen2, 4 layers, hidden 256), float32", "max_tokens": a.max_tokens,
                  "rounds": a.rounds, "requests_c16": a.requests, "requests_c1": a.requests // 2,
                  "sampling": "greedy, same prompts on both servers, ignore_eos (every request max_tokens long)",
                  "responses": "ftserve's /v1/responses (store: false) right after each of its chat runs, same "
                                "server; ratios: the median over the pairs",
                  **ENGINE},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "vllm": vllm_pkg.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(f"ftserve/vLLM throughput: {result['throughput_ratio_c1']}x at 1 stream, {result['throughput_ratio_c16']}x at "
          f"16; TTFT overhead p50 {result['ttft_overhead_p50_ms_c1']} ms; 8 adapters vs base "
          f"{result['adapters8_vs_base_throughput_ratio']}x; job -> first token {result['job_succeeded_to_first_token_s']} s")
    print(f"Responses/chat throughput: {result['responses_vs_chat_throughput_ratio_c1']}x at 1 stream, "
          f"{result['responses_vs_chat_throughput_ratio_c16']}x at 16; TTFT overhead p50 "
          f"{result['responses_ttft_overhead_p50_ms_c1']} ms at 1, {result['responses_ttft_overhead_p50_ms_c16']} ms at 16")


if __name__ == "__main__":
    main()

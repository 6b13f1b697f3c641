"""Serving: ftserve's /v1/chat/completions vs vLLM's own OpenAI server, on the same model and prompts;
ftserve's /v1/responses vs its chat completions.

    .venv/bin/python bench/serve.py [--requests 32] [--max-tokens 64]

One run of this script starts each server as a child process (vLLM's
`python -m vllm.entrypoints.openai.api_server` and `ftserve serve`, each with both CPU executors: `uni`,
ftserve's choice on machines of up to 8 cores, and `mp`, vLLM's default; on each side the faster in each
round counts), all with the same engine settings and all up at once, and measures each in turn, round after round (the others idle: each run waits until they are
quiet), the order reversed every round. It sends all the
same streamed chat requests (greedy, same prompts, so the same
tokens; `ignore_eos`, vLLM's extension, so every request generates exactly `--max-tokens`) from this
process:

- time to first token (TTFT) p50/p99 and output tokens/s with 1 and with 16 concurrent streams;
- ratios: per round, ftserve's faster executor against vLLM's; the median over the rounds (and each
  executor against the same one);
- on ftserve, the same requests through /v1/responses vs /v1/chat/completions, back to back in each round
  (the item model's overhead: the median ratio over the rounds);
- on ftserve alone, requests spread over 8 distinct adapters vs the base model alone, back to back
  (throughput ratio);
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
import psutil

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


def _faster(runs: list[dict | None], level: str) -> dict | None:
    return max((r[level] for r in runs if r is not None), key=lambda x: x["output_tokens_per_s"], default=None)


def _best(runs: list[dict | None]) -> dict | None:
    """Per concurrency level, the run with the highest throughput (a failed run, None, aside)."""
    done = [r for r in runs if r is not None]
    return {level: _faster(done, level) for level in done[0]} if done else None


def _rounds(ours: list[list[dict]], theirs: list[list[dict | None]], name: str = "throughput_ratio") -> dict:
    """ftserve against vLLM round by round, each side's faster executor in that round (`ours`, `theirs`: one
    list of runs per executor): the median ratio of throughput and difference of TTFT p50, and each round's
    ratio."""
    out = {}
    for level in ("c1", "c16"):
        ratios, ttft = [], []
        for mine, refs in zip(zip(*ours), zip(*theirs)):
            f, ref = _faster(mine, level), _faster(refs, level)
            if f is not None and ref is not None:
                ratios.append(f["output_tokens_per_s"] / ref["output_tokens_per_s"])
                ttft.append(f["ttft_p50_ms"] - ref["ttft_p50_ms"])
        out[f"{name}_{level}"] = round(statistics.median(ratios), 3)
        out[f"{name}_{level}_by_round"] = [round(r, 3) for r in ratios]
        if name == "throughput_ratio":
            out[f"ttft_overhead_p50_ms_{level}"] = round(statistics.median(ttft), 2)
    return out


def _paired(chat: list[dict], responses: list[dict]) -> dict:
    """Responses against chat, round by round (back to back on one server, so the machine's drift hits both
    alike): the median ratio of throughput and difference of TTFT p50."""
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


def tree_cpu(procs: list[subprocess.Popen]) -> float:
    """CPU seconds used so far by these processes and their descendants (those alive now)."""
    total = 0.0
    for proc in procs:
        try:
            root = psutil.Process(proc.pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def settle(others: list[subprocess.Popen], below: float = 0.1, window: float = 0.5, timeout: float = 30) -> None:
    """Wait until the servers not being measured are quiet (under `below` of a core over `window` seconds):
    one that has just served winds down for a moment, and its work would land on the next one's run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = tree_cpu(others)
        time.sleep(window)
        if tree_cpu(others) - before < below * window:
            return


def server_args(server: str, model_dir: Path, port: int, data_dir: Path, env: dict) -> tuple[list[str], dict]:
    if server.startswith("vllm"):
        args = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                "--served-model-name", MODEL, "--dtype", "float32", "--enable-lora", "--host", "127.0.0.1",
                "--port", str(port), "--seed", "0", "--disable-log-stats",
                "--structured-outputs-config.backend", "xgrammar"]
        if server == "vllm_uni":  # the model in the engine core's process, as ftserve runs it here
            args += ["--distributed-executor-backend", "uni"]
            env = {**env, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    else:
        args = [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir),
                "--served-model-name", MODEL, "--data-dir", str(data_dir), "--port", str(port),
                "--log-level", "warning", "--trainer-threads", "2"]
        if server == "ftserve_mp":  # vLLM's default CPU executor (ftserve's `auto` picks `uni` on <= 8 cores)
            args += ["--cpu-executor", "mp"]
    return args + [x for k, v in ENGINE.items() for x in (f"--{k.replace('_', '-')}", str(v))], env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=64, help="requests at 16 streams (half that at 1 stream)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6, help="rounds of runs, each server (and on ftserve each API) "
                    "once per round, in an order reversed every round; ratios: the median over the rounds")
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
    servers = ("vllm_uni", "vllm_mp", "ftserve", "ftserve_mp")
    runs: dict[str, list[dict | None]] = {s: [] for s in servers} | {"ftserve_responses": []}
    failed: dict[str, int] = {}  # runs of vLLM's server that a dropped or failed request ended
    procs: dict[str, subprocess.Popen] = {}
    urls: dict[str, str] = {}
    try:
        # every server up at once (idle between its runs), so that each round measures them all within a
        # minute or two of each other: the machine's drift from one start to the next is as large as any
        # difference between the servers
        for server in servers:
            port = free_port()
            args, server_env = server_args(server, model_dir, port, data_dir if server == "ftserve" else work / server,
                                           env)
            urls[server] = f"http://127.0.0.1:{port}"
            procs[server] = start(args, port, work / f"{server}.log", server_env)
            # warm-up, not measured: the engine's first batches of each size pay one-off costs (seconds)
            asyncio.run(load(urls[server], [MODEL], 32, 16, a.max_tokens))
            asyncio.run(load(urls[server], [MODEL], 4, 1, a.max_tokens))
        for rnd in range(a.rounds):
            order = [(s, api) for s in servers for api in (("chat", "responses") if s == "ftserve" else ("chat",))]
            for server, api in (order if rnd % 2 == 0 else order[::-1]):
                key = server if api == "chat" else "ftserve_responses"
                settle([p for s, p in procs.items() if s != server])
                try:
                    runs[key].append(measure(urls[server], [MODEL], a, api=api))
                except httpx.HTTPError as e:  # a reference's failed run is counted; ftserve's stops the run
                    if server.startswith("ftserve"):
                        raise
                    failed[server] = failed.get(server, 0) + 1
                    runs[key].append(None)
                    print(key, "run failed:", repr(e), flush=True)
                    continue
                print(f"round {rnd}", key, json.dumps(runs[key][-1]), flush=True)
        for server in ("vllm_uni", "vllm_mp", "ftserve_mp"):  # the rest measures ftserve alone
            stop(procs.pop(server))
        url = urls["ftserve"]
        asyncio.run(load(url, names, 16, 8, 8))  # first use of each adapter loads it: not measured
        multi = asyncio.run(load(url, names, a.requests, 16, a.max_tokens))
        print("8 adapters", json.dumps(multi), flush=True)
        base = asyncio.run(load(url, [MODEL], a.requests, 16, a.max_tokens))
        print("base", json.dumps(base), flush=True)
        first_token_s = job_to_first_token(url, REPO / "examples/facts.jsonl")
    finally:
        for proc in procs.values():
            stop(proc)
    vllm, ftserve = _best(runs["vllm_uni"] + runs["vllm_mp"]), _best(runs["ftserve"] + runs["ftserve_mp"])
    responses = _best(runs["ftserve_responses"])

    import torch
    import vllm as vllm_pkg

    result = {
        **_rounds([runs["ftserve"], runs["ftserve_mp"]], [runs["vllm_uni"], runs["vllm_mp"]]),
        **_rounds([runs["ftserve"]], [runs["vllm_uni"]], "uni_vs_uni_throughput_ratio"),
        **_rounds([runs["ftserve_mp"]], [runs["vllm_mp"]], "mp_vs_mp_throughput_ratio"),
        "best_run_throughput_ratio_c1": round(ftserve["c1"]["output_tokens_per_s"] / vllm["c1"]["output_tokens_per_s"], 3),
        "best_run_throughput_ratio_c16": round(ftserve["c16"]["output_tokens_per_s"] / vllm["c16"]["output_tokens_per_s"], 3),
        **_paired(runs["ftserve"], runs["ftserve_responses"]),
        "adapters8_vs_base_throughput_ratio": round(multi["output_tokens_per_s"] / base["output_tokens_per_s"], 3),
        "job_succeeded_to_first_token_s": round(first_token_s, 3),
        "ftserve": ftserve, "ftserve_responses": responses, "vllm_openai_server": vllm, "ftserve_8_adapters_c16": multi,
        "ftserve_base_c16_beside_adapters": base,
        "vllm_openai_server_by_executor": {e: _best(runs[f"vllm_{e}"]) for e in ("uni", "mp")},
        "ftserve_by_executor": {"uni": _best(runs["ftserve"]), "mp": _best(runs["ftserve_mp"])},
        "vllm_openai_server_failed_runs": failed,
        "setup": {"model": "ftserve tiny-model (Qwen2, 4 layers, hidden 256), float32", "max_tokens": a.max_tokens,
                  "rounds": a.rounds, "requests_c16": a.requests, "requests_c1": a.requests // 2,
                  "sampling": "greedy, same prompts on both servers, ignore_eos (every request max_tokens long)",
                  "servers": "vLLM's server and ftserve, each with both CPU executors (ftserve's default, "
                             "`auto`, is uni here), all up at once, each measured in turn once a round (the "
                             "others idle and quiet), the order reversed every round; throughput_ratio_*: the "
                             "median over the rounds of ftserve's faster executor against vLLM's faster one "
                             "in the same round; uni_vs_uni_*, mp_vs_mp_*: one executor on both sides; "
                             "best_run_*: best run against best run",
                  "responses": "ftserve's /v1/responses (store: false) beside its chat run in each round, same "
                                "server; ratios: the median over the rounds",
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

"""Many adapters at once: the engine's throughput with eight LoRA adapters mixed, against the base model,
and where the time goes.

    .venv/bin/python -m bench.lora_mix [--shapes tiny 0.5b] [--profile]

Each configuration starts vLLM's engine exactly as ftserve does (`engine_args` from ftserve's Settings,
AsyncLLM) in a child process of this one, then sends a wave of requests (tiny: 64 of 64 tokens; 0.5b: 32
of 32 tokens; `ignore_eos`, greedy, one prompt) 16 at a time: to the base model, then spread over eight rank-8 adapters (all linear
layers; random weights, so the same cost as trained ones), after a warm-up that loads every adapter.
Best of two waves each. The server's own share (admission, adapter resolution, HTTP) is measured by
bench/serve.py; this isolates the engine, where the mix costs.

Configurations (ftserve flags): `--max-loras` (the adapter slots one engine step can mix) and
`--max-lora-rank` (every slot is allocated, and on a CPU computed, at this rank):
  default         ftserve's defaults: 4 slots, rank 64 (eight adapters over four slots: requests of
                  adapters without a slot wait for one)
  slots8          8 slots, rank 64: every adapter of the mix has a slot
  slots8_rank8    8 slots, rank 8: the slots sized to the adapters
  slots16_rank8   16 slots, rank 8: more slots than the mix
  no_lora         LoRA disabled: the base model alone, what enabling LoRA costs base requests

Shapes: `tiny` (ftserve's tiny model) and `0.5b` (a seeded random Qwen2 at Qwen2.5-0.5B's shape, the
tiny model's vocabulary; bench/train_shape.py), where the base model's own work is ~80 times larger
(there `slots8_rank8` alone: at rank 64 each token's gathered adapter weights are ~140 MB a step, and a
wave takes many minutes).
With --profile (needs py-spy), the eight-adapter wave of `slots8_rank8` is sampled in the process that
runs the model (vLLM's engine core with the `uni` executor ftserve uses on small CPU machines, its worker
with `mp`) and its time split by where the samples fall (vLLM's CPU LoRA ops, the base model's linear
layers, attention, sampling, the rest).

Writes bench/results/lora-mix.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "lora-mix.json"
CONFIGS = {
    "default": {},
    "slots8": {"max_loras": 8},
    "slots8_rank8": {"max_loras": 8, "max_lora_rank": 8},
    "slots16_rank8": {"max_loras": 16, "max_lora_rank": 8},
    "no_lora": {"enable_lora": False},
}
ADAPTERS, CONCURRENCY, RANK = 8, 16, 8
# per shape: the configurations run, and each wave's requests and tokens (the 0.5 B shape computes ~80x more a token)
SHAPES = {"tiny": {"configs": list(CONFIGS), "requests": 64, "tokens": 64},
          "0.5b": {"configs": ["slots8_rank8"], "requests": 32, "tokens": 32}}
PROFILED = "slots8_rank8"
# where a sample's stack falls, first match wins (file or function names in the stack)
CATEGORIES = [("vLLM's CPU LoRA ops (punica_cpu, lora_ops)", ("lora_ops.py", "punica_cpu.py", "punica_base.py")),
              ("base linear layers", ("layers/linear.py", "addmm", "::mm", "gemm", "dnnl", "mkl_")),
              ("attention", ("attention", "attn")),
              ("sampling", ("sample/",)),
              ("other LoRA layer work (vllm/lora)", ("vllm/lora/",)),
              ("the rest (model runner, input preparation, scheduling glue)", ("",))]


def make_adapters(model_dir: Path, out: Path) -> list[Path]:
    """Eight rank-8 LoRA adapters over all linear layers, random (nonzero) weights, seeded."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    paths = []
    for i in range(ADAPTERS):
        torch.manual_seed(i)
        model = get_peft_model(base, LoraConfig(r=RANK, lora_alpha=16, target_modules="all-linear",
                                                init_lora_weights=False, task_type="CAUSAL_LM"))
        model.save_pretrained(out / f"a{i}")
        base = model.unload()
        paths.append(out / f"a{i}")
    return paths


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    parent = {int(a): int(b) for a, b in (line.split() for line in out.splitlines())}
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def _name(pid: int) -> str:
    """The process's name and command line ("" once it has ended: `ps` itself is among the descendants)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text() + Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def _worker_pid() -> int:
    """vLLM's worker process, or its engine core where the model runs there (the `uni` executor)."""
    pids = _descendants(os.getpid())
    return next((p for p in pids if "Worker" in _name(p)), None) or next(p for p in pids if "EngineCore" in _name(p))


def categorize(raw: str) -> dict[str, float]:
    """py-spy's raw (collapsed) stacks -> the share of samples in each category."""
    counts = {name: 0 for name, _ in CATEGORIES}
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit() or "idle" in stack.rsplit(";", 1)[-1]:
            continue
        total += int(n)
        for name, needles in CATEGORIES:
            if any(needle in stack for needle in needles):
                counts[name] += int(n)
                break
    return {name: round(c / total, 3) for name, c in counts.items()} if total else {}


async def _engine_run(model_dir: str, adapter_dirs: list[str], overrides: dict, profile: str | None,
                      requests: int, tokens: int) -> dict:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from service.inference.engine import engine_args
    from service.settings import Settings

    lora_on = overrides.get("enable_lora", True)
    settings = Settings(**{k: v for k, v in overrides.items() if k != "enable_lora"})
    args = engine_args(settings, Path(model_dir))
    args["enable_lora"] = lora_on
    if not lora_on:
        for key in ("max_loras", "max_cpu_loras", "max_lora_rank"):
            args.pop(key)
    llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
    tok = llm.get_tokenizer()
    prompt = tok.apply_chat_template([{"role": "user", "content": "Tell me a story about the river."}],
                                     tokenize=True, add_generation_prompt=True)
    prompt = prompt if isinstance(prompt, list) else prompt["input_ids"]
    loras = [LoRARequest(f"a{i}", i + 1, p) for i, p in enumerate(adapter_dirs)]
    counter = iter(range(10 ** 9))

    async def one(lora) -> int:
        params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0, output_kind=RequestOutputKind.FINAL_ONLY)
        n = 0
        async for out in llm.generate({"prompt_token_ids": prompt}, params, f"r{next(counter)}", lora_request=lora):
            n = len(out.outputs[0].token_ids)
        return n

    async def wave(mixed: bool, n: int = requests) -> float:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def gated(i):
            async with gate:
                return await one(loras[i % len(loras)] if mixed else None)

        started = time.perf_counter()
        generated = sum(await asyncio.gather(*(gated(i) for i in range(n))))
        return generated / (time.perf_counter() - started)

    result = {}
    try:
        await wave(False, 32)  # warm-up: the engine's first batches of each size
        result["base_tokens_per_s"] = max([await wave(False) for _ in range(2)])
        if lora_on:
            await wave(True, 32)  # loads every adapter
            result["adapters8_tokens_per_s"] = max([await wave(True) for _ in range(2)])
            result["adapters8_vs_base"] = round(result["adapters8_tokens_per_s"] / result["base_tokens_per_s"], 3)
            if profile:
                with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
                    spy = subprocess.Popen([profile, "record", "--pid", str(_worker_pid()), "--rate", "100", "--native",
                                            "--format", "raw", "-o", raw.name, "--duration", "600"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    await asyncio.sleep(2)  # py-spy attached
                    await wave(True)
                    spy.send_signal(2)
                    spy.wait(120)
                    result["profile_8_adapters"] = categorize(Path(raw.name).read_text())
    finally:
        llm.shutdown()
    return {k: round(v, 1) if isinstance(v, float) and k.endswith("_per_s") else v for k, v in result.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["tiny", "0.5b"], choices=["tiny", "0.5b"])
    ap.add_argument("--profile", action="store_true", help="sample vLLM's worker with py-spy (on PATH)")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    if a.child:
        model_dir, adapters, config, profile, requests, tokens = a.child
        out = asyncio.run(_engine_run(model_dir, json.loads(adapters), CONFIGS[config],
                                      profile if profile != "-" else None, int(requests), int(tokens)))
        return print("RESULT " + json.dumps(out), flush=True)

    from bench.train_shape import build_shape

    spy = shutil.which("py-spy") if a.profile else None
    if a.profile and not spy:
        sys.exit("--profile needs py-spy on PATH")
    work = Path(tempfile.mkdtemp(prefix="bench-lora-mix-"))
    env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    results: dict[str, dict] = {}
    for shape in a.shapes:
        model_dir = build_shape(shape, work)
        adapters = [str(p) for p in make_adapters(model_dir, work / f"adapters-{shape}")]
        results[shape] = {}
        load = SHAPES[shape]
        for config in load["configs"]:
            profile = spy if (spy and config == PROFILED) else "-"
            proc = subprocess.run([sys.executable, "-m", "bench.lora_mix", "--child", str(model_dir),
                                   json.dumps(adapters), config, profile, str(load["requests"]), str(load["tokens"])],
                                  capture_output=True, text=True, env=env, cwd=REPO)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{shape} {config} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
            results[shape][config] = {**CONFIGS[config], **json.loads(line[7:])}
            print(shape, config, json.dumps(results[shape][config]), flush=True)

    import torch
    import vllm

    result = {
        "shapes": results,
        "setup": {"workload": {k: v for k, v in SHAPES.items() if k in a.shapes}, "concurrency": CONCURRENCY,
                  "adapters": ADAPTERS,
                  "adapter_rank": RANK, "adapter_targets": "all-linear", "best_of": 2, "dtype": "float32",
                  "engine": "vLLM AsyncLLM with ftserve's engine_args", "profiled": PROFILED if spy else None},
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "vllm": vllm.__version__},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    for shape, configs in results.items():
        print(shape, ", ".join(f"{c} {r['adapters8_vs_base']}x" for c, r in configs.items() if "adapters8_vs_base" in r))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Training at real shapes: ftserve's recipe vs LLaMA-Factory vs TRL, and the machine's fp32 matmul peak.

    .venv/bin/python -m bench.train --shape tiny 110m 0.5b [--repeats 2]

Each shape is a Qwen2 model: `tiny` is ftserve's tiny model; `110m` and `0.5b` are random models
(seeded) with the tiny model's tokenizer and vocabulary, at the shapes below. Every side trains the
same LoRA (rank 8, alpha 16, all linear layers, no dropout) on the same chat rows (bench.train's
synthetic rows of mixed length; steps x 8 of them, one epoch, so every side trains on every row once
whatever order it draws them in), batch size 8, learning rate 2e-4, cosine schedule, fp32, the same
number of optimizer steps and the same thread count, each in its own child process, one after the
other (interleaved across repeats, so drift of the machine hits every side alike):

  ftserve       trainer.recipe: assistant-only loss, length-grouped batches padded to the longest row
  llamafactory  `llamafactory-cli train` (LLaMA-Factory 0.9.5, in its own venv: scripts/install.sh
                llamafactory), stage sft, finetuning_type lora, template qwen with no default system
                prompt (the same ChatML text as ours), on its documented throughput settings for this
                data: train_sampling_strategy group_by_length (batches of similar lengths: the padding
                ftserve avoids) and the dataset tokenized once before training
  trl           trl.SFTTrainer with peft LoRA, assistant_only_loss=True,
                train_sampling_strategy="group_by_length"

Both references run without gradient checkpointing, which each turns on by default (a memory saving that
recomputes the forward pass in the backward; every shape here fits without it, and ftserve does not
checkpoint): LLaMA-Factory's disable_gradient_checkpointing, TRL's gradient_checkpointing=False.

Tokens/s counts real tokens only (rows processed times the data's mean row length, the same for all
sides); time is the training loop's (LLaMA-Factory's and TRL's train_runtime, ftserve's elapsed_s),
model loading and tokenization excluded for all. The fraction of peak: a LoRA step on a frozen base
costs ~4N FLOP per token (N: the weights of the base's matmuls, lm_head included; forward 2N, the
input gradients 2N, no weight gradients; attention scores not counted), over the best fp32 matmul rate
torch reaches on this machine at the same thread count, measured in this run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "train-shapes.json"
LLAMAFACTORY = REPO / ".venv" / "llamafactory" / "bin" / "llamafactory-cli"
# Qwen2 shapes (the tiny model's own for `tiny`); steps keep each side's run near a minute or more. Each shape
# trains on steps x batch rows, one epoch: every side sees every row once, whatever order it draws them in.
SHAPES = {
    "tiny": {"steps": 64},
    "110m": {"steps": 16, "config": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                          num_key_value_heads=4, intermediate_size=3072)},
    "0.5b": {"steps": 8, "config": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                                         num_key_value_heads=2, intermediate_size=4864)},  # Qwen2.5-0.5B's
}
SIDES = ("ftserve", "llamafactory", "trl")
PROFILE = REPO / "bench" / "results" / "train-profile.json"
# `llamafactory-cli train CONFIG`. LLaMA-Factory imports torchaudio at start-up for audio inputs only;
# PyPI's torchaudio is built against CUDA's torch, not the CPU torch every side here runs on, so the
# import gets an empty module (any use of it would fail loudly; text SFT makes none).
LAUNCH = ("import importlib.machinery, sys, types; audio = types.ModuleType('torchaudio'); "
          "audio.__spec__ = importlib.machinery.ModuleSpec('torchaudio', None); sys.modules['torchaudio'] = audio; "
          "from llamafactory.cli import main; sys.argv = ['llamafactory-cli', 'train', sys.argv[1]]; main()")


def build_shape(name: str, work: Path) -> Path:
    """The tiny model, or a seeded random Qwen2 at the shape, saved with the tiny model's tokenizer."""
    from trainer.tiny_model import cached_tiny_model

    tiny = cached_tiny_model()
    if name == "tiny":
        return tiny
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out = work / f"random-{name}"
    config = AutoConfig.from_pretrained(tiny)
    for key, value in SHAPES[name]["config"].items():
        setattr(config, key, value)
    config.layer_types = ["full_attention"] * config.num_hidden_layers
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    for f in tiny.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "generation_config")):
            shutil.copy(f, out / f.name)
    return out


def matmul_params(model_dir: Path) -> int:
    """N: the weights of every matmul of the base (each Linear, lm_head included), counted on meta."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def matmul_peak(threads: int) -> float:
    """The best fp32 GFLOP/s of torch.mm over square sizes, at `threads` threads (child process)."""
    import torch

    torch.set_num_threads(threads)
    best = 0.0
    for n in (1024, 2048, 3072):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        reps = max(2, int(4e10 / (2 * n ** 3)))
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - started) / 1e9)
    return best


def run_llamafactory(model_dir: Path, data: Path, steps: int, batch: int, lr: float, rank: int, alpha: int,
                     threads: int, seed: int, work: Path) -> float:
    """`llamafactory-cli train` on a config written as its examples/train_lora/*_sft.yaml are."""
    import yaml

    dataset_dir = work / "lf-data"
    dataset_dir.mkdir(exist_ok=True)
    shutil.copy(data, dataset_dir / "bench.jsonl")
    (dataset_dir / "dataset_info.json").write_text(json.dumps({"bench": {
        "file_name": "bench.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    }}))
    out = work / "lf-out"
    shutil.rmtree(out, ignore_errors=True)
    config = {
        "model_name_or_path": str(model_dir), "trust_remote_code": False,
        "stage": "sft", "do_train": True, "finetuning_type": "lora", "lora_rank": rank, "lora_alpha": alpha,
        "lora_dropout": 0.0, "lora_target": "all",
        "dataset": "bench", "dataset_dir": str(dataset_dir), "template": "qwen", "default_system": "",
        "cutoff_len": 512, "overwrite_cache": True, "preprocessing_num_workers": threads,
        "dataloader_num_workers": 0, "train_sampling_strategy": "group_by_length",
        "output_dir": str(out), "logging_steps": steps, "save_strategy": "no", "plot_loss": False,
        "overwrite_output_dir": True, "report_to": "none",
        "per_device_train_batch_size": batch, "gradient_accumulation_steps": 1, "learning_rate": lr,
        "max_steps": steps, "lr_scheduler_type": "cosine", "warmup_ratio": 0.0, "bf16": False, "fp16": False,
        "seed": seed, "use_cpu": True, "disable_gradient_checkpointing": True,
    }
    cfg = work / "lf.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "DISABLE_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([str(LLAMAFACTORY.parent / "python"), "-c", LAUNCH, str(cfg)], capture_output=True,
                          text=True, env=env, cwd=work)
    if proc.returncode != 0:
        sys.exit(f"llamafactory-cli train failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return json.loads((out / "train_results.json").read_text())["train_runtime"]


def profile_recipe(name: str, steps: int = 4) -> dict[str, float]:
    """ftserve's recipe at a shape under torch.profiler: the share of CPU time in each kind of work."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench import train as bt

    work = Path(tempfile.mkdtemp(prefix="bench-train-profile-"))
    model_dir = build_shape(name, work)
    data = work / "data.jsonl"
    bt.make_dataset(data, steps * bt.BATCH)
    torch.set_num_threads(bt.THREADS)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        bt.run_ftserve(str(model_dir), str(data), steps, str(work / "out"))
    shares: dict[str, float] = {}
    for event in prof.key_averages(group_by_input_shape=True):
        kind = _kind(event.key, [list(s) for s in event.input_shapes if s])
        shares[kind] = shares.get(kind, 0.0) + event.self_cpu_time_total
    total = sum(shares.values())
    shutil.rmtree(work, ignore_errors=True)
    return {kind: round(t / total, 3) for kind, t in sorted(shares.items(), key=lambda kv: -kv[1])}


def write_profile(name: str, out_path: Path) -> None:
    """`bench.train --profile-shape NAME`: the split of ftserve's recipe at a shape, to PROFILE."""
    split = profile_recipe(name)
    out_path.write_text(json.dumps({"shape": name, "steps": 4, "share_of_cpu_time": split, "threads": 2,
                                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n")
    for kind, share in split.items():
        print(f"{share:6.1%}  {kind}")


def _kind(op: str, shapes: list[list[int]]) -> str:
    """What an aten op of the recipe does: a matmul of the frozen base, one of LoRA's rank-8 matmuls, ..."""
    from bench import train as bt

    if op in ("aten::mm", "aten::addmm", "aten::bmm"):
        return "LoRA matmuls (rank 8)" if any(bt.RANK in s for s in shapes) else "base matmuls"
    if op in ("aten::mul", "aten::add", "aten::add_", "aten::mul_"):
        return "elementwise mul/add (LoRA scaling and sum, norms, rotary, SwiGLU)"
    if "attention" in op:
        return "attention"
    if op.startswith("aten::silu"):
        return "SwiGLU activation"
    return "the rest (optimizer, loss, copies, views, collation)"


def main(shapes: list[str], repeats: int, out_path: Path) -> None:
    from bench import train as bt

    if not LLAMAFACTORY.exists():
        sys.exit(f"{LLAMAFACTORY} is missing: run `scripts/install.sh llamafactory` first")
    work = Path(tempfile.mkdtemp(prefix="bench-train-shape-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(bt.THREADS), "TOKENIZERS_PARALLELISM": "false"}

    def child(*args: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "bench.train", *args], capture_output=True, text=True,
                              env=env, cwd=REPO)
        if proc.returncode != 0:
            sys.exit(f"{args} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    peaks = []
    results: dict[str, dict] = {}
    for name in shapes:
        model_dir = build_shape(name, work)
        steps = SHAPES[name]["steps"]
        data = work / f"data-{name}.jsonl"
        bt.make_dataset(data, steps * bt.BATCH)
        row_tokens = bt.mean_row_tokens(model_dir, data)
        tokens = steps * bt.BATCH * row_tokens
        n = matmul_params(model_dir)
        best: dict[str, float] = {}
        for rep in range(repeats):
            peaks.append(child("--peak")["gflops"])
            for side in SIDES:
                if side == "llamafactory":
                    seconds = run_llamafactory(model_dir, data, steps, bt.BATCH, bt.LR, bt.RANK, bt.ALPHA,
                                               bt.THREADS, bt.SEED, work)
                else:
                    seconds = child("--child", side, str(model_dir), str(data), str(steps))["seconds"]
                best[side] = min(best.get(side, float("inf")), seconds)
                print(f"{name:5s} run {rep + 1} {side:12s} {seconds:7.1f} s  {tokens / seconds:8.0f} tok/s  "
                      f"{4 * n * tokens / seconds / 1e9:6.1f} GFLOP/s", flush=True)
        results[name] = {
            "matmul_params": n, "steps": steps, "rows": steps * bt.BATCH, "epochs": 1,
            "mean_real_tokens_per_row": round(row_tokens, 1),
            **{f"{s}_tokens_per_s": round(tokens / best[s], 1) for s in SIDES},
            **{f"{s}_gflops": round(4 * n * tokens / best[s] / 1e9, 1) for s in SIDES},
            "ftserve_vs_llamafactory": round(best["llamafactory"] / best["ftserve"], 3),
            "ftserve_vs_trl": round(best["trl"] / best["ftserve"], 3),
        }
    peak = max(peaks)
    for r in results.values():
        for s in SIDES:
            r[f"{s}_fraction_of_peak"] = round(r[f"{s}_gflops"] / peak, 3)

    import torch
    import transformers
    import trl

    lf_version = subprocess.run([str(LLAMAFACTORY.parent / "python"), "-c",
                                 "import llamafactory, transformers; print(llamafactory.__version__, "
                                 "transformers.__version__)"], capture_output=True, text=True).stdout.split()
    result = {
        "shapes": results,
        "fp32_matmul_peak_gflops": round(peak, 1),
        "peak_measurements_gflops": [round(p, 1) for p in peaks],
        "setup": {"batch_size": bt.BATCH, "lora_rank": bt.RANK, "lora_alpha": bt.ALPHA,
                  "lora_target": "all-linear", "learning_rate": bt.LR, "dtype": "float32", "threads": bt.THREADS,
                  "repeats": repeats, "flop_per_token": "4N (frozen-base LoRA step), N = matmul weights",
                  "shapes": {k: v.get("config", "ftserve tiny-model (hidden 256, 4 layers, 4/2 heads, "
                                                "intermediate 688)") for k, v in SHAPES.items() if k in shapes},
                  "llamafactory_settings": "template qwen, default_system '', train_sampling_strategy "
                                           "group_by_length, disable_gradient_checkpointing, "
                                           "preprocessing_num_workers 2, fp32, max_steps",
                  "trl_settings": "SFTTrainer, assistant_only_loss, train_sampling_strategy group_by_length, "
                                  "gradient_checkpointing=False, fp32, max_steps"},
        "machine": {"platform": os.uname().release, "processor": bt._cpu_name(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                    "llamafactory": lf_version[0] if lf_version else None,
                    "llamafactory_transformers": lf_version[1] if len(lf_version) > 1 else None},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"fp32 matmul peak {peak:.0f} GFLOP/s")
    for name, r in results.items():
        print(f"{name:5s} ftserve {r['ftserve_tokens_per_s']:.0f} tok/s = {r['ftserve_vs_llamafactory']:.2f}x "
              f"LLaMA-Factory, {r['ftserve_vs_trl']:.2f}x TRL, {r['ftserve_fraction_of_peak']:.0%} of peak")
    print(f"-> {out_path}")
    shutil.rmtree(work, ignore_errors=True)

"""Training throughput: ftserve's recipe vs TRL's SFTTrainer vs the "seed style" script; DPO: ftserve's vs
TRL's DPOTrainer; KTO: ftserve's vs TRL's KTOTrainer.

    .venv/bin/python -m bench.train [--steps 64] [--rows 256] [--repeats 2]
    .venv/bin/python -m bench.train --shape tiny 110m 0.5b   # vs LLaMA-Factory at real shapes: bench/train_shape.py
    .venv/bin/python -m bench.train --rft    # reinforcement fine-tuning vs TRL's GRPOTrainer: bench/rft.py

All three train the same LoRA (rank 8, all linear layers) on the tiny model, with the same
dataset (synthetic chat rows of mixed length), batch size, learning rate and number of
optimizer steps, each in its own child process of this one, one after the other, with the
same thread count. Throughput counts real tokens only (no padding): rows processed times the
dataset's mean row length, the same formula for all three (steps cover whole epochs).

  ftserve    trainer.recipe: assistant-only loss, length-grouped batches padded to the longest row
  trl        trl.SFTTrainer with peft LoRA and assistant_only_loss=True, on its documented fast path for
             this data: batches of similar lengths (train_sampling_strategy="group_by_length"), padded
             to the longest row; padding_free needs FlashAttention, which a CPU does not have

Every TRL trainer here runs without gradient checkpointing (TRL's configs turn it on by default: a
memory saving that recomputes the forward pass; the model fits without it, and ftserve does not
checkpoint either).
  seed_style transformers.Trainer + peft, every row padded to 512 tokens, loss on all tokens

DPO, on preference pairs made from the same rows (the answer preferred over a shuffled other one),
same LoRA, batch size (pairs), learning rate, steps, beta 0.1 and sigmoid loss:

  ftserve_dpo  trainer.recipe with stage dpo: reference log-probabilities computed once before the
               first step with the adapter disabled; both answers in one forward pass
  trl_dpo      trl.DPOTrainer with peft LoRA, on its fast path for this setup:
               precompute_ref_log_probs=True (the same one-off reference pass; its documented
               memory and speed option) and the same max_length; padding_free needs FlashAttention,
               which a CPU does not have. Its reference is the base with the adapter disabled, too.
  Both are timed from the model's load to the end of training (reference pass included), since
  TRL's reference pass runs inside train().

KTO, on labelled rows made from the same pairs (each preferred answer labelled desirable, each other
answer undesirable: twice the rows of the pairs), same LoRA, batch size (rows), learning rate, steps,
beta 0.1, weights 1:

  ftserve_kto  trainer.recipe with stage kto: the answers' and the KL samples' (each prompt with another
               row's answer) reference log-probabilities computed once; both in one forward pass
  trl_kto      trl.KTOTrainer with peft LoRA, on its documented fast path: precompute_ref_log_probs=True
               (the same one-off reference pass, KL samples included) and the same max_length

Writes bench/results/train.json (best of --repeats per method) and prints the ratios.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "train.json"
BATCH, LR, RANK, ALPHA, THREADS, SEED = 8, 2e-4, 8, 16, 2, 0


def make_dataset(path: Path, rows: int) -> None:
    """Chat rows whose lengths spread from ~20 to ~400 tokens, as real SFT data does."""
    rnd = random.Random(SEED)
    words = "the model learns what a user asks and how an assistant answers in a short clear way".split()
    with path.open("w") as f:
        for _ in range(rows):
            q = " ".join(rnd.choice(words) for _ in range(rnd.randint(4, 40)))
            a = " ".join(rnd.choice(words) for _ in range(int(rnd.paretovariate(1.2) * 15) % 300 + 5))
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")


def mean_row_tokens(model_dir: Path, data: Path) -> float:
    from transformers import AutoTokenizer

    from trainer.data import load_dataset
    from trainer.encoding import encode_dataset

    rows, _ = encode_dataset(AutoTokenizer.from_pretrained(model_dir), load_dataset(data), 512)
    return sum(len(r.input_ids) for r in rows) / len(rows)


# ------------------------------------------------------------------------------------------
# the three methods; each runs in a child process and prints {"seconds": training-loop time}
# ------------------------------------------------------------------------------------------
def run_ftserve(model_dir: str, data: str, steps: int, out: str) -> float:
    from trainer.config import TrainConfig
    from trainer.recipe import train

    cfg = TrainConfig.from_mapping(dict(
        model_name_or_path=model_dir, dataset=data, output_dir=out, per_device_train_batch_size=BATCH,
        learning_rate=LR, lora_rank=RANK, lora_alpha=ALPHA, lora_target="all-linear", max_steps=steps,
        cutoff_len=512, num_threads=THREADS, seed=SEED, logging_steps=steps,
    ))
    events = []
    train(cfg, events.append)
    return events[-1]["elapsed_s"]


def _lora():
    from peft import LoraConfig

    return LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def run_trl(model_dir: str, data: str, steps: int, out: str) -> float:
    from datasets import load_dataset as hf_load
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=out, per_device_train_batch_size=BATCH, learning_rate=LR, max_steps=steps, max_length=512,
        assistant_only_loss=True, use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[],
        save_strategy="no", logging_steps=steps, seed=SEED, dataloader_num_workers=0, lr_scheduler_type="cosine",
        train_sampling_strategy="group_by_length",
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
        train_dataset=hf_load("json", data_files=data, split="train"),
        processing_class=AutoTokenizer.from_pretrained(model_dir), peft_config=_lora(),
    )
    return trainer.train().metrics["train_runtime"]


def run_seed_style(model_dir: str, data: str, steps: int, out: str) -> float:
    """What the tutorials do: pad to 512, labels = input_ids, loss on prompt and padding alike."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]

    class Padded(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            text = tok.apply_chat_template(rows[i]["messages"], tokenize=False)
            enc = tok(text, padding="max_length", truncation=True, max_length=512, return_tensors="pt")
            ids = enc["input_ids"][0]
            return {"input_ids": ids, "attention_mask": enc["attention_mask"][0], "labels": ids.clone()}

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), _lora())
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=BATCH, learning_rate=LR, max_steps=steps, use_cpu=True,
        report_to=[], save_strategy="no", logging_steps=steps, seed=SEED, dataloader_num_workers=0,
    )
    return Trainer(model=model, args=args, train_dataset=Padded()).train().metrics["train_runtime"]


def make_pairs(data: Path, path: Path) -> None:
    """OpenAI preference rows from the chat rows: each answer preferred over another row's answer."""
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rnd = random.Random(SEED)
    with path.open("w") as f:
        for row in rows:
            user, answer = row["messages"]
            other = rnd.choice(rows)["messages"][1]
            f.write(json.dumps({"input": {"messages": [user]}, "preferred_output": [answer],
                                "non_preferred_output": [other]}) + "\n")


def mean_pair_tokens(model_dir: Path, pairs: Path) -> float:
    from transformers import AutoTokenizer

    from trainer.data import load_dataset
    from trainer.encoding import encode_dataset

    rows, _ = encode_dataset(AutoTokenizer.from_pretrained(model_dir), load_dataset(pairs), 512)
    return sum(len(r.chosen) + len(r.rejected) for r in rows) / len(rows)


def run_ftserve_preference(stage: str, model_dir: str, data: str, steps: int, out: str) -> float:
    """ftserve's recipe on pairs (`dpo`) or labelled answers (`kto`), beta 0.1."""
    from trainer.config import TrainConfig
    from trainer.recipe import train

    cfg = TrainConfig.from_mapping(dict(
        model_name_or_path=model_dir, dataset=data, output_dir=out, stage=stage, pref_beta=0.1,
        per_device_train_batch_size=BATCH, learning_rate=LR, lora_rank=RANK, lora_alpha=ALPHA,
        lora_target="all-linear", max_steps=steps, cutoff_len=512, num_threads=THREADS, seed=SEED,
        logging_steps=steps,
    ))
    started = time.perf_counter()
    train(cfg)
    return time.perf_counter() - started


def run_trl_dpo(model_dir: str, data: str, steps: int, out: str) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": r["input"]["messages"], "chosen": r["preferred_output"],
                                  "rejected": r["non_preferred_output"]} for r in rows])
    args = DPOConfig(
        output_dir=out, per_device_train_batch_size=BATCH, learning_rate=LR, max_steps=steps, max_length=512,
        beta=0.1, loss_type=["sigmoid"], precompute_ref_log_probs=True, precompute_ref_batch_size=BATCH,
        use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], save_strategy="no",
        logging_steps=steps, seed=SEED, dataloader_num_workers=0, lr_scheduler_type="cosine",
    )
    started = time.perf_counter()
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, train_dataset=dataset,
                         processing_class=AutoTokenizer.from_pretrained(model_dir), peft_config=_lora())
    trainer.train()
    return time.perf_counter() - started


def make_labelled(pairs: Path, path: Path) -> None:
    """KTO rows from the pairs: the preferred answer labelled desirable, the other undesirable."""
    with path.open("w") as f:
        for line in pairs.read_text().splitlines():
            pair = json.loads(line)
            for key, label in (("preferred_output", True), ("non_preferred_output", False)):
                f.write(json.dumps({"messages": pair["input"]["messages"] + pair[key], "label": label}) + "\n")


def mean_labelled_tokens(model_dir: Path, labelled: Path) -> float:
    from transformers import AutoTokenizer

    from trainer.data import load_dataset
    from trainer.encoding import encode_dataset

    rows, _ = encode_dataset(AutoTokenizer.from_pretrained(model_dir), load_dataset(labelled), 512)
    return sum(len(r.completion) for r in rows) / len(rows)


def run_trl_kto(model_dir: str, data: str, steps: int, out: str) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:], "label": r["label"]}
                                 for r in rows])
    args = KTOConfig(
        output_dir=out, per_device_train_batch_size=BATCH, learning_rate=LR, max_steps=steps, max_length=512,
        beta=0.1, precompute_ref_log_probs=True, use_cpu=True, bf16=False, gradient_checkpointing=False,
        report_to=[], save_strategy="no", logging_steps=steps, seed=SEED, dataloader_num_workers=0, lr_scheduler_type="cosine",
    )
    started = time.perf_counter()
    trainer = KTOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, train_dataset=dataset,
                         processing_class=AutoTokenizer.from_pretrained(model_dir), peft_config=_lora())
    trainer.train()
    return time.perf_counter() - started


METHODS = {"ftserve": run_ftserve, "trl": run_trl, "seed_style": run_seed_style,
           "ftserve_dpo": functools.partial(run_ftserve_preference, "dpo"), "trl_dpo": run_trl_dpo,
           "ftserve_kto": functools.partial(run_ftserve_preference, "kto"), "trl_kto": run_trl_kto}


def child(method: str, model_dir: str, data: str, steps: int) -> None:
    import torch

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as out:
        seconds = METHODS[method](model_dir, data, steps, out)
    print(json.dumps({"seconds": seconds}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--shape", nargs="+", choices=["tiny", "110m", "0.5b"],
                    help="instead: ftserve vs LLaMA-Factory vs TRL at these model shapes (bench/train_shape.py)")
    ap.add_argument("--profile-shape", choices=["tiny", "110m", "0.5b"],
                    help="instead: split ftserve's recipe time at this shape by kind of work (torch.profiler)")
    ap.add_argument("--rft", action="store_true",
                    help="instead: a reinforcement job vs TRL's GRPOTrainer, and TTFT during it (bench/rft.py)")
    ap.add_argument("--peak", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=4, metavar=("METHOD", "MODEL", "DATA", "STEPS"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.peak:
        from bench.train_shape import matmul_peak

        return print(json.dumps({"gflops": matmul_peak(THREADS)}))
    if a.rft:
        from bench import rft

        return rft.main()
    if a.profile_shape:
        from bench import train_shape

        return train_shape.write_profile(a.profile_shape, a.out or train_shape.PROFILE)
    if a.shape:
        from bench import train_shape

        return train_shape.main(a.shape, a.repeats, a.out or train_shape.RESULTS)
    a.out = a.out or RESULTS
    if a.child:
        return child(a.child[0], a.child[1], a.child[2], int(a.child[3]))

    from trainer.tiny_model import cached_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    model_dir = cached_tiny_model()  # built once per machine (the same bytes as a fresh build)
    data = work / "data.jsonl"
    make_dataset(data, a.rows)
    row_tokens = mean_row_tokens(model_dir, data)
    pairs = work / "pairs.jsonl"
    make_pairs(data, pairs)
    pair_tokens = mean_pair_tokens(model_dir, pairs)
    labelled = work / "labelled.jsonl"
    make_labelled(pairs, labelled)
    labelled_tokens = mean_labelled_tokens(model_dir, labelled)
    per_item = {"dpo": pair_tokens, "kto": labelled_tokens}
    inputs = {"dpo": pairs, "kto": labelled}
    tokens_of = {m: a.steps * BATCH * per_item.get(m.rsplit("_", 1)[-1], row_tokens) for m in METHODS}
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    best: dict[str, float] = {}
    for rep in range(a.repeats):
        for method in METHODS:  # interleaved, so drift of the machine hits all three alike
            proc = subprocess.run(
                [sys.executable, "-m", "bench.train", "--child", method, str(model_dir),
                 str(inputs.get(method.rsplit("_", 1)[-1], data)), str(a.steps)],
                capture_output=True, text=True, env=env, cwd=REPO,
            )
            if proc.returncode != 0:
                sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
            seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
            best[method] = min(best.get(method, float("inf")), seconds)
            print(f"run {rep + 1} {method:11s} {seconds:7.2f} s  {tokens_of[method] / seconds:8.0f} tok/s", flush=True)

    import torch
    import transformers
    import trl

    result = {
        **{f"{m}_tokens_per_s": round(tokens_of[m] / best[m], 1) for m in METHODS},
        "ftserve_vs_trl": round(best["trl"] / best["ftserve"], 3),
        "ftserve_vs_seed_style": round(best["seed_style"] / best["ftserve"], 3),
        "ftserve_dpo_vs_trl_dpo": round(best["trl_dpo"] / best["ftserve_dpo"], 3),
        "ftserve_kto_vs_trl_kto": round(best["trl_kto"] / best["ftserve_kto"], 3),
        "setup": {"model": "ftserve tiny-model (Qwen2, 4 layers, hidden 256)", "rows": a.rows, "steps": a.steps,
                  "batch_size": BATCH, "lora_rank": RANK, "lora_target": "all-linear",
                  "mean_real_tokens_per_row": round(row_tokens, 1),
                  "mean_real_tokens_per_pair": round(pair_tokens, 1), "dpo_beta": 0.1,
                  "trl_dpo_settings": "precompute_ref_log_probs=True, max_length=512, loss_type=sigmoid",
                  "mean_real_tokens_per_labelled_row": round(labelled_tokens, 1),
                  "trl_kto_settings": "precompute_ref_log_probs=True, max_length=512, loss_type=kto, weights 1:1",
                  "repeats": a.repeats, "threads": THREADS},
        "machine": {"platform": platform.platform(), "processor": _cpu_name(), "cpus": os.cpu_count(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ftserve {result['ftserve_tokens_per_s']:.0f} tok/s = {result['ftserve_vs_trl']:.2f}x TRL, "
          f"{result['ftserve_vs_seed_style']:.2f}x seed style; DPO {result['ftserve_dpo_tokens_per_s']:.0f} tok/s = "
          f"{result['ftserve_dpo_vs_trl_dpo']:.2f}x TRL's DPOTrainer; KTO {result['ftserve_kto_tokens_per_s']:.0f} "
          f"tok/s = {result['ftserve_kto_vs_trl_kto']:.2f}x TRL's KTOTrainer  -> {a.out}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()

"""Reinforcement fine-tuning throughput: an ftserve reinforcement job vs TRL's GRPOTrainer, and what a
running job does to interactive latency.

    .venv/bin/python -m bench.train --rft        # or: .venv/bin/python -m bench.rft

Both train the same LoRA (rank 8, alpha 16, all linear layers) of the tiny model with GRPO on the same 32
prompts ("Tell me about X."), the same reward (1 for an answer of at most eight words, else 0), the same
group size (8 answers per prompt), 4 prompts per step, 8 optimizer steps, learning rate 2e-3, temperature
1, answers of at most 48 tokens, no KL penalty, one update per batch of samples. Throughput: answers
generated and graded per second, and adapter updates per second, over the whole run (sampling, grading
and the updates).

  ftserve   a reinforcement job through the openai client on a real server (its rollouts sampled by the
            server's vLLM engine with the step's adapter hot-loaded, graded there by a python grader in
            its sandbox); timed by the trainer's own clock, from its first step's rollout to its last
            update (the events' elapsed_s), validation off
  trl       trl.GRPOTrainer with peft LoRA in a child process of this one, on its best CPU settings:
            generation with transformers (TRL's vLLM modes need CUDA: `vllm_mode="colocate"` and the
            `trl vllm-serve` server are GPU-only), no gradient checkpointing, use_cpu, fp32,
            num_iterations 1, beta 0 (no reference model), the reward a plain Python function in the
            process; timed as its train_runtime

Interactive TTFT: streamed chat requests one at a time to the same server, idle and while the ftserve
job trains (its rollouts run at batch priority through the offline lane).

Writes bench/results/rft.json and prints the ratios.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "rft.json"
TOPICS = ["cats", "dogs", "the moon", "Paris", "music", "rivers", "bread", "chess", "winter", "trains", "coffee",
          "the sea", "birds", "gardens", "clocks", "mountains", "books", "rain", "bicycles", "tea", "stars",
          "forests", "cheese", "boats", "snow", "maps", "bees", "castles", "kites", "deserts", "apples", "bridges"]
PROMPTS, GROUP, STEPS, LR, MAX_TOKENS, THREADS = 4, 8, 8, 2e-3, 48, 1
SOURCE = "def grade(sample, item):\n    return 1.0 if len(sample['output_text'].split()) <= 8 else 0.0\n"
MARK = "RFT-RESULT "


def run_trl(model_dir: str, out: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(THREADS)

    def short(completions, **_):
        return [1.0 if len(c[0]["content"].split()) <= 8 else 0.0 for c in completions]

    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Tell me about {t}."}]} for t in TOPICS])
    args = GRPOConfig(
        output_dir=out, per_device_train_batch_size=PROMPTS * GROUP, num_generations=GROUP, max_steps=STEPS,
        learning_rate=LR, max_completion_length=MAX_TOKENS, temperature=1.0, beta=0.0, num_iterations=1,
        use_cpu=True, bf16=False, gradient_checkpointing=False, use_vllm=False, report_to=[],
        save_strategy="no", logging_steps=1, seed=0, lr_scheduler_type="cosine", dataloader_num_workers=0)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=short, args=args,
                          train_dataset=data, processing_class=AutoTokenizer.from_pretrained(model_dir),
                          peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    seconds = trainer.train().metrics["train_runtime"]
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {"seconds": round(seconds, 2), "samples_per_s": round(STEPS * PROMPTS * GROUP / seconds, 2),
            "updates_per_s": round(STEPS / seconds, 3), "reward_first_step": rewards[0], "reward_last_step": rewards[-1]}


def run_ftserve(server) -> dict:
    client = server.client(timeout=300)
    rows = "\n".join(json.dumps({"messages": [{"role": "user", "content": f"Tell me about {t}."}]}) for t in TOPICS)
    file = client.files.create(file=("prompts.jsonl", io.BytesIO(rows.encode())), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, seed=1, method={
        "type": "reinforcement", "reinforcement": {
            "grader": {"type": "python", "name": "short", "source": SOURCE},
            "hyperparameters": {"batch_size": PROMPTS, "group_size": GROUP, "n_epochs": 1, "learning_rate": LR,
                                "max_completion_tokens": MAX_TOKENS, "n_checkpoints": 0}}})
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.5)
    assert job.status == "succeeded", job.error
    steps = [e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"]
    last, first = max(steps, key=lambda m: m["step"]), min(steps, key=lambda m: m["step"])
    seconds = last["elapsed_s"]
    return {"seconds": round(seconds, 2), "samples_per_s": round(STEPS * PROMPTS * GROUP / seconds, 2),
            "updates_per_s": round(STEPS / seconds, 3), "reward_first_step": first["train_reward_mean"],
            "reward_last_step": last["train_reward_mean"],
            "rollout_s_per_step": round(sum(m["rollout_s"] for m in steps) / len(steps), 3),
            "grade_s_per_step": round(sum(m["grade_s"] for m in steps) / len(steps), 3)}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(MARK + json.dumps(run_trl(sys.argv[2], sys.argv[3])), flush=True)
        return
    import httpx

    from bench.batch import Probes, _stats, _ttft
    from tests.support.server import Server
    from trainer.tiny_model import cached_tiny_model

    model = cached_tiny_model()
    work = Path(tempfile.mkdtemp(prefix="bench-rft-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    done = subprocess.run([sys.executable, "-m", "bench.rft", "--child", str(model), str(work / "trl")],
                          capture_output=True, text=True, env=env, cwd=REPO)  # the machine to itself, first
    if done.returncode != 0:
        raise SystemExit(f"TRL's run failed:\n{done.stderr[-3000:]}")
    trl = json.loads(next(line for line in done.stdout.splitlines() if line.startswith(MARK))[len(MARK):])
    # LoRA slots sized to the rank served (Configuration: max_lora_rank): on a CPU they compute at that rank
    server = Server(work / "data", model=model, max_lora_rank=8).start(timeout=600)
    try:
        http = httpx.Client(base_url=server.url, timeout=300)
        for _ in range(3):
            _ttft(http)
        idle = Probes(server.url, 30)
        idle.run()
        ftserve_alone = run_ftserve(server)
        probes = Probes(server.url)
        probes.start()
        started = time.perf_counter()
        beside = run_ftserve(server)
        probes.stop.set()
        probes.join()
        during = probes.within(started, time.perf_counter())
    finally:
        server.stop()
    result = {
        "ftserve": ftserve_alone, "trl_grpo": trl, "ftserve_beside_an_interactive_user": beside,
        "samples_per_s_vs_trl": round(ftserve_alone["samples_per_s"] / trl["samples_per_s"], 2),
        "idle_ttft": _stats([t for _, t in idle.samples]), "ttft_during_rft": _stats(during),
    }
    result["ttft_during_rft_vs_idle"] = round(result["ttft_during_rft"]["median_ms"] / result["idle_ttft"]["median_ms"], 2)
    import trl as trl_module
    import vllm

    result["setup"] = {"model": "ftserve tiny-model", "prompts_per_step": PROMPTS, "group_size": GROUP,
                       "steps": STEPS, "max_completion_tokens": MAX_TOKENS, "trainer_threads": THREADS,
                       "trl": trl_module.__version__, "vllm": vllm.__version__, "cpus": os.cpu_count(),
                       "platform": platform.platform()}
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

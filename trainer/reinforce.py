"""Reinforcement fine-tuning (GRPO) of a LoRA adapter: setup -> train -> cleanup, top to bottom.

Each step takes `per_device_train_batch_size` prompts and asks the server for `group_size` answers to
each, sampled by its vLLM engine from the adapter as it stands now (sent with the request, hot-loaded
there as the step's policy) and scored there with the job's grader (trainer/rollouts.py). The trainer
never generates token by token itself. Then, with Shao et al.'s (2024) group-relative advantages:

    A_i   = (r_i - mean(r_group)) / (std(r_group) + 1e-4)
    loss  = sum over answer tokens t of  -min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps) A_i) + kl_coef * KL_t
            divided by the step's answer tokens (DAPO's token-level normalisation, TRL's default)
    KL_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1      (Schulman's k3 estimator)

`rho_t` is the ratio of the policy's token probability to the one that sampled it; one update per batch
of samples keeps it at 1 in value (its gradient is the policy gradient). `ref` is the starting model,
the base with the adapter disabled: no second copy of the model. Metrics per step: the reward's mean
and std, each sub-grader's mean (a multi grader's), KL, mean answer length, grader errors; at
`eval_interval` (and each checkpoint and the end) the validation reward over `eval_samples` answers per
validation prompt. Checkpoints, resume and SIGTERM behave as in trainer/recipe.py.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

from trainer import recipe
from trainer.config import TrainConfig
from trainer.contract import EVENTS_FILE, Checkpoint, Done, Evaluation, Info, Interrupted, Metrics, RolloutSample
from trainer.data.prompts import Prompt, load_prompts
from trainer.reporting import Reporter
from trainer.rollouts import RolloutClient

SHOWN_SAMPLES = 3  # answers per step shown in a message event


def train(cfg: TrainConfig, emit: Callable[[dict], None] = lambda event: None) -> recipe.TrainResult:
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    events_file = (out_dir / EVENTS_FILE).open("a")
    reporter = Reporter(out_dir, cfg.report_to, cfg.plot_loss)

    def log(event) -> None:
        events_file.write(event.line() + "\n")
        events_file.flush()
        emit(event.as_dict())
        if isinstance(event, Metrics):
            reporter.metrics(event.values)

    # ---------------------------------------------------------------- setup
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    recipe._seed_everything(cfg.seed)
    resume_dir = recipe._resume_dir(cfg, out_dir)
    prompts, valid = _prompts(cfg)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path, dtype=recipe._dtype(cfg.dtype, device),
                                                 trust_remote_code=cfg.trust_remote_code).to(device)
    model = recipe.with_lora(cfg, model, log)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch, total_steps = recipe.plan_steps(len(prompts), cfg)
    scheduler = get_scheduler("constant_with_warmup" if cfg.lr_scheduler_type == "constant" else cfg.lr_scheduler_type,
                              optimizer, num_warmup_steps=round(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    client = RolloutClient(cfg.rollout_url, cfg.grader)
    pos = recipe.Position()
    if resume_dir is not None:
        pos = recipe._load_checkpoint(resume_dir, model, optimizer, scheduler, device)
        log(Info(message=f"resumed from {resume_dir.name} at step {pos.step}"))
    log(Info(message=f"reinforcement fine-tuning: {total_steps} steps of {cfg.per_device_train_batch_size} prompts x "
             f"{cfg.group_size} answers; {len(prompts)} training and {len(valid)} validation prompts, "
             f"{sum(p.numel() for p in params):,} trainable parameters", total_steps=total_steps))

    if valid and resume_dir is None:  # before: the starting model's validation reward, with the job's grader
        log(_evaluation(0, client.sample(model, 0, "valid", valid, cfg.eval_samples, cfg).samples, valid))

    # ---------------------------------------------------------------- train
    started, start_tokens, graded = time.perf_counter(), pos.tokens, 0
    metrics: dict = {}
    model.train()
    while pos.step < total_steps:
        if pos.batch_in_epoch >= steps_per_epoch:
            pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
        order = random.Random(cfg.seed * 1000 + pos.epoch).sample(range(len(prompts)), len(prompts))
        size = cfg.per_device_train_batch_size
        batch = [prompts[i] for i in order[pos.batch_in_epoch * size:(pos.batch_in_epoch + 1) * size]]
        pos.batch_in_epoch += 1

        rollout = client.sample(model, pos.step, "train", batch, cfg.group_size, cfg)
        samples = rollout.samples
        graded += len(samples)
        advantages = _group_advantages(samples)
        stats = _update(model, samples, advantages, cfg, pad_id, device)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        pos.step += 1
        pos.tokens += stats["tokens"]

        elapsed = time.perf_counter() - started
        metrics = {"step": pos.step, "train_loss": round(stats["loss"], 6), **_reward_metrics("train", samples),
                   "train_kl": round(stats["kl"], 6), "rollout_s": round(rollout.generate_s, 3),
                   "grade_s": round(rollout.grade_s, 3), "samples_per_s": round(graded / max(elapsed, 1e-9), 2)}
        save_now = cfg.save_steps > 0 and pos.step % cfg.save_steps == 0 and pos.step < total_steps
        eval_now = valid and ((cfg.eval_interval > 0 and pos.step % cfg.eval_interval == 0) or save_now
                              or pos.step == total_steps)
        if eval_now:
            checked = client.sample(model, pos.step, "valid", valid, cfg.eval_samples, cfg).samples
            metrics.update(_reward_metrics("valid", checked))
            if pos.step == total_steps:  # after: the same measure as before step 1
                metrics["full_valid_reward_mean"] = metrics["valid_reward_mean"]
                log(_evaluation(pos.step, checked, valid))
        log(Info(message=_shown(pos.step, batch, samples), step=pos.step,
                 samples=[{"prompt": batch[s.prompt_index].messages[-1]["content"], "answer": s.text,
                           "reward": s.reward} for s in samples[:SHOWN_SAMPLES]]))
        log(Metrics(**{**metrics, "total_steps": total_steps, "learning_rate": lr, "tokens": pos.tokens,
                       "tokens_per_s": round((pos.tokens - start_tokens) / max(elapsed, 1e-9), 1),
                       "elapsed_s": round(elapsed, 3)}))
        if save_now:
            path = recipe._save_checkpoint(out_dir, model, optimizer, scheduler, pos, metrics)
            log(Checkpoint(step=pos.step, path=str(path), metrics=metrics))
        if recipe.stop_requested() and pos.step < total_steps:
            if not save_now:
                path = recipe._save_checkpoint(out_dir, model, optimizer, scheduler, pos, metrics)
                log(Checkpoint(step=pos.step, path=str(path), metrics=metrics))
            log(Interrupted(step=pos.step, message=f"stopped at step {pos.step} on request; "
                            "resume from the last checkpoint"))
            events_file.close()
            reporter.close()
            return recipe.TrainResult(None, pos.step, pos.tokens, metrics)

    # ---------------------------------------------------------------- cleanup
    client.close()
    adapter_path = recipe._publish_dir(out_dir / "adapter", lambda tmp: recipe._save_adapter(model, tmp))
    (adapter_path / "training_metrics.json").write_text(json.dumps(metrics))
    log(Done(adapter_path=str(adapter_path), steps=pos.step, trained_tokens=pos.tokens,
             elapsed_s=round(time.perf_counter() - started, 3), metrics=metrics))
    events_file.close()
    reporter.close()
    return recipe.TrainResult(adapter_path, pos.step, pos.tokens, metrics)


# --------------------------------------------------------------------------------------------
# helpers, in the order the recipe uses them
# --------------------------------------------------------------------------------------------
def _prompts(cfg: TrainConfig) -> tuple[list[Prompt], list[Prompt]]:
    prompts = load_prompts(cfg.dataset)[: cfg.max_samples]
    if cfg.eval_dataset:
        return prompts, load_prompts(cfg.eval_dataset)[: cfg.max_samples]
    if cfg.val_size:
        held = set(random.Random(cfg.seed).sample(range(len(prompts)), max(1, round(cfg.val_size * len(prompts)))))
        return [p for i, p in enumerate(prompts) if i not in held], [p for i, p in enumerate(prompts) if i in held]
    return prompts, []


def _group_advantages(samples: list[RolloutSample]) -> list[float]:
    groups: dict[int, list[float]] = {}
    for s in samples:
        groups.setdefault(s.prompt_index, []).append(s.reward)
    stats = {k: (sum(v) / len(v), _std(v)) for k, v in groups.items()}
    return [(s.reward - stats[s.prompt_index][0]) / (stats[s.prompt_index][1] + 1e-4) for s in samples]


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _update(model, samples: list[RolloutSample], advantages: list[float], cfg: TrainConfig, pad_id: int,
            device) -> dict:
    """Accumulate the step's gradient over micro-batches of answers; the loss and KL per answer token."""
    rows = [(s.prompt_token_ids + s.token_ids)[: cfg.cutoff_len] for s in samples]
    starts = [len(s.prompt_token_ids) for s in samples]
    n_tokens = max(1, sum(max(0, len(r) - st) for r, st in zip(rows, starts)))
    loss_sum = kl_sum = 0.0
    size = max(1, cfg.per_device_train_batch_size * cfg.group_size // max(1, cfg.gradient_accumulation_steps))
    for first in range(0, len(rows), size):
        part = range(first, min(first + size, len(rows)))
        width = max(len(rows[i]) for i in part)
        ids = torch.full((len(part), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(part), width), dtype=torch.long)
        answer = torch.zeros((len(part), width), dtype=torch.bool)
        for j, i in enumerate(part):
            ids[j, : len(rows[i])] = torch.tensor(rows[i])
            attention[j, : len(rows[i])] = 1
            answer[j, starts[i]: len(rows[i])] = True
        ids, attention, answer = ids.to(device), attention.to(device), answer[:, 1:].to(device)
        adv = torch.tensor([advantages[i] for i in part], device=device).unsqueeze(1)
        logps = _token_logps(model, ids, attention)
        ratio = torch.exp(logps - logps.detach())
        per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - cfg.clip_epsilon, 1 + cfg.clip_epsilon) * adv)
        kl = torch.zeros_like(logps)
        if cfg.kl_coef > 0:
            with torch.no_grad(), model.disable_adapter():
                ref = _token_logps(model, ids, attention)
            kl = torch.exp(ref - logps) - (ref - logps) - 1
            per_token = per_token + cfg.kl_coef * kl
        loss = (per_token * answer).sum() / n_tokens
        loss.backward()
        loss_sum += loss.item()
        kl_sum += float((kl.detach() * answer).sum())
    return {"loss": loss_sum, "kl": kl_sum / n_tokens, "tokens": n_tokens}


def _token_logps(model, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    return torch.gather(logits.log_softmax(-1), 2, ids[:, 1:].unsqueeze(2)).squeeze(2)


def _reward_metrics(split: str, samples: list[RolloutSample]) -> dict:
    rewards = [s.reward for s in samples]
    mean = sum(rewards) / max(len(rewards), 1)
    out = {f"{split}_reward_mean": round(mean, 6),
           f"{split}_reward_std": round(math.sqrt(sum((r - mean) ** 2 for r in rewards) / max(len(rewards), 1)), 6),
           f"{split}_sample_length": round(sum(len(s.token_ids) for s in samples) / max(len(samples), 1), 3),
           f"{split}_grader_errors": sum(1 for s in samples if s.errors)}
    for name in sorted({k for s in samples for k in s.sub_rewards}):
        values = [s.sub_rewards.get(name, 0.0) for s in samples]
        out[f"{split}_reward_{name}_mean"] = round(sum(values) / len(values), 6)
    return out


def _evaluation(step: int, samples: list[RolloutSample], prompts: list[Prompt]) -> Evaluation:
    """The validation reward and answers before training (step 0) or after it."""
    return Evaluation(step=step, metrics=_reward_metrics("valid", samples), answers=[
        {"prompt": prompts[s.prompt_index].messages[-1]["content"], "answer": s.text, "reward": s.reward}
        for s in samples])


def _shown(step: int, batch: list[Prompt], samples: list[RolloutSample]) -> str:
    lines = [f"step {step}: sampled answers"]
    for s in samples[:SHOWN_SAMPLES]:
        prompt = batch[s.prompt_index].messages[-1]["content"]
        lines.append(f"{prompt[:60]!r} -> {s.text[:120]!r} (reward {s.reward:g})")
    return "\n".join(lines)

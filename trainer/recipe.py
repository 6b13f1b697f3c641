"""The LoRA fine-tuning recipe: setup -> train -> cleanup, top to bottom.

    result = train(TrainConfig.from_file("examples/tiny-sft.yaml"))

Events (trainer/contract.py: Info, Metrics, Evaluation, Checkpoint, Done, Interrupted; also appended to
`output_dir/events.jsonl`) go to `emit` as dicts as they happen. Checkpoints and the last step's metrics
carry the before/after scores too: "valid_exact_match", "valid_fuzzy_match", "general_perplexity",
"general_agreement" (and "full_valid_exact_match", "full_valid_fuzzy_match").

A checkpoint (`output_dir/checkpoints/step-N/`) is a loadable PEFT adapter plus `trainer_state.pt`
(optimizer, scheduler, data position, RNG). Resuming from it reproduces the uninterrupted run
byte for byte at the same thread count: the data order is a function of (seed, epoch) alone.

Data-parallel: run under torch.distributed (e.g. by Ray Train, see trainer/remote.py), each of the
N processes takes every Nth row of each batch; the loss is normalised by the whole batch's label
tokens and the gradients are summed across processes, so a step is the same step one process
would take on the whole batch. Rank 0 alone logs, evaluates and writes checkpoints and the adapter.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

from adapters.atomic import staged
from trainer.config import TrainConfig, template_mismatch
from trainer.contract import EVENTS_FILE, STATE_FILE, Checkpoint, Done, Evaluation, Info, Interrupted, Metrics
from trainer.data import Dataset, ShareGPTTags, check_stage, load_dataset
from trainer.data.dataset_info import is_dataset_names, load_named_datasets
from trainer.encoding import encode_dataset, length_grouped_batches
from trainer.evaluation import BeforeAfter
from trainer.objectives import Kto, LanguageModeling, Preference
from trainer.reporting import Reporter

Emit = Callable[[dict], None]
BASELINE_FILE = "baseline_answers.json"
CHOSEN_DROP_WARNING = 1.0  # nats per token the chosen answers' log-probability may fall before a warning
_stop_requested = False


def stop_requested() -> bool:
    return _stop_requested


def request_stop(*_args) -> None:
    """Ask a running `train` to checkpoint after the current step and return (a SIGTERM handler)."""
    global _stop_requested
    _stop_requested = True


@dataclass
class TrainResult:
    adapter_path: Path | None  # None when interrupted: the run resumes from its last checkpoint
    steps: int
    trained_tokens: int
    last_metrics: dict


@dataclass
class Position:
    """Where training stands: everything besides weights and optimizer that resume needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tokens: int = 0


def train(cfg: TrainConfig, emit: Emit = lambda event: None) -> TrainResult:
    if cfg.stage == "grpo":  # reinforcement fine-tuning: its own loop, samples from the serving engine
        from trainer.reinforce import train as reinforce

        return reinforce(cfg, emit)
    rank, world = _distributed()
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    events_file = (out_dir / EVENTS_FILE).open("a")

    reporter = Reporter(out_dir, cfg.report_to, cfg.plot_loss) if rank == 0 else None

    def log(event: Info | Metrics | Evaluation | Checkpoint | Done | Interrupted) -> None:
        if rank == 0:
            events_file.write(event.line() + "\n")
            events_file.flush()
            emit(event.as_dict())
            if isinstance(event, Metrics):
                reporter.metrics(event.values)

    # ---------------------------------------------------------------- setup
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    dtype = _dtype(cfg.dtype, device)
    _seed_everything(cfg.seed)
    resume_dir = _resume_dir(cfg, out_dir)

    tokenizer = AutoTokenizer.from_pretrained(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_rows, eval_rows = _load_rows(cfg, tokenizer, log)

    model = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path, dtype=dtype,
                                                 trust_remote_code=cfg.trust_remote_code).to(device)
    if (warning := template_mismatch(cfg.template, model.config.model_type)) is not None:
        log(Info(message=f"warning: {warning}"))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model = with_lora(cfg, model, log)
    objective = LanguageModeling()
    if cfg.stage in ("dpo", "kto"):  # the reference policy is the model as it starts: log-probs computed once
        objective = Preference(cfg.pref_beta, cfg.pref_loss, cfg.simpo_gamma, cfg.pref_ftx) if cfg.stage == "dpo" \
            else Kto(cfg.pref_beta, cfg.kto_chosen_weight, cfg.kto_rejected_weight)
        if objective.needs_reference:
            for rows in (train_rows, eval_rows):
                objective.precompute_reference(model, rows, cfg.per_device_train_batch_size, pad_id, device)

    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.loraplus_lr_ratio:  # LoRA+: the B matrices at ratio x the learning rate
        from peft.optimizers import create_loraplus_optimizer

        optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, lr=cfg.learning_rate,
                                              loraplus_lr_ratio=cfg.loraplus_lr_ratio, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    lengths = [len(r) for r in train_rows]
    steps_per_epoch, total_steps = plan_steps(len(train_rows), cfg)
    scheduler = get_scheduler(
        "constant_with_warmup" if cfg.lr_scheduler_type == "constant" else cfg.lr_scheduler_type,
        optimizer,
        num_warmup_steps=round(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )

    pos = Position()
    if resume_dir is not None:
        pos = _load_checkpoint(resume_dir, model, optimizer, scheduler, device)
        log(Info(message=f"resumed from {resume_dir.name} at step {pos.step}"))
    # before/after: the model as it starts, asked the validation prompts (trainer/evaluation.py)
    judge = BeforeAfter(tokenizer, eval_rows, device) if cfg.stage == "sft" and rank == 0 else None
    if judge is not None and judge.active:
        if resume_dir is not None and (resume_dir / BASELINE_FILE).is_file():
            judge.first_general = json.loads((resume_dir / BASELINE_FILE).read_text())
        else:
            before, answers = judge.measure(model)
            log(Evaluation(step=0, metrics=before, answers=answers))
    log(Info(message=f"training {total_steps} steps on {device.type} ({dtype})"
             + (f" x {world} data-parallel workers" if world > 1 else "") + "; "
             f"{len(train_rows)} examples, {steps_per_epoch} steps per epoch, "
             f"{sum(p.numel() for p in params):,} trainable parameters", total_steps=total_steps))

    # ---------------------------------------------------------------- train
    epoch_batches = length_grouped_batches(lengths, cfg.per_device_train_batch_size, cfg.seed, pos.epoch)
    warned = False  # the chosen answers' falling likelihood, reported once
    started, start_tokens = time.perf_counter(), pos.tokens
    metrics: dict = {}
    model.train()
    while pos.step < total_steps:
        group = []
        for _ in range(cfg.gradient_accumulation_steps):
            if pos.batch_in_epoch >= len(epoch_batches):
                pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
                epoch_batches = length_grouped_batches(
                    lengths, cfg.per_device_train_batch_size, cfg.seed, pos.epoch
                )
            batch = epoch_batches[pos.batch_in_epoch]
            share = batch[rank::world]  # this process's rows of the batch (all of them in one process)
            group.append((objective.collate([train_rows[i] for i in share or batch[:1]], pad_id),
                          1.0 if share else 0.0))
            pos.batch_in_epoch += 1
        # Average over the items (label tokens, or pairs) of the whole step, every process's, so
        # accumulation and data parallelism do not weight small micro-batches up.
        n_items = int(_sum_over_workers(sum(objective.n_items(b) * w for b, w in group), world, device))
        sums: dict[str, float] = {}
        for batch, weight in group:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, stats = objective.loss(model, batch, n_items)
            (loss * weight).backward()
            for key, value in stats.items():
                sums[key] = sums.get(key, 0) + value * weight
        if world > 1:  # the gradient of the whole batch: the sum of every process's
            for p in params:
                torch.distributed.all_reduce(p.grad)
            sums = {key: _sum_over_workers(value, world, device) for key, value in sums.items()}
        pos.tokens += int(sums["tokens"])
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        pos.step += 1

        elapsed = time.perf_counter() - started
        metrics = {"step": pos.step, **objective.metrics("train", sums, n_items)}
        save_now = cfg.save_steps > 0 and pos.step % cfg.save_steps == 0 and pos.step < total_steps
        eval_now = eval_rows and (
            (cfg.eval_steps > 0 and pos.step % cfg.eval_steps == 0) or save_now or pos.step == total_steps
        )
        if eval_now and rank == 0:  # over the whole validation set; at the last step, OpenAI's `full_valid_*` too
            valid = _evaluate(model, objective, eval_rows, cfg.per_device_train_batch_size, pad_id, device)
            answers = None
            if judge is not None and judge.active and (save_now or pos.step == total_steps):
                after, answers = judge.measure(model)
                valid.update(after)
            metrics.update(valid)
            if pos.step == total_steps:
                metrics.update({f"full_{key}": value for key, value in valid.items() if key.startswith("valid_")})
                if answers is not None:
                    log(Evaluation(step=pos.step, metrics=valid, answers=answers))
        drop = metrics.get("train_chosen_logp_change")
        if drop is not None and drop < -CHOSEN_DROP_WARNING and not warned:  # DPO's classic failure, told once
            warned = True
            log(Info(message=f"warning: at step {pos.step} the chosen answers' log-probability is {-drop:.2f} "
                     "per token below where it started: both answers are being unlearnt, the way preference "
                     "training collapses into repeated fragments; set pref_ftx (e.g. 1.0), lower the learning "
                     "rate or raise pref_beta", chosen_logp_change=drop, step=pos.step))
        if eval_now or pos.step % cfg.logging_steps == 0 or pos.step == total_steps:
            log(Metrics(**{**metrics, "total_steps": total_steps, "learning_rate": lr, "tokens": pos.tokens,
                           "tokens_per_s": round((pos.tokens - start_tokens) / max(elapsed, 1e-9), 1),
                           "elapsed_s": round(elapsed, 3)}))
        if save_now and rank == 0:
            path = _save_checkpoint(out_dir, model, optimizer, scheduler, pos, metrics, judge)
            log(Checkpoint(step=pos.step, path=str(path), metrics=metrics))
        if _stop_requested and pos.step < total_steps and world == 1:
            if not save_now:
                path = _save_checkpoint(out_dir, model, optimizer, scheduler, pos, metrics, judge)
                log(Checkpoint(step=pos.step, path=str(path), metrics=metrics))
            log(Interrupted(step=pos.step, message=f"stopped at step {pos.step} on request; "
                            "resume from the last checkpoint"))
            events_file.close()
            if reporter is not None:
                reporter.close()
            return TrainResult(None, pos.step, pos.tokens, metrics)

    # ---------------------------------------------------------------- cleanup
    if rank != 0:
        events_file.close()
        return TrainResult(None, pos.step, pos.tokens, metrics)
    adapter_path = _publish_dir(out_dir / "adapter", lambda tmp: _save_adapter(model, tmp))
    (adapter_path / "training_metrics.json").write_text(json.dumps(metrics))
    elapsed = time.perf_counter() - started
    log(Done(adapter_path=str(adapter_path), steps=pos.step, trained_tokens=pos.tokens, elapsed_s=round(elapsed, 3),
             metrics=metrics))
    events_file.close()
    reporter.close()
    return TrainResult(adapter_path, pos.step, pos.tokens, metrics)


# --------------------------------------------------------------------------------------------
# helpers, in the order the recipe uses them
# --------------------------------------------------------------------------------------------
def plan_steps(n_examples: int, cfg: TrainConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) for `n_examples` training examples."""
    batches_per_epoch = math.ceil(n_examples / cfg.per_device_train_batch_size)
    steps_per_epoch = max(1, batches_per_epoch // cfg.gradient_accumulation_steps)
    total = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * steps_per_epoch)
    return steps_per_epoch, total


def with_lora(cfg: TrainConfig, model, log: Callable[[Info], None]) -> PeftModel:
    """The model with its LoRA adapter: the one a job trains on from (its weights, rank and targets), or a
    new one as the config says."""
    if cfg.adapter_name_or_path:
        model = PeftModel.from_pretrained(model, cfg.adapter_name_or_path, is_trainable=True)
        parent = model.peft_config["default"]
        log(Info(message=f"training on from the adapter {cfg.adapter_name_or_path} "
                 f"(rank {parent.r}, alpha {parent.lora_alpha})"))
    else:
        model = get_peft_model(model, LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target,
            use_rslora=cfg.use_rslora,
            task_type="CAUSAL_LM",
        ))
    model.peft_config["default"].base_model_name_or_path = cfg.served_model_name
    return model


def _distributed() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless this process is one of several under torch.distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _sum_over_workers(value: float, world: int, device: torch.device) -> float:
    if world == 1:
        return value
    total = torch.tensor([float(value)], dtype=torch.float64, device=device)  # NCCL reduces on the GPU only
    torch.distributed.all_reduce(total)
    return total.item()


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if use_bf16 else torch.float32
    return getattr(torch, name)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _resume_dir(cfg: TrainConfig, out_dir: Path) -> Path | None:
    if cfg.resume_from_checkpoint is None:
        if any((out_dir / "checkpoints").glob("step-*")):
            if not cfg.overwrite_output_dir:
                raise ValueError(f"{out_dir} already holds checkpoints: set resume_from_checkpoint ('latest' or a "
                                 "checkpoint path), overwrite_output_dir: true, or choose a new output_dir")
            for earlier in ("checkpoints", "adapter"):  # a fresh run: the earlier one's results go
                shutil.rmtree(out_dir / earlier, ignore_errors=True)
        return None
    if cfg.resume_from_checkpoint == "latest":
        return latest_checkpoint(out_dir)  # None: nothing saved yet, start from the beginning
    path = Path(cfg.resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"resume_from_checkpoint: {path} is not a checkpoint (no {STATE_FILE})")
    return path


def _read(value: str, cfg: TrainConfig, tags: ShareGPTTags) -> Dataset:
    """A data file, or LLaMA-Factory dataset names in `dataset_dir/dataset_info.json`; at most
    `max_samples` rows of each (the first ones)."""
    if is_dataset_names(value, cfg.dataset_dir):
        return load_named_datasets(value, cfg.dataset_dir, cfg.max_samples)
    dataset = load_dataset(value, cfg.data_format, tags)
    if cfg.max_samples is not None:
        dataset.examples = dataset.examples[: cfg.max_samples]
    return dataset


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = [p for p in (Path(out_dir) / "checkpoints").glob("step-*") if (p / STATE_FILE).is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


def _load_rows(cfg: TrainConfig, tokenizer, log: Callable[[Info], None]) -> tuple[list, list]:
    tags = ShareGPTTags(**cfg.sharegpt_tags)
    dataset = _read(cfg.dataset, cfg, tags)
    check_stage(cfg.stage, dataset.kind)
    rows, stats = encode_dataset(tokenizer, dataset, cfg.cutoff_len, cfg.reasoning)
    eval_rows: list = []
    if cfg.eval_dataset:
        eval_set = _read(cfg.eval_dataset, cfg, tags)
        check_stage(cfg.stage, eval_set.kind)
        eval_rows, _ = encode_dataset(tokenizer, eval_set, cfg.cutoff_len, cfg.reasoning)
    elif cfg.val_size:
        held = random.Random(cfg.seed).sample(range(len(rows)), max(1, round(cfg.val_size * len(rows))))
        eval_rows = [rows[i] for i in sorted(held)]
        rows = [r for i, r in enumerate(rows) if i not in set(held)]
    if not rows:
        raise ValueError("no training examples are left (all rows were held out or empty)")
    log(Info(message=f"{dataset.format} data: {stats.rows} rows, {len(rows)} training and "
             f"{len(eval_rows)} validation examples, {stats.label_tokens} loss tokens of {stats.tokens}",
             truncated=stats.truncated, dropped=stats.dropped))
    for note in stats.notes:
        log(Info(message=note))
    return rows, eval_rows


@torch.no_grad()
def _evaluate(model, objective, rows: list, batch_size: int, pad_id: int, device) -> dict:
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    batches = [objective.collate([rows[i] for i in order[s : s + batch_size]], pad_id)
               for s in range(0, len(order), batch_size)]
    n_items = sum(objective.n_items(b) for b in batches)
    sums: dict[str, float] = {}
    for batch in batches:
        _, stats = objective.loss(model, {k: v.to(device) for k, v in batch.items()}, n_items)
        for key, value in stats.items():
            sums[key] = sums.get(key, 0) + value
    model.train()
    return objective.metrics("valid", sums, n_items)


def _publish_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Write into a staging folder, then rename it into place: never a half-written folder."""
    with staged(final) as tmp:
        write(tmp)
    return final


def _save_adapter(model: PeftModel, path: Path) -> None:
    # Embeddings are never trained here; saying so stops peft from looking for the base config by name.
    model.save_pretrained(path, save_embedding_layers=False)


def _save_checkpoint(out_dir: Path, model, optimizer, scheduler, pos: Position, metrics: dict,
                     judge: BeforeAfter | None = None) -> Path:
    def write(tmp: Path) -> None:
        _save_adapter(model, tmp)
        torch.save({
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "position": vars(pos).copy(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }, tmp / STATE_FILE)
        (tmp / "training_metrics.json").write_text(json.dumps(metrics))
        if judge is not None and judge.first_general is not None:  # what "unchanged" means after a resume
            (tmp / BASELINE_FILE).write_text(json.dumps(judge.first_general))

    (out_dir / "checkpoints").mkdir(exist_ok=True)
    return _publish_dir(out_dir / "checkpoints" / f"step-{pos.step}", write)


def _load_checkpoint(path: Path, model: PeftModel, optimizer, scheduler, device) -> Position:
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors", device=str(device)))
    state = torch.load(path / STATE_FILE, weights_only=False, map_location=device)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return Position(**state["position"])

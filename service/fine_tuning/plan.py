"""A job's plan: `auto` hyperparameters resolved from the dataset size, and the trainer's config."""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.fine_tuning.protocol import Hyperparameters, ReinforcementHyperparameters

BASE_LEARNING_RATE = 1e-4  # learning_rate_multiplier 1.0 means this
DEFAULT_CHECKPOINTS = 3
DEFAULT_BETA = 0.1
DEFAULT_CUTOFF = 1024  # max_seq_len  # DPO's beta when `auto`


@dataclass
class Plan:
    """What `auto` resolved to, and the trainer config for a job."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    learning_rate: float
    total_steps: int
    spec: dict
    auto_note: str | None


def plan(hp: Hyperparameters, n_examples: int, base: dict) -> Plan:
    """Resolve `auto` from the dataset size and build the trainer spec (`base` holds paths and seed)."""
    from trainer.config import TrainConfig
    from trainer.recipe import plan_steps

    auto = []
    reinforcement = isinstance(hp, ReinforcementHyperparameters)
    batch = hp.batch_size
    if batch == "auto":  # reinforcement: prompts per step, each answered group_size times
        batch = max(1, min(8, n_examples)) if reinforcement else max(1, min(32, round(n_examples * 0.002)))
        auto.append(f"batch_size={batch}")
    epochs = hp.n_epochs
    if epochs == "auto":
        epochs = min(10, max(3, math.ceil(1000 / max(n_examples, 1))))
        auto.append(f"n_epochs={epochs}")
    multiplier = hp.learning_rate_multiplier
    if hp.learning_rate is not None:  # the absolute rate wins; report the multiplier it amounts to
        multiplier = hp.learning_rate / BASE_LEARNING_RATE
    elif multiplier == "auto":
        multiplier = 1.0
        auto.append(f"learning_rate_multiplier=1.0 (learning rate {BASE_LEARNING_RATE:g})")
    lr = multiplier * BASE_LEARNING_RATE
    beta = getattr(hp, "beta", None)  # DPO only
    if beta == "auto":
        beta = DEFAULT_BETA
        auto.append(f"beta={beta}")
    values = dict(
        base, num_train_epochs=epochs, per_device_train_batch_size=batch, learning_rate=lr,
        lora_rank=hp.lora_r or 8, lora_alpha=hp.lora_alpha or 2 * (hp.lora_r or 8),
        lora_dropout=hp.lora_dropout or 0.0, lora_target=hp.lora_target_modules or "all-linear",
        cutoff_len=hp.max_seq_len or DEFAULT_CUTOFF, warmup_ratio=hp.warmup_ratio or 0.0,
        resume_from_checkpoint="latest", **({"pref_beta": beta} if beta is not None else {}),
        **{key: value for key in ("pref_loss", "simpo_gamma", "pref_ftx", "reasoning_loss")
           if (value := getattr(hp, key, None)) is not None},
        **{key: value for key, name in (("kto_chosen_weight", "desirable_weight"),
                                        ("kto_rejected_weight", "undesirable_weight"))
           if (value := getattr(hp, name, None)) is not None},
        **(_reinforcement(hp, auto) if reinforcement else {}),
    )
    cfg = TrainConfig.from_mapping(values)
    _, total = plan_steps(n_examples, cfg)
    n_ckpt = DEFAULT_CHECKPOINTS if hp.n_checkpoints is None else hp.n_checkpoints
    values["save_steps"] = math.ceil(total / (n_ckpt + 1)) if n_ckpt and total > 1 else 0
    values["logging_steps"] = max(1, total // 200)
    note = "Auto-selected hyperparameters: " + ", ".join(auto) if auto else None
    return Plan(epochs, batch, multiplier, lr, total, values, note)


def _reinforcement(hp: ReinforcementHyperparameters, auto: list[str]) -> dict:
    """The trainer's GRPO settings: the group size from compute_multiplier unless given; validation at each
    checkpoint and the end unless eval_interval is given, with one answer per prompt unless eval_samples is."""
    group = hp.group_size
    if group is None:
        multiplier = 1.0 if hp.compute_multiplier == "auto" else hp.compute_multiplier
        group = max(2, round(4 * multiplier))
        if hp.compute_multiplier == "auto":
            auto.append(f"group_size={group}")
    return {"group_size": group, "kl_coef": hp.kl_coef or 0.0, "max_new_tokens": hp.max_completion_tokens or 64,
            "temperature": hp.temperature or 1.0, "eval_interval": 0 if hp.eval_interval == "auto" else hp.eval_interval,
            "eval_samples": 1 if hp.eval_samples == "auto" else hp.eval_samples}

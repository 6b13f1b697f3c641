"""The training recipe's one config: a typed dataclass, validated once on construction.

Field names follow LLaMA-Factory where it has the option, and every key of its LoRA examples is
accepted: honoured where it means something here, else kept as "accepted, no effect here" with the
reason in its docstring. Unknown keys are errors, all reported at once, each with the nearest valid key.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass

# Keys users type that are spelt otherwise here.
_REDIRECTS = {
    "lora_r": "the LLaMA-Factory key is 'lora_rank'",
    "epochs": "the key is 'num_train_epochs'",
    "batch_size": "the key is 'per_device_train_batch_size'",
    "max_seq_len": "the key is 'cutoff_len'",
}


class ConfigError(ValueError):
    """An invalid training config; `param` names the key at fault."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class TrainConfig:
    model_name_or_path: str
    """Base model: a local Hugging Face model directory (see `ftserve tiny-model`)."""

    dataset: str
    """Training data: a JSONL file or JSON array in chat, alpaca, sharegpt, preference or text format; or
    LLaMA-Factory dataset names (comma-separated) described in `dataset_dir/dataset_info.json`."""

    output_dir: str
    """Run directory: `checkpoints/step-N/`, the final `adapter/` and `events.jsonl` go here."""

    served_model_name: str | None = None
    """The base model's id as the server serves it; written to adapter_config.json. Default: model_name_or_path."""

    eval_dataset: str | None = None
    """Validation data: a file in the same format as `dataset`, or dataset names as there."""

    dataset_dir: str = "data"
    """LLaMA-Factory's folder of data files and their `dataset_info.json`, where `dataset` names are looked up."""

    mix_strategy: Literal["concat"] = "concat"
    """How several named datasets are mixed: `concat` (one after the other, then shuffled by the data order)."""

    val_size: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Fraction of `dataset` held out for validation when no `eval_dataset` is given."""

    data_format: Literal["auto", "chat", "alpaca", "sharegpt", "preference", "text", "plaintext"] = "auto"
    """Row format; `auto` detects it from the first row's keys (`plaintext`: a .txt file)."""

    sharegpt_tags: dict[str, str] = Field(default_factory=dict)
    """ShareGPT key and role names, e.g. {role_tag: from, content_tag: value, assistant_tag: gpt}."""

    stage: Literal["sft", "pt", "dpo", "kto", "grpo"] = "sft"
    """`sft`: loss on assistant turns of chat data; `pt`: continued pre-training on text; `dpo`: preference pairs;
    `kto`: answers labelled desirable or not (`label`, LLaMA-Factory's `kto_tag`); `grpo`: reinforcement
    fine-tuning on prompts, the answers sampled from the serving engine and scored by `grader`."""

    # --- reinforcement fine-tuning (stage grpo) ------------------------------------------------
    grader: dict | None = None
    """The grader whose score is the reward (OpenAI's shape: string_check, text_similarity, score_model,
    python or multi); the server scores with it, so a job's grader is the one it was created with."""

    group_size: int = Field(default=4, ge=2, le=64)
    """Answers sampled per prompt; each answer's advantage is its reward against its group's."""

    kl_coef: float = Field(default=0.0, ge=0)
    """Weight of the KL penalty against the starting model (the base with the adapter disabled); 0: none."""

    clip_epsilon: float = Field(default=0.2, gt=0, lt=1)
    """The policy ratio's clip range (PPO's epsilon)."""

    max_new_tokens: int = Field(default=64, ge=1)
    """Longest sampled answer, in tokens."""

    temperature: float = Field(default=1.0, gt=0, le=2)
    """Sampling temperature of the answers (training and validation)."""

    eval_interval: int = Field(default=0, ge=0)
    """Validation reward every this many steps; 0: at each checkpoint and at the end."""

    eval_samples: int = Field(default=1, ge=1, le=64)
    """Answers sampled per validation prompt."""

    rollout_url: str | None = None
    """Where the trainer asks for graded samples: for `ftserve train`, a running ftserve server's API
    (`http://127.0.0.1:8000/v1`) serving the same base model, its key in FTSERVE_API_KEY; for a job, its
    server's rollout endpoint (set by the job runner, with its token in FTSERVE_ROLLOUT_TOKEN)."""

    pref_beta: float = Field(default=0.1, gt=0, le=10)
    """DPO's beta: how far the policy may move from the reference (higher: closer to it)."""

    pref_loss: str = "sigmoid"
    """Preference loss: `sigmoid` (DPO), `ipo`, `orpo` or `simpo` (the last two need no reference model)."""

    kto_chosen_weight: float = Field(default=1.0, gt=0)
    """KTO's weight on the desirable answers' loss (TRL's `desirable_weight`)."""

    kto_rejected_weight: float = Field(default=1.0, gt=0)
    """KTO's weight on the undesirable answers' loss (TRL's `undesirable_weight`)."""

    simpo_gamma: float = Field(default=0.5, ge=0)
    """SimPO's target reward margin (with `pref_loss: simpo`)."""

    pref_ftx: float = Field(default=0.0, ge=0)
    """Weight of an SFT loss on the chosen answers beside the preference loss (TRL's `rpo_alpha`): it keeps
    their likelihood from falling with the rejected ones'."""

    adapter_name_or_path: str | None = None
    """A LoRA adapter to train on from (its rank, alpha and targets are used); else a new adapter."""

    finetuning_type: Literal["lora"] = "lora"
    """Only LoRA is supported."""

    num_train_epochs: float = Field(default=3.0, gt=0)
    """Passes over the training data (fractions allowed); ignored when max_steps > 0."""

    max_steps: int = -1
    """Optimizer steps to run; > 0 overrides num_train_epochs."""

    per_device_train_batch_size: int = Field(default=8, ge=1)
    """Rows per micro-batch."""

    gradient_accumulation_steps: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step."""

    learning_rate: float = Field(default=1e-4, gt=0, le=1.0)
    """Peak learning rate of AdamW."""

    lr_scheduler_type: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate decay after warmup."""

    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Fraction of the steps spent warming the learning rate up linearly from 0."""

    weight_decay: float = Field(default=0.0, ge=0.0)
    """AdamW weight decay."""

    max_grad_norm: float = Field(default=1.0, ge=0.0)
    """Gradient clipping norm; 0 disables clipping."""

    lora_rank: int = Field(default=8, ge=1, le=512)
    """LoRA rank r."""

    lora_alpha: int = Field(default=16, ge=1)
    """LoRA scaling numerator (scale = alpha / r)."""

    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""

    lora_target: str | list[str] = "all-linear"
    """Modules that get LoRA: `all-linear` (or LLaMA-Factory's `all`), a comma-separated string or a list."""

    use_rslora: bool = False
    """Rank-stabilised LoRA: scale by alpha / sqrt(r) instead of alpha / r (vLLM serves it as such)."""

    loraplus_lr_ratio: float | None = Field(default=None, gt=0)
    """LoRA+: the B matrices learn this many times faster than the A matrices (the adapter is plain LoRA)."""

    use_dora: bool = False
    """DoRA: refused when true, since vLLM cannot serve a DoRA adapter."""

    pissa_init: bool = False
    """PiSSA initialisation: refused when true (its adapter changes the base weights, so vLLM cannot serve it
    as is, and ftserve does not yet convert it to a plain LoRA as LLaMA-Factory's pissa_convert does)."""

    pissa_convert: bool = False
    """Accepted with pissa_init; refused when true, as pissa_init."""

    cutoff_len: int = Field(default=1024, ge=8)
    """Maximum tokens per row; longer rows are truncated (and counted)."""

    reasoning_loss: bool = True
    """Learn assistant turns' reasoning sections (`<think>...</think>`, as the chat template renders them); false:
    they stay in the rendered conversation, but only the answer after them carries loss."""

    enable_thinking: bool = True
    """LLaMA-Factory's switch for reasoning templates: false removes the reasoning sections from the rows and
    renders the template with `enable_thinking=False` (a Qwen3-style template's empty section then carries no
    loss). LLaMA-Factory's `template: qwen3_nothink` means the same."""

    seed: int = 42
    """Seed for LoRA init, data order and dropout."""

    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% slower."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Training dtype; `auto` is bfloat16 on a GPU and float32 on CPU."""

    bf16: bool = False
    """LLaMA-Factory's switch: true means dtype bfloat16."""

    logging_steps: int = Field(default=1, ge=1)
    """Emit a metrics event every this many optimizer steps."""

    eval_steps: int = Field(default=0, ge=0)
    """Evaluate every this many steps; 0 evaluates at each checkpoint and at the end."""

    # --- LLaMA-Factory's keys: honoured where they mean something here -------------------------
    template: str | None = None
    """LLaMA-Factory's chat template name. ftserve always renders with the base model's own chat template
    (the one vLLM serves with, so training and serving agree); a template of another model family than
    the base model's is reported in a warning event."""

    max_samples: int | None = Field(default=None, ge=1)
    """Use at most this many rows of each dataset (the first ones)."""

    overwrite_output_dir: bool = False
    """Start afresh in an output_dir that holds checkpoints of an earlier run (they are removed)."""

    trust_remote_code: bool = False
    """Let transformers run the model folder's own code (custom architectures); off unless you trust it."""

    fp16: bool = False
    """LLaMA-Factory's switch: true means dtype float16."""

    report_to: str = "none"
    """Where metrics go besides `events.jsonl`: `none`, or `tensorboard` (event files under `output_dir/runs`).
    Other destinations are refused."""

    do_train: bool = True
    """Accepted, no effect here: `ftserve train` always trains (false is refused)."""

    overwrite_cache: bool = False
    """Accepted, no effect here: ftserve keeps no preprocessed-data cache between runs."""

    preprocessing_num_workers: int | None = Field(default=None, ge=1)
    """Accepted, no effect here: rows are tokenized in the training process (fast enough for its sizes)."""

    dataloader_num_workers: int | None = Field(default=0, ge=0)
    """Accepted, no effect here: batches are built in the training process from pre-tokenized rows."""

    ddp_timeout: int | None = None
    """Accepted, no effect here: one process trains (data-parallel runs go through Ray Train)."""

    plot_loss: bool = False
    """Draw the loss curves into `output_dir/training_loss.png` (and `training_eval_loss.png` with validation)."""

    save_only_model: bool = False
    """Accepted, no effect here: checkpoints keep the optimizer state, which resuming needs."""

    save_steps: int = Field(default=0, ge=0)
    """Write a checkpoint every this many steps; 0 writes only the final adapter."""

    num_threads: int = Field(default=0, ge=0)
    """CPU threads for torch; 0 keeps torch's default. Results depend on it: fix it for reproducibility."""

    resume_from_checkpoint: str | None = None
    """A checkpoint directory to resume from, or `latest` for the newest under output_dir."""

    @field_validator("lora_target")
    @classmethod
    def _targets(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            if value.strip() in ("all", "all-linear"):
                return "all-linear"
            value = [v.strip() for v in value.split(",")]
        if not value or not all(value):
            raise ValueError("must be 'all-linear' or a non-empty list of module names")
        return value

    @field_validator("pref_loss")
    @classmethod
    def _pref_loss(cls, value: str) -> str:
        supported = ("sigmoid", "ipo", "orpo", "simpo")
        if value in ("hinge", "kto_pair", "sppo_hard"):
            raise ValueError(f"'{value}' is not supported yet; the supported preference losses are "
                             f"{', '.join(supported)}")
        if value not in supported:
            raise ValueError(f"unknown preference loss '{value}'; the supported ones are {', '.join(supported)}")
        return value

    @field_validator("report_to")
    @classmethod
    def _report_to(cls, value: str) -> str:
        if value not in ("none", "tensorboard"):
            raise ValueError(f"'{value}' is not available here; use 'none' or 'tensorboard' (the metrics are also "
                             "in output_dir/events.jsonl and, for jobs, in the job's events and on the dashboard)")
        return value

    @field_validator("stage", mode="before")
    @classmethod
    def _stage(cls, value):
        if value == "rm":
            raise ValueError("stage 'rm' (a reward model) is not supported: ftserve trains adapters that generate; "
                             "to learn from preferences use stage 'dpo' (pairs) or 'kto' (labelled answers)")
        if value == "ppo":
            raise ValueError("stage 'ppo' is not supported: it needs a reward model; learn from preferences with "
                             "stage 'dpo' (pairs) or 'kto' (labelled answers)")
        return value

    @field_validator("use_dora")
    @classmethod
    def _dora(cls, value: bool) -> bool:
        if value:
            raise ValueError("DoRA adapters cannot be served: vLLM does not support DoRA; use plain LoRA "
                             "(optionally use_rslora or loraplus_lr_ratio)")
        return value

    @field_validator("pissa_init", "pissa_convert")
    @classmethod
    def _pissa(cls, value: bool) -> bool:
        if value:
            raise ValueError("PiSSA is not supported yet: its adapter changes the base weights, which vLLM cannot "
                             "serve, and ftserve does not yet convert it to a plain LoRA; use plain LoRA")
        return value

    @field_validator("do_train")
    @classmethod
    def _do_train(cls, value: bool) -> bool:
        if not value:
            raise ValueError("`ftserve train` always trains; remove do_train or set it to true")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.bf16 and self.fp16:
            raise ValueError("give either bf16 or fp16, not both")
        if self.bf16:
            self.dtype = "bfloat16"
        if self.fp16:
            self.dtype = "float16"
        if self.eval_dataset and self.val_size:
            raise ValueError("give either eval_dataset or val_size, not both")
        if self.served_model_name is None:
            self.served_model_name = self.model_name_or_path
        if self.template == "qwen3_nothink":
            self.enable_thinking = False
        if self.stage == "grpo" and (self.grader is None or self.rollout_url is None):
            raise ValueError("stage grpo needs a grader and a rollout_url: a running ftserve server's API "
                             "(e.g. http://127.0.0.1:8000/v1, serving the same base model; its key in "
                             "FTSERVE_API_KEY), whose engine samples the answers and grades them")
        return self

    @property
    def reasoning(self) -> str:
        """What encoding does with reasoning sections (trainer.encoding.Reasoning)."""
        return "drop" if not self.enable_thinking else "learn" if self.reasoning_loss else "mask"

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> TrainConfig:
        if not isinstance(values, dict):
            raise ConfigError("the config must be a mapping of keys to values")
        known = set(cls.__dataclass_fields__)
        unknown = []
        for key in values:
            if key in known:
                continue
            hint = _REDIRECTS.get(key)
            if hint is None:
                near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.5)
                hint = f"did you mean '{near[0]}'?" if near else "see `ftserve train --help`"
            unknown.append((key, hint))
        problems = [(key, f"unknown key ({hint})") for key, hint in unknown]
        try:
            config = cls(**{key: value for key, value in values.items() if key in known})
        except ValidationError as e:  # every bad value, beside every unknown key: one run tells them all
            for err in e.errors():
                param = ".".join(str(p) for p in err["loc"]) or None
                problems.append((param, err["msg"].removeprefix("Value error, ")))
        if not problems:
            return config
        message = "; ".join(f"{param}: {msg}" if param else msg for param, msg in problems)
        raise ConfigError(message, param=problems[0][0])

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a YAML (or JSON) config. Relative data and output paths are taken from the file's folder."""
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) if path.suffix != ".json" else json.loads(path.read_text())
        except (OSError, yaml.YAMLError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from None
        if isinstance(values, dict):
            for key in ("model_name_or_path", "dataset", "eval_dataset", "dataset_dir", "output_dir",
                        "adapter_name_or_path"):
                value = values.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    candidate = os.path.normpath(path.parent / value)
                    if os.path.exists(candidate) or key == "output_dir":
                        values[key] = candidate
        return cls.from_mapping(values)

    def to_dict(self) -> dict[str, Any]:
        from pydantic import RootModel

        return RootModel[TrainConfig](self).model_dump(mode="json")

    @classmethod
    def describe(cls) -> str:
        """One line per key with its default and docstring, for `ftserve train --help`."""
        lines = []
        for name, f in cls.__pydantic_fields__.items():
            default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
            lines.append(f"  {name:30s} {f.description} [{default}]")
        return "\n".join(lines)


def template_mismatch(template: str | None, model_type: str) -> str | None:
    """What to warn about when LLaMA-Factory's `template` names another model family than the base
    model's own (`model_type` from its config.json); None when they agree or the template is generic."""
    if not template:
        return None
    family = template.split("_")[0].rstrip("0123456789.").lower()
    generic = {"default", "empty", "chatml", "alpaca", "vicuna", "cpm", "zephyr"}
    if family in generic or model_type.lower().startswith(family) or family.startswith(model_type.lower()):
        return None
    return (f"template '{template}' is for another model family than the base model ({model_type}); ftserve "
            "trains with the base model's own chat template, the one it is served with, not with "
            f"'{template}'")

"""Wire objects of the Fine-tuning Jobs API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.graders.protocol import Grader
from service.protocol import Sparse, Strict

Auto = Literal["auto"]


class Hyperparameters(Strict):
    batch_size: Auto | Annotated[int, Field(ge=1, le=256)] = "auto"
    learning_rate_multiplier: Auto | Annotated[float, Field(gt=0, le=100)] = "auto"
    n_epochs: Auto | Annotated[int, Field(ge=1, le=50)] = "auto"
    # ftserve extensions
    learning_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    """Absolute peak learning rate; overrides learning_rate_multiplier (1.0 = 1e-4)."""
    lora_r: Annotated[int, Field(ge=1, le=256)] | None = None
    """LoRA rank (default 8)."""
    lora_alpha: Annotated[int, Field(ge=1, le=1024)] | None = None
    """LoRA alpha (default 2 x lora_r)."""
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] | None = None
    """Dropout on the LoRA input (default 0)."""
    lora_target_modules: Literal["all-linear"] | Annotated[list[str], Field(min_length=1)] | None = None
    """Modules that get LoRA: a list of names or "all-linear" (default)."""
    max_seq_len: Annotated[int, Field(ge=8, le=131072)] | None = None
    """Tokens per example; longer ones are truncated (default 1024)."""
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] | None = None
    """Fraction of steps spent warming up the learning rate (default 0)."""
    n_checkpoints: Annotated[int, Field(ge=0, le=100)] | None = None
    """Intermediate checkpoints, evenly spaced, each servable as {model}:ckpt-step-N (default 3)."""
    n_workers: Annotated[int, Field(ge=1, le=64)] | None = None
    """Data-parallel training workers (default 1); more than 1 needs the Ray training backend."""
    reasoning_loss: bool | None = None
    """Learn the assistant turns' reasoning sections (`<think>...</think>`) as well as their answers (default
    true); false keeps them in the rendered conversation without loss."""


class SupervisedMethod(Strict):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class DpoHyperparameters(Hyperparameters):
    beta: Auto | Annotated[float, Field(gt=0, le=2)] = "auto"
    """How far the policy may move from the reference model (higher: closer to it); auto is 0.1."""
    # ftserve extensions (LLaMA-Factory's preference options)
    pref_loss: Literal["sigmoid", "ipo", "orpo", "simpo"] | None = None
    """The preference loss: `sigmoid` (DPO, the default), `ipo`, or the reference-free `orpo` and `simpo`."""
    simpo_gamma: Annotated[float, Field(ge=0, le=10)] | None = None
    """SimPO's target reward margin (default 0.5)."""
    pref_ftx: Annotated[float, Field(ge=0, le=10)] | None = None
    """Weight of an SFT loss on the chosen answers (TRL's rpo_alpha): keeps their likelihood up (default 0)."""


class DpoMethod(Strict):
    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)


class KtoHyperparameters(Hyperparameters):
    beta: Auto | Annotated[float, Field(gt=0, le=2)] = "auto"
    """How far the policy may move from the reference model (higher: closer to it); auto is 0.1."""
    desirable_weight: Annotated[float, Field(gt=0, le=100)] | None = None
    """Weight of the desirable answers' loss (default 1; raise it when they are fewer than the others)."""
    undesirable_weight: Annotated[float, Field(gt=0, le=100)] | None = None
    """Weight of the undesirable answers' loss (default 1)."""


class KtoMethod(Strict):
    hyperparameters: KtoHyperparameters = Field(default_factory=KtoHyperparameters)


class ReinforcementHyperparameters(Hyperparameters):
    eval_interval: Auto | Annotated[int, Field(ge=1)] = "auto"
    """Training steps between validation rewards; auto: at each checkpoint and at the end."""
    eval_samples: Auto | Annotated[int, Field(ge=1, le=64)] = "auto"
    """Answers sampled per validation prompt at each validation; auto is 1."""
    compute_multiplier: Auto | Annotated[float, Field(gt=1e-5, le=10)] = "auto"
    """Scales the answers sampled per prompt (the group size: 4 x this, at least 2) unless group_size is given."""
    reasoning_effort: Literal["default", "low", "medium", "high"] = "default"
    """Accepted, no effect on models without reasoning (every model ftserve serves today)."""
    # ftserve extensions
    group_size: Annotated[int, Field(ge=2, le=64)] | None = None
    """Answers sampled per prompt, whose rewards are compared within the group (default 4)."""
    kl_coef: Annotated[float, Field(ge=0, le=10)] | None = None
    """Weight of a KL penalty against the starting model (the base with the adapter disabled; default 0)."""
    max_completion_tokens: Annotated[int, Field(ge=1, le=4096)] | None = None
    """Longest sampled answer, in tokens (default 64)."""
    temperature: Annotated[float, Field(gt=0, le=2)] | None = None
    """Sampling temperature of the answers (default 1.0)."""


class ReinforcementMethod(Strict):
    grader: Grader
    hyperparameters: ReinforcementHyperparameters = Field(default_factory=ReinforcementHyperparameters)
    # ftserve extension
    response_format: dict[str, Any] | None = None
    """Chat Completions' `response_format` for the sampled answers (e.g. a json_schema): the answers keep to
    it, and graders read them as `{{sample.output_json}}`."""


class Method(Strict):
    type: Literal["supervised", "dpo", "reinforcement", "continued_pretraining", "kto"]
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: ReinforcementMethod | None = None
    # ftserve extensions
    continued_pretraining: SupervisedMethod | None = None
    """Continued pre-training on raw text (`{"text": ...}` rows, or a .txt file with one document per
    paragraph): documents packed into `max_seq_len` blocks, loss on every token. Its hyperparameters are
    the supervised method's."""
    kto: KtoMethod | None = None
    """KTO on answers labelled desirable or not (rows with a boolean `label`, LLaMA-Factory's `kto_tag`)."""

    @model_validator(mode="after")
    def _reinforcement_has_its_grader(self) -> Method:
        if self.type == "reinforcement" and self.reinforcement is None:
            raise ValueError("method type reinforcement needs `method.reinforcement` with its `grader`")
        return self

    @property
    def settings(self) -> SupervisedMethod | DpoMethod | KtoMethod | ReinforcementMethod:
        """The chosen method's settings (`method.<type>`)."""
        defaults = {"dpo": DpoMethod, "kto": KtoMethod}
        return getattr(self, self.type) or defaults.get(self.type, SupervisedMethod)()


class JobResources(Strict):
    """What one job's trainer asks the Ray cluster for (an ftserve extension; the server's
    --ray-num-cpus/--ray-num-gpus/--ray-memory-gib otherwise)."""

    num_cpus: Annotated[float, Field(ge=0, le=1024)] | None = None
    num_gpus: Annotated[float, Field(ge=0, le=64)] | None = None
    memory_gib: Annotated[float, Field(gt=0, le=16384)] | None = None


class CreateFineTuningJobRequest(Strict):
    model: str
    training_file: str
    hyperparameters: Hyperparameters | None = None
    suffix: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = None
    validation_file: str | None = None
    integrations: list[Any] | None = None
    seed: Annotated[int, Field(ge=0, le=2147483647)] | None = None
    method: Method | None = None
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16
    )
    # ftserve extension
    resources: JobResources | None = None
    """With the Ray training backend: this job's resource request, over the server's defaults."""


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class JobHyperparameters(BaseModel):
    batch_size: int | Auto | None = None
    learning_rate_multiplier: float | Auto | None = None
    n_epochs: int | Auto | None = None


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: JobHyperparameters
    model: str
    organization_id: str
    result_files: list[str] = []
    seed: int
    status: Literal["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"]
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    integrations: list[Any] | None = None
    estimated_finish: int | None = None
    method: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    user_provided_suffix: str | None = None


class FineTuningJobEvent(Sparse):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"] = "message"


class CheckpointMetrics(Sparse):
    """OpenAI's checkpoint metrics; DPO checkpoints add the preference metrics of their split
    (`{train,valid,full_valid}_{rewards_chosen,rewards_rejected,reward_accuracy,reward_margin}`)."""

    model_config = ConfigDict(extra="allow")

    step: int | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None


class FineTuningJobCheckpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int



"""The contract between the trainer and whoever runs it (the job runner, `ftserve train`, a Ray worker):
the events it prints, one JSON object per line, a pydantic class each; the name of a checkpoint's state
file; and where a job's artifacts live in the object store.

Both sides import this module and nothing else of each other: the trainer writes events with
`event.line()`, the runner reads them with `parse_event(line)`. A line that is not an event (stray
output of a library) parses to None; stderr carries the diagnostics.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

STATE_FILE = "trainer_state.pt"  # optimizer, scheduler, data position, RNG: written last, so a checkpoint
#                                  is complete once it is there
EVENTS_FILE = "events.jsonl"  # the trainer's own log of its events, in its output directory


class _Event(BaseModel):
    def line(self) -> str:
        return self.model_dump_json(exclude_none=True)

    def as_dict(self) -> dict:
        return self.model_dump(exclude_none=True)


class Info(_Event):
    """Something a person should read (data stats, resume point); the plan's `total_steps` once known."""

    model_config = ConfigDict(extra="allow")  # what a message counts (`truncated`, `dropped` rows)
    type: Literal["info"] = "info"
    message: str
    total_steps: int | None = None


class Metrics(_Event):
    """One per logged step. The named fields are always there; the rest depend on the method and on
    whether the step evaluated (`valid_loss`, `valid_mean_token_accuracy`, `full_valid_*` at the last
    step; DPO's `{train,valid}_rewards_chosen`, `_rewards_rejected`, `_reward_accuracy`, `_reward_margin`;
    `train_mean_token_accuracy` for language modelling)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["metrics"] = "metrics"
    step: int
    total_steps: int
    train_loss: float
    learning_rate: float
    tokens: int
    tokens_per_s: float
    elapsed_s: float

    @property
    def values(self) -> dict:
        """Every metric, the extra ones included (what a job's metrics event carries as data)."""
        return self.model_dump(exclude={"type"})


class Evaluation(_Event):
    """Before step 1 and at the last step, for chat data with validation rows: the greedy answers to the
    validation prompts, how they score, and whether general ability moved (trainer/evaluation.py)."""

    type: Literal["evaluation"] = "evaluation"
    step: int
    metrics: dict
    answers: list


class Checkpoint(_Event):
    """A checkpoint written whole under `path` (a loadable adapter plus STATE_FILE); a remote trainer
    has stored it under `key` in the object store already."""

    type: Literal["checkpoint"] = "checkpoint"
    step: int
    path: str
    metrics: dict = {}
    key: str | None = None


class Done(_Event):
    """The final adapter, at `adapter_path` (a remote trainer: stored under `adapter_key` too)."""

    type: Literal["done"] = "done"
    adapter_path: str
    steps: int
    trained_tokens: int
    elapsed_s: float
    metrics: dict = {}
    adapter_key: str | None = None


class Interrupted(_Event):
    """Stopped on request (SIGTERM) after writing a checkpoint to resume from."""

    type: Literal["interrupted"] = "interrupted"
    step: int
    message: str


class Error(_Event):
    """The run failed; the last event. `code` is the job error's code (`invalid_training_file`, ...)."""

    type: Literal["error"] = "error"
    code: str = "training_failed"
    message: str
    param: str | None = None


TrainerEvent = Annotated[Info | Metrics | Evaluation | Checkpoint | Done | Interrupted | Error,
                         Field(discriminator="type")]
_EVENT = TypeAdapter(TrainerEvent)


def parse_event(line: str | bytes) -> TrainerEvent | None:
    """The event on one line of the trainer's output; None for a line that is not one."""
    try:
        return _EVENT.validate_json(line)
    except ValidationError:
        return None


class JobKeys:
    """Where a fine-tuning job's artifacts live in the object store (the data dir, or S3)."""

    def __init__(self, job_id: str):
        self.prefix = f"jobs/{job_id}"
        self.spec = f"{self.prefix}/spec.json"  # the trainer's config, as the runner planned it
        self.parent = f"{self.prefix}/parent"  # the adapter a job trains on from, if any
        self.checkpoints = f"{self.prefix}/checkpoints"
        self.adapter = f"{self.prefix}/adapter"  # the final adapter (a remote trainer's)
        self.events = f"{self.prefix}/{EVENTS_FILE}"

    def checkpoint(self, step: int) -> str:
        return f"{self.checkpoints}/step-{step}"


# ---------------------------------------------------------------- reinforcement fine-tuning's rollouts
ROLLOUT_TOKEN_ENV = "FTSERVE_ROLLOUT_TOKEN"  # the job's rollout token, given to its trainer in its environment
ROLLOUT_URL_ENV = "FTSERVE_ROLLOUT_URL"  # the launching server's rollout endpoint for the job (over the spec's)


class RolloutAdapter(BaseModel):
    """The policy as it stands: a LoRA adapter's `adapter_config.json` and its safetensors weights."""

    config: dict
    weights_b64: str


class RolloutPrompt(BaseModel):
    messages: list[dict]
    item: dict


class RolloutRequest(BaseModel):
    """The trainer asks the server's engine for `n` answers to each prompt from `adapter`, graded with the
    job's grader. `step` names the policy (one adapter loaded per step); `split` is train or valid."""

    step: int
    split: Literal["train", "valid"] = "train"
    adapter: RolloutAdapter
    prompts: list[RolloutPrompt]
    n: int = Field(ge=1, le=64)
    temperature: float = 1.0
    max_tokens: int = Field(ge=1)
    seed: int | None = None
    grader: dict | None = None
    """`ftserve train`'s rollouts (`POST /v1/fine_tuning/alpha/rollouts`) carry their grader; a job's rollouts
    are graded with the job's own, and send none."""


class RolloutSample(BaseModel):
    prompt_index: int
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str | None = None
    reward: float
    sub_rewards: dict[str, float] = {}
    errors: list[str] = []  # the grader's error kinds for this sample (it scored 0)


class RolloutResponse(BaseModel):
    samples: list[RolloutSample]
    generate_s: float
    grade_s: float

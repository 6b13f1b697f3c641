"""The Fine-tuning Jobs service: create, list, retrieve, cancel, events, checkpoints.

A job's life: `validating_files` -> `queued` -> `running` -> `succeeded` | `failed` | `cancelled`.
The runner (service/runner.py) moves it along; this module answers the API and turns a
request's hyperparameters into the trainer's config (`plan`).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from service.db import Database
from service.errors import APIError, Kind
from service.files import FileService, new_id
from service.protocol import (
    CreateFineTuningJobRequest,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    Hyperparameters,
    JobError,
    ListObject,
)
from service.settings import Settings

TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("validating_files", "queued", "running", "paused")  # a job in any other status never changes again
BASE_LEARNING_RATE = 1e-4  # learning_rate_multiplier 1.0 means this
DEFAULT_CHECKPOINTS = 3


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
    batch = hp.batch_size
    if batch == "auto":
        batch = max(1, min(32, round(n_examples * 0.002)))
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
    values = dict(
        base, num_train_epochs=epochs, per_device_train_batch_size=batch, learning_rate=lr,
        lora_rank=hp.lora_r or 8, lora_alpha=hp.lora_alpha or 2 * (hp.lora_r or 8),
        lora_dropout=hp.lora_dropout or 0.0, lora_target=hp.lora_target_modules or "all-linear",
        cutoff_len=hp.max_seq_len or 1024, warmup_ratio=hp.warmup_ratio or 0.0,
        resume_from_checkpoint="latest",
    )
    cfg = TrainConfig.from_mapping(values)
    _, total = plan_steps(n_examples, cfg)
    n_ckpt = DEFAULT_CHECKPOINTS if hp.n_checkpoints is None else hp.n_checkpoints
    values["save_steps"] = math.ceil(total / (n_ckpt + 1)) if n_ckpt and total > 1 else 0
    values["logging_steps"] = max(1, total // 200)
    note = "Auto-selected hyperparameters: " + ", ".join(auto) if auto else None
    return Plan(epochs, batch, multiplier, lr, total, values, note)


class JobService:
    def __init__(self, db: Database, files: FileService, settings: Settings, runner):
        self.db, self.files, self.settings, self.runner = db, files, settings, runner

    # ------------------------------------------------------------------ create
    def create(self, req: CreateFineTuningJobRequest) -> FineTuningJob:
        waiting = self.db.count_jobs_by_status()
        if waiting.get("validating_files", 0) + waiting.get("queued", 0) >= self.settings.max_queued_jobs:
            raise APIError(Kind.RATE_LIMITED, f"{self.settings.max_queued_jobs} fine-tuning jobs are already "
                           "waiting; retry later.", code="too_many_queued_jobs", headers={"Retry-After": "30"})
        base = self.settings.base_model_name
        if req.model != base:
            raise APIError(Kind.INVALID_REQUEST, f"Model {req.model!r} is not available for fine-tuning; "
                           f"this server fine-tunes {base!r}.", param="model", code="model_not_available")
        self._check_file(req.training_file, "training_file")
        if req.validation_file:
            self._check_file(req.validation_file, "validation_file")
        if req.integrations:
            raise APIError(Kind.INVALID_REQUEST, "Integrations are not supported.", param="integrations")
        if req.hyperparameters and req.method:
            raise APIError(Kind.INVALID_REQUEST, "Give hyperparameters either at the top level or in "
                           "method.supervised, not both.", param="hyperparameters")
        hp = req.method.supervised.hyperparameters if req.method else (req.hyperparameters or Hyperparameters())
        job_id = new_id("ftjob")
        model_name = f"ft:{base}:{self.settings.organization}:{req.suffix or ''}:{job_id[6:14]}"
        job = FineTuningJob(
            id=job_id, created_at=int(time.time()), hyperparameters=hp.model_dump(include={
                "batch_size", "learning_rate_multiplier", "n_epochs"}),
            model=base, organization_id=self.settings.organization,
            seed=req.seed if req.seed is not None else random.randint(0, 2**31 - 1),
            status="validating_files", training_file=req.training_file, validation_file=req.validation_file,
            method={"type": "supervised", "supervised": {"hyperparameters": hp.model_dump(exclude_none=True)}},
            metadata=req.metadata, user_provided_suffix=req.suffix,
        )
        run_dir = self.settings.data_dir / "jobs" / job_id
        self.db.insert_job(job.model_dump(), model_name, str(run_dir))
        self.add_event(job_id, f"Validating training file: {req.training_file}")
        self.runner.submit(job_id)
        return job

    def _check_file(self, file_id: str, param: str) -> None:
        row = self.db.get_file(file_id)
        if row is None:
            raise APIError(Kind.INVALID_REQUEST, f"File {file_id} does not exist.", param=param, code="file_not_found")
        doc = row[0]
        if doc["purpose"] != "fine-tune":
            raise APIError(Kind.INVALID_REQUEST, f"File {file_id} has purpose '{doc['purpose']}', "
                           "not 'fine-tune'.", param=param, code="invalid_file_purpose")
        if doc["status"] == "error":
            raise APIError(Kind.INVALID_REQUEST, f"File {file_id} is not a valid training file: "
                           f"{doc['status_details']}", param=param, code="invalid_training_file")

    # ------------------------------------------------------------------ read
    def get(self, job_id: str) -> FineTuningJob:
        doc = self.db.get_job(job_id)
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id",
                           code="fine_tuning_job_not_found")
        return FineTuningJob(**doc)

    def list(self, after: str | None, limit: int, metadata: dict[str, str]) -> ListObject[FineTuningJob]:
        docs, more = self.db.list_jobs(after, limit, metadata)
        return ListObject.page([FineTuningJob(**d) for d in docs], more)

    def events(self, job_id: str, after: str | None, limit: int) -> ListObject[FineTuningJobEvent]:
        self.get(job_id)
        docs, more = self.db.list_events(job_id, after, limit)
        return ListObject.page([FineTuningJobEvent(**d) for d in docs], more)

    def checkpoints(self, job_id: str, after: str | None, limit: int) -> ListObject[FineTuningJobCheckpoint]:
        self.get(job_id)
        docs, more = self.db.list_checkpoints(job_id, after, limit)
        return ListObject.page([FineTuningJobCheckpoint(**d) for d in docs], more)

    # ------------------------------------------------------------------ change
    async def cancel(self, job_id: str) -> FineTuningJob:
        """Final at any moment: under the job's lock, so the runner is never midway through publishing."""
        self.get(job_id)
        async with self.runner.lock(job_id):
            job = self.update(job_id, status="cancelled", finished_at=int(time.time()), estimated_finish=None)
            if job is None:
                raise self._cannot(job_id, "cancelled", "job_not_cancellable")
            self.add_event(job_id, "Fine-tuning job cancelled")
        await self.runner.stop_job(job_id)
        return job

    async def pause(self, job_id: str) -> FineTuningJob:
        """A queued job waits; a running one checkpoints after its current step and its trainer exits."""
        self.get(job_id)
        async with self.runner.lock(job_id):
            job = self.update(job_id, expect=("queued", "running"), status="paused", estimated_finish=None)
            if job is None:
                raise self._cannot(job_id, "paused", "job_not_pausable")
            self.add_event(job_id, "Fine-tuning job paused")
        self.runner.pause_job(job_id)
        return job

    async def resume(self, job_id: str) -> FineTuningJob:
        """A paused job is queued again and trains on from its last checkpoint."""
        self.get(job_id)
        async with self.runner.lock(job_id):
            job = self.update(job_id, expect=("paused",), status="queued")
            if job is None:
                raise self._cannot(job_id, "resumed", "job_not_paused")
            self.add_event(job_id, "Fine-tuning job resumed; it trains on from its last checkpoint")
        self.runner.enqueue(job_id)
        return job

    def _cannot(self, job_id: str, verb: str, code: str) -> APIError:
        status = self.get(job_id).status
        return APIError(Kind.INVALID_REQUEST, f"Job {job_id} is {status} and cannot be {verb}.",
                        param="fine_tuning_job_id", code=code)

    def add_event(self, job_id: str, message: str, level: str = "info", data: dict | None = None,
                  type: str = "message") -> None:
        event = FineTuningJobEvent(id=new_id("ftevent"), created_at=int(time.time()), level=level,
                                   message=message, data=data, type=type)
        self.db.insert_event(job_id, event.model_dump())

    def update(self, job_id: str, expect: tuple[str, ...] = ACTIVE, **changes) -> FineTuningJob | None:
        """Apply `changes` if the job's status is one of `expect` (any active one by default); None if it is
        not (e.g. cancelled meanwhile): a job that has ended is never changed again."""
        job = self.get(job_id)
        for key, value in changes.items():
            setattr(job, key, value)
        return job if self.db.update_job(job.model_dump(), expect) else None

    def fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        if self.update(job_id, status="failed", error=JobError(code=code, message=message, param=param),
                       finished_at=int(time.time()), estimated_finish=None):
            self.add_event(job_id, f"Fine-tuning job failed: {message}", level="error")

    def run_dir(self, job_id: str) -> Path:
        return Path(self.db.job_row(job_id)["run_dir"])

"""The Fine-tuning Jobs service: create, list, retrieve, cancel, pause, resume, events, checkpoints.

A job's life: `validating_files` -> `queued` -> `running` -> `succeeded` | `failed` | `cancelled`,
`paused` on request. The runner (runner.py) moves it along; both change jobs through the job
store (store.py); plan.py turns a request's hyperparameters into the trainer's config.
"""

from __future__ import annotations

import json
import random
import time
from typing import TYPE_CHECKING

from adapters.store import AdapterError
from service.errors import APIError, Kind
from service.files.service import FileService
from service.ids import new_id
from service.fine_tuning.protocol import (
    CreateFineTuningJobRequest,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    Hyperparameters,
)
from service.fine_tuning.store import JobStore
from service.projects.service import Access
from service.protocol import ListObject
from service.settings import Settings

if TYPE_CHECKING:
    from service.fine_tuning.runner import JobRunner


class JobService:
    """The API's side of jobs: create and read them, and ask the runner to cancel, pause or resume."""

    def __init__(self, store: JobStore, files: FileService, settings: Settings, runner: JobRunner, access: Access,
                 graders=None):
        """`graders`: checks a reinforcement job's grader when the job is created."""
        self.store, self.files, self.settings, self.runner = store, files, settings, runner
        self.access, self.graders = access, graders

    # ------------------------------------------------------------------ create
    def create(self, req: CreateFineTuningJobRequest, project: str) -> FineTuningJob:
        waiting = self.store.count_by_status()
        if waiting.get("validating_files", 0) + waiting.get("queued", 0) >= self.settings.max_queued_jobs:
            raise APIError(Kind.RATE_LIMITED, f"{self.settings.max_queued_jobs} fine-tuning jobs are already "
                           "waiting; retry later.", code="too_many_queued_jobs", headers={"Retry-After": "30"})
        base = self.settings.base_model_name
        self._check_file(req.training_file, "training_file", project)
        if req.validation_file:
            self._check_file(req.validation_file, "validation_file", project)
        if req.integrations:
            raise APIError(Kind.INVALID_REQUEST, "Integrations are not supported.", param="integrations")
        if req.hyperparameters and req.method:
            raise APIError(Kind.INVALID_REQUEST, "Give hyperparameters either at the top level or in "
                           "method.supervised, not both.", param="hyperparameters")
        hp = req.method.settings.hyperparameters if req.method else (req.hyperparameters or Hyperparameters())
        kind = req.method.type if req.method else "supervised"
        hp_param = f"method.{kind}.hyperparameters" if req.method else "hyperparameters"
        if req.model != base:
            self._check_parent(req.model, hp, hp_param, project)
        if req.resources and self.settings.training_backend != "ray":
            raise APIError(Kind.INVALID_REQUEST, "resources apply to the Ray training backend "
                           "(--training-backend ray); this server trains each job in a local process.",
                           param="resources", code="resources_unsupported")
        if (hp.n_workers or 1) > 1 and self.settings.training_backend != "ray":
            raise APIError(Kind.INVALID_REQUEST, f"n_workers={hp.n_workers} needs the Ray training backend "
                           "(--training-backend ray); this server trains each job in one local process.",
                           param=f"{hp_param}.n_workers", code="n_workers_unsupported")
        method = {"type": kind, kind: {"hyperparameters": hp.model_dump(exclude_none=True)}}
        if kind == "reinforcement":
            method[kind].update(self._check_reinforcement(req.method.reinforcement, project))
        job_id = new_id("ftjob-")
        model_name = f"ft:{base}:{self.settings.organization}:{req.suffix or ''}:{job_id[6:14]}"
        job = FineTuningJob(
            id=job_id, created_at=int(time.time()), hyperparameters=hp.model_dump(include={
                "batch_size", "learning_rate_multiplier", "n_epochs"}),
            model=req.model, organization_id=self.settings.organization,
            seed=req.seed if req.seed is not None else random.randint(0, 2**31 - 1),
            status="validating_files", training_file=req.training_file, validation_file=req.validation_file,
            method=method,
            metadata=req.metadata, user_provided_suffix=req.suffix,
        )
        limit = self.settings.project_max_training_jobs
        if not self.store.insert(job.model_dump(), model_name, f"jobs/{job_id}", project,
                                 req.resources.model_dump(exclude_none=True) if req.resources else None, limit):
            raise APIError(Kind.RATE_LIMITED, f"Your project has {limit} fine-tuning jobs validating, queued or "
                           "running, its limit; retry when one ends.", code="project_rate_limit_exceeded",
                           headers={"Retry-After": "30"})
        self.store.add_event(job_id, f"Validating training file: {req.training_file}")
        self.runner.submit(job_id)
        return job

    def _check_reinforcement(self, rl, project: str) -> dict:
        """A reinforcement job's grader checked now (400 naming the parameter), and what it stores of it."""
        if (rl.hyperparameters.n_workers or 1) > 1:
            raise APIError(Kind.INVALID_REQUEST, "Reinforcement jobs train in one process (their rollouts are "
                           "sampled by the server's engine); n_workers must be 1.",
                           param="method.reinforcement.hyperparameters.n_workers", code="n_workers_unsupported")
        if self.graders is not None:
            self.graders.check(rl.grader, "method.reinforcement.grader", project=project)
        stored = {"grader": rl.grader.model_dump(mode="json", exclude_none=True)}
        if rl.response_format is not None:
            if rl.response_format.get("type") not in ("text", "json_object", "json_schema"):
                raise APIError(Kind.INVALID_REQUEST, "response_format.type must be text, json_object or json_schema",
                               param="method.reinforcement.response_format", code="invalid_request")
            stored["response_format"] = rl.response_format
        return stored

    def _check_parent(self, model: str, hp: Hyperparameters, hp_param: str, project: str) -> None:
        """Training on from a fine-tuned model (or checkpoint): it must be one the project may use, and the
        LoRA hyperparameters given must be its own (training continues on its weights)."""
        base = self.settings.base_model_name
        try:
            self.access.usable(model, project)
            config = json.loads((self.runner.adapters.local_copy(model) / "adapter_config.json").read_text())
        except (APIError, AdapterError, OSError, ValueError):
            raise APIError(Kind.INVALID_REQUEST, f"Model {model!r} is not available for fine-tuning; this server "
                           f"fine-tunes {base!r} and the models fine-tuned from it.", param="model",
                           code="model_not_available") from None
        targets = config.get("target_modules")
        given = {"lora_r": (hp.lora_r, config.get("r")), "lora_alpha": (hp.lora_alpha, config.get("lora_alpha")),
                 "lora_target_modules": (hp.lora_target_modules, sorted(targets) if isinstance(targets, list)
                                         else targets)}
        for name, (value, parents) in given.items():
            if value is not None and value != "all-linear" and (sorted(value) if isinstance(value, list)
                                                                else value) != parents:
                raise APIError(Kind.INVALID_REQUEST, f"{name}={value!r} conflicts with {model}, which has "
                               f"{name}={parents!r}: training on from a fine-tuned model keeps its LoRA shape. "
                               f"Leave {name} out.", param=f"{hp_param}.{name}", code="invalid_hyperparameters")

    def _check_file(self, file_id: str, param: str, project: str) -> None:
        file = self.files.find(file_id, project)
        if file is None:
            raise APIError(Kind.INVALID_REQUEST, f"File {file_id} does not exist.", param=param, code="file_not_found")
        if file.purpose != "fine-tune":
            raise APIError(Kind.INVALID_REQUEST, f"File {file_id} has purpose '{file.purpose}', "
                           "not 'fine-tune'.", param=param, code="invalid_file_purpose")
        if file.status == "error":
            raise APIError(Kind.INVALID_REQUEST, f"File {file_id} is not a valid training file: "
                           f"{file.status_details}", param=param, code="invalid_training_file")

    # ------------------------------------------------------------------ read
    def get(self, job_id: str, project: str) -> FineTuningJob:
        return self.store.get(job_id, project)

    def list(self, project: str, after: str | None, limit: int, metadata: dict[str, str]) -> ListObject[FineTuningJob]:
        docs, more = self.store.list(project, after, limit, metadata)
        return ListObject.page([FineTuningJob(**d) for d in docs], more)

    def events(self, job_id: str, project: str, after: str | None, limit: int) -> ListObject[FineTuningJobEvent]:
        self.get(job_id, project)
        docs, more = self.store.list_events(job_id, after, limit)
        return ListObject.page([FineTuningJobEvent(**d) for d in docs], more)

    def checkpoints(self, job_id: str, project: str, after: str | None,
                    limit: int) -> ListObject[FineTuningJobCheckpoint]:
        self.get(job_id, project)
        docs, more = self.store.list_checkpoints(job_id, after, limit)
        return ListObject.page([FineTuningJobCheckpoint(**d) for d in docs], more)

    # ------------------------------------------------------------------ change
    async def cancel(self, job_id: str, project: str) -> FineTuningJob:
        """Final at any moment: under the job's lock, so the runner is never midway through publishing."""
        self.get(job_id, project)
        async with self.runner.lock(job_id):
            job = self.store.update(job_id, status="cancelled", finished_at=int(time.time()), estimated_finish=None)
            if job is None:
                raise self._cannot(job_id, "cancelled", "job_not_cancellable")
            self.store.add_event(job_id, "Fine-tuning job cancelled")
        await self.runner.stop_job(job_id)
        return job

    async def pause(self, job_id: str, project: str) -> FineTuningJob:
        """A queued job waits; a running one checkpoints after its current step and its trainer exits."""
        self.get(job_id, project)
        async with self.runner.lock(job_id):
            job = self.store.update(job_id, expect=("queued", "running"), status="paused", estimated_finish=None)
            if job is None:
                raise self._cannot(job_id, "paused", "job_not_pausable")
            self.store.add_event(job_id, "Fine-tuning job paused")
        self.runner.pause_job(job_id)
        return job

    async def resume(self, job_id: str, project: str) -> FineTuningJob:
        """A paused job is queued again and trains on from its last checkpoint."""
        self.get(job_id, project)
        async with self.runner.lock(job_id):
            job = self.store.update(job_id, expect=("paused",), status="queued")
            if job is None:
                raise self._cannot(job_id, "resumed", "job_not_paused")
            self.store.add_event(job_id, "Fine-tuning job resumed; it trains on from its last checkpoint")
        self.runner.enqueue(job_id)
        return job

    def _cannot(self, job_id: str, verb: str, code: str) -> APIError:
        status = self.store.get(job_id).status
        return APIError(Kind.INVALID_REQUEST, f"Job {job_id} is {status} and cannot be {verb}.",
                        param="fine_tuning_job_id", code=code)

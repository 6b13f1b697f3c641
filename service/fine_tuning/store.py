"""The job store: jobs, their events and checkpoints as the runner and the API both read and change them.

A job that has ended (`succeeded`, `failed`, `cancelled`) is never changed again: every change
is written only if the job's stored status is one the caller expects (any active one by default).
"""

from __future__ import annotations

import time

from service.db import Database
from service.errors import APIError, Kind
from service.files.service import new_id
from service.fine_tuning.protocol import FineTuningJob, FineTuningJobEvent, JobError

TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("validating_files", "queued", "running", "paused")


class JobStore:
    def __init__(self, db: Database):
        self.db = db

    def get(self, job_id: str, project: str | None = None) -> FineTuningJob:
        """The job; with `project`, only if it is that project's (another's is not found, as a missing one)."""
        doc = self.db.get_job(job_id, project)
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id",
                           code="fine_tuning_job_not_found")
        return FineTuningJob(**doc)

    def update(self, job_id: str, expect: tuple[str, ...] = ACTIVE, **changes) -> FineTuningJob | None:
        """Apply `changes` if the job's status is one of `expect`; None if it is not (e.g. cancelled meanwhile)."""
        job = self.get(job_id)
        for key, value in changes.items():
            setattr(job, key, value)
        return job if self.db.update_job(job.model_dump(), expect) else None

    def fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        if self.update(job_id, status="failed", error=JobError(code=code, message=message, param=param),
                       finished_at=int(time.time()), estimated_finish=None):
            self.add_event(job_id, f"Fine-tuning job failed: {message}", level="error")

    def add_event(self, job_id: str, message: str, level: str = "info", data: dict | None = None,
                  type: str = "message") -> None:
        event = FineTuningJobEvent(id=new_id("ftevent"), created_at=int(time.time()), level=level,
                                   message=message, data=data, type=type)
        self.db.insert_event(job_id, event.model_dump())

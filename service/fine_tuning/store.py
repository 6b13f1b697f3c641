"""The fine-tuning feature's tables and queries: jobs, their events and checkpoints, as the runner and the
API both read and change them.

A job that has ended (`succeeded`, `failed`, `cancelled`) is never changed again: every change
is written only if the job's stored status is one the caller expects (any active one by default).
Running jobs are leased to the server that trains them (service/leases.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from service.db import Database, Store, after_id, metadata, of_project
from service.errors import APIError, Kind
from service.fine_tuning.protocol import FineTuningJob, FineTuningJobEvent, JobError
from service.ids import new_id
from service.leases import Leases
from service.webhooks.store import write_announced

UNFINISHED = ("validating_files", "queued", "running")  # what counts against a project's job limit
EVENTS = {"succeeded": "fine_tuning.job.succeeded", "failed": "fine_tuning.job.failed",
          "cancelled": "fine_tuning.job.cancelled"}  # webhooks sent when a job ends

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False, server_default="proj_default"),
    sa.Column("model_name", sa.Text, nullable=False),  # the fine_tuned_model name it will get
    sa.Column("run_dir", sa.Text, nullable=False),  # its artifacts' key prefix in the object store: jobs/{id}
    sa.Column("pid", sa.Integer),  # trainer process group while running
    sa.Column("doc", sa.JSON, nullable=False),
    sa.Column("owner", sa.Text),  # the server that claimed it (its replica id)
    sa.Column("heartbeat_at", sa.Float),  # when that server last renewed its lease (unix time)
    sa.Column("backend_ref", sa.Text),  # the training backend's run (a Ray job id): any server re-attaches
    sa.Column("resources", sa.JSON),  # the job's own resource request for the backend, if it made one
)
events = sa.Table(
    "events", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("job_id", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
    sa.Index("events_job", "job_id", "seq"),
)
checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("job_id", sa.Text, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
    sa.UniqueConstraint("job_id", "step"),
)

TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("validating_files", "queued", "running", "paused")
USING_FILES = ("validating_files", "queued", "running")  # their files cannot be deleted


@dataclass(frozen=True)
class JobRow:
    """A job's bookkeeping columns (its OpenAI object is `JobStore.get`)."""

    id: str
    status: str
    project_id: str
    model_name: str
    run_dir: str  # a key prefix in the object store (migration 0003), not a local path
    pid: int | None
    owner: str | None
    backend_ref: str | None
    resources: dict | None


_JOB_COLUMNS = (jobs.c.id, jobs.c.status, jobs.c.project_id, jobs.c.model_name, jobs.c.run_dir, jobs.c.pid,
                jobs.c.owner, jobs.c.backend_ref, jobs.c.resources)


class JobStore(Store):
    def __init__(self, db: Database):
        super().__init__(db)
        self.leases = Leases(db, jobs, ("running",))

    # ------------------------------------------------------------------ jobs as OpenAI objects
    def get(self, job_id: str, project: str | None = None) -> FineTuningJob:
        """The job; with `project`, only if it is that project's (another's is not found, as a missing one)."""
        doc = self._doc(jobs, jobs.c.id == job_id, of_project(jobs, project))
        if doc is None:
            raise APIError(Kind.NOT_FOUND, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id",
                           code="fine_tuning_job_not_found")
        return FineTuningJob(**doc)

    def update(self, job_id: str, expect: tuple[str, ...] = ACTIVE, **changes) -> FineTuningJob | None:
        """Apply `changes` if the job's status is one of `expect`; None if it is not (e.g. cancelled meanwhile)."""
        job = self.get(job_id)
        for key, value in changes.items():
            setattr(job, key, value)
        return job if self.update_doc(job.model_dump(), expect) else None

    def update_doc(self, doc: dict, expect: tuple[str, ...]) -> bool:
        """Write the job's document if its stored status is one of `expect`; False (nothing written) if not."""
        return write_announced(self.db, jobs, jobs.update().where(jobs.c.id == doc["id"], jobs.c.status.in_(expect))
                               .values(doc=doc, status=doc["status"]), doc, EVENTS,
                               sa.select(jobs.c.project_id).where(jobs.c.id == doc["id"]))

    def fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        if self.update(job_id, status="failed", error=JobError(code=code, message=message, param=param),
                       finished_at=int(time.time()), estimated_finish=None):
            self.add_event(job_id, f"Fine-tuning job failed: {message}", level="error")

    def insert(self, doc: dict, model_name: str, run_dir: str, project: str, resources: dict | None = None,
               limit: int | None = None) -> bool:
        """Insert the job; with `limit`, only if its project has fewer unfinished jobs than that, counted and
        inserted as one step across every server sharing the database (False: at the limit, nothing written)."""
        with self.db.begin(immediate=True) as conn:
            if limit is not None:
                self.db.serialize(conn, f"jobs of {project}")
                n = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
                    jobs.c.project_id == project, jobs.c.status.in_(UNFINISHED))).scalar()
                if n >= limit:
                    return False
            conn.execute(jobs.insert().values(id=doc["id"], status=doc["status"], model_name=model_name,
                                              run_dir=run_dir, doc=doc, resources=resources, project_id=project))
        return True

    def list(self, project: str, after: str | None, limit: int,
             metadata: dict[str, str]) -> tuple[list[dict], bool]:
        query = sa.select(jobs.c.doc).where(of_project(jobs, project), after_id(jobs, after))
        for key, value in metadata.items():
            query = query.where(jobs.c.doc[("metadata", key)].as_string() == value)
        return self._page(query.order_by(jobs.c.seq.desc()), limit)

    # ------------------------------------------------------------------ bookkeeping columns
    def row(self, job_id: str) -> JobRow | None:
        row = self._one(sa.select(*_JOB_COLUMNS).where(jobs.c.id == job_id))
        return JobRow(*row) if row else None

    def with_status(self, *statuses: str) -> list[JobRow]:
        rows = self._all(sa.select(*_JOB_COLUMNS).where(jobs.c.status.in_(statuses)).order_by(jobs.c.seq))
        return [JobRow(*r) for r in rows]

    def set_columns(self, job_id: str, **columns: Any) -> None:
        self._write(jobs.update().where(jobs.c.id == job_id).values(**columns))

    def count_by_status(self, project: str | None = None) -> dict[str, int]:
        rows = self._all(sa.select(jobs.c.status, sa.func.count()).where(of_project(jobs, project))
                         .group_by(jobs.c.status))
        return {status: n for status, n in rows}

    def job_projects(self, job_ids: list[str]) -> dict[str, str]:
        """The project of each of these jobs (a fine-tuned model belongs to its job's project)."""
        if not job_ids:
            return {}
        return {r.id: r.project_id for r in self._all(sa.select(jobs.c.id, jobs.c.project_id)
                                                      .where(jobs.c.id.in_(job_ids)))}

    def uses_file(self, file_id: str) -> bool:
        uses = sa.or_(jobs.c.doc["training_file"].as_string() == file_id,
                      jobs.c.doc["validation_file"].as_string() == file_id)
        return self._one(sa.select(jobs.c.id).where(jobs.c.status.in_(USING_FILES), uses).limit(1)) is not None

    # ------------------------------------------------------------------ leases
    def claim_next(self, owner: str) -> str | None:
        """Move the oldest queued job to `running`, leased to `owner`, and return its id; None when none is queued."""
        return self.leases.claim(owner, 0, where=jobs.c.status == "queued",
                                 changes=lambda row: {"status": "running", "doc": {**row.doc, "status": "running"}})

    def requeue_expired(self, lease_seconds: float) -> list[str]:
        """Queue again the running jobs whose lease has not been renewed for `lease_seconds`: their
        server has died (or lost the database); the next claim resumes them from their last checkpoint."""
        expired = sa.and_(jobs.c.status == "running", self.leases.stale(lease_seconds))
        requeued = []
        for row in self._all(sa.select(jobs.c.id, jobs.c.doc).where(expired)):
            taken = self._write(jobs.update().where(jobs.c.id == row.id, expired)
                                .values(status="queued", doc={**row.doc, "status": "queued"}, owner=None, pid=None))
            if taken:
                requeued.append(row.id)
        return requeued

    # ------------------------------------------------------------------ events
    def add_event(self, job_id: str, message: str, level: str = "info", data: dict | None = None,
                  type: str = "message") -> None:
        event = FineTuningJobEvent(id=new_id("ftevent-"), created_at=int(time.time()), level=level,
                                   message=message, data=data, type=type)
        self.insert_event(job_id, event.model_dump())

    def insert_event(self, job_id: str, doc: dict) -> None:
        self._write(events.insert().values(id=doc["id"], job_id=job_id, doc=doc))

    def list_events(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        query = sa.select(events.c.doc).where(events.c.job_id == job_id, after_id(events, after))
        return self._page(query.order_by(events.c.seq.desc()), limit)

    def events(self, job_id: str, type: str | None = None) -> list[dict]:
        """A job's events, oldest first; only those of `type` (`metrics`, `message`) if given."""
        query = sa.select(events.c.doc).where(events.c.job_id == job_id).order_by(events.c.seq)
        if type is not None:
            query = query.where(events.c.doc["type"].as_string() == type)
        return [r.doc for r in self._all(query)]

    # ------------------------------------------------------------------ checkpoints
    def upsert_checkpoint(self, job_id: str, step: int, doc: dict) -> None:
        self._write(self.db.upsert(checkpoints).values(id=doc["id"], job_id=job_id, step=step, doc=doc)
                    .on_conflict_do_update(index_elements=["job_id", "step"], set_={"doc": doc}))

    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        query = sa.select(checkpoints.c.doc).where(checkpoints.c.job_id == job_id,
                                                   after_id(checkpoints, after, column="step"))
        return self._page(query.order_by(checkpoints.c.step.desc()), limit)

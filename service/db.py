"""Durable state behind one small interface: projects and their keys, files, jobs, job events,
checkpoints, batches and evals.

SQLAlchemy Core over SQLite (the default: `data/ftserve.db`) or PostgreSQL
(`--database-url postgresql+psycopg://...`); the schema is versioned with Alembic
(service/migrations), upgraded at start. Each row keeps the OpenAI object as a JSON document
(`doc`) plus the few columns that queries need; rows come out typed (`JobRow`) or as documents.
Lists are newest first and page with `after` (the last id of the previous page), as OpenAI's do.
Files, jobs, batches and evals carry the project that made them: a `project` argument scopes a lookup
or list to it (None, for the server's own runners: any project).

SQLite runs in WAL mode with synchronous=FULL (a committed write survives kill -9 and power loss).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

files = sa.Table(
    "files", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False, server_default="proj_default"),
    sa.Column("path", sa.Text, nullable=False),  # its key in the object store: files/{id}
    sa.Column("doc", sa.JSON, nullable=False),
)
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

batches = sa.Table(
    "batches", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False, server_default="proj_default"),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
    sa.Column("owner", sa.Text),  # the server running it
    sa.Column("heartbeat_at", sa.Float),  # when that server last renewed its lease
)
batch_results = sa.Table(
    "batch_results", metadata,  # one row per finished input line: a line is never run twice
    sa.Column("batch_id", sa.Text, nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),  # the output (or error) file's line
    sa.PrimaryKeyConstraint("batch_id", "line"),
)

evals = sa.Table(
    "evals", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False, server_default="proj_default"),
    sa.Column("doc", sa.JSON, nullable=False),
)
eval_runs = sa.Table(
    "eval_runs", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("eval_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
    sa.Column("owner", sa.Text),
    sa.Column("heartbeat_at", sa.Float),
)
eval_output_items = sa.Table(
    "eval_output_items", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
)

projects = sa.Table(
    "projects", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
)
service_accounts = sa.Table(
    "service_accounts", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
    sa.Column("key_id", sa.Text),
    sa.Column("key_hash", sa.Text, unique=True),  # HMAC-SHA256 of the key under the server's secret, never the key
)
checkpoint_permissions = sa.Table(
    "checkpoint_permissions", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("model", sa.Text, nullable=False),  # the fine-tuned model or checkpoint shared
    sa.Column("project_id", sa.Text, nullable=False),  # with this project
    sa.Column("doc", sa.JSON, nullable=False),
    sa.UniqueConstraint("model", "project_id"),
)
server_secrets = sa.Table(
    "server_secrets", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

RESERVE_BYTES = 4 * 1024 * 1024
ACTIVE_BATCH = ("validating", "in_progress", "finalizing", "cancelling")
ACTIVE_RUN = ("queued", "in_progress")
LEASED = {"batches": (batches, ACTIVE_BATCH), "eval_runs": (eval_runs, ACTIVE_RUN)}  # table: unfinished statuses
ACTIVE_JOB = ("validating_files", "queued", "running")  # their files cannot be deleted


@dataclass(frozen=True)
class JobRow:
    """A job's bookkeeping columns (its OpenAI object is `Database.get_job`)."""

    id: str
    status: str
    project_id: str
    model_name: str
    run_dir: str  # a key prefix in the object store (migration 0003), not a local path
    pid: int | None
    owner: str | None
    backend_ref: str | None
    resources: dict | None


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class Database:
    def __init__(self, url: str, reserve: Path | None = None):
        """`url`: a SQLAlchemy URL; `reserve`: where SQLite's ballast file goes (None: no ballast)."""
        self.url = sa.engine.make_url(url)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        if self.sqlite:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        # Ballast: space set aside so that, when the disk fills up, what went wrong can still be
        # recorded (release_reserve frees it; it is set aside again at the next start).
        self.reserve = reserve
        if reserve is not None:
            try:
                if not reserve.exists() or reserve.stat().st_size < RESERVE_BYTES:
                    with reserve.open("wb") as f:
                        f.write(b"\0" * RESERVE_BYTES)
            except OSError:
                reserve.unlink(missing_ok=True)
        self.engine = _engine(url, self.sqlite)
        from service.migrations import upgrade

        upgrade(self.engine)

    def release_reserve(self) -> bool:
        """Free the ballast space; True if there was any to free."""
        if self.reserve is None:
            return False
        try:
            self.reserve.unlink()
            return True
        except FileNotFoundError:
            return False

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    # ------------------------------------------------------------------ plumbing
    def _all(self, query) -> list[sa.Row]:
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def _one(self, query) -> sa.Row | None:
        with self.engine.connect() as conn:
            return conn.execute(query).first()

    def _write(self, statement) -> int:
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount

    def _page(self, query, limit: int) -> tuple[list[dict], bool]:
        """The documents of up to `limit` rows of `query` (which selects `doc`), and whether there are more."""
        rows = self._all(query.limit(limit + 1))
        return [r.doc for r in rows[:limit]], len(rows) > limit

    def _ordered_page(self, table: sa.Table, where: list, after: str | None, limit: int,
                      order: str) -> tuple[list[dict], bool]:
        """A page of `table`'s documents matching `where`, oldest first (`asc`) or newest first (`desc`),
        past the row with id `after`."""
        desc = order == "desc"
        query = sa.select(table.c.doc).where(*where, self._after(table, after, before=desc))
        return self._page(query.order_by(table.c.seq.desc() if desc else table.c.seq), limit)

    @staticmethod
    def _of(table: sa.Table, project: str | None):
        """Rows of `project` (None: of any)."""
        return sa.true() if project is None else table.c.project_id == project

    @staticmethod
    def _after(table: sa.Table, after: str | None, before: bool = True, column: str = "seq"):
        """Rows past the one with id `after` in list order (`before`: a smaller `column`)."""
        if not after:
            return sa.true()
        pivot = sa.select(table.c[column]).where(table.c.id == after).scalar_subquery()
        pivot = sa.func.coalesce(pivot, -1)
        return table.c[column] < pivot if before else table.c[column] > pivot

    # ------------------------------------------------------------------ projects and keys
    def insert_project(self, doc: dict) -> None:
        self._write(projects.insert().values(id=doc["id"], status=doc["status"], doc=doc))

    def get_project(self, project_id: str) -> dict | None:
        row = self._one(sa.select(projects.c.doc).where(projects.c.id == project_id))
        return None if row is None else row.doc

    def update_project(self, doc: dict) -> None:
        self._write(projects.update().where(projects.c.id == doc["id"]).values(status=doc["status"], doc=doc))

    def list_projects(self, after: str | None, limit: int, include_archived: bool) -> tuple[list[dict], bool]:
        where = [] if include_archived else [projects.c.status == "active"]
        return self._ordered_page(projects, where, after, limit, "asc")

    def insert_service_account(self, project_id: str, doc: dict, key_id: str | None, key_hash: str | None) -> None:
        self._write(service_accounts.insert().values(id=doc["id"], project_id=project_id, doc=doc, key_id=key_id,
                                                     key_hash=key_hash))

    def get_service_account(self, project_id: str, account_id: str) -> dict | None:
        row = self._one(sa.select(service_accounts.c.doc).where(service_accounts.c.id == account_id,
                                                                service_accounts.c.project_id == project_id))
        return None if row is None else row.doc

    def list_service_accounts(self, project_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        return self._ordered_page(service_accounts, [service_accounts.c.project_id == project_id], after, limit,
                                  "asc")

    def delete_service_account(self, project_id: str, account_id: str) -> bool:
        return self._write(service_accounts.delete().where(service_accounts.c.id == account_id,
                                                           service_accounts.c.project_id == project_id)) > 0

    def key_owner(self, key_hash: str) -> tuple[str, str] | None:
        """(project id, key id) of the service account key with this digest, if its project is active."""
        row = self._one(sa.select(service_accounts.c.project_id, service_accounts.c.key_id)
                        .join(projects, projects.c.id == service_accounts.c.project_id)
                        .where(service_accounts.c.key_hash == key_hash, projects.c.status == "active"))
        return None if row is None else (row.project_id, row.key_id)

    def server_secret(self, name: str, value: str) -> str:
        """The stored value of `name`, storing `value` first if there is none (the first writer wins)."""
        try:
            self._write(server_secrets.insert().values(name=name, value=value))
        except sa.exc.IntegrityError:
            pass
        return self.stored_secret(name)

    def stored_secret(self, name: str) -> str | None:
        row = self._one(sa.select(server_secrets.c.value).where(server_secrets.c.name == name))
        return None if row is None else row.value

    def insert_permission(self, model: str, doc: dict) -> dict:
        """Share `model` with the permission's project; an existing share is returned as it is."""
        try:
            self._write(checkpoint_permissions.insert().values(id=doc["id"], model=model,
                                                               project_id=doc["project_id"], doc=doc))
            return doc
        except sa.exc.IntegrityError:
            return self._one(sa.select(checkpoint_permissions.c.doc).where(
                checkpoint_permissions.c.model == model,
                checkpoint_permissions.c.project_id == doc["project_id"])).doc

    def list_permissions(self, model: str, project_id: str | None, after: str | None, limit: int,
                         order: str) -> tuple[list[dict], bool]:
        t = checkpoint_permissions
        where = [t.c.model == model] + ([t.c.project_id == project_id] if project_id else [])
        return self._ordered_page(t, where, after, limit, order)

    def delete_permission(self, model: str, permission_id: str) -> bool:
        t = checkpoint_permissions
        return self._write(t.delete().where(t.c.model == model, t.c.id == permission_id)) > 0

    def shared_with(self, project_id: str) -> set[str]:
        """The models other projects share with this one."""
        t = checkpoint_permissions
        return {r.model for r in self._all(sa.select(t.c.model).where(t.c.project_id == project_id))}

    def is_shared(self, model: str, project_id: str) -> bool:
        t = checkpoint_permissions
        return self._one(sa.select(t.c.id).where(t.c.model == model, t.c.project_id == project_id)) is not None

    def job_projects(self, job_ids: list[str]) -> dict[str, str]:
        """The project of each of these jobs."""
        if not job_ids:
            return {}
        return {r.id: r.project_id for r in self._all(sa.select(jobs.c.id, jobs.c.project_id)
                                                      .where(jobs.c.id.in_(job_ids)))}

    # ------------------------------------------------------------------ leased work (service/leases.py)
    def claim_lease(self, table: str, owner: str, lease_seconds: float) -> str | None:
        """Take the oldest unfinished item of `table` nobody holds (or whose server stopped renewing its lease)."""
        t, active = LEASED[table]
        free = sa.or_(t.c.owner.is_(None), t.c.heartbeat_at < time.time() - lease_seconds)
        with self.engine.execution_options(immediate=True).begin() as conn:
            row = conn.execute(sa.select(t.c.id).where(t.c.status.in_(active), free)
                               .order_by(t.c.seq).limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            conn.execute(t.update().where(t.c.id == row.id).values(owner=owner, heartbeat_at=time.time()))
            return row.id

    def release_leases(self, table: str, owner: str) -> None:
        """Let go of `owner`'s unfinished items (at its start: it resumes them like anyone's)."""
        t, active = LEASED[table]
        self._write(t.update().where(t.c.owner == owner, t.c.status.in_(active)).values(owner=None))

    def renew_leases_of(self, table: str, owner: str, ids: list[str]) -> None:
        t, _ = LEASED[table]
        self._write(t.update().where(t.c.id.in_(ids), t.c.owner == owner).values(heartbeat_at=time.time()))

    # ------------------------------------------------------------------ batches
    def insert_batch(self, doc: dict, project: str) -> None:
        self._write(batches.insert().values(id=doc["id"], status=doc["status"], doc=doc, project_id=project))

    def get_batch(self, batch_id: str, project: str | None = None) -> dict | None:
        row = self._one(sa.select(batches.c.doc).where(batches.c.id == batch_id, self._of(batches, project)))
        return None if row is None else row.doc

    def batch_project(self, batch_id: str) -> str | None:
        row = self._one(sa.select(batches.c.project_id).where(batches.c.id == batch_id))
        return None if row is None else row.project_id

    def list_batches(self, project: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        return self._page(sa.select(batches.c.doc).where(self._of(batches, project), self._after(batches, after))
                          .order_by(batches.c.seq.desc()), limit)

    def update_batch(self, doc: dict, expect: tuple[str, ...]) -> bool:
        """Write the batch's document if its status is still one of `expect`."""
        return bool(self._write(batches.update().where(batches.c.id == doc["id"], batches.c.status.in_(expect))
                                .values(status=doc["status"], doc=doc)))

    def add_batch_result(self, batch_id: str, line: int, ok: bool, doc: dict) -> None:
        """Record a line's result once (a second record of the same line is ignored)."""
        try:
            self._write(batch_results.insert().values(batch_id=batch_id, line=line, ok=ok, doc=doc))
        except sa.exc.IntegrityError:
            pass

    def batch_results(self, batch_id: str) -> list[tuple[int, bool, dict]]:
        rows = self._all(sa.select(batch_results.c.line, batch_results.c.ok, batch_results.c.doc)
                         .where(batch_results.c.batch_id == batch_id).order_by(batch_results.c.line))
        return [(r.line, r.ok, r.doc) for r in rows]

    # ------------------------------------------------------------------ evals
    def insert_eval(self, doc: dict, project: str) -> None:
        self._write(evals.insert().values(id=doc["id"], doc=doc, project_id=project))

    def get_eval(self, eval_id: str, project: str | None = None) -> dict | None:
        row = self._one(sa.select(evals.c.doc).where(evals.c.id == eval_id, self._of(evals, project)))
        return None if row is None else row.doc

    def eval_project(self, eval_id: str) -> str | None:
        row = self._one(sa.select(evals.c.project_id).where(evals.c.id == eval_id))
        return None if row is None else row.project_id

    def update_eval(self, doc: dict) -> None:
        self._write(evals.update().where(evals.c.id == doc["id"]).values(doc=doc))

    def list_evals(self, project: str, after: str | None, limit: int, order: str) -> tuple[list[dict], bool]:
        return self._ordered_page(evals, [self._of(evals, project)], after, limit, order)

    def delete_eval(self, eval_id: str) -> bool:
        with self.engine.begin() as conn:
            runs = sa.select(eval_runs.c.id).where(eval_runs.c.eval_id == eval_id)
            conn.execute(eval_output_items.delete().where(eval_output_items.c.run_id.in_(runs)))
            conn.execute(eval_runs.delete().where(eval_runs.c.eval_id == eval_id))
            return bool(conn.execute(evals.delete().where(evals.c.id == eval_id)).rowcount)

    def insert_run(self, doc: dict) -> None:
        self._write(eval_runs.insert().values(id=doc["id"], eval_id=doc["eval_id"], status=doc["status"], doc=doc))

    def get_run(self, run_id: str) -> dict | None:
        row = self._one(sa.select(eval_runs.c.doc).where(eval_runs.c.id == run_id))
        return None if row is None else row.doc

    def update_run(self, doc: dict, expect: tuple[str, ...]) -> bool:
        """Write the run's document if its status is still one of `expect`."""
        return bool(self._write(eval_runs.update().where(eval_runs.c.id == doc["id"], eval_runs.c.status.in_(expect))
                                .values(status=doc["status"], doc=doc)))

    def list_runs(self, eval_id: str, after: str | None, limit: int, order: str,
                  status: str | None) -> tuple[list[dict], bool]:
        where = [eval_runs.c.eval_id == eval_id] + ([eval_runs.c.status == status] if status else [])
        return self._ordered_page(eval_runs, where, after, limit, order)

    def delete_run(self, run_id: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(eval_output_items.delete().where(eval_output_items.c.run_id == run_id))
            return bool(conn.execute(eval_runs.delete().where(eval_runs.c.id == run_id)).rowcount)

    def replace_output_items(self, run_id: str, docs: list[dict]) -> None:
        """A run's output items, written at once (a resumed run writes them again, never twice)."""
        with self.engine.begin() as conn:
            conn.execute(eval_output_items.delete().where(eval_output_items.c.run_id == run_id))
            if docs:
                conn.execute(eval_output_items.insert(), [
                    {"id": d["id"], "run_id": run_id, "status": d["status"], "doc": d} for d in docs])

    def list_output_items(self, run_id: str, after: str | None, limit: int, order: str,
                          status: str | None) -> tuple[list[dict], bool]:
        where = [eval_output_items.c.run_id == run_id] + ([eval_output_items.c.status == status] if status else [])
        return self._ordered_page(eval_output_items, where, after, limit, order)

    def get_output_item(self, run_id: str, item_id: str) -> dict | None:
        row = self._one(sa.select(eval_output_items.c.doc).where(eval_output_items.c.run_id == run_id,
                                                                 eval_output_items.c.id == item_id))
        return None if row is None else row.doc

    # ------------------------------------------------------------------ files
    def insert_file(self, doc: dict, path: str, project: str) -> None:
        self._write(files.insert().values(id=doc["id"], purpose=doc["purpose"], path=path, doc=doc,
                                          project_id=project))

    def get_file(self, file_id: str, project: str | None = None) -> tuple[dict, str] | None:
        row = self._one(sa.select(files.c.doc, files.c.path).where(files.c.id == file_id, self._of(files, project)))
        return (row.doc, row.path) if row else None

    def list_files(self, project: str, purpose: str | None, after: str | None, limit: int,
                   order: str) -> tuple[list[dict], bool]:
        where = [self._of(files, project)] + ([files.c.purpose == purpose] if purpose else [])
        return self._ordered_page(files, where, after, limit, order)

    def delete_file(self, file_id: str) -> bool:
        return self._write(files.delete().where(files.c.id == file_id)) > 0

    # ------------------------------------------------------------------ jobs
    def insert_job(self, doc: dict, model_name: str, run_dir: str, project: str,
                   resources: dict | None = None) -> None:
        self._write(jobs.insert().values(id=doc["id"], status=doc["status"], model_name=model_name,
                                         run_dir=run_dir, doc=doc, resources=resources, project_id=project))

    def update_job(self, doc: dict, expect: tuple[str, ...]) -> bool:
        """Write the job's document if its stored status is one of `expect`; False (nothing written) if not."""
        return self._write(jobs.update().where(jobs.c.id == doc["id"], jobs.c.status.in_(expect))
                           .values(doc=doc, status=doc["status"])) > 0

    def claim_next_job(self, owner: str) -> str | None:
        """Move the oldest queued job to `running`, leased to `owner`, and return its id; None when none
        is queued. Atomic across servers: PostgreSQL skips rows another transaction holds (FOR UPDATE
        SKIP LOCKED); SQLite takes the write lock first (BEGIN IMMEDIATE)."""
        with self.engine.execution_options(immediate=True).begin() as conn:
            row = conn.execute(sa.select(jobs.c.id, jobs.c.doc).where(jobs.c.status == "queued")
                               .order_by(jobs.c.seq).limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            conn.execute(jobs.update().where(jobs.c.id == row.id)
                         .values(status="running", doc={**row.doc, "status": "running"}, owner=owner,
                                 heartbeat_at=time.time()))
            return row.id

    def renew_leases(self, owner: str, job_ids: list[str]) -> set[str]:
        """Renew `owner`'s leases on these running jobs; the ids it still holds (a lease another server
        has taken back, or a job no longer running, is not renewed)."""
        if not job_ids:
            return set()
        held = sa.and_(jobs.c.id.in_(job_ids), jobs.c.owner == owner, jobs.c.status == "running")
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(held).values(heartbeat_at=time.time()))
            return {r.id for r in conn.execute(sa.select(jobs.c.id).where(held))}

    def requeue_expired(self, lease_seconds: float) -> list[str]:
        """Queue again the running jobs whose lease has not been renewed for `lease_seconds`: their
        server has died (or lost the database); the next claim resumes them from their last checkpoint."""
        cutoff = time.time() - lease_seconds
        expired = sa.and_(jobs.c.status == "running", jobs.c.heartbeat_at < cutoff)
        requeued = []
        for row in self._all(sa.select(jobs.c.id, jobs.c.doc).where(expired)):
            taken = self._write(jobs.update().where(jobs.c.id == row.id, expired)
                                .values(status="queued", doc={**row.doc, "status": "queued"}, owner=None, pid=None))
            if taken:
                requeued.append(row.id)
        return requeued

    def set_job_columns(self, job_id: str, **columns: Any) -> None:
        self._write(jobs.update().where(jobs.c.id == job_id).values(**columns))

    def get_job(self, job_id: str, project: str | None = None) -> dict | None:
        row = self._one(sa.select(jobs.c.doc).where(jobs.c.id == job_id, self._of(jobs, project)))
        return row.doc if row else None

    def job_row(self, job_id: str) -> JobRow | None:
        row = self._one(sa.select(*_JOB_COLUMNS).where(jobs.c.id == job_id))
        return JobRow(*row) if row else None

    def jobs_with_status(self, *statuses: str) -> list[JobRow]:
        rows = self._all(sa.select(*_JOB_COLUMNS).where(jobs.c.status.in_(statuses)).order_by(jobs.c.seq))
        return [JobRow(*r) for r in rows]

    def count_jobs_by_status(self, project: str | None = None) -> dict[str, int]:
        rows = self._all(sa.select(jobs.c.status, sa.func.count()).where(self._of(jobs, project))
                         .group_by(jobs.c.status))
        return {status: n for status, n in rows}

    def list_jobs(self, project: str, after: str | None, limit: int,
                  metadata: dict[str, str]) -> tuple[list[dict], bool]:
        query = sa.select(jobs.c.doc).where(self._of(jobs, project), self._after(jobs, after))
        for key, value in metadata.items():
            query = query.where(jobs.c.doc[("metadata", key)].as_string() == value)
        return self._page(query.order_by(jobs.c.seq.desc()), limit)

    def file_in_use(self, file_id: str) -> bool:
        uses = sa.or_(jobs.c.doc["training_file"].as_string() == file_id,
                      jobs.c.doc["validation_file"].as_string() == file_id)
        if self._one(sa.select(jobs.c.id).where(jobs.c.status.in_(ACTIVE_JOB), uses).limit(1)) is not None:
            return True
        batch_input = batches.c.doc["input_file_id"].as_string() == file_id
        return self._one(sa.select(batches.c.id).where(batches.c.status.in_(ACTIVE_BATCH), batch_input)
                         .limit(1)) is not None

    # ------------------------------------------------------------------ events
    def insert_event(self, job_id: str, doc: dict) -> None:
        self._write(events.insert().values(id=doc["id"], job_id=job_id, doc=doc))

    def list_events(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        query = sa.select(events.c.doc).where(events.c.job_id == job_id, self._after(events, after))
        return self._page(query.order_by(events.c.seq.desc()), limit)

    def job_events(self, job_id: str, type: str | None = None) -> list[dict]:
        """A job's events, oldest first; only those of `type` (`metrics`, `message`) if given."""
        query = sa.select(events.c.doc).where(events.c.job_id == job_id).order_by(events.c.seq)
        if type is not None:
            query = query.where(events.c.doc["type"].as_string() == type)
        return [r.doc for r in self._all(query)]

    # ------------------------------------------------------------------ checkpoints
    def upsert_checkpoint(self, job_id: str, step: int, doc: dict) -> None:
        insert = (sa.dialects.postgresql.insert if not self.sqlite else sa.dialects.sqlite.insert)(checkpoints)
        self._write(insert.values(id=doc["id"], job_id=job_id, step=step, doc=doc)
                    .on_conflict_do_update(index_elements=["job_id", "step"], set_={"doc": doc}))

    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        query = sa.select(checkpoints.c.doc).where(checkpoints.c.job_id == job_id,
                                                   self._after(checkpoints, after, column="step"))
        return self._page(query.order_by(checkpoints.c.step.desc()), limit)


_JOB_COLUMNS = (jobs.c.id, jobs.c.status, jobs.c.project_id, jobs.c.model_name, jobs.c.run_dir, jobs.c.pid, jobs.c.owner,
                jobs.c.backend_ref, jobs.c.resources)


def _engine(url: str, sqlite: bool) -> Engine:
    if not sqlite:
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN, not the driver's implicit one
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # transactions as SQLAlchemy delimits them (the driver would not); IMMEDIATE where a transaction
        # reads before it writes, so that it waits for the write lock instead of failing to upgrade
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

    return engine

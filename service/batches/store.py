"""The batches feature's tables: batches (leased to the server running them) and one row per finished line."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa

from service.db import Database, Store, after_id, metadata, of_project
from service.leases import Leases
from service.webhooks.store import write_announced

EVENTS = {"completed": "batch.completed", "failed": "batch.failed", "cancelled": "batch.cancelled",
          "expired": "batch.expired"}  # webhooks sent when a batch ends

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

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


class BatchStore(Store):
    def __init__(self, db: Database):
        super().__init__(db)
        self.leases = Leases(db, batches, ACTIVE)

    def insert_batch(self, doc: dict, project: str) -> None:
        self._write(batches.insert().values(id=doc["id"], status=doc["status"], doc=doc, project_id=project))

    def get_batch(self, batch_id: str, project: str | None = None) -> dict | None:
        return self._doc(batches, batches.c.id == batch_id, of_project(batches, project))

    def batch_project(self, batch_id: str) -> str | None:
        row = self._one(sa.select(batches.c.project_id).where(batches.c.id == batch_id))
        return None if row is None else row.project_id

    def list_batches(self, project: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        return self._page(sa.select(batches.c.doc).where(of_project(batches, project), after_id(batches, after))
                          .order_by(batches.c.seq.desc()), limit)

    def update_batch(self, doc: dict, expect: tuple[str, ...]) -> bool:
        """Write the batch's document if its status is still one of `expect`."""
        return write_announced(self.db, batches, batches.update().where(batches.c.id == doc["id"],
                                                                        batches.c.status.in_(expect))
                               .values(status=doc["status"], doc=doc), doc, EVENTS,
                               sa.select(batches.c.project_id).where(batches.c.id == doc["id"]))

    def add_batch_results(self, batch_id: str, rows: list[tuple[int, bool, dict]]) -> dict[bool, int]:
        """Record answered lines (line, ok, output line) in one transaction, each once (a line recorded
        before is left as it was); the batch's recorded lines counted by `ok`."""
        with self.db.begin() as conn:
            if rows:
                conn.execute(self.db.upsert(batch_results).values(
                    [{"batch_id": batch_id, "line": line, "ok": ok, "doc": doc} for line, ok, doc in rows])
                    .on_conflict_do_nothing())
            return {True: 0, False: 0} | {bool(ok): n for ok, n in conn.execute(_counted(batch_id))}

    def result_counts(self, batch_id: str) -> dict[bool, int]:
        """The batch's recorded lines counted by `ok`."""
        return {True: 0, False: 0} | {bool(ok): n for ok, n in self._all(_counted(batch_id))}

    def recorded_lines(self, batch_id: str) -> set[int]:
        lines = sa.select(batch_results.c.line).where(batch_results.c.batch_id == batch_id)
        return {r.line for r in self._all(lines)}

    def batch_results(self, batch_id: str, ok: bool, page: int = 500) -> Iterator[dict]:
        """The output (ok) or error lines recorded for the batch, in input order, read a page at a time."""
        last = -1
        while True:
            rows = self._all(sa.select(batch_results.c.line, batch_results.c.doc).where(
                batch_results.c.batch_id == batch_id, batch_results.c.ok == ok, batch_results.c.line > last)
                .order_by(batch_results.c.line).limit(page))
            yield from (r.doc for r in rows)
            if len(rows) < page:
                return
            last = rows[-1].line

    def uses_file(self, file_id: str) -> bool:
        batch_input = batches.c.doc["input_file_id"].as_string() == file_id
        return self._one(sa.select(batches.c.id).where(batches.c.status.in_(ACTIVE), batch_input)
                         .limit(1)) is not None


def _counted(batch_id: str):
    return sa.select(batch_results.c.ok, sa.func.count()).where(batch_results.c.batch_id == batch_id) \
        .group_by(batch_results.c.ok)

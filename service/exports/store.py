"""The model exports feature's table: one row per export, leased to the server merging it (service/leases.py),
so that an export whose server stopped is merged again by another (or the same, restarted)."""

from __future__ import annotations

import sqlalchemy as sa

from service.db import Database, Store, after_id, metadata, of_project
from service.leases import Leases

model_exports = sa.Table(
    "model_exports", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),  # the export object
    sa.Column("owner", sa.Text),  # the server merging it
    sa.Column("heartbeat_at", sa.Float),  # when that server last renewed its lease
)

ACTIVE = ("queued", "running")


class ExportStore(Store):
    def __init__(self, db: Database):
        super().__init__(db)
        self.leases = Leases(db, model_exports, ACTIVE)

    def insert(self, doc: dict, project: str) -> None:
        self._write(model_exports.insert().values(id=doc["id"], project_id=project, status=doc["status"], doc=doc))

    def get(self, export_id: str, project: str | None) -> dict | None:
        return self._doc(model_exports, model_exports.c.id == export_id, of_project(model_exports, project))

    def project_of(self, export_id: str) -> str:
        return self._one(sa.select(model_exports.c.project_id).where(model_exports.c.id == export_id)).project_id

    def list(self, project: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        t = model_exports
        return self._page(sa.select(t.c.doc).where(of_project(t, project), after_id(t, after))
                          .order_by(t.c.seq.desc()), limit)

    def update(self, doc: dict) -> None:
        self._write(model_exports.update().where(model_exports.c.id == doc["id"])
                    .values(status=doc["status"], doc=doc))

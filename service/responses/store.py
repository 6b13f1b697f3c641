"""The responses feature's table: one row per stored response, with the items it was given and the
conversation before them (so that a response continuing it reads one row, whatever the chain's length).
A background response is leased to the server running it (service/leases.py): if that server stops,
another (or the same, restarted) runs it again."""

from __future__ import annotations

import time

import sqlalchemy as sa

from service.db import Database, Store, metadata, of_project
from service.leases import Leases
from service.webhooks.store import write_announced

EVENTS = {"completed": "response.completed", "failed": "response.failed", "cancelled": "response.cancelled",
          "incomplete": "response.incomplete"}  # webhooks sent when a background response ends

responses = sa.Table(
    "responses", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),  # the response object
    sa.Column("input_items", sa.JSON, nullable=False),  # this response's input, as GET .../input_items lists it
    sa.Column("history", sa.JSON, nullable=False),  # the items of the responses it continues, oldest first
    sa.Column("request", sa.JSON),  # a background response's request, to run it (again, after a restart)
    sa.Column("owner", sa.Text),  # the server running a background response
    sa.Column("heartbeat_at", sa.Float),  # when that server last renewed its lease
)

RUNNING = ("queued", "in_progress")


class StoredResponse:
    def __init__(self, doc: dict, input_items: list[dict], history: list[dict], request: dict | None = None,
                 project: str | None = None):
        self.doc, self.input_items, self.history, self.request, self.project = \
            doc, input_items, history, request, project

    def conversation(self) -> list[dict]:
        """Everything a response continuing this one is preceded by: history, input, output."""
        return self.history + self.input_items + self.doc["output"]


class ResponseStore(Store):
    def __init__(self, db: Database):
        super().__init__(db)
        self.leases = Leases(db, responses, RUNNING)

    def insert(self, doc: dict, project: str, input_items: list[dict], history: list[dict],
               request: dict | None = None, owner: str | None = None) -> None:
        """Store a response; a background one with its request, leased to `owner` (the server that runs it)."""
        self._write(responses.insert().values(
            id=doc["id"], project_id=project, status=doc["status"], doc=doc, input_items=input_items,
            history=history, request=request, owner=owner, heartbeat_at=time.time() if owner else None))

    def get(self, response_id: str, project: str | None) -> StoredResponse | None:
        c = responses.c
        row = self._one(sa.select(c.doc, c.input_items, c.history, c.request, c.project_id)
                        .where(c.id == response_id, of_project(responses, project)))
        return None if row is None else StoredResponse(row.doc, row.input_items, row.history, row.request,
                                                       row.project_id)

    def status(self, response_id: str) -> str | None:
        row = self._one(sa.select(responses.c.status).where(responses.c.id == response_id))
        return None if row is None else row.status

    def update(self, doc: dict, expect: tuple[str, ...] = RUNNING) -> bool:
        """Write the response if its status is still one of `expect` (a cancelled one stays cancelled)."""
        return write_announced(self.db, responses, responses.update().where(responses.c.id == doc["id"],
                                                                            responses.c.status.in_(expect))
                               .values(status=doc["status"], doc=doc), doc, EVENTS,
                               sa.select(responses.c.project_id).where(responses.c.id == doc["id"]))

    def delete(self, response_id: str, project: str) -> bool:
        return bool(self._write(responses.delete().where(responses.c.id == response_id,
                                                         of_project(responses, project))))

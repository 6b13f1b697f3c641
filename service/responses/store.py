"""The responses feature's table: one row per stored response, with the items it was given and the
conversation before them (so that a response continuing it reads one row, whatever the chain's length)."""

from __future__ import annotations

import sqlalchemy as sa

from service.db import Store, metadata, of_project

responses = sa.Table(
    "responses", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),  # the response object
    sa.Column("input_items", sa.JSON, nullable=False),  # this response's input, as GET .../input_items lists it
    sa.Column("history", sa.JSON, nullable=False),  # the items of the responses it continues, oldest first
)

RUNNING = ("queued", "in_progress")


class StoredResponse:
    def __init__(self, doc: dict, input_items: list[dict], history: list[dict]):
        self.doc, self.input_items, self.history = doc, input_items, history

    def conversation(self) -> list[dict]:
        """Everything a response continuing this one is preceded by: history, input, output."""
        return self.history + self.input_items + self.doc["output"]


class ResponseStore(Store):
    def insert(self, doc: dict, project: str, input_items: list[dict], history: list[dict]) -> None:
        self._write(responses.insert().values(id=doc["id"], project_id=project, status=doc["status"], doc=doc,
                                              input_items=input_items, history=history))

    def get(self, response_id: str, project: str | None) -> StoredResponse | None:
        row = self._one(sa.select(responses.c.doc, responses.c.input_items, responses.c.history)
                        .where(responses.c.id == response_id, of_project(responses, project)))
        return None if row is None else StoredResponse(row.doc, row.input_items, row.history)

    def status(self, response_id: str) -> str | None:
        row = self._one(sa.select(responses.c.status).where(responses.c.id == response_id))
        return None if row is None else row.status

    def update(self, doc: dict, expect: tuple[str, ...] = RUNNING) -> bool:
        """Write the response if its status is still one of `expect` (a cancelled one stays cancelled)."""
        return bool(self._write(responses.update().where(responses.c.id == doc["id"],
                                                         responses.c.status.in_(expect))
                                .values(status=doc["status"], doc=doc)))

    def delete(self, response_id: str, project: str) -> bool:
        return bool(self._write(responses.delete().where(responses.c.id == response_id,
                                                         of_project(responses, project))))

"""The files feature's table: one row per file, its OpenAI object and its key in the object store."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import sqlalchemy as sa

from service.db import Store, metadata, of_project

files = sa.Table(
    "files", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False, server_default="proj_default"),
    sa.Column("path", sa.Text, nullable=False),  # its key in the object store: files/{id}
    sa.Column("doc", sa.JSON, nullable=False),
)


@runtime_checkable
class FileUser(Protocol):
    """A feature's store whose active work reads files (jobs, batches): such a file cannot be deleted."""

    def uses_file(self, file_id: str) -> bool: ...


class FileStore(Store):
    def insert_file(self, doc: dict, path: str, project: str) -> None:
        self._write(files.insert().values(id=doc["id"], purpose=doc["purpose"], path=path, doc=doc,
                                          project_id=project))

    def get_file(self, file_id: str, project: str | None = None) -> tuple[dict, str] | None:
        row = self._one(sa.select(files.c.doc, files.c.path).where(files.c.id == file_id, of_project(files, project)))
        return (row.doc, row.path) if row else None

    def list_files(self, project: str, purpose: str | None, after: str | None, limit: int,
                   order: str) -> tuple[list[dict], bool]:
        where = [of_project(files, project)] + ([files.c.purpose == purpose] if purpose else [])
        return self._ordered_page(files, where, after, limit, order)

    def delete_file(self, file_id: str) -> bool:
        return self._write(files.delete().where(files.c.id == file_id)) > 0

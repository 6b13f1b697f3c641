"""The projects feature's tables: projects, their service accounts (keys stored as HMACs), checkpoint
permissions (models shared with other projects) and the server-wide secrets."""

from __future__ import annotations

import sqlalchemy as sa

from service.db import Store, metadata

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


class ProjectStore(Store):
    # ------------------------------------------------------------------ projects
    def insert_project(self, doc: dict) -> None:
        self._write(projects.insert().values(id=doc["id"], status=doc["status"], doc=doc))

    def get_project(self, project_id: str) -> dict | None:
        return self._doc(projects, projects.c.id == project_id)

    def update_project(self, doc: dict) -> None:
        self._write(projects.update().where(projects.c.id == doc["id"]).values(status=doc["status"], doc=doc))

    def list_projects(self, after: str | None, limit: int, include_archived: bool) -> tuple[list[dict], bool]:
        where = [] if include_archived else [projects.c.status == "active"]
        return self._ordered_page(projects, where, after, limit, "asc")

    # ------------------------------------------------------------------ service accounts and keys
    def insert_service_account(self, project_id: str, doc: dict, key_id: str | None, key_hash: str | None) -> None:
        self._write(service_accounts.insert().values(id=doc["id"], project_id=project_id, doc=doc, key_id=key_id,
                                                     key_hash=key_hash))

    def get_service_account(self, project_id: str, account_id: str) -> dict | None:
        t = service_accounts
        return self._doc(t, t.c.id == account_id, t.c.project_id == project_id)

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

    # ------------------------------------------------------------------ checkpoint permissions
    def insert_permission(self, model: str, doc: dict) -> dict:
        """Share `model` with the permission's project; an existing share is returned as it is."""
        t = checkpoint_permissions
        try:
            self._write(t.insert().values(id=doc["id"], model=model, project_id=doc["project_id"], doc=doc))
            return doc
        except sa.exc.IntegrityError:
            return self._doc(t, t.c.model == model, t.c.project_id == doc["project_id"])

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

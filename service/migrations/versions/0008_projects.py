"""Projects: their service accounts (keys stored as HMACs), checkpoint permissions, and the project
of every file, job, batch and eval (what existed before belongs to the default project).

Revision ID: 0008
Revises: 0007
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DEFAULT_PROJECT = "proj_default"


def upgrade() -> None:
    bind = op.get_bind()
    tables = sa.inspect(bind).get_table_names()
    for table in ("files", "jobs", "batches", "evals"):
        if "project_id" not in {c["name"] for c in sa.inspect(bind).get_columns(table)}:
            with op.batch_alter_table(table) as batch:
                batch.add_column(sa.Column("project_id", sa.Text, nullable=False, server_default=DEFAULT_PROJECT))
            op.create_index(f"{table}_project", table, ["project_id", "seq"])
    if "projects" not in tables:
        projects = op.create_table(
            "projects",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
        )
        doc = {"id": DEFAULT_PROJECT, "object": "organization.project", "name": "Default project",
               "created_at": int(time.time()), "archived_at": None, "status": "active"}
        op.bulk_insert(projects, [{"id": DEFAULT_PROJECT, "status": "active", "doc": doc}])
    if "service_accounts" not in tables:
        op.create_table(
            "service_accounts",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("project_id", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
            sa.Column("key_id", sa.Text),
            sa.Column("key_hash", sa.Text, unique=True),  # HMAC-SHA256 of the key under the server's secret
        )
    if "checkpoint_permissions" not in tables:
        op.create_table(
            "checkpoint_permissions",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("model", sa.Text, nullable=False),
            sa.Column("project_id", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
            sa.UniqueConstraint("model", "project_id"),
        )
    if "server_secrets" not in tables:
        op.create_table(
            "server_secrets",
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )

"""The first schema: files, jobs, events, checkpoints.

Databases made before the schema was versioned already hold these tables, with the same columns:
they are left as they are and only stamped.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "files" not in existing:
        op.create_table(
            "files",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("purpose", sa.Text, nullable=False),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
        )
    if "jobs" not in existing:
        op.create_table(
            "jobs",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("model_name", sa.Text, nullable=False),
            sa.Column("run_dir", sa.Text, nullable=False),
            sa.Column("pid", sa.Integer),
            sa.Column("doc", sa.JSON, nullable=False),
        )
    if "events" not in existing:
        op.create_table(
            "events",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("job_id", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
        )
        op.create_index("events_job", "events", ["job_id", "seq"])
    if "checkpoints" not in existing:
        op.create_table(
            "checkpoints",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("job_id", sa.Text, nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
            sa.UniqueConstraint("job_id", "step"),
        )

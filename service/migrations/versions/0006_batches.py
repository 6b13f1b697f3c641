"""Batches (the Batch API) and their lines' results, one row per input line.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = sa.inspect(op.get_bind()).get_table_names()
    if "batches" not in tables:
        op.create_table(
            "batches",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
            sa.Column("owner", sa.Text),
            sa.Column("heartbeat_at", sa.Float),
        )
    if "batch_results" not in tables:
        op.create_table(
            "batch_results",
            sa.Column("batch_id", sa.Text, nullable=False),
            sa.Column("line", sa.Integer, nullable=False),
            sa.Column("ok", sa.Boolean, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
            sa.PrimaryKeyConstraint("batch_id", "line"),
        )

"""Evals (the Evals API), their runs and the runs' output items.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = sa.inspect(op.get_bind()).get_table_names()
    if "evals" not in tables:
        op.create_table(
            "evals",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
        )
    if "eval_runs" not in tables:
        op.create_table(
            "eval_runs",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("eval_id", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
            sa.Column("owner", sa.Text),
            sa.Column("heartbeat_at", sa.Float),
        )
    if "eval_output_items" not in tables:
        op.create_table(
            "eval_output_items",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("run_id", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
        )

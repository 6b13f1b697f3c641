"""Stored responses (the Responses API): the response object, its input items and the conversation before it;
a background response's request and lease.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "responses" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(
            "responses",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("project_id", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
            sa.Column("input_items", sa.JSON, nullable=False),
            sa.Column("history", sa.JSON, nullable=False),
            sa.Column("request", sa.JSON),
            sa.Column("owner", sa.Text),
            sa.Column("heartbeat_at", sa.Float),
        )


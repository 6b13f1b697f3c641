"""Webhooks: endpoints with their encrypted signing secrets, and deliveries (one an event an endpoint), leased to
the server sending them; generation slots, a project's generation requests counted across servers.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = sa.inspect(op.get_bind()).get_table_names()
    if "webhook_endpoints" not in tables:
        op.create_table(
            "webhook_endpoints",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("project_id", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
            sa.Column("secret", sa.Text, nullable=False),
            sa.Column("old_secret", sa.Text),
            sa.Column("old_secret_until", sa.Float),
        )
    if "webhook_deliveries" not in tables:
        op.create_table(
            "webhook_deliveries",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("project_id", sa.Text, nullable=False),
            sa.Column("endpoint_id", sa.Text, nullable=False, index=True),
            sa.Column("event_id", sa.Text, nullable=False),
            sa.Column("event_type", sa.Text, nullable=False),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False, index=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("next_attempt_at", sa.Float),
            sa.Column("last_attempt_at", sa.Float),
            sa.Column("last_status_code", sa.Integer),
            sa.Column("last_error", sa.Text),
            sa.Column("delivered_at", sa.Float),
            sa.Column("owner", sa.Text),
            sa.Column("heartbeat_at", sa.Float),
        )
    if "generation_slots" not in tables:  # a project's generation requests, counted across servers
        op.create_table(
            "generation_slots",
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("project_id", sa.Text, nullable=False, index=True),
            sa.Column("owner", sa.Text, nullable=False),
            sa.Column("heartbeat_at", sa.Float, nullable=False),
        )

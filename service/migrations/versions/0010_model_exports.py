"""Model exports: an adapter merged into its base model, in the background, leased to the server merging it.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "model_exports" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(
            "model_exports",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.Text, unique=True, nullable=False),
            sa.Column("project_id", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("doc", sa.JSON, nullable=False),
            sa.Column("owner", sa.Text),
            sa.Column("heartbeat_at", sa.Float),
        )

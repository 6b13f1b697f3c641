"""Job leases: which server runs a job, and when it last said so.

A server heartbeats the jobs it trains; a job whose heartbeat is older than the lease is taken
back into the queue by any server, and resumes from its last checkpoint there.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("jobs")}
    with op.batch_alter_table("jobs") as batch:
        if "owner" not in columns:
            batch.add_column(sa.Column("owner", sa.Text))
        if "heartbeat_at" not in columns:
            batch.add_column(sa.Column("heartbeat_at", sa.Float))

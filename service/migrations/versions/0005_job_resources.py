"""A job's own resource request for the training backend (the `resources` extension of job creation).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "resources" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("jobs")}:
        with op.batch_alter_table("jobs") as batch:
            batch.add_column(sa.Column("resources", sa.JSON))

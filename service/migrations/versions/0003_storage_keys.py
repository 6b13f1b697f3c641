"""Storage keys instead of local paths: a file's `path` and a job's `run_dir` become keys relative to
the storage root (`files/{id}`, `jobs/{id}`), so that servers with different data dirs, or an
object store, find them.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE files SET path = 'files/' || id")
    op.execute("UPDATE jobs SET run_dir = 'jobs/' || id")

"""The database schema's versions (Alembic), applied where the operator starts the server (`ftserve serve`,
`ftserve migrate`): `upgrade(engine)`.

Idempotent, and safe when several servers start at once: on PostgreSQL the upgrade runs under a
transaction-scoped advisory lock, on SQLite under a lock file beside the database, so one server
migrates while the others wait and then find nothing left to do. A new version is a file in versions/ (`alembic revision` with this folder as
its script location, or by hand after the existing ones).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATION_LOCK = 0x66747376  # pg_advisory_xact_lock key: "ftsv"


def upgrade(engine: sa.Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    with _sqlite_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


@contextmanager
def _sqlite_lock(engine: sa.Engine) -> Iterator[None]:
    if engine.dialect.name != "sqlite":
        yield
        return
    with open(f"{engine.url.database}.migrate.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield

"""The database core every feature's store builds on: the engine, transactions, paging, and the schema's
one `MetaData` (each feature declares its own tables on it, in its `store.py`).

SQLAlchemy Core over SQLite (the default: `data/ftserve.db`) or PostgreSQL
(`--database-url postgresql+psycopg://...`). Building a `Database` connects and nothing more: the schema
is upgraded where the operator starts the server (`service.migrations.upgrade`, run by `ftserve serve`
and `ftserve migrate`). Each row keeps the OpenAI object as a JSON document (`doc`) plus the few
columns that queries need. Lists are newest first and page with `after` (the last id of the previous
page), as OpenAI's do. Rows that belong to a project carry it: a `project` argument scopes a lookup or
list to it (None, for the server's own runners: any project).

SQLite runs in WAL mode with synchronous=FULL (a committed write survives kill -9 and power loss).
"""

from __future__ import annotations

import hashlib

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()
RESERVE_BYTES = 4 * 1024 * 1024


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class Database:
    """A connection pool to the one database, and the ballast file that keeps room to record a full disk."""

    def __init__(self, url: str, reserve: Path | None = None):
        """`url`: a SQLAlchemy URL; `reserve`: where SQLite's ballast file goes (None: no ballast)."""
        self.url = sa.engine.make_url(url)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        if self.sqlite:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        # Ballast: space set aside so that, when the disk fills up, what went wrong can still be
        # recorded (release_reserve frees it; it is set aside again at the next start).
        self.reserve = reserve
        if reserve is not None:
            try:
                if not reserve.exists() or reserve.stat().st_size < RESERVE_BYTES:
                    with reserve.open("wb") as f:
                        f.write(b"\0" * RESERVE_BYTES)
            except OSError:
                reserve.unlink(missing_ok=True)
        self.engine = _engine(url, self.sqlite)

    def release_reserve(self) -> bool:
        """Free the ballast space; True if there was any to free."""
        if self.reserve is None:
            return False
        try:
            self.reserve.unlink()
            return True
        except FileNotFoundError:
            return False

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def begin(self, immediate: bool = False):
        """A transaction; `immediate`: one that reads before it writes takes SQLite's write lock first."""
        return (self.engine.execution_options(immediate=True) if immediate else self.engine).begin()

    def serialize(self, conn, name: str) -> None:
        """Within `conn`'s transaction, wait for every other transaction serialized on `name` to end: a count
        and the insert it allows are then one step across servers (PostgreSQL: an advisory transaction lock;
        SQLite: its `immediate` transactions already run one at a time)."""
        if not self.sqlite:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _key(name)})

    def try_serialize(self, conn, name: str) -> bool:
        """As `serialize`, but without waiting: False when another transaction holds `name` now."""
        if self.sqlite:
            return True
        return bool(conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _key(name)}).scalar())

    def upsert(self, table: sa.Table):
        """An INSERT ... ON CONFLICT statement in this database's dialect."""
        return (sa.dialects.sqlite.insert if self.sqlite else sa.dialects.postgresql.insert)(table)


class Store:
    """The base of every feature's store: its queries run through these few helpers."""

    def __init__(self, db: Database):
        self.db = db

    def _all(self, query) -> list[sa.Row]:
        with self.db.engine.connect() as conn:
            return list(conn.execute(query))

    def _one(self, query) -> sa.Row | None:
        with self.db.engine.connect() as conn:
            return conn.execute(query).first()

    def _write(self, statement) -> int:
        with self.db.begin() as conn:
            return conn.execute(statement).rowcount

    def _page(self, query, limit: int) -> tuple[list[dict], bool]:
        """The documents of up to `limit` rows of `query` (which selects `doc`), and whether there are more."""
        rows = self._all(query.limit(limit + 1))
        return [r.doc for r in rows[:limit]], len(rows) > limit

    def _ordered_page(self, table: sa.Table, where: list, after: str | None, limit: int,
                      order: str) -> tuple[list[dict], bool]:
        """A page of `table`'s documents matching `where`, oldest first (`asc`) or newest first (`desc`),
        past the row with id `after`."""
        desc = order == "desc"
        query = sa.select(table.c.doc).where(*where, after_id(table, after, before=desc))
        return self._page(query.order_by(table.c.seq.desc() if desc else table.c.seq), limit)

    def _doc(self, table: sa.Table, *where) -> dict | None:
        """The document of the one row of `table` matching `where`, if any."""
        row = self._one(sa.select(table.c.doc).where(*where))
        return None if row is None else row.doc


def _key(name: str) -> int:
    """An advisory lock's key for `name`."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def of_project(table: sa.Table, project: str | None):
    """Rows of `project` (None: of any)."""
    return sa.true() if project is None else table.c.project_id == project


def after_id(table: sa.Table, after: str | None, before: bool = True, column: str = "seq"):
    """Rows past the one with id `after` in list order (`before`: a smaller `column`)."""
    if not after:
        return sa.true()
    pivot = sa.select(table.c[column]).where(table.c.id == after).scalar_subquery()
    pivot = sa.func.coalesce(pivot, -1)
    return table.c[column] < pivot if before else table.c[column] > pivot


def _engine(url: str, sqlite: bool) -> Engine:
    if not sqlite:
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN, not the driver's implicit one
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # transactions as SQLAlchemy delimits them (the driver would not); IMMEDIATE where a transaction
        # reads before it writes, so that it waits for the write lock instead of failing to upgrade
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

    return engine

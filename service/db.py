"""Durable state in SQLite: files, jobs, job events, checkpoints.

Each row keeps the OpenAI object as a JSON document (`doc`) plus the few columns that
queries need. Lists are newest first and page with `after` (the last id of the previous
page), as OpenAI's do. WAL journaling with synchronous=FULL: a committed write survives
kill -9 and power loss. One connection, used under a lock (SQLite serialises writers anyway).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    purpose TEXT NOT NULL,
    path TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    model_name TEXT NOT NULL,   -- the fine_tuned_model name it will get
    run_dir TEXT NOT NULL,      -- holds spec.json, the trainer's input
    pid INTEGER,                -- trainer process group while running
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    job_id TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    job_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (job_id, step)
);
"""


RESERVE_BYTES = 4 * 1024 * 1024


class Database:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Ballast: space set aside so that, when the disk fills up, what went wrong can still be
        # recorded (release_reserve frees it; it is set aside again at the next start).
        self.reserve = self.path.with_name(self.path.name + ".reserve")
        try:
            if not self.reserve.exists() or self.reserve.stat().st_size < RESERVE_BYTES:
                with self.reserve.open("wb") as f:
                    f.write(b"\0" * RESERVE_BYTES)
        except OSError:
            self.reserve.unlink(missing_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(SCHEMA)

    def release_reserve(self) -> bool:
        """Free the ballast space; True if there was any to free."""
        try:
            self.reserve.unlink()
            return True
        except FileNotFoundError:
            return False

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def ping(self) -> bool:
        try:
            with self._lock:
                self._conn.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _page(self, sql: str, args: tuple, limit: int) -> tuple[list[dict], bool]:
        """The documents of up to `limit` rows of `sql` (which ends in LIMIT ?), and whether there are more."""
        rows = self._all(sql, (*args, limit + 1))
        return [json.loads(r["doc"]) for r in rows[:limit]], len(rows) > limit

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    # ------------------------------------------------------------------ files
    def insert_file(self, doc: dict, path: str) -> None:
        self._write("INSERT INTO files (id, purpose, path, doc) VALUES (?, ?, ?, ?)",
                    (doc["id"], doc["purpose"], path, json.dumps(doc)))

    def update_file(self, doc: dict) -> None:
        self._write("UPDATE files SET doc = ? WHERE id = ?", (json.dumps(doc), doc["id"]))

    def get_file(self, file_id: str) -> tuple[dict, str] | None:
        row = self._one("SELECT doc, path FROM files WHERE id = ?", (file_id,))
        return (json.loads(row["doc"]), row["path"]) if row else None

    def list_files(self, purpose: str | None, after: str | None, limit: int, order: str) -> tuple[list[dict], bool]:
        where, args = [], []
        if purpose:
            where.append("purpose = ?")
            args.append(purpose)
        cmp = "<" if order == "desc" else ">"
        if after:
            where.append(f"seq {cmp} COALESCE((SELECT seq FROM files WHERE id = ?), -1)")
            args.append(after)
        sql = "SELECT doc FROM files" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY seq {'DESC' if order == 'desc' else 'ASC'} LIMIT ?"
        return self._page(sql, tuple(args), limit)

    def delete_file(self, file_id: str) -> bool:
        return self._write("DELETE FROM files WHERE id = ?", (file_id,)) > 0

    # ------------------------------------------------------------------ jobs
    def insert_job(self, doc: dict, model_name: str, run_dir: str) -> None:
        self._write("INSERT INTO jobs (id, status, model_name, run_dir, doc) VALUES (?, ?, ?, ?, ?)",
                    (doc["id"], doc["status"], model_name, run_dir, json.dumps(doc)))

    def update_job(self, doc: dict, expect: tuple[str, ...]) -> bool:
        """Write the job's document if its stored status is one of `expect`; False (nothing written) if not."""
        marks = ",".join("?" * len(expect))
        return self._write(f"UPDATE jobs SET doc = ?, status = ? WHERE id = ? AND status IN ({marks})",
                           (json.dumps(doc), doc["status"], doc["id"], *expect)) > 0

    def set_job_columns(self, job_id: str, **columns: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in columns)
        self._write(f"UPDATE jobs SET {sets} WHERE id = ?", (*columns.values(), job_id))

    def get_job(self, job_id: str) -> dict | None:
        row = self._one("SELECT doc FROM jobs WHERE id = ?", (job_id,))
        return json.loads(row["doc"]) if row else None

    def job_row(self, job_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def jobs_with_status(self, *statuses: str) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(statuses))
        return self._all(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY seq", statuses)

    def count_jobs_by_status(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}

    def list_jobs(self, after: str | None, limit: int, metadata: dict[str, str]) -> tuple[list[dict], bool]:
        where, args = [], []
        if after:
            where.append("seq < COALESCE((SELECT seq FROM jobs WHERE id = ?), -1)")
            args.append(after)
        for key, value in metadata.items():
            where.append("json_extract(doc, '$.metadata.' || json_quote(?)) = ?")
            args += [key, value]
        sql = "SELECT doc FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return self._page(sql + " ORDER BY seq DESC LIMIT ?", tuple(args), limit)

    def file_in_use(self, file_id: str) -> bool:
        row = self._one(
            "SELECT 1 FROM jobs WHERE status IN ('validating_files', 'queued', 'running') AND "
            "(json_extract(doc, '$.training_file') = ? OR json_extract(doc, '$.validation_file') = ?)",
            (file_id, file_id),
        )
        return row is not None

    # ------------------------------------------------------------------ events
    def insert_event(self, job_id: str, doc: dict) -> None:
        self._write("INSERT INTO events (id, job_id, doc) VALUES (?, ?, ?)", (doc["id"], job_id, json.dumps(doc)))

    def list_events(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        args: tuple = (job_id,)
        sql = "SELECT doc FROM events WHERE job_id = ?"
        if after:
            sql += " AND seq < COALESCE((SELECT seq FROM events WHERE id = ?), -1)"
            args += (after,)
        return self._page(sql + " ORDER BY seq DESC LIMIT ?", tuple(args), limit)

    def metric_events(self, job_id: str) -> list[dict]:
        rows = self._all("SELECT doc FROM events WHERE job_id = ? AND json_extract(doc, '$.type') = 'metrics' "
                         "ORDER BY seq", (job_id,))
        return [json.loads(r["doc"]) for r in rows]

    # ------------------------------------------------------------------ checkpoints
    def upsert_checkpoint(self, job_id: str, step: int, doc: dict) -> None:
        self._write("INSERT INTO checkpoints (id, job_id, step, doc) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (job_id, step) DO UPDATE SET doc = excluded.doc",
                    (doc["id"], job_id, step, json.dumps(doc)))

    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        args: tuple = (job_id,)
        sql = "SELECT doc FROM checkpoints WHERE job_id = ?"
        if after:
            sql += " AND step < COALESCE((SELECT step FROM checkpoints WHERE id = ?), -1)"
            args += (after,)
        return self._page(sql + " ORDER BY step DESC LIMIT ?", args, limit)

"""The database seam and the features' stores on both backends: SQLite (the default) and a real PostgreSQL
server."""

import json
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from service.batches.store import BatchStore
from service.db import Database, sqlite_url
from service.files.store import FileStore
from service.errors import APIError
from service.fine_tuning.store import JobStore, jobs as jobs_table
from service.migrations import upgrade
from service.projects.store import ProjectStore
from tests.support.paths import REPO


def stored_doc(db: Database, job_id: str) -> dict:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(jobs_table.c.doc).where(jobs_table.c.id == job_id)).scalar()


def migrated(url: str) -> Database:
    db = Database(url)
    upgrade(db.engine)
    return db


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "ftserve.db")
    return request.getfixturevalue("postgres").database(f"t{abs(hash(tmp_path)) % 10**9}")


def _job(job_id: str, status: str = "queued", **doc) -> dict:
    return {"id": job_id, "status": status, "training_file": "file-a", "validation_file": None,
            "metadata": {"team": "x"}, **doc}


def test_opening_a_database_changes_nothing_until_it_is_migrated(url):
    db = Database(url)
    with db.engine.connect() as conn:
        assert "alembic_version" not in sa.inspect(conn).get_table_names()
    db.close()


def test_migrations_are_versioned_and_idempotent(url):
    migrated(url).close()
    db = migrated(url)  # a second start finds nothing to do
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0011"
        tables = set(sa.inspect(conn).get_table_names())
    assert {"files", "jobs", "events", "checkpoints", "batches", "evals", "eval_runs", "eval_output_items",
            "projects", "service_accounts", "checkpoint_permissions", "server_secrets", "responses", "model_exports",
            "webhook_endpoints", "webhook_deliveries", "generation_slots", "alembic_version"} <= tables
    db.close()


def test_concurrent_starts_migrate_once(url):
    """Four servers starting at once on a new database (processes, as replicas are)."""
    code = ("import sys; from service.db import Database; from service.migrations import upgrade; "
            "db = Database(sys.argv[1]); upgrade(db.engine); db.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=REPO, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs if p.wait(timeout=120) != 0]
    assert not errors, errors[0][-2000:]
    db = migrated(url)
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    db.close()


def test_a_database_from_before_versioning_is_kept_and_stamped(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE files (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, purpose TEXT NOT NULL,
                            path TEXT NOT NULL, doc TEXT NOT NULL);
        CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, status TEXT NOT NULL,
                           model_name TEXT NOT NULL, run_dir TEXT NOT NULL, pid INTEGER, doc TEXT NOT NULL);
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL,
                             doc TEXT NOT NULL);
        CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
                                  job_id TEXT NOT NULL, step INTEGER NOT NULL, doc TEXT NOT NULL, UNIQUE (job_id, step));
    """)
    conn.execute("INSERT INTO jobs (id, status, model_name, run_dir, doc) VALUES (?, ?, ?, ?, ?)",
                 ("ftjob-old", "succeeded", "ft:m", "/data/jobs/ftjob-old", json.dumps(_job("ftjob-old", "succeeded"))))
    conn.execute("INSERT INTO files (id, purpose, path, doc) VALUES (?, ?, ?, ?)",
                 ("file-old", "fine-tune", "/data/files/file-old", json.dumps({"id": "file-old"})))
    conn.commit()
    conn.close()
    db = migrated(sqlite_url(path))
    jobs, files = JobStore(db), FileStore(db)
    assert stored_doc(db, "ftjob-old")["status"] == jobs.row("ftjob-old").status == "succeeded"
    # local paths became storage keys (0003), so another data dir or an object store finds them
    assert jobs.row("ftjob-old").run_dir == "jobs/ftjob-old"
    assert files.get_file("file-old") == ({"id": "file-old"}, "files/file-old")
    # what existed before projects (0008) is the default project's
    assert files.get_file("file-old", "proj_default") is not None and files.get_file("file-old", "proj_other") is None
    assert jobs.list("proj_default", None, 10, {"team": "x"})[0][0]["id"] == "ftjob-old"
    assert jobs.list("proj_other", None, 10, {})[0] == []
    assert ProjectStore(db).get_project("proj_default")["status"] == "active"
    db.close()


def test_rows_pages_and_filters(url):
    db = migrated(url)
    files, jobs, batches = FileStore(db), JobStore(db), BatchStore(db)
    for i in range(5):
        files.insert_file({"id": f"file-{i}", "purpose": "fine-tune" if i % 2 else "batch"}, f"/p/{i}", "proj_a")
    files.insert_file({"id": "file-b", "purpose": "fine-tune"}, "/p/b", "proj_b")
    docs, more = files.list_files("proj_a", None, None, 2, "asc")
    assert [d["id"] for d in docs] == ["file-0", "file-1"] and more
    docs, more = files.list_files("proj_a", "fine-tune", "file-1", 10, "asc")
    assert [d["id"] for d in docs] == ["file-3"] and not more
    assert [d["id"] for d in files.list_files("proj_a", None, "file-3", 10, "desc")[0]] == ["file-2", "file-1", "file-0"]
    assert files.get_file("file-2") == ({"id": "file-2", "purpose": "batch"}, "/p/2")
    assert files.get_file("file-2", "proj_a") is not None and files.get_file("file-2", "proj_b") is None
    assert [d["id"] for d in files.list_files("proj_b", None, None, 10, "asc")[0]] == ["file-b"]

    jobs.insert(_job("ftjob-1", metadata={"team": "a b", "k.v": "1"}), "ft:one", "/run/1", "proj_a")
    jobs.insert(_job("ftjob-2"), "ft:two", "/run/2", "proj_a")
    assert [d["id"] for d in jobs.list("proj_a", None, 10, {"k.v": "1"})[0]] == ["ftjob-1"]
    assert [d["id"] for d in jobs.list("proj_a", None, 10, {"team": "a b"})[0]] == ["ftjob-1"]
    assert [d["id"] for d in jobs.list("proj_a", "ftjob-2", 10, {})[0]] == ["ftjob-1"]
    assert jobs.list("proj_b", None, 10, {})[0] == []
    with pytest.raises(APIError, match="No such fine-tuning job"):  # another project's job is not found
        jobs.get("ftjob-1", "proj_b")
    assert jobs.job_projects(["ftjob-1", "ftjob-x"]) == {"ftjob-1": "proj_a"}
    row = jobs.row("ftjob-2")
    assert (row.status, row.model_name, row.run_dir, row.pid) == ("queued", "ft:two", "/run/2", None)
    assert jobs.uses_file("file-a") and not jobs.uses_file("file-b") and not batches.uses_file("file-a")
    assert jobs.count_by_status() == {"queued": 2} == jobs.count_by_status("proj_a")
    assert jobs.count_by_status("proj_b") == {}

    for step in (1, 2, 2):
        jobs.upsert_checkpoint("ftjob-1", step, {"id": f"ck-{step}", "step_number": step, "v": step})
    assert [d["step_number"] for d in jobs.list_checkpoints("ftjob-1", None, 10)[0]] == [2, 1]
    jobs.insert_event("ftjob-1", {"id": "ev-1", "type": "metrics", "data": {"step": 1}})
    jobs.insert_event("ftjob-1", {"id": "ev-2", "type": "message"})
    assert [d["id"] for d in jobs.events("ftjob-1", "metrics")] == ["ev-1"]
    assert [d["id"] for d in jobs.events("ftjob-1")] == ["ev-1", "ev-2"]
    assert [d["id"] for d in jobs.list_events("ftjob-1", "ev-2", 10)[0]] == ["ev-1"]
    db.close()


def test_a_status_change_is_written_only_from_the_expected_status(url):
    """Many writers racing to move one queued job on: exactly one wins (a job is claimed once)."""
    db = migrated(url)
    jobs = JobStore(db)
    jobs.insert(_job("ftjob-r"), "ft:r", "/run/r", "proj_a")
    wins = []

    def claim(i):
        if jobs.update_doc(_job("ftjob-r", "running", claimed_by=i), ("queued",)):
            wins.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and stored_doc(db, "ftjob-r")["claimed_by"] == wins[0]
    assert not jobs.update_doc(_job("ftjob-r", "cancelled"), ("queued",))
    db.close()


def test_claiming_hands_each_queued_job_to_exactly_one_worker(url):
    """Eight workers draining one queue of twelve jobs: every job claimed once, oldest first per worker."""
    db = migrated(url)
    jobs = JobStore(db)
    for i in range(12):
        jobs.insert(_job(f"ftjob-{i:02d}", "queued" if i != 5 else "paused"), "ft:m", "/run", "proj_a")
    claimed: list[list[str]] = [[] for _ in range(8)]

    def worker(mine: list[str]):
        while (job_id := jobs.claim_next("worker")) is not None:
            mine.append(job_id)

    threads = [threading.Thread(target=worker, args=(c,)) for c in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = sorted(j for c in claimed for j in c)
    assert everything == [f"ftjob-{i:02d}" for i in range(12) if i != 5]
    assert all(c == sorted(c) for c in claimed)
    assert all(stored_doc(db, j)["status"] == "running" for j in everything)
    assert stored_doc(db, "ftjob-05")["status"] == "paused" and jobs.claim_next("worker") is None
    db.close()


def test_a_lapsed_lease_puts_the_job_back_in_the_queue(url):
    db = migrated(url)
    jobs = JobStore(db)
    jobs.insert(_job("ftjob-a"), "ft:a", "/run/a", "proj_a")
    jobs.insert(_job("ftjob-b"), "ft:b", "/run/b", "proj_a")
    assert jobs.claim_next("server-1") == "ftjob-a" and jobs.claim_next("server-2") == "ftjob-b"
    assert jobs.row("ftjob-a").owner == "server-1"
    assert jobs.leases.renew("server-1", ["ftjob-a", "ftjob-b"]) == {"ftjob-a"}  # b is server-2's
    assert jobs.requeue_expired(lease_seconds=60) == []  # both renewed just now
    time.sleep(1.1)  # let both leases age past a one-second lease
    assert jobs.leases.renew("server-2", ["ftjob-b"]) == {"ftjob-b"}
    assert jobs.requeue_expired(lease_seconds=1) == ["ftjob-a"]
    assert stored_doc(db, "ftjob-a")["status"] == "queued" and jobs.row("ftjob-a").owner is None
    assert jobs.leases.renew("server-1", ["ftjob-a"]) == set()  # server-1 learns it lost the job
    assert jobs.claim_next("server-2") == "ftjob-a"
    db.close()

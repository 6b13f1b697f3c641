"""The database seam on both backends: SQLite (the default) and a real PostgreSQL server."""

import json
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from service.db import Database, sqlite_url
from tests.conftest import REPO


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "ftserve.db")
    return request.getfixturevalue("postgres").database(f"t{abs(hash(tmp_path)) % 10**9}")


def _job(job_id: str, status: str = "queued", **doc) -> dict:
    return {"id": job_id, "status": status, "training_file": "file-a", "validation_file": None,
            "metadata": {"team": "x"}, **doc}


def test_migrations_are_versioned_and_idempotent(url):
    Database(url).close()
    db = Database(url)  # a second start finds nothing to do
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0008"
        tables = set(sa.inspect(conn).get_table_names())
    assert {"files", "jobs", "events", "checkpoints", "batches", "evals", "eval_runs", "eval_output_items",
            "projects", "service_accounts", "checkpoint_permissions", "server_secrets", "alembic_version"} <= tables
    db.close()


def test_concurrent_starts_migrate_once(url):
    """Four servers starting at once on a new database (processes, as replicas are)."""
    code = "import sys; from service.db import Database; Database(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=REPO, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs if p.wait(timeout=120) != 0]
    assert not errors, errors[0][-2000:]
    db = Database(url)
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
    db = Database(sqlite_url(path))
    assert db.get_job("ftjob-old")["status"] == "succeeded"
    # local paths became storage keys (0003), so another data dir or an object store finds them
    assert db.job_row("ftjob-old").run_dir == "jobs/ftjob-old"
    assert db.get_file("file-old") == ({"id": "file-old"}, "files/file-old")
    # what existed before projects (0008) is the default project's
    assert db.get_file("file-old", "proj_default") is not None and db.get_file("file-old", "proj_other") is None
    assert db.list_jobs("proj_default", None, 10, {"team": "x"})[0][0]["id"] == "ftjob-old"
    assert db.list_jobs("proj_other", None, 10, {})[0] == []
    assert db.get_project("proj_default")["status"] == "active"
    db.close()


def test_rows_pages_and_filters(url):
    db = Database(url)
    for i in range(5):
        db.insert_file({"id": f"file-{i}", "purpose": "fine-tune" if i % 2 else "batch"}, f"/p/{i}", "proj_a")
    db.insert_file({"id": "file-b", "purpose": "fine-tune"}, "/p/b", "proj_b")
    docs, more = db.list_files("proj_a", None, None, 2, "asc")
    assert [d["id"] for d in docs] == ["file-0", "file-1"] and more
    docs, more = db.list_files("proj_a", "fine-tune", "file-1", 10, "asc")
    assert [d["id"] for d in docs] == ["file-3"] and not more
    assert [d["id"] for d in db.list_files("proj_a", None, "file-3", 10, "desc")[0]] == ["file-2", "file-1", "file-0"]
    assert db.get_file("file-2") == ({"id": "file-2", "purpose": "batch"}, "/p/2")
    assert db.get_file("file-2", "proj_a") is not None and db.get_file("file-2", "proj_b") is None
    assert [d["id"] for d in db.list_files("proj_b", None, None, 10, "asc")[0]] == ["file-b"]

    db.insert_job(_job("ftjob-1", metadata={"team": "a b", "k.v": "1"}), "ft:one", "/run/1", "proj_a")
    db.insert_job(_job("ftjob-2"), "ft:two", "/run/2", "proj_a")
    assert [d["id"] for d in db.list_jobs("proj_a", None, 10, {"k.v": "1"})[0]] == ["ftjob-1"]
    assert [d["id"] for d in db.list_jobs("proj_a", None, 10, {"team": "a b"})[0]] == ["ftjob-1"]
    assert [d["id"] for d in db.list_jobs("proj_a", "ftjob-2", 10, {})[0]] == ["ftjob-1"]
    assert db.list_jobs("proj_b", None, 10, {})[0] == [] and db.get_job("ftjob-1", "proj_b") is None
    assert db.job_projects(["ftjob-1", "ftjob-x"]) == {"ftjob-1": "proj_a"}
    row = db.job_row("ftjob-2")
    assert (row.status, row.model_name, row.run_dir, row.pid) == ("queued", "ft:two", "/run/2", None)
    assert db.file_in_use("file-a") and not db.file_in_use("file-b")
    assert db.count_jobs_by_status() == {"queued": 2} == db.count_jobs_by_status("proj_a")
    assert db.count_jobs_by_status("proj_b") == {}

    for step in (1, 2, 2):
        db.upsert_checkpoint("ftjob-1", step, {"id": f"ck-{step}", "step_number": step, "v": step})
    assert [d["step_number"] for d in db.list_checkpoints("ftjob-1", None, 10)[0]] == [2, 1]
    db.insert_event("ftjob-1", {"id": "ev-1", "type": "metrics", "data": {"step": 1}})
    db.insert_event("ftjob-1", {"id": "ev-2", "type": "message"})
    assert [d["id"] for d in db.job_events("ftjob-1", "metrics")] == ["ev-1"]
    assert [d["id"] for d in db.job_events("ftjob-1")] == ["ev-1", "ev-2"]
    assert [d["id"] for d in db.list_events("ftjob-1", "ev-2", 10)[0]] == ["ev-1"]
    db.close()


def test_a_status_change_is_written_only_from_the_expected_status(url):
    """Many writers racing to move one queued job on: exactly one wins (a job is claimed once)."""
    db = Database(url)
    db.insert_job(_job("ftjob-r"), "ft:r", "/run/r", "proj_a")
    wins = []

    def claim(i):
        if db.update_job(_job("ftjob-r", "running", claimed_by=i), ("queued",)):
            wins.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and db.get_job("ftjob-r")["claimed_by"] == wins[0]
    assert not db.update_job(_job("ftjob-r", "cancelled"), ("queued",))
    db.close()


def test_claiming_hands_each_queued_job_to_exactly_one_worker(url):
    """Eight workers draining one queue of twelve jobs: every job claimed once, oldest first per worker."""
    db = Database(url)
    for i in range(12):
        db.insert_job(_job(f"ftjob-{i:02d}", "queued" if i != 5 else "paused"), "ft:m", "/run", "proj_a")
    claimed: list[list[str]] = [[] for _ in range(8)]

    def worker(mine: list[str]):
        while (job_id := db.claim_next_job("worker")) is not None:
            mine.append(job_id)

    threads = [threading.Thread(target=worker, args=(c,)) for c in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = sorted(j for c in claimed for j in c)
    assert everything == [f"ftjob-{i:02d}" for i in range(12) if i != 5]
    assert all(c == sorted(c) for c in claimed)
    assert all(db.get_job(j)["status"] == "running" for j in everything)
    assert db.get_job("ftjob-05")["status"] == "paused" and db.claim_next_job("worker") is None
    db.close()


def test_a_lapsed_lease_puts_the_job_back_in_the_queue(url):
    db = Database(url)
    db.insert_job(_job("ftjob-a"), "ft:a", "/run/a", "proj_a")
    db.insert_job(_job("ftjob-b"), "ft:b", "/run/b", "proj_a")
    assert db.claim_next_job("server-1") == "ftjob-a" and db.claim_next_job("server-2") == "ftjob-b"
    assert db.job_row("ftjob-a").owner == "server-1"
    assert db.renew_leases("server-1", ["ftjob-a", "ftjob-b"]) == {"ftjob-a"}  # b is server-2's
    assert db.requeue_expired(lease_seconds=60) == []  # both renewed just now
    time.sleep(1.1)  # let both leases age past a one-second lease
    assert db.renew_leases("server-2", ["ftjob-b"]) == {"ftjob-b"}
    assert db.requeue_expired(lease_seconds=1) == ["ftjob-a"]
    assert db.get_job("ftjob-a")["status"] == "queued" and db.job_row("ftjob-a").owner is None
    assert db.renew_leases("server-1", ["ftjob-a"]) == set()  # server-1 learns it lost the job
    assert db.claim_next_job("server-2") == "ftjob-a"
    db.close()

"""The deliveries' side of the store that the sender relies on to sleep between events: a committed delivery
tells this process's sender at once, and the backlog says when the next retry falls due."""

from __future__ import annotations

import time

import sqlalchemy as sa

from service.db import Database, sqlite_url
from service.fine_tuning.store import EVENTS, JobStore, jobs
from service.migrations import upgrade
from service.webhooks.store import WebhookStore, listen, webhook_deliveries, write_announced


def _cancel(db: Database, job_id: str, status: str = "cancelled") -> bool:
    doc = {"id": job_id, "status": status}
    return write_announced(db, jobs, jobs.update().where(jobs.c.id == job_id).values(status=status, doc=doc), doc,
                           EVENTS, sa.select(jobs.c.project_id).where(jobs.c.id == job_id))


def test_a_committed_delivery_wakes_the_sender_and_the_backlog_says_when_the_next_is_due(tmp_path):
    db = Database(sqlite_url(tmp_path / "ftserve.db"))
    upgrade(db.engine)
    hooks, store = WebhookStore(db), JobStore(db)
    hooks.insert({"id": "we_1", "event_types": ["fine_tuning.job.cancelled"]}, "proj", "secret")
    for job_id in ("ftjob-1", "ftjob-2", "ftjob-3"):
        assert store.insert({"id": job_id, "status": "running"}, "m", "run", "proj")

    def stored() -> int:  # what another connection sees when the listener is told
        with db.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(webhook_deliveries)).scalar()

    heard: list[int] = []
    stop = listen(lambda: heard.append(stored()))
    try:
        assert hooks.backlog(30) == (0, None)
        assert _cancel(db, "ftjob-1", status="paused")  # no event for a pause: nothing to tell
        assert heard == []
        before = time.time()
        assert _cancel(db, "ftjob-1")
        assert heard == [1]  # told once, after the delivery was committed
        pending, due = hooks.backlog(30)
        assert pending == 1 and before <= due <= time.time()

        delivery = hooks.claim("r0", 30)
        assert delivery is not None
        assert hooks.backlog(30) == (1, None)  # held by a live lease: due for nobody else
        retry_at = time.time() + 50
        assert hooks.attempted(delivery, "r0", attempts=1, next_attempt_at=retry_at)
        assert hooks.backlog(30) == (1, retry_at)  # the sender sleeps until then
    finally:
        stop()
    assert _cancel(db, "ftjob-2")
    assert heard == [1]  # a sender that stopped listening is not told
    assert hooks.backlog(30)[0] == 2
    db.close()

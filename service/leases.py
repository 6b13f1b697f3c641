"""Leases: how servers share work through the database. One mechanism for fine-tuning jobs, batches and
eval runs.

A leased table has `owner` (the server holding an item: its replica id) and `heartbeat_at` (when that
server last renewed its lease). A server claims an item atomically (PostgreSQL skips rows another
transaction holds, FOR UPDATE SKIP LOCKED; SQLite takes the write lock first, BEGIN IMMEDIATE), renews
its leases while it works, and an item whose lease was not renewed for `lease_seconds` is free again:
its server died. At its start a server lets go of what it held before a restart, so that it (or
another) resumes it.

`LeasedRunner` runs one such item at a time per server (batches, eval runs): the subclass says what
running an item is (`run(item_id)`) and how an unexpected error fails it (`fail(item_id, error)`),
which fails the item, never the loop. The job runner claims with its own condition (a queued job,
moved to `running`) through the same `Leases`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import sqlalchemy as sa

from service.db import Database, Store

log = logging.getLogger("ftserve.leases")


class Leases(Store):
    """The lease columns of one table whose unfinished items have one of the `active` statuses."""

    def __init__(self, db: Database, table: sa.Table, active: tuple[str, ...]):
        super().__init__(db)
        self.table, self.active = table, active

    def stale(self, lease_seconds: float):
        """Items whose lease has not been renewed for `lease_seconds`."""
        return self.table.c.heartbeat_at < time.time() - lease_seconds

    def claim(self, owner: str, lease_seconds: float, where=None,
              changes: Callable[[sa.Row], dict] | None = None) -> str | None:
        """Lease the oldest item matching `where` (default: unfinished and held by nobody, or by a server whose
        lease went stale) to `owner`, writing `changes(row)` with it; its id, or None when there is none."""
        t = self.table
        if where is None:
            where = sa.and_(t.c.status.in_(self.active), sa.or_(t.c.owner.is_(None), self.stale(lease_seconds)))
        with self.db.begin(immediate=True) as conn:
            columns = [t.c.id] + ([t.c.doc] if "doc" in t.c else [])
            row = conn.execute(sa.select(*columns).where(where).order_by(t.c.seq).limit(1)
                               .with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            conn.execute(t.update().where(t.c.id == row.id)
                         .values(owner=owner, heartbeat_at=time.time(), **(changes(row) if changes else {})))
            return row.id

    def renew(self, owner: str, ids: list[str], statuses: tuple[str, ...] | None = None) -> set[str]:
        """Renew `owner`'s leases on these items (in `statuses`, default any unfinished one); the ids it still
        holds (a lease another server has taken back, or an item that ended, is not renewed)."""
        if not ids:
            return set()
        t = self.table
        held = sa.and_(t.c.id.in_(ids), t.c.owner == owner, t.c.status.in_(statuses or self.active))
        with self.db.begin() as conn:
            conn.execute(t.update().where(held).values(heartbeat_at=time.time()))
            return {r.id for r in conn.execute(sa.select(t.c.id).where(held))}

    def release(self, owner: str) -> None:
        """Let go of `owner`'s unfinished items (at its start: it resumes them like anyone's)."""
        t = self.table
        self._write(t.update().where(t.c.owner == owner, t.c.status.in_(self.active)).values(owner=None))


class LeasedRunner:
    poll_seconds = 5.0  # what this server creates or cancels wakes it at once (wake)

    def __init__(self, leases: Leases, settings):
        self.leases, self.settings, self.owner = leases, settings, settings.owner
        self.kind = leases.table.name
        self._wake = asyncio.Event()
        self._held: set[str] = set()
        self._tasks: list[asyncio.Task] = []

    async def run(self, item_id: str) -> None:
        raise NotImplementedError

    def fail(self, item_id: str, error: Exception) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        await asyncio.to_thread(self.leases.release, self.owner)
        self._tasks = [asyncio.create_task(self._loop()), asyncio.create_task(self._renew())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less when woken (something was created or cancelled)."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    async def _loop(self) -> None:
        while True:
            item_id = await asyncio.to_thread(self.leases.claim, self.owner, self.settings.job_lease_seconds)
            if item_id is None:
                await self.sleep(self.poll_seconds)
                continue
            self._held.add(item_id)
            try:
                await self.run(item_id)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a failure fails the item, never the loop
                log.exception("%s %s: runner error", self.kind, item_id)
                self.fail(item_id, e)
            finally:
                self._held.discard(item_id)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.settings.job_lease_seconds / 3)
            if self._held:
                try:
                    await asyncio.to_thread(self.leases.renew, self.owner, list(self._held))
                except Exception:  # the database briefly unreachable: try again next time
                    log.exception("renewing %s leases failed", self.kind)

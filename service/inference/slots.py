"""Generation slots shared by the servers on one database: a project's concurrent generation requests counted
across every replica, so that N replicas allow `--project-max-generations` in all, not N times it.

Used when servers share a database (`--database-url`); one server on its embedded SQLite counts in memory
(generation.Admission). Taking a slot is one transaction serialized per project (Database.serialize):
count the project's live slots, insert one if there is room. Giving it back deletes it, off the event loop
(a request may end anywhere, even in a finalizer). Each server renews its slots' heartbeat every few
seconds; a slot not renewed for STALE_SECONDS (its server died) no longer counts and is deleted."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import sqlalchemy as sa

from service.db import Store, metadata
from service.ids import new_id

log = logging.getLogger("ftserve.slots")
RENEW_SECONDS = 5.0
STALE_SECONDS = 20.0

generation_slots = sa.Table(
    "generation_slots", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, nullable=False, index=True),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)


class SlotStore(Store):
    def take(self, project: str, limit: int, owner: str) -> str | None:
        """A slot for one of `project`'s requests; None when it has `limit` live ones already."""
        t = generation_slots
        with self.db.begin(immediate=True) as conn:
            self.db.serialize(conn, f"generations of {project}")
            live = conn.execute(sa.select(sa.func.count()).select_from(t).where(
                t.c.project_id == project, t.c.heartbeat_at > time.time() - STALE_SECONDS)).scalar()
            if live >= limit:
                return None
            slot = new_id("slot_", 32)
            conn.execute(t.insert().values(id=slot, project_id=project, owner=owner, heartbeat_at=time.time()))
            return slot

    def give_back(self, slots: list[str]) -> None:
        if slots:
            self._write(generation_slots.delete().where(generation_slots.c.id.in_(slots)))

    def renew(self, owner: str) -> None:
        """Renew `owner`'s slots, and delete anyone's that went stale."""
        t = generation_slots
        with self.db.begin() as conn:
            conn.execute(t.update().where(t.c.owner == owner).values(heartbeat_at=time.time()))
            conn.execute(t.delete().where(t.c.heartbeat_at < time.time() - STALE_SECONDS))

    def release_owner(self, owner: str) -> None:
        """At a server's start: the slots it held before a restart."""
        self._write(generation_slots.delete().where(generation_slots.c.owner == owner))


class SharedSlots:
    """This server's side of the shared slots: taking one (in a thread), giving slots back in the background."""

    def __init__(self, store: SlotStore, owner: str):
        self.store, self.owner = store, owner
        self._returned: list[str] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def take(self, project: str, limit: int) -> str | None:
        return await asyncio.to_thread(self.store.take, project, limit, self.owner)

    def give_back(self, slot: str) -> None:
        """From anywhere (any thread, a finalizer): the slot is deleted shortly after."""
        with self._lock:
            self._returned.append(slot)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop has closed: the slot goes stale
                pass

    def start(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        self.store.release_owner(self.owner)
        self._task = self._loop.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self._flush)

    def _flush(self) -> None:
        with self._lock:
            slots, self._returned = self._returned, []
        self.store.give_back(slots)

    async def _run(self) -> None:
        renewed = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), RENEW_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await asyncio.to_thread(self._flush)
                if time.monotonic() - renewed >= RENEW_SECONDS:
                    await asyncio.to_thread(self.store.renew, self.owner)
                    renewed = time.monotonic()
            except Exception:  # noqa: BLE001 - the database may be away for a moment; the slots wait
                log.exception("generation slots could not be given back or renewed")

"""Work that any server may run, one item at a time per server, under a lease: batches, eval runs.

A server claims the oldest unfinished item nobody holds (or whose server stopped renewing its
lease) and renews its leases while it works; at its start it lets go of the items it held before
a restart, so that it (or another server) resumes them. What an item is and how it runs is the
subclass's: `run(item_id)`, and `fail(item_id, error)` for an unexpected error, which fails the
item, never the loop.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("ftserve.leases")


class LeasedRunner:
    table: str  # the database table of the items (`batches`, `eval_runs`)
    poll_seconds = 2.0

    def __init__(self, db, settings):
        self.db, self.settings, self.owner = db, settings, settings.owner
        self._wake = asyncio.Event()
        self._held: set[str] = set()
        self._tasks: list[asyncio.Task] = []

    async def run(self, item_id: str) -> None:
        raise NotImplementedError

    def fail(self, item_id: str, error: Exception) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        await asyncio.to_thread(self.db.release_leases, self.table, self.owner)
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
            item_id = await asyncio.to_thread(self.db.claim_lease, self.table, self.owner,
                                              self.settings.job_lease_seconds)
            if item_id is None:
                await self.sleep(self.poll_seconds)
                continue
            self._held.add(item_id)
            try:
                await self.run(item_id)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a failure fails the item, never the loop
                log.exception("%s %s: runner error", self.table, item_id)
                self.fail(item_id, e)
            finally:
                self._held.discard(item_id)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.settings.job_lease_seconds / 3)
            if self._held:
                try:
                    await asyncio.to_thread(self.db.renew_leases_of, self.table, self.owner, list(self._held))
                except Exception:  # the database briefly unreachable: try again next time
                    log.exception("renewing %s leases failed", self.table)

"""Runs background responses: each is leased to the server that accepted it (service/leases.py), which
starts it at once; one whose server stopped is claimed by another (or by the same, restarted) and run
again from the start. Unlike batches and eval runs, a server runs many at once: each is one generation,
and the engine's admission bounds them."""

from __future__ import annotations

import asyncio
import logging

from service.leases import LeasedRunner
from service.responses.store import ResponseStore

log = logging.getLogger("ftserve.responses")


class BackgroundRunner(LeasedRunner):
    def __init__(self, store: ResponseStore, service, settings):
        super().__init__(store.leases, settings)
        self.store, self.service = store, service
        self.running: dict[str, asyncio.Task] = {}

    def run_now(self, response_id: str) -> None:
        """Run a response this server has just accepted (and holds the lease of)."""
        self._held.add(response_id)
        task = asyncio.create_task(self._one(response_id))
        self.running[response_id] = task

    async def _loop(self) -> None:
        """Claim every response left without a running server, and run each beside the others."""
        while True:
            response_id = await asyncio.to_thread(self.leases.claim, self.owner, self.settings.job_lease_seconds)
            if response_id is None:
                await self.sleep(self.poll_seconds)
                continue
            log.info("background response %s: running it again (its server stopped)", response_id)
            self.run_now(response_id)

    async def _one(self, response_id: str) -> None:
        try:
            stored = await asyncio.to_thread(self.store.get, response_id, None)
            if stored is not None and stored.request is not None:
                await self.service.run_background(stored)
        except Exception:  # noqa: BLE001 - one response's failure is its own (run_background records it)
            log.exception("background response %s: runner error", response_id)
        finally:
            self._held.discard(response_id)
            self.running.pop(response_id, None)

    async def close(self) -> None:
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        await super().close()

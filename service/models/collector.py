"""Collecting the object store's orphaned adapter files: every `--adapter-gc-interval-seconds`, one server at a
time (a database lock only one holds: the others skip that round) deletes the versions no manifest lists
that are older than `--adapter-gc-grace-seconds` (ObjectAdapterStore.collect). On the local adapter store
there is nothing to collect: a publish there is one rename."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("ftserve.adapters")


class BlobCollector:
    def __init__(self, adapters, db, settings, metrics):
        self.adapters, self.db, self.settings, self.metrics = adapters, db, settings, metrics
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if hasattr(self.adapters, "collect"):
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.adapter_gc_interval_seconds)
            try:
                deleted = await asyncio.to_thread(self.collect)
            except Exception:  # noqa: BLE001 - the store or the database may be away; the next round retries
                log.exception("orphaned adapter files could not be collected")
                continue
            if deleted:
                log.warning("collected %d orphaned adapter version(s): %s", len(deleted), ", ".join(deleted))

    def collect(self) -> list[str]:
        """One round, if no other server is collecting now; what it deleted."""
        with self.db.begin() as conn:
            if not self.db.try_serialize(conn, "adapter file collection"):
                return []
            deleted = self.adapters.collect(self.settings.adapter_gc_grace_seconds)
        self.metrics.adapter_versions_collected.inc(len(deleted))
        return deleted

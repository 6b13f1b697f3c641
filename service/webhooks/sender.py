"""Sending deliveries: signed as the Standard Webhooks scheme says (what `client.webhooks.unwrap()` checks),
at least once, by one server at a time, again with exponential backoff until the retry window ends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time

import httpx

from service.webhooks.store import WebhookStore, listen
from service.webhooks.urls import RefusedURL, check_url

log = logging.getLogger("ftserve.webhooks")
MAX_BACKOFF_SECONDS = 3600.0


def signature(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`, one per secret
    (a rotated-out secret still kept signs too), space-separated."""
    out = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        out.append("v1," + base64.b64encode(mac).decode())
    return " ".join(out)


async def post(http: httpx.AsyncClient, url: str, secrets: list[str], message_id: str, body: bytes) -> int:
    """One signed POST; its status code (redirects are not followed: a 3xx is a failed attempt)."""
    timestamp = int(time.time())
    r = await http.post(url, content=body, headers={
        "content-type": "application/json", "user-agent": "ftserve-webhooks", "webhook-id": message_id,
        "webhook-timestamp": str(timestamp), "webhook-signature": signature(secrets, message_id, timestamp, body)})
    return r.status_code


def backoff(attempts: int, base: float) -> float:
    """Seconds before attempt `attempts + 1`: base, 2 x base, 4 x base, ..., at most an hour."""
    return min(base * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)


class Sender:
    """This server's sender: claims due deliveries one at a time and sends them. It sends at once what this
    server enqueues (store.listen), a retry when it falls due, and looks for others (another server's
    whose lease lapsed) every `poll_seconds`."""

    poll_seconds = 5.0

    def __init__(self, store: WebhookStore, secrets, settings, metrics):
        self.store, self.secrets, self.settings, self.metrics = store, secrets, settings, metrics
        self.owner = settings.owner
        self.lease_seconds = 2 * settings.webhook_timeout_seconds + 5  # an attempt ends within one timeout
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._unlisten = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def enqueued():  # from whichever thread committed the deliveries
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop has closed
                pass

        self._unlisten = listen(enqueued)
        self._task = loop.create_task(self._loop())

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        async with httpx.AsyncClient(follow_redirects=False, timeout=self.settings.webhook_timeout_seconds) as http:
            while True:
                self._wake.clear()  # before the claims: what is enqueued from here on wakes the wait below
                wait = self.poll_seconds
                try:
                    while (delivery_id := await asyncio.to_thread(self.store.claim, self.owner,
                                                                  self.lease_seconds)) is not None:
                        await self._send(http, delivery_id)
                    pending, next_due = await asyncio.to_thread(self.store.backlog, self.lease_seconds)
                    self.metrics.webhooks_pending.set(pending)
                    if next_due is not None:  # a retry's time (at least a moment: never a busy loop)
                        wait = min(wait, max(next_due - time.time(), 0.05))
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the database may be away for a moment; try again
                    log.exception("webhook deliveries could not be claimed")
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass

    async def _send(self, http: httpx.AsyncClient, delivery_id: str) -> None:
        d = await asyncio.to_thread(self.store.delivery, delivery_id)
        endpoint = await asyncio.to_thread(self.store.endpoint, d.endpoint_id, None)
        now = time.time()
        if endpoint is None:  # deleted meanwhile
            await asyncio.to_thread(self.store.attempted, delivery_id, self.owner, status="failed",
                                    last_error="the endpoint was deleted")
            return
        code, error = None, None
        try:
            url = endpoint.doc["url"]
            await asyncio.to_thread(check_url, url, self.settings.webhook_allow_private_urls)
            code = await post(http, url, self.secrets.of(endpoint), d.event_id, d.payload.encode())
            if not 200 <= code < 300:
                error = f"the endpoint answered {code}"
        except RefusedURL as e:
            error = f"the URL was refused: {e}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:500]
        attempts = d.attempts + 1
        values = dict(attempts=attempts, last_attempt_at=now, last_status_code=code, last_error=error)
        if error is None:
            values.update(status="delivered", delivered_at=time.time(), next_attempt_at=None)
            result = "delivered"
        elif now - d.created_at >= self.settings.webhook_retry_hours * 3600:
            values.update(status="failed", next_attempt_at=None)
            result = "given_up"
        else:
            values.update(next_attempt_at=now + backoff(attempts, self.settings.webhook_retry_base_seconds))
            result = "failed_attempt"
        if await asyncio.to_thread(self.store.attempted, delivery_id, self.owner, **values):
            self.metrics.webhook_deliveries.labels(result=result).inc()
            log.info("webhook %s (%s) to %s: %s", d.event_id, d.event_type, d.endpoint_id, error or "delivered")

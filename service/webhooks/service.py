"""Webhook endpoints: OpenAI's API over the store, each endpoint its project's; signing secrets made here, shown
once, and kept encrypted under a key derived from the server's key secret (servers sharing a database share it)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time

import httpx
from cryptography.fernet import Fernet

from service.errors import APIError, Kind
from service.ids import new_id
from service.protocol import ListObject
from service.webhooks.protocol import (
    CreateWebhookEndpoint,
    DeletedWebhookEndpoint,
    Event,
    EventData,
    RotateSecret,
    TestWebhookEndpoint,
    UpdateWebhookEndpoint,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointTestResult,
    WebhookEndpointWithSecret,
)
from service.webhooks.sender import post
from service.webhooks.store import WebhookStore
from service.webhooks.urls import RefusedURL, check_url

KEEP_OLD_SECRET_SECONDS = 24 * 3600


class Secrets:
    """Signing secrets, encrypted at rest (Fernet, keyed by the server's key secret)."""

    def __init__(self, key_secret: bytes):
        self.fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"ftserve webhooks\0" + key_secret).digest()))

    @staticmethod
    def new() -> str:
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

    def seal(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode()

    def of(self, endpoint) -> list[str]:
        """The secrets an endpoint's deliveries are signed with: its own, and a rotated-out one still kept."""
        out = [self.fernet.decrypt(endpoint.secret.encode()).decode()]
        if endpoint.old_secret and (endpoint.old_secret_until or 0) > time.time():
            out.append(self.fernet.decrypt(endpoint.old_secret.encode()).decode())
        return out


def _hint(secret: str) -> str:
    return "whsec_..." + secret[-4:]


class WebhookService:
    def __init__(self, store: WebhookStore, secrets: Secrets, settings, wake):
        self.store, self.secrets, self.settings, self.wake = store, secrets, settings, wake

    def _check_url(self, url: str) -> None:
        try:
            check_url(url, self.settings.webhook_allow_private_urls)
        except RefusedURL as e:
            raise APIError(Kind.INVALID_REQUEST, f"The webhook URL {e}.", param="url", code="invalid_url") from None

    def _endpoint(self, endpoint_id: str, project: str):
        row = self.store.endpoint(endpoint_id, project)
        if row is None:
            raise APIError(Kind.NOT_FOUND, f"No such webhook endpoint: {endpoint_id}", param="webhook_endpoint_id",
                           code="webhook_endpoint_not_found")
        return row

    def create(self, req: CreateWebhookEndpoint, project: str) -> WebhookEndpointWithSecret:
        self._check_url(req.url)
        secret, now = Secrets.new(), int(time.time())
        endpoint = WebhookEndpoint(id=new_id("whep_", 32), created_at=now, updated_at=now,
                                   event_types=list(dict.fromkeys(req.event_types)), name=req.name, url=req.url,
                                   signing_secret_hint=_hint(secret))
        self.store.insert(endpoint.model_dump(), project, self.secrets.seal(secret))
        return WebhookEndpointWithSecret(**endpoint.model_dump(), signing_secret=secret)

    def get(self, endpoint_id: str, project: str) -> WebhookEndpoint:
        return WebhookEndpoint(**self._endpoint(endpoint_id, project).doc)

    def list(self, project: str, after: str | None, limit: int, order: str) -> ListObject[WebhookEndpoint]:
        docs, more = self.store.list(project, after, limit, order)
        return ListObject.page([WebhookEndpoint(**d) for d in docs], more)

    def update(self, endpoint_id: str, req: UpdateWebhookEndpoint, project: str) -> WebhookEndpoint:
        endpoint = self.get(endpoint_id, project)
        changes = req.model_dump(exclude_none=True)
        if "url" in changes:
            self._check_url(changes["url"])
        if "event_types" in changes:
            changes["event_types"] = list(dict.fromkeys(changes["event_types"]))
        updated = endpoint.model_copy(update=changes)
        if updated != endpoint:
            updated.updated_at = int(time.time())
            self.store.update(endpoint_id, doc=updated.model_dump())
        return updated

    def delete(self, endpoint_id: str, project: str) -> DeletedWebhookEndpoint:
        self._endpoint(endpoint_id, project)
        self.store.delete(endpoint_id)
        return DeletedWebhookEndpoint(id=endpoint_id)

    def rotate_secret(self, endpoint_id: str, req: RotateSecret, project: str) -> WebhookEndpointWithSecret:
        row = self._endpoint(endpoint_id, project)
        secret = Secrets.new()
        endpoint = WebhookEndpoint(**row.doc).model_copy(update={"signing_secret_hint": _hint(secret),
                                                                 "updated_at": int(time.time())})
        keep = req.keep_old_secret_active_for_24_hours
        self.store.update(endpoint_id, doc=endpoint.model_dump(), secret=self.secrets.seal(secret),
                          old_secret=row.secret if keep else None,
                          old_secret_until=time.time() + KEEP_OLD_SECRET_SECONDS if keep else None)
        return WebhookEndpointWithSecret(**endpoint.model_dump(), signing_secret=secret)

    def test(self, endpoint_id: str, req: TestWebhookEndpoint, project: str) -> WebhookEndpointTestResult:
        """A sample event sent now (not retried): its `data.id` names no object."""
        row = self._endpoint(endpoint_id, project)
        self._check_url(row.doc["url"])
        event_id = new_id("evt_", 32)
        body = Event(id=event_id, created_at=int(time.time()), type=req.event_type,
                     data=EventData(id="test")).model_dump_json().encode()

        async def send() -> int:
            async with httpx.AsyncClient(follow_redirects=False, timeout=self.settings.webhook_timeout_seconds) as h:
                return await post(h, row.doc["url"], self.secrets.of(row), event_id, body)

        try:
            code = asyncio.run(send())
        except httpx.HTTPError as e:
            raise APIError(Kind.INVALID_REQUEST, f"The test event could not be sent: {type(e).__name__}: {e}",
                           param="webhook_endpoint_id", code="webhook_test_failed") from None
        return WebhookEndpointTestResult(event_type=req.event_type, status_code=code, webhook_endpoint_id=endpoint_id)

    def deliveries(self, endpoint_id: str, project: str, after: str | None, limit: int) -> ListObject[WebhookDelivery]:
        self._endpoint(endpoint_id, project)
        rows, more = self.store.deliveries(endpoint_id, after, limit)

        def seconds(value):
            return None if value is None else int(value)

        return ListObject.page([WebhookDelivery(
            id=r.id, webhook_endpoint_id=r.endpoint_id, event_id=r.event_id, event_type=r.event_type, status=r.status,
            created_at=int(r.created_at), attempts=r.attempts, last_attempt_at=seconds(r.last_attempt_at),
            last_status_code=r.last_status_code, last_error=r.last_error,
            next_attempt_at=seconds(r.next_attempt_at), delivered_at=seconds(r.delivered_at)) for r in rows], more)

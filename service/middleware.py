"""Pure ASGI middleware: request ids, API-key auth and the audit log, HTTP metrics, upload size limit, the
last-resort 500."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextvars import ContextVar

from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders

from service import errors
from service.projects.keys import OPEN, Caller, Keyring

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")


class RequestId:
    """`x-request-id` on every response: the client's `X-Request-Id` when it sent one, else a new id.
    Log records made while the request is handled carry it (`RequestIdFilter`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1").strip()
        rid = given[:128] if given.isprintable() and given else f"req_{uuid.uuid4().hex}"
        token = REQUEST_ID.set(rid)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["x-request-id"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class CatchAll:
    """An unexpected exception is answered here (500; 503 for an unreachable database, 507 for a full
    disk; in the envelope), so the connection stays usable: Starlette's outermost handler re-raises
    after answering, and the server then drops the keep-alive connection."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            if started:  # the response is under way: nothing more can be said on it
                raise
            await errors.unexpected(scope, exc)(scope, receive, send)

OPEN_PATHS = ("/health", "/ready", "/metrics", "/adapters/warm")
OPEN_PREFIXES = ("/ui",  # the dashboard's own files: it asks for a key, then calls the API with it
                 "/internal/")  # a reinforcement job's trainer: its job's token, checked by the route
NOT_AUDITED = ("/v1/chat/completions", "/v1/completions")  # generation changes nothing stored

audit_log = logging.getLogger("ftserve.audit")
audit_log.setLevel(logging.INFO)  # recorded whatever the service's log level


class Auth:
    """`Authorization: Bearer KEY` on every route but the probes, /metrics and the dashboard's files: the
    key's caller (its project and key id, or the admin key) goes into `request.state.caller`. Every
    change (a POST or DELETE, generation aside) that succeeds is written to the `ftserve.audit` log with
    the caller's project id and key id (never the key) and the request id."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"].startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        keyring = scope["app"].state.components.get(Keyring)
        caller = OPEN if keyring.open else None
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if caller is None and scheme.lower() == b"bearer" and token.strip():
            caller = await asyncio.to_thread(keyring.identify, token.strip())
        if caller is None:
            message = ("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'." if not header
                       else "Incorrect API key provided.")
            body = errors.envelope(errors.Kind.AUTHENTICATION, message, code="invalid_api_key")
            return await JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
        scope.setdefault("state", {})["caller"] = caller
        if scope["method"] not in ("POST", "DELETE") or scope["path"].startswith(NOT_AUDITED):
            return await self.app(scope, receive, send)
        status, body = 0, bytearray()

        async def recorded_send(message):  # the record is written before the response's last byte is sent
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                if len(body) < 65536:
                    body.extend(message.get("body", b""))
                if not message.get("more_body") and status < 400:
                    self._audit(scope, caller, bytes(body))
            await send(message)

        await self.app(scope, receive, recorded_send)

    @staticmethod
    def _audit(scope, caller: Caller, body: bytes) -> None:
        try:
            object_id = json.loads(body).get("id")
        except (ValueError, AttributeError):
            object_id = None
        route = getattr(scope.get("route"), "path", scope["path"])
        audit_log.info(json.dumps({
            "audit": f"{scope['method']} {route}", "path": scope["path"], "object_id": object_id,
            "project_id": caller.project_id, "key_id": caller.key_id, "admin": caller.admin,
            "request_id": REQUEST_ID.get(),
        }))


class HTTPMetrics:
    """Counts and times every request by route template (bounded), method and status."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def record_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_request(route, scope["method"], status, time.perf_counter() - started)


class UploadLimit:
    """413 for uploads over the limit, before the body is stored: at once when Content-Length
    says so, else as soon as the streamed body crosses it (the app's own reply is replaced)."""

    MULTIPART_SLACK = 64 * 1024

    def __init__(self, app, max_bytes: int):
        self.app, self.limit = app, max_bytes + self.MULTIPART_SLACK

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/v1/files":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large(scope, receive, send)
        received, exceeded, started = 0, False, False

        async def counted_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise errors.APIError(errors.Kind.TOO_LARGE, "too large")
            return message

        async def guarded_send(message):
            nonlocal started
            if exceeded:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope, receive, send):
        body = errors.envelope(errors.Kind.TOO_LARGE, f"Request body exceeds the maximum upload size of "
                               f"{self.limit - self.MULTIPART_SLACK} bytes.", param="file", code="file_too_large")
        await JSONResponse(body, 413)(scope, receive, send)

"""Wire objects of the webhook endpoints API, as OpenAI's (`/v1/webhook_endpoints`), and the events sent.

The deliveries list (`GET /v1/webhook_endpoints/{id}/deliveries`) is an ftserve extension: OpenAI shows
delivery attempts in its dashboard only."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from service.protocol import Strict

# The events this server sends (OpenAI's names; its other types concern features ftserve does not have).
SENT = ("fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled",
        "batch.completed", "batch.failed", "batch.cancelled", "batch.expired",
        "eval.run.succeeded", "eval.run.failed", "eval.run.canceled",
        "response.completed", "response.failed", "response.cancelled", "response.incomplete")
EventType = Literal[SENT]  # type: ignore[valid-type]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]


class CreateWebhookEndpoint(Strict):
    event_types: Annotated[list[EventType], Field(min_length=1)]
    name: Name
    url: Url


class UpdateWebhookEndpoint(Strict):
    event_types: Annotated[list[EventType], Field(min_length=1)] | None = None
    name: Name | None = None
    url: Url | None = None


class RotateSecret(Strict):
    keep_old_secret_active_for_24_hours: bool = False


class TestWebhookEndpoint(Strict):
    event_type: EventType


class WebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    created_at: int
    event_types: list[str]
    name: str
    signing_secret_hint: str | None = None
    url: str
    updated_at: int | None = None


class WebhookEndpointWithSecret(WebhookEndpoint):
    signing_secret: str
    """`whsec_` and the base64 of the key: shown when the endpoint is created or its secret rotated, never again."""


class DeletedWebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool = True


class WebhookEndpointTestResult(BaseModel):
    event_type: str
    object: Literal["webhook_endpoint.test"] = "webhook_endpoint.test"
    status_code: int
    success: Literal[True] = True
    webhook_endpoint_id: str


class EventData(BaseModel):
    id: str


class Event(BaseModel):
    """What an endpoint receives: OpenAI's event (`data` names the object; fetch it for the rest)."""

    id: str
    object: Literal["event"] = "event"
    created_at: int
    type: str
    data: EventData


class WebhookDelivery(BaseModel):
    """One event for one endpoint, and its delivery so far (an ftserve extension)."""

    id: str
    object: Literal["webhook_endpoint.delivery"] = "webhook_endpoint.delivery"
    webhook_endpoint_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    created_at: int
    attempts: int = 0
    last_attempt_at: int | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: int | None = None
    delivered_at: int | None = None

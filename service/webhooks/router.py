from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from service.components import provide
from service.deps import Project
from service.protocol import ListObject
from service.webhooks.protocol import (
    CreateWebhookEndpoint,
    DeletedWebhookEndpoint,
    RotateSecret,
    TestWebhookEndpoint,
    UpdateWebhookEndpoint,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointTestResult,
    WebhookEndpointWithSecret,
)
from service.webhooks.service import WebhookService

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["webhooks"])
Webhooks = Annotated[WebhookService, Depends(provide(WebhookService))]
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("", response_model=WebhookEndpointWithSecret)
def create_webhook_endpoint(webhooks: Webhooks, project: Project,
                            body: CreateWebhookEndpoint) -> WebhookEndpointWithSecret:
    return webhooks.create(body, project)


@router.get("", response_model=ListObject[WebhookEndpoint])
def list_webhook_endpoints(webhooks: Webhooks, project: Project, after: str | None = None, limit: Limit = 20,
                           order: Literal["asc", "desc"] = "desc") -> ListObject[WebhookEndpoint]:
    return webhooks.list(project, after, limit, order)


@router.get("/{webhook_endpoint_id}", response_model=WebhookEndpoint)
def retrieve_webhook_endpoint(webhooks: Webhooks, project: Project, webhook_endpoint_id: str) -> WebhookEndpoint:
    return webhooks.get(webhook_endpoint_id, project)


@router.post("/{webhook_endpoint_id}", response_model=WebhookEndpoint)
def update_webhook_endpoint(webhooks: Webhooks, project: Project, webhook_endpoint_id: str,
                            body: UpdateWebhookEndpoint) -> WebhookEndpoint:
    return webhooks.update(webhook_endpoint_id, body, project)


@router.delete("/{webhook_endpoint_id}", response_model=DeletedWebhookEndpoint)
def delete_webhook_endpoint(webhooks: Webhooks, project: Project, webhook_endpoint_id: str) -> DeletedWebhookEndpoint:
    return webhooks.delete(webhook_endpoint_id, project)


@router.post("/{webhook_endpoint_id}/rotate_secret", response_model=WebhookEndpointWithSecret)
def rotate_webhook_endpoint_secret(webhooks: Webhooks, project: Project, webhook_endpoint_id: str,
                                   body: RotateSecret | None = None) -> WebhookEndpointWithSecret:
    return webhooks.rotate_secret(webhook_endpoint_id, body or RotateSecret(), project)


@router.post("/{webhook_endpoint_id}/test", response_model=WebhookEndpointTestResult)
def test_webhook_endpoint(webhooks: Webhooks, project: Project, webhook_endpoint_id: str,
                          body: TestWebhookEndpoint) -> WebhookEndpointTestResult:
    return webhooks.test(webhook_endpoint_id, body, project)


@router.get("/{webhook_endpoint_id}/deliveries", response_model=ListObject[WebhookDelivery])
def list_webhook_deliveries(webhooks: Webhooks, project: Project, webhook_endpoint_id: str, after: str | None = None,
                            limit: Limit = 20) -> ListObject[WebhookDelivery]:
    """An ftserve extension: each event sent to the endpoint, newest first, with its delivery so far."""
    return webhooks.deliveries(webhook_endpoint_id, project, after, limit)

"""Webhooks: endpoints a project registers (OpenAI's `/v1/webhook_endpoints`), told when its fine-tuning jobs,
batches, eval runs and background responses end; deliveries written with the state change that causes
them (`store.enqueue`) and sent by one server at a time, with retries."""

from service.components import Components, Feature
from service.projects.keys import Keyring
from service.webhooks.router import router
from service.webhooks.sender import Sender
from service.webhooks.service import Secrets, WebhookService
from service.webhooks.store import WebhookStore


def build(c: Components) -> None:
    secrets = Secrets(c.get(Keyring).secret)
    sender = Sender(c.get(WebhookStore), secrets, c.settings, c.metrics)
    c.add(sender, WebhookService(c.get(WebhookStore), secrets, c.settings, sender.wake))
    c.on_start(sender.start)
    c.on_stop(sender.close)


feature = Feature("webhooks", routers=[router], stores=lambda db: [WebhookStore(db)], build=build)

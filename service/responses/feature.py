"""The Responses API: /v1/responses over the chat path on the shared engine, responses stored per project."""

from service.components import Components, Feature
from service.inference.chat import ChatService
from service.responses.router import router
from service.responses.service import ResponsesService
from service.responses.store import ResponseStore


def build(c: Components) -> None:
    c.add(ResponsesService(c.get(ResponseStore), c.get(ChatService)))


feature = Feature("responses", routers=[router], stores=lambda db: [ResponseStore(db)], build=build)

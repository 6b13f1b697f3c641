"""The Responses API: /v1/responses over the chat path on the shared engine, responses stored per project."""

from service.components import Components, Feature
from service.inference.chat import ChatService
from service.responses.router import router
from service.responses.service import ResponsesService
from service.responses.store import ResponseStore


def build(c: Components) -> None:
    service = ResponsesService(c.get(ResponseStore), c.get(ChatService), c.settings)
    c.add(service)
    if c.settings.engine == "vllm":  # background responses run on the engine; without one they wait
        c.on_start(service.background.start)
    c.on_stop(service.background.close)


feature = Feature("responses", routers=[router], stores=lambda db: [ResponseStore(db)], build=build)

"""The Models API: the base model and the fine-tuned models (adapters) the caller's project may use."""

import time

from service.components import Components, Feature
from service.models.router import router
from service.models.service import ModelService
from service.projects.service import Access


def build(c: Components) -> None:
    c.add(ModelService(c.adapters, c.get(Access), c.settings, int(time.time())))


feature = Feature("models", routers=[router], build=build)

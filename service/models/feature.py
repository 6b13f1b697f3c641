"""The Models API: the base model and the fine-tuned models (adapters) the caller's project may use; their
download as PEFT files, and PEFT adapters trained elsewhere imported as models."""

import time

from service.components import Components, Feature
from service.files.service import FileService
from service.models.collector import BlobCollector
from service.models.router import lora_router, router
from service.models.service import ModelService
from service.projects.service import Access


def build(c: Components) -> None:
    collector = BlobCollector(c.adapters, c.db, c.settings, c.metrics)
    c.add(collector, ModelService(c.adapters, c.get(Access), c.get(FileService), c.settings, c.model_path,
                                  c.metrics, int(time.time())))
    c.on_start(collector.start)
    c.on_stop(collector.close)


feature = Feature("models", routers=[router, lora_router], build=build)

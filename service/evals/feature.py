"""The Evals API: evals with graders, runs answered through batches on the shared engine."""

from service.batches.service import BatchService
from service.components import Components, Feature
from service.evals.router import router
from service.evals.runner import EvalRunner
from service.evals.service import EvalService
from service.evals.store import EvalStore
from service.files.service import FileService
from service.models.service import ModelService


def build(c: Components) -> None:
    store, files = c.get(EvalStore), c.get(FileService)
    runner = EvalRunner(store, files, c.get(BatchService), c.settings)
    c.add(runner, EvalService(store, files, c.get(ModelService), runner))
    c.on_start(runner.start)
    c.on_stop(runner.close)


feature = Feature("evals", routers=[router], stores=lambda db: [EvalStore(db)], build=build)

"""Fine-tuning jobs: the API, the runner that trains them (a local subprocess or a Ray job) and publishes
each adapter, and the job store (jobs, events, checkpoints)."""

from service.components import Components, Feature
from service.evals.service import EvalService
from service.files.service import FileService
from service.fine_tuning.backends import open_backend
from service.fine_tuning.rollouts import RolloutService
from service.fine_tuning.router import alpha, internal, router
from service.fine_tuning.runner import JobRunner
from service.fine_tuning.service import JobService
from service.fine_tuning.store import JobStore
from service.graders.service import GraderService
from service.inference.chat import ChatService
from service.inference.engine import Engine
from service.inference.offline import OfflineLane
from service.models.service import ModelService
from service.projects.service import Access


def build(c: Components) -> None:
    store, files, graders = c.get(JobStore), c.get(FileService), c.get(GraderService)
    rollouts = RolloutService(c.get(Engine), c.get(ChatService).resolver, c.get(OfflineLane), graders, store,
                              c.settings.data_dir, c.get(ModelService).base)
    runner = JobRunner(store, files, c.adapters, c.objects, c.settings, c.model_path, open_backend(c.settings),
                       c.get(EvalService), c.metrics, graders, rollouts)
    c.add(runner, rollouts, JobService(store, files, c.settings, runner, c.get(Access), graders))
    c.on_start(runner.start)
    c.on_stop(runner.close)


feature = Feature("fine_tuning", routers=[router, alpha, internal], stores=lambda db: [JobStore(db)], build=build)

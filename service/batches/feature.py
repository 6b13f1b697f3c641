"""The Batch API: JSONL files of chat, completions or responses requests, run on the shared engine below
interactive priority, as many lines at once as the engine takes, answers recorded in bulk."""

from service.batches.router import router
from service.batches.runner import BatchRunner
from service.batches.service import BatchService
from service.batches.store import BatchStore
from service.components import Components, Feature
from service.files.service import FileService
from service.inference.chat import ChatService
from service.inference.completions import CompletionService
from service.inference.offline import OfflineLane
from service.responses.service import ResponsesService


def build(c: Components) -> None:
    store, files = c.get(BatchStore), c.get(FileService)
    runner = BatchRunner(store, files, c.get(OfflineLane), c.get(ChatService), c.get(CompletionService),
                         c.get(ResponsesService), c.settings)
    c.add(runner, BatchService(store, files, runner))
    if c.settings.engine == "vllm":  # batches run on the engine; without one they wait
        c.on_start(runner.start)
    c.on_stop(runner.close)


feature = Feature("batches", routers=[router], stores=lambda db: [BatchStore(db)], build=build)

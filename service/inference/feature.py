"""Chat Completions and Completions on the shared vLLM engine, the adapter named in `model` hot-loaded."""

from service.components import Components, Feature
from service.inference.chat import ChatService
from service.inference.completions import CompletionService
from service.inference.engine import AdapterResolver, Engine
from service.inference.generation import Admission
from service.inference.offline import OfflineLane
from service.inference.router import router
from service.inference.slots import SharedSlots, SlotStore
from service.projects.service import Access


def build(c: Components) -> None:
    s = c.settings
    engine = Engine(s, c.model_path)
    resolver = AdapterResolver(c.adapters, c.get(Access), engine, s, c.metrics)
    # servers sharing a database count each project's requests together; one on SQLite, in memory
    shared = SharedSlots(c.get(SlotStore), s.owner) if s.database_url else None
    admission = Admission(s.max_concurrent_generations, s.project_max_generations, shared)
    c.add(engine, resolver, admission, OfflineLane(engine, s.batch_reserve, s.batch_yield_lines),
          ChatService(engine, resolver, admission, c.metrics),
          CompletionService(engine, resolver, admission, c.metrics))
    if s.engine == "vllm":
        c.on_start(engine.start_background)
    if shared is not None:
        c.on_start(shared.start)
        c.on_stop(shared.close)
    c.on_stop(engine.close)


feature = Feature("inference", routers=[router], stores=lambda db: [SlotStore(db)], build=build)

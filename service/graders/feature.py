"""Graders for reinforcement fine-tuning: `POST /v1/fine_tuning/alpha/graders/{run,validate}`, and the
scoring that reinforcement jobs' rollouts use (python graders in a sandbox)."""

from service.components import Components, Feature
from service.graders.router import router
from service.graders.sandbox import Limits, PythonSandbox
from service.graders.service import GraderService
from service.inference.chat import ChatService
from service.inference.offline import OfflineLane


def build(c: Components) -> None:
    s = c.settings
    sandbox = PythonSandbox(Limits(wall_s=s.python_grader_timeout_s, memory_mib=s.python_grader_memory_mib),
                            enabled=s.python_graders)
    c.add(GraderService(c.get(ChatService), c.get(OfflineLane), sandbox))


feature = Feature("graders", routers=[router], build=build)

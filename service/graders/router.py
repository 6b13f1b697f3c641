from typing import Annotated

from fastapi import APIRouter, Depends

from service.components import provide
from service.deps import Project
from service.graders.protocol import RunGraderRequest, RunGraderResponse, ValidateGraderRequest, ValidateGraderResponse
from service.graders.service import GraderService

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders", tags=["graders"])
Graders = Annotated[GraderService, Depends(provide(GraderService))]


@router.post("/run", response_model=RunGraderResponse)
async def run_grader(graders: Graders, project: Project, body: RunGraderRequest) -> RunGraderResponse:
    """Score one model sample against one item: the reward a reinforcement job would give it."""
    return await graders.run(body, project)


@router.post("/validate", response_model=ValidateGraderResponse, response_model_exclude_none=True)
def validate_grader(graders: Graders, project: Project, body: ValidateGraderRequest) -> ValidateGraderResponse:
    """Check a grader: its templates, formula and python source (compiled, not run)."""
    return graders.validate(body, project)

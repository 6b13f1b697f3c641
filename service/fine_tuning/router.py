from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from service.components import provide
from service.deps import Project
from service.fine_tuning.service import JobService
from service.fine_tuning.protocol import (
    CreateFineTuningJobRequest,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
)
from service.fine_tuning.rollouts import RolloutService
from service.protocol import ListObject
from trainer.contract import RolloutRequest, RolloutResponse

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
Jobs = Annotated[JobService, Depends(provide(JobService))]
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("", response_model=FineTuningJob)
async def create_fine_tuning_job(jobs: Jobs, project: Project, body: CreateFineTuningJobRequest) -> FineTuningJob:
    return jobs.create(body, project)


@router.get("", response_model=ListObject[FineTuningJob])
def list_fine_tuning_jobs(jobs: Jobs, project: Project, request: Request, after: str | None = None,
                          limit: Limit = 20) -> ListObject:
    # metadata filter, as the openai client sends it: metadata[key]=value
    metadata = {k[9:-1]: v for k, v in request.query_params.items() if k.startswith("metadata[") and k.endswith("]")}
    return jobs.list(project, after, limit, metadata)


@router.get("/{fine_tuning_job_id}", response_model=FineTuningJob)
def retrieve_fine_tuning_job(jobs: Jobs, project: Project, fine_tuning_job_id: str) -> FineTuningJob:
    return jobs.get(fine_tuning_job_id, project)


@router.post("/{fine_tuning_job_id}/cancel", response_model=FineTuningJob)
async def cancel_fine_tuning_job(jobs: Jobs, project: Project, fine_tuning_job_id: str) -> FineTuningJob:
    return await jobs.cancel(fine_tuning_job_id, project)


@router.post("/{fine_tuning_job_id}/pause", response_model=FineTuningJob)
async def pause_fine_tuning_job(jobs: Jobs, project: Project, fine_tuning_job_id: str) -> FineTuningJob:
    return await jobs.pause(fine_tuning_job_id, project)


@router.post("/{fine_tuning_job_id}/resume", response_model=FineTuningJob)
async def resume_fine_tuning_job(jobs: Jobs, project: Project, fine_tuning_job_id: str) -> FineTuningJob:
    return await jobs.resume(fine_tuning_job_id, project)


@router.get("/{fine_tuning_job_id}/events", response_model=ListObject[FineTuningJobEvent])
def list_fine_tuning_events(jobs: Jobs, project: Project, fine_tuning_job_id: str, after: str | None = None,
                            limit: Limit = 20) -> ListObject:
    return jobs.events(fine_tuning_job_id, project, after, limit)


@router.get("/{fine_tuning_job_id}/checkpoints", response_model=ListObject[FineTuningJobCheckpoint])
def list_fine_tuning_checkpoints(jobs: Jobs, project: Project, fine_tuning_job_id: str, after: str | None = None,
                                 limit: Limit = 10) -> ListObject:
    return jobs.checkpoints(fine_tuning_job_id, project, after, limit)


# A reinforcement job's trainer asks for graded samples here, with its job's token (not an API key).
internal = APIRouter(prefix="/internal/rollouts", include_in_schema=False)
Rollouts = Annotated[RolloutService, Depends(provide(RolloutService))]

# `ftserve train` (stage grpo) asks a running server for graded samples of its adapter (an extension).
alpha = APIRouter(prefix="/v1/fine_tuning/alpha", tags=["fine-tuning"])


@alpha.post("/rollouts", response_model=RolloutResponse)
async def create_rollouts(rollouts: Rollouts, project: Project, body: RolloutRequest) -> RolloutResponse:
    return await rollouts.outside(body, project)


@internal.post("/{job_id}", response_model=RolloutResponse)
async def rollouts(rollouts: Rollouts, job_id: str, body: RolloutRequest,
                   authorization: Annotated[str | None, Header()] = None) -> RolloutResponse:
    rollouts.authorize(job_id, authorization)
    return await rollouts.rollouts(job_id, body)

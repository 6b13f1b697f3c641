from typing import Annotated

from fastapi import APIRouter, Depends, Query

from service.batches.protocol import Batch, CreateBatchRequest
from service.components import provide
from service.deps import Project
from service.batches.service import BatchService
from service.protocol import ListObject

router = APIRouter(prefix="/v1/batches", tags=["batches"])
Batches = Annotated[BatchService, Depends(provide(BatchService))]


@router.post("", response_model=Batch)
def create_batch(batches: Batches, project: Project, body: CreateBatchRequest) -> Batch:
    return batches.create(body, project)


@router.get("", response_model=ListObject[Batch])
def list_batches(batches: Batches, project: Project, after: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=100)] = 20) -> ListObject[Batch]:
    return batches.list(project, after, limit)


@router.get("/{batch_id}", response_model=Batch)
def retrieve_batch(batches: Batches, project: Project, batch_id: str) -> Batch:
    return batches.get(batch_id, project)


@router.post("/{batch_id}/cancel", response_model=Batch)
def cancel_batch(batches: Batches, project: Project, batch_id: str) -> Batch:
    return batches.cancel(batch_id, project)

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from service.components import provide
from service.deps import Project
from service.inference.router import answered
from service.responses.protocol import CreateResponse, DeletedResponse, Response, ResponseItemList
from service.responses.service import ResponsesService

router = APIRouter(prefix="/v1/responses", tags=["responses"])
Responses = Annotated[ResponsesService, Depends(provide(ResponsesService))]


@router.post("", response_model=Response)
async def create_response(responses: Responses, project: Project, body: CreateResponse):
    return answered(await responses.create(body, project))


@router.get("/{response_id}", response_model=Response)
def get_response(responses: Responses, project: Project, response_id: str) -> Response:
    return responses.get(response_id, project)


@router.delete("/{response_id}", response_model=DeletedResponse)
def delete_response(responses: Responses, project: Project, response_id: str) -> DeletedResponse:
    return responses.delete(response_id, project)


@router.post("/{response_id}/cancel", response_model=Response)
def cancel_response(responses: Responses, project: Project, response_id: str) -> Response:
    return responses.cancel(response_id, project)


@router.get("/{response_id}/input_items", response_model=ResponseItemList)
def list_input_items(responses: Responses, project: Project, response_id: str, after: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 20,
                     order: Literal["asc", "desc"] = "desc") -> ResponseItemList:
    return responses.input_items(response_id, project, after, limit, order)

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from service.components import provide
from service.deps import Project
from service.evals.service import EvalService
from service.evals.protocol import (
    CreateEvalRequest, CreateEvalRunRequest, DeleteEvalResponse, DeleteEvalRunResponse, Eval, EvalRun,
    EvalRunOutputItem, RunStatus, UpdateEvalRequest,
)
from service.protocol import ListObject

router = APIRouter(prefix="/v1/evals", tags=["evals"])
Evals = Annotated[EvalService, Depends(provide(EvalService))]
Limit = Annotated[int, Query(ge=1, le=100)]
Order = Literal["asc", "desc"]


@router.post("", response_model=Eval)
def create_eval(evals: Evals, project: Project, body: CreateEvalRequest) -> Eval:
    return evals.create(body, project)


@router.get("", response_model=ListObject[Eval])
def list_evals(evals: Evals, project: Project, after: str | None = None, limit: Limit = 20, order: Order = "asc",
               order_by: Literal["created_at", "updated_at"] = "created_at") -> ListObject[Eval]:
    return evals.list(project, after, limit, order)


@router.get("/{eval_id}", response_model=Eval)
def retrieve_eval(evals: Evals, project: Project, eval_id: str) -> Eval:
    return evals.get(eval_id, project)


@router.post("/{eval_id}", response_model=Eval)
def update_eval(evals: Evals, project: Project, eval_id: str, body: UpdateEvalRequest) -> Eval:
    return evals.update(eval_id, body, project)


@router.delete("/{eval_id}", response_model=DeleteEvalResponse)
def delete_eval(evals: Evals, project: Project, eval_id: str) -> DeleteEvalResponse:
    return evals.delete(eval_id, project)


@router.post("/{eval_id}/runs", response_model=EvalRun)
def create_run(evals: Evals, project: Project, request: Request, eval_id: str, body: CreateEvalRunRequest) -> EvalRun:
    return evals.create_run(eval_id, body, str(request.base_url), project)


@router.get("/{eval_id}/runs", response_model=ListObject[EvalRun])
def list_runs(evals: Evals, project: Project, eval_id: str, after: str | None = None, limit: Limit = 20, order: Order = "asc",
              status: RunStatus | None = None) -> ListObject[EvalRun]:
    return evals.list_runs(eval_id, project, after, limit, order, status)


@router.get("/{eval_id}/runs/{run_id}", response_model=EvalRun)
def retrieve_run(evals: Evals, project: Project, eval_id: str, run_id: str) -> EvalRun:
    return evals.get_run(eval_id, run_id, project)


@router.post("/{eval_id}/runs/{run_id}", response_model=EvalRun)
@router.post("/{eval_id}/runs/{run_id}/cancel", response_model=EvalRun, include_in_schema=False)
def cancel_run(evals: Evals, project: Project, eval_id: str, run_id: str) -> EvalRun:
    """Cancel a run (the API reference's path; the openai client posts to `.../cancel`)."""
    return evals.cancel_run(eval_id, run_id, project)


@router.delete("/{eval_id}/runs/{run_id}", response_model=DeleteEvalRunResponse)
def delete_run(evals: Evals, project: Project, eval_id: str, run_id: str) -> DeleteEvalRunResponse:
    return evals.delete_run(eval_id, run_id, project)


@router.get("/{eval_id}/runs/{run_id}/output_items", response_model=ListObject[EvalRunOutputItem])
def list_output_items(evals: Evals, project: Project, eval_id: str, run_id: str, after: str | None = None, limit: Limit = 20,
                      order: Order = "asc", status: Literal["pass", "fail", "error"] | None = None,
                      ) -> ListObject[EvalRunOutputItem]:
    return evals.list_items(eval_id, run_id, project, after, limit, order, status)


@router.get("/{eval_id}/runs/{run_id}/output_items/{output_item_id}", response_model=EvalRunOutputItem)
def retrieve_output_item(evals: Evals, project: Project, eval_id: str, run_id: str,
                         output_item_id: str) -> EvalRunOutputItem:
    return evals.get_item(eval_id, run_id, output_item_id, project)

"""FastAPI dependencies: the services and the caller's project, as `Annotated` aliases that routes declare."""

from typing import Annotated

from fastapi import Depends, Request

from service.batches.service import BatchService
from service.evals.service import EvalService
from service.inference.chat import ChatService
from service.inference.completions import CompletionService
from service.files.service import FileService
from service.fine_tuning.service import JobService
from service.errors import APIError, Kind
from service.models.service import ModelService
from service.projects.keys import Caller
from service.projects.service import ProjectService


def _batches(request: Request) -> BatchService:
    return request.app.state.batches


def _evals(request: Request) -> EvalService:
    return request.app.state.evals


def _files(request: Request) -> FileService:
    return request.app.state.files


def _jobs(request: Request) -> JobService:
    return request.app.state.jobs


def _models(request: Request) -> ModelService:
    return request.app.state.models


def _projects(request: Request) -> ProjectService:
    return request.app.state.projects


def _project(request: Request) -> str:
    """The calling key's project (set by the auth middleware); the admin key has none."""
    caller: Caller = request.state.caller
    if caller.admin:
        raise APIError(Kind.PERMISSION, "This is the admin key: it manages projects, service accounts and "
                       "checkpoint permissions. Call this endpoint with a project's key.", code="admin_key_not_allowed")
    return caller.project_id


def _admin(request: Request) -> Caller:
    caller: Caller = request.state.caller
    if not caller.admin:
        configured = request.app.state.keyring.admin is not None
        raise APIError(Kind.PERMISSION, "This endpoint needs the admin key." if configured else
                       "Project administration is off: start the server with an admin key (FTSERVE_ADMIN_KEY "
                       "or --admin-key-file).", code="admin_key_required")
    return caller


def _chat(request: Request) -> ChatService:
    return request.app.state.chat


def _completions(request: Request) -> CompletionService:
    return request.app.state.completions


Batches = Annotated[BatchService, Depends(_batches)]
Chat = Annotated[ChatService, Depends(_chat)]
Completions = Annotated[CompletionService, Depends(_completions)]
Evals = Annotated[EvalService, Depends(_evals)]
Files = Annotated[FileService, Depends(_files)]
Jobs = Annotated[JobService, Depends(_jobs)]
Models = Annotated[ModelService, Depends(_models)]
Projects = Annotated[ProjectService, Depends(_projects)]
Project = Annotated[str, Depends(_project)]
Admin = Annotated[Caller, Depends(_admin)]

"""FastAPI dependencies: the services, as `Annotated` aliases that routes declare."""

from typing import Annotated

from fastapi import Depends, Request

from service.batches.service import BatchService
from service.evals.service import EvalService
from service.inference.chat import ChatService
from service.inference.completions import CompletionService
from service.files.service import FileService
from service.fine_tuning.service import JobService
from service.models.service import ModelService


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

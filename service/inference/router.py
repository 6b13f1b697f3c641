from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from service.components import provide
from service.deps import Project
from service.inference.chat import ChatService
from service.inference.completions import CompletionService
from service.inference.protocol import ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest

router = APIRouter(prefix="/v1", tags=["inference"])
Chat = Annotated[ChatService, Depends(provide(ChatService))]
Completions = Annotated[CompletionService, Depends(provide(CompletionService))]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def answered(result: BaseModel | AsyncIterator[str]):
    """A generation's answer: the object, or its server-sent events as they come."""
    if isinstance(result, BaseModel):
        return result
    return StreamingResponse(result, media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/chat/completions", response_model=ChatCompletion)
async def create_chat_completion(chat: Chat, project: Project, body: ChatCompletionRequest):
    return answered(await chat.create(body, project))


@router.post("/completions", response_model=Completion)
async def create_completion(completions: Completions, project: Project, body: CompletionRequest):
    return answered(await completions.create(body, project))

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from service.components import provide
from service.deps import Project
from service.inference.chat import ChatService
from service.inference.completions import CompletionService
from service.inference.protocol import ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest

router = APIRouter(prefix="/v1", tags=["inference"])
Chat = Annotated[ChatService, Depends(provide(ChatService))]
Completions = Annotated[CompletionService, Depends(provide(CompletionService))]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/chat/completions", response_model=ChatCompletion)
async def create_chat_completion(chat: Chat, project: Project, body: ChatCompletionRequest):
    result = await chat.create(body, project)
    if isinstance(result, ChatCompletion):
        return result
    return StreamingResponse(result, media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/completions", response_model=Completion)
async def create_completion(completions: Completions, project: Project, body: CompletionRequest):
    result = await completions.create(body, project)
    if isinstance(result, Completion):
        return result
    return StreamingResponse(result, media_type="text/event-stream", headers=SSE_HEADERS)

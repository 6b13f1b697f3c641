"""The Responses API: a response is a chat generation on the shared engine (ChatService.start: the same
models, adapters, project scoping, admission and metrics), its input and output read and written as items.

A stored response (`store`, the default) is written once, when it ends; a background one is written
when it is accepted (`queued`, with its request, leased to this server), run by the background runner
(runner.py), and written again when it ends, unless it was cancelled or deleted meanwhile (the row is
checked between outputs, so a cancel sent to any replica stops it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from service.errors import APIError, Kind
from service.ids import new_id
from service.inference.chat import ChatService, Generation
from service.inference.generation import finish_reason, reject_unsupported, stream_error
from service.responses import conversation
from service.responses.builder import ResponseBuilder
from service.responses.runner import BackgroundRunner
from service.responses.protocol import (
    CreateResponse,
    DeletedResponse,
    Event,
    Logprob,
    Response,
    ResponseError,
    ResponseItemList,
    ResponseUsage,
    TopLogprob,
)
from service.responses.store import RUNNING, ResponseStore, StoredResponse

log = logging.getLogger("ftserve.responses")
CANCEL_CHECK_SECONDS = 1.0


class ResponsesService:
    def __init__(self, store: ResponseStore, chat: ChatService, settings):
        self.store, self.chat = store, chat
        self.background = BackgroundRunner(store, self, settings)

    # ---------------------------------------------------------------- create
    async def create(self, req: CreateResponse, project: str, priority: int = 0) -> Response | AsyncIterator[str]:
        reject_unsupported(req.unsupported())
        if req.background and req.stream:
            raise APIError(Kind.INVALID_REQUEST, "'background' responses are read with GET, not streamed: set "
                           "one of 'background' and 'stream'.", param="stream", code="unsupported_parameter")
        history = self._history(req, project)
        items = conversation.stored(conversation.input_items(req))
        messages = conversation.chat_messages(req.instructions, history, items, len(history))
        chat_req = conversation.chat_request(req, messages)
        response = self._response(req)
        if req.background:
            response.status = "queued"
            self.store.insert(response.model_dump(mode="json"), project, items, history,
                              request=req.model_dump(mode="json", exclude_unset=True, by_alias=True),
                              owner=self.background.owner)
            self.background.run_now(response.id)
            return response
        g = await self._start(req, chat_req, project, priority)
        builder = ResponseBuilder(response)
        save = (lambda doc: self.store.insert(doc, project, items, history)) if req.store else None
        if req.stream:
            return self._stream(req, project, g, builder, save)
        done = await self._whole(req, project, g, builder)
        if save is not None:
            await asyncio.to_thread(save, done.model_dump(mode="json"))
        return done

    def _history(self, req: CreateResponse, project: str) -> list[dict]:
        if req.previous_response_id is None:
            return []
        previous = self.store.get(req.previous_response_id, project)
        if previous is None:
            raise APIError(Kind.NOT_FOUND, f"Previous response with id '{req.previous_response_id}' not found.",
                           param="previous_response_id", code="previous_response_not_found")
        if previous.doc["status"] in RUNNING:
            raise APIError(Kind.INVALID_REQUEST, f"Previous response '{req.previous_response_id}' is still "
                           f"{previous.doc['status']}: continue it once it has finished.",
                           param="previous_response_id", code="previous_response_not_finished")
        return previous.conversation()

    async def _start(self, req: CreateResponse, chat_req, project: str, priority: int) -> Generation:
        """The generation on the engine. With `truncation: "auto"`, a conversation too long for the model
        loses its oldest turns (whole turns: from the start up to the next user message) until it fits."""
        while True:
            try:
                return await self.chat.start(chat_req, project, priority, param="input")
            except APIError as e:
                if e.code != "context_length_exceeded":
                    raise
                if e.param == "max_tokens":
                    e.param = "max_output_tokens"
                shorter = _without_oldest_turn(chat_req.messages) if req.truncation == "auto" else None
                if shorter is None:
                    raise
                chat_req = chat_req.model_copy(update={"messages": shorter})

    def _response(self, req: CreateResponse) -> Response:
        """The response as it starts: what the request asked for, echoed as OpenAI echoes it."""
        return Response(
            id=new_id("resp_", 32), created_at=int(time.time()), status="in_progress", model=req.model,
            background=req.background, instructions=req.instructions, previous_response_id=req.previous_response_id,
            max_output_tokens=req.max_output_tokens, max_tool_calls=req.max_tool_calls,
            parallel_tool_calls=req.parallel_tool_calls is not False, reasoning=req.reasoning, store=req.store,
            service_tier="default" if req.service_tier in (None, "auto") else req.service_tier,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p, top_logprobs=req.top_logprobs,
            text=req.text or {"format": {"type": "text"}}, tool_choice=req.tool_choice or "auto",
            tools=req.tools or [], truncation=req.truncation or "disabled", user=req.user, metadata=req.metadata,
            safety_identifier=req.safety_identifier, prompt_cache_key=req.prompt_cache_key)

    # ---------------------------------------------------------------- generate
    async def _whole(self, req: CreateResponse, project: str, g: Generation, builder: ResponseBuilder,
                     cancelled=None) -> Response:
        outputs = g.outputs if cancelled is None else _until(g.outputs, cancelled)
        done = (await self.chat.accumulate(outputs)).get((0, 0))
        if done is None:  # cancelled before any output
            return builder.response
        reasoning, answer = self.chat.reasoning(g.req).split(done.text)
        text, calls = g.tools.extract(answer)
        logprobs = _logprobs(g, done)
        usage = self._usage(req, project, g.n_prompt, len(done.token_ids))
        return builder.whole(text, [(c.id, c.function.name, c.function.arguments) for c in calls], logprobs,
                             finish_reason(done.finish_reason) == "length", usage, reasoning)

    async def _stream(self, req: CreateResponse, project: str, g: Generation, builder: ResponseBuilder,
                      save) -> AsyncIterator[str]:
        reader, thinking, n_output, length_cut = g.tools.stream_reader(), self.chat.reasoning(g.req), 0, False
        try:
            for event in builder.start():
                yield _sse(event)
            async for output in g.outputs:
                for c in output.outputs:
                    n_output += len(c.token_ids)
                    reasoning, answer = thinking.feed(c.text, c.token_ids)
                    text, calls = reader.feed(answer, c.token_ids) if answer else (None, [])
                    events: list[Event] = builder.reasoning(reasoning) if reasoning else []
                    if text:
                        lps = _logprobs(g, c)
                        events += builder.text(text, lps)
                    for call in calls:
                        function = call.function
                        events += builder.call(call.index, call.id, function.name if function else None,
                                               function.arguments if function else None)
                    length_cut = length_cut or finish_reason(c.finish_reason) == "length"
                    for event in events:
                        yield _sse(event)
            for event in builder.finish(length_cut, self._usage(req, project, g.n_prompt, n_output)):
                yield _sse(event)
        except Exception as e:  # noqa: BLE001 - every failure must reach the client as an event
            err = stream_error(e)
            for event in builder.fail(err.code or err.kind.type, err.message, err.param):
                yield _sse(event)
        finally:
            if save is not None and builder.response.status not in RUNNING:
                await asyncio.to_thread(save, builder.response.model_dump(mode="json"))

    async def run_background(self, stored: StoredResponse, priority: int = 0) -> None:
        """Generate a background response from its stored request (again from the start, if a server stopped
        while it ran) and store the result, unless it was cancelled or deleted meanwhile."""
        req = CreateResponse.model_validate(stored.request)
        response = Response.model_validate({**stored.doc, "status": "queued", "output": []})
        builder = ResponseBuilder(response)
        response_id = response.id
        try:
            messages = conversation.chat_messages(req.instructions, stored.history, stored.input_items,
                                                  len(stored.history))
            chat_req = conversation.chat_request(req, messages)
            while True:
                try:
                    g = await self._start(req, chat_req, stored.project, priority)
                    break
                except APIError as e:  # waits its turn behind interactive requests
                    if e.kind is not Kind.RATE_LIMITED and e.code != "engine_starting":
                        raise
                    await asyncio.sleep(1)
            response.status = "in_progress"
            if not await asyncio.to_thread(self.store.update, response.model_dump(mode="json")):
                await g.outputs.aclose()  # cancelled or deleted while it waited
                return
            await self._whole(req, stored.project, g, builder,
                              cancelled=lambda: self.store.status(response_id) in (None, "cancelled"))
        except Exception as e:  # noqa: BLE001 - recorded on the response, which GET reads
            if not isinstance(e, APIError):
                log.exception("background response %s failed", response_id)
            builder.response.status = "failed"
            builder.response.error = ResponseError(code=_error_code(e), message=str(getattr(e, "message", e)))
        if builder.response.status not in RUNNING:  # else: stopped by a cancel
            await asyncio.to_thread(self.store.update, builder.response.model_dump(mode="json"))

    def _usage(self, req: CreateResponse, project: str, n_input: int, n_output: int) -> ResponseUsage:
        self.chat.count_tokens(req.model, project, n_input, n_output)
        return ResponseUsage(input_tokens=n_input, output_tokens=n_output, total_tokens=n_input + n_output)

    # ---------------------------------------------------------------- stored
    def _stored(self, response_id: str, project: str) -> StoredResponse:
        found = self.store.get(response_id, project)
        if found is None:
            raise APIError(Kind.NOT_FOUND, f"Response with id '{response_id}' not found.", param="response_id",
                           code="response_not_found")
        return found

    def get(self, response_id: str, project: str) -> Response:
        return Response.model_validate(self._stored(response_id, project).doc)

    def delete(self, response_id: str, project: str) -> DeletedResponse:
        """Delete a stored response (a running background one stops within a second, on whichever server)."""
        self._stored(response_id, project)
        self.store.delete(response_id, project)
        return DeletedResponse(id=response_id)

    def cancel(self, response_id: str, project: str) -> Response:
        found = self._stored(response_id, project)
        if not found.doc.get("background"):
            raise APIError(Kind.INVALID_REQUEST, "Only responses created with 'background': true can be cancelled.",
                           param="response_id", code="not_background")
        if found.doc["status"] in RUNNING:
            doc = {**found.doc, "status": "cancelled"}
            if self.store.update(doc):
                return Response.model_validate(doc)
        return self.get(response_id, project)

    def input_items(self, response_id: str, project: str, after: str | None, limit: int, order: str,
                    ) -> ResponseItemList:
        items = self._stored(response_id, project).input_items
        if order == "desc":
            items = items[::-1]
        if after is not None:
            ids = [i["id"] for i in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        return ResponseItemList(data=page, has_more=len(items) > limit, first_id=page[0]["id"] if page else None,
                                last_id=page[-1]["id"] if page else None)


def _error_code(e: Exception) -> str:
    """A failed response's `error.code`, in the spec's terms."""
    kind = e.kind if isinstance(e, APIError) else None
    return {Kind.INVALID_REQUEST: "invalid_prompt", Kind.RATE_LIMITED: "rate_limit_exceeded"}.get(kind,
                                                                                                "server_error")


def _without_oldest_turn(messages: list) -> list | None:
    """The messages less the oldest turn after the system messages: its first message and everything up to
    the next user message (so no tool result outlives its call); None when one turn is all there is."""
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    following = next((i for i, m in enumerate(rest) if i > 0 and m.role == "user"), None)
    return None if following is None else system + rest[following:]


async def _until(outputs: AsyncIterator, cancelled) -> AsyncIterator:
    """The outputs until `cancelled()` says stop (asked at most once a second); closing them ends the
    engine's request."""
    checked = time.monotonic()
    try:
        async for output in outputs:
            yield output
            if time.monotonic() - checked > CANCEL_CHECK_SECONDS:
                checked = time.monotonic()
                if await asyncio.to_thread(cancelled):
                    return
    finally:
        await outputs.aclose()


def _logprobs(g: Generation, completion) -> list[Logprob] | None:
    """The logprobs of a completion's tokens, when the request asked for them (`include`)."""
    found = ChatService.logprobs_of(g.req, completion)
    if found is None:
        return None
    return [Logprob(token=t.token, logprob=t.logprob, bytes=t.bytes or [], top_logprobs=[
        TopLogprob(token=x.token, logprob=x.logprob, bytes=x.bytes or []) for x in t.top_logprobs]) for t in found.content]


def _sse(event: Event) -> str:
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n"

"""The chat completions service: render with the model's chat template, generate, shape the answer
(tool calls read out of it by tools.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from service.errors import APIError, Kind
from service.inference.engine import BATCH_PRIORITY
from service.inference.generation import (
    DONE,
    GenerationService,
    clamped,
    finish_reason,
    guarded,
    max_new_tokens,
    now,
    prompt_logprobs,
    request_id,
    sampling_params,
    service_tier,
    sse,
    stream_usage,
    top_logprobs,
    usage,
)
from service.inference.protocol import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionTokenLogprob,
    ChoiceDelta,
    ChoiceLogprobs,
)
from service.inference.parsers import ReasoningReader
from service.inference.tools import ToolUse


@dataclass
class Generation:
    """A chat request admitted to the engine: its id, prompt length, tool use, and vLLM's outputs (deltas)."""

    id: str
    req: ChatCompletionRequest
    n_prompt: int
    tools: ToolUse
    outputs: AsyncIterator


class ChatService(GenerationService):
    async def create(self, req: ChatCompletionRequest, project: str,
                     priority: int = 0) -> ChatCompletion | AsyncIterator[str]:
        g = await self.start(req, project, priority)
        if req.stream:
            return guarded(self._stream(req, project, g.id, g.n_prompt, g.outputs, g.tools))
        return await self._complete(req, project, g.id, g.n_prompt, g.outputs, g.tools)

    async def start(self, req: ChatCompletionRequest, project: str, priority: int = 0,
                    param: str = "messages") -> Generation:
        """Admit, render and submit a chat request; the raw outputs, for chat's shapes or another API's."""
        lora = await self.admit(req, project)
        tools = ToolUse(req, self.engine.tokenizer, self.engine.parsers.tool)
        tools.check_constraints()
        prompt_ids = self._render(req, tools, param)
        self.check_prompt(prompt_ids, param)
        max_tokens = max_new_tokens(len(prompt_ids), req.max_completion_tokens or req.max_tokens,
                                    self.engine.max_model_len, param)
        n_logprobs = (req.top_logprobs or 0) if req.logprobs else None
        offline = priority >= BATCH_PRIORITY
        params = sampling_params(req, max_tokens, n_logprobs, req.response_format,
                                 structured=tools.structured_outputs(), offline=offline)
        if tools.active and req.skip_special_tokens is None:
            params.skip_special_tokens = False  # as vLLM's server: some models' call markers are special tokens
        rid = request_id("chatcmpl")
        outputs = await self.open(self.engine.generate(prompt_ids, params, rid, lora, priority), project, lora,
                                  param, offline)
        return Generation(rid, req, len(prompt_ids), tools, outputs)

    def _render(self, req: ChatCompletionRequest, tools: ToolUse, param: str = "messages") -> list[int]:
        tokenizer = self.engine.tokenizer
        messages = [_template_message(m) for m in req.messages]
        try:
            text = tokenizer.apply_chat_template(messages, tools=tools.template_tools(), tokenize=False,
                                                 add_generation_prompt=True, **(req.chat_template_kwargs or {}))
        except Exception as e:  # noqa: BLE001 - templates raise what they like (e.g. on role order)
            raise APIError(Kind.INVALID_REQUEST, f"The messages cannot be rendered with the model's chat "
                           f"template: {e}", param=param) from None
        return tokenizer.encode(text, add_special_tokens=False)

    def reasoning(self, req: ChatCompletionRequest) -> ReasoningReader:
        """A reader of one output's reasoning section (the model's reasoning parser, if any)."""
        return ReasoningReader(self.engine.parsers.reasoning, self.engine.tokenizer, req.chat_template_kwargs)

    @staticmethod
    def logprobs_of(req: ChatCompletionRequest, completion) -> ChoiceLogprobs | None:
        """The logprobs of a completion's tokens, as the request asked for them (None: not asked)."""
        if not req.logprobs or completion.logprobs is None:
            return None
        content = []
        for token_id, position in zip(completion.token_ids, completion.logprobs):
            chosen = position[token_id]
            token = chosen.decoded_token or ""
            content.append(ChatCompletionTokenLogprob(
                token=token, logprob=clamped(chosen.logprob), bytes=list(token.encode()),
                top_logprobs=top_logprobs(position, req.top_logprobs or 0)))
        return ChoiceLogprobs(content=content)

    def _response(self, req, rid: str, created: int, choices, **fields):
        return dict(id=rid, created=created, model=req.model, choices=choices, service_tier=service_tier(
            req.service_tier), system_fingerprint=self.engine.fingerprint, **fields)

    async def _complete(self, req, project: str, rid: str, n_prompt: int, outputs, tools: ToolUse) -> ChatCompletion:
        done = sorted((await self.accumulate(outputs)).values(), key=lambda c: c.index)
        choices = []
        for c in done:
            reasoning, answer = self.reasoning(req).split(c.text)
            content, calls = tools.extract(answer)
            reason = finish_reason(c.finish_reason)
            choices.append(ChatCompletionChoice(
                index=c.index, message=ChatCompletionMessage(content=content, tool_calls=calls or None,
                                                             reasoning_content=reasoning),
                logprobs=self.logprobs_of(req, c), finish_reason="tool_calls" if calls and reason == "stop" else reason))
        n_completion = sum(len(c.token_ids) for c in done)
        self.count_tokens(req.model, project, n_prompt, n_completion)
        return ChatCompletion(**self._response(req, rid, now(), choices, usage=usage(n_prompt, n_completion),
                                               metadata=req.metadata,
                                               prompt_logprobs=prompt_logprobs(done[0].prompt_logprobs)))

    async def _stream(self, req, project: str, rid: str, n_prompt: int, outputs, tools: ToolUse) -> AsyncIterator[str]:
        created = now()
        include_usage, continuous = stream_usage(req)
        n_completion = 0

        def chunk(choices, **fields):
            if continuous and "usage" not in fields:
                fields["usage"] = usage(n_prompt, n_completion)
            return sse(ChatCompletionChunk(**self._response(req, rid, created, choices, **fields)))

        readers, thinking = {}, {}
        for i in range(req.n or 1):
            readers[i], thinking[i] = tools.stream_reader(), self.reasoning(req)
            yield chunk([ChatCompletionChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))])
        async for output in outputs:
            choices = []
            for c in output.outputs:
                n_completion += len(c.token_ids)
                reader = readers[c.index]
                reasoning, answer = thinking[c.index].feed(c.text, c.token_ids)
                content, calls = reader.feed(answer, c.token_ids) if answer else (None, [])
                reason = finish_reason(c.finish_reason)
                if reason == "stop" and reader.called:
                    reason = "tool_calls"
                if content or calls or reasoning or reason:
                    choices.append(ChatCompletionChunkChoice(
                        index=c.index, delta=ChoiceDelta(content=content, tool_calls=calls or None,
                                                         reasoning_content=reasoning),
                        logprobs=self.logprobs_of(req, c), finish_reason=reason))
            if choices:
                yield chunk(choices)
        self.count_tokens(req.model, project, n_prompt, n_completion)
        if include_usage:
            yield chunk([], usage=usage(n_prompt, n_completion))
        yield DONE


def _template_message(m) -> dict:
    """A request message as the chat template takes it: tool-call arguments as a mapping (as in training,
    so a call sent back renders exactly as the model wrote it)."""
    out = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.function.name, "arguments": _decoded(c.function.arguments)}} for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.reasoning_content is not None:
        out["reasoning_content"] = m.reasoning_content
    return out


def _decoded(arguments: str):
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments  # rendered as the text it is
    return value if isinstance(value, dict) else arguments

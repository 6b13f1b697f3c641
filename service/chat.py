"""The chat completions service: render with the model's chat template, generate, shape the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.errors import APIError, Kind
from service.generation import (
    DONE,
    GenerationService,
    finish_reason,
    max_new_tokens,
    now,
    request_id,
    sampling_params,
    sse,
    top_logprobs,
)
from service.protocol_chat import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionTokenLogprob,
    ChoiceDelta,
    ChoiceLogprobs,
    Usage,
)


class ChatService(GenerationService):
    async def create(self, req: ChatCompletionRequest) -> ChatCompletion | AsyncIterator[str]:
        lora = await self.admit(req)
        prompt_ids = self._render(req)
        max_tokens = max_new_tokens(len(prompt_ids), req.max_completion_tokens or req.max_tokens,
                                    self.engine.max_model_len)
        n_logprobs = (req.top_logprobs or 0) if req.logprobs else None
        params = sampling_params(req, max_tokens, n_logprobs, req.response_format)
        rid = request_id("chatcmpl")
        outputs = await self.open(self.engine.generate(prompt_ids, params, rid, lora), lora)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return self._stream(req, rid, len(prompt_ids), outputs, include_usage)
        return await self._complete(req, rid, len(prompt_ids), outputs)

    def _render(self, req: ChatCompletionRequest) -> list[int]:
        tokenizer = self.engine.tokenizer
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in req.messages]
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # noqa: BLE001 - templates raise what they like (e.g. on role order)
            raise APIError(Kind.INVALID_REQUEST, f"The messages cannot be rendered with the model's chat "
                           f"template: {e}", param="messages") from None
        return tokenizer.encode(text, add_special_tokens=False)

    @staticmethod
    def _logprobs(req: ChatCompletionRequest, completion) -> ChoiceLogprobs | None:
        if not req.logprobs or completion.logprobs is None:
            return None
        content = []
        for token_id, position in zip(completion.token_ids, completion.logprobs):
            chosen = position[token_id]
            token = chosen.decoded_token or ""
            content.append(ChatCompletionTokenLogprob(
                token=token, logprob=max(chosen.logprob, -9999.0), bytes=list(token.encode()),
                top_logprobs=top_logprobs(position, req.top_logprobs or 0)))
        return ChoiceLogprobs(content=content)

    async def _complete(self, req, rid: str, n_prompt: int, outputs) -> ChatCompletion:
        done = sorted((await self.accumulate(outputs)).values(), key=lambda c: c.index)
        choices = [ChatCompletionChoice(index=c.index, message=ChatCompletionMessage(content=c.text),
                                        logprobs=self._logprobs(req, c), finish_reason=finish_reason(c.finish_reason))
                   for c in done]
        n_completion = sum(len(c.token_ids) for c in done)
        self.count_tokens(req.model, n_prompt, n_completion)
        return ChatCompletion(id=rid, created=now(), model=req.model, choices=choices,
                              usage=Usage(prompt_tokens=n_prompt, completion_tokens=n_completion,
                                          total_tokens=n_prompt + n_completion))

    async def _stream(self, req, rid: str, n_prompt: int, outputs, include_usage: bool) -> AsyncIterator[str]:
        created = now()

        def chunk(choices, usage=None):
            return sse(ChatCompletionChunk(id=rid, created=created, model=req.model, choices=choices,
                                           usage=usage))

        n_completion = 0
        for i in range(req.n or 1):
            yield chunk([ChatCompletionChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))])
        async for output in outputs:
            choices = []
            for c in output.outputs:
                n_completion += len(c.token_ids)
                reason = finish_reason(c.finish_reason)
                if c.text or reason:
                    choices.append(ChatCompletionChunkChoice(
                        index=c.index, delta=ChoiceDelta(content=c.text or None),
                        logprobs=self._logprobs(req, c), finish_reason=reason))
            if choices:
                yield chunk(choices)
        self.count_tokens(req.model, n_prompt, n_completion)
        if include_usage:
            yield chunk([], Usage(prompt_tokens=n_prompt, completion_tokens=n_completion,
                                  total_tokens=n_prompt + n_completion))
        yield DONE

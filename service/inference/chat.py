"""The chat completions service: render with the model's chat template, generate, shape the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.errors import APIError, Kind
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


class ChatService(GenerationService):
    async def create(self, req: ChatCompletionRequest) -> ChatCompletion | AsyncIterator[str]:
        lora = await self.admit(req)
        prompt_ids = self._render(req)
        self.check_prompt(prompt_ids, "messages")
        max_tokens = max_new_tokens(len(prompt_ids), req.max_completion_tokens or req.max_tokens,
                                    self.engine.max_model_len)
        n_logprobs = (req.top_logprobs or 0) if req.logprobs else None
        params = sampling_params(req, max_tokens, n_logprobs, req.response_format)
        rid = request_id("chatcmpl")
        outputs = await self.open(self.engine.generate(prompt_ids, params, rid, lora), lora)
        if req.stream:
            return guarded(self._stream(req, rid, len(prompt_ids), outputs))
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
                token=token, logprob=clamped(chosen.logprob), bytes=list(token.encode()),
                top_logprobs=top_logprobs(position, req.top_logprobs or 0)))
        return ChoiceLogprobs(content=content)

    def _response(self, req, rid: str, created: int, choices, **fields):
        return dict(id=rid, created=created, model=req.model, choices=choices, service_tier=service_tier(
            req.service_tier), system_fingerprint=self.engine.fingerprint, **fields)

    async def _complete(self, req, rid: str, n_prompt: int, outputs) -> ChatCompletion:
        done = sorted((await self.accumulate(outputs)).values(), key=lambda c: c.index)
        choices = [ChatCompletionChoice(index=c.index, message=ChatCompletionMessage(content=c.text),
                                        logprobs=self._logprobs(req, c), finish_reason=finish_reason(c.finish_reason))
                   for c in done]
        n_completion = sum(len(c.token_ids) for c in done)
        self.count_tokens(req.model, n_prompt, n_completion)
        return ChatCompletion(**self._response(req, rid, now(), choices, usage=usage(n_prompt, n_completion),
                                               metadata=req.metadata,
                                               prompt_logprobs=prompt_logprobs(done[0].prompt_logprobs)))

    async def _stream(self, req, rid: str, n_prompt: int, outputs) -> AsyncIterator[str]:
        created = now()
        include_usage, continuous = stream_usage(req)
        n_completion = 0

        def chunk(choices, **fields):
            if continuous and "usage" not in fields:
                fields["usage"] = usage(n_prompt, n_completion)
            return sse(ChatCompletionChunk(**self._response(req, rid, created, choices, **fields)))

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
            yield chunk([], usage=usage(n_prompt, n_completion))
        yield DONE

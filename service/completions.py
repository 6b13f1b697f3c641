"""The (legacy) completions service: raw prompts, no chat template."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
from service.protocol_chat import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, Usage


class CompletionService(GenerationService):
    async def create(self, req: CompletionRequest) -> Completion | AsyncIterator[str]:
        from vllm.utils.async_utils import merge_async_iterators

        lora = await self.admit(req)
        prompts = self._prompts(req)
        n = req.n or 1
        rid = request_id("cmpl")
        limits = [max_new_tokens(len(ids), req.max_tokens, self.engine.max_model_len, "prompt") for ids in prompts]
        streams = [self.engine.generate(ids, sampling_params(req, limit, req.logprobs), f"{rid}-{i}", lora)
                   for i, (ids, limit) in enumerate(zip(prompts, limits))]
        merged = await self.open(merge_async_iterators(*streams), lora)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return self._stream(req, rid, prompts, n, merged, include_usage)
        return await self._complete(req, rid, prompts, n, merged)

    def _prompts(self, req: CompletionRequest) -> list[list[int]]:
        p = req.prompt
        if isinstance(p, str):
            p = [p]
        if p and isinstance(p[0], int):
            return [list(p)]
        if p and isinstance(p[0], list):
            return [list(x) for x in p]
        return [self.engine.tokenizer.encode(text, add_special_tokens=False) for text in p]

    def _text(self, req, prompt_ids: list[int], completion, first: bool) -> str:
        if req.echo and first:
            return self.engine.tokenizer.decode(prompt_ids) + completion.text
        return completion.text

    def _logprobs(self, req, completion, offset: int) -> CompletionLogprobs | None:
        if req.logprobs is None or completion.logprobs is None:
            return None
        out = CompletionLogprobs()
        for token_id, position in zip(completion.token_ids, completion.logprobs):
            chosen = position[token_id]
            token = chosen.decoded_token or ""
            out.tokens.append(token)
            out.token_logprobs.append(max(chosen.logprob, -9999.0))
            out.top_logprobs.append({t.token: t.logprob for t in top_logprobs(position, req.logprobs)})
            out.text_offset.append(offset)
            offset += len(token)
        return out

    async def _complete(self, req, rid, prompts, n, merged) -> Completion:
        done = await self.accumulate(merged, key=lambda item: item)
        choices, n_completion = [], 0
        for (i, _), c in sorted(done.items()):
            n_completion += len(c.token_ids)
            text = self._text(req, prompts[i], c, True)
            choices.append(CompletionChoice(index=i * n + c.index, text=text,
                                            logprobs=self._logprobs(req, c, len(text) - len(c.text)),
                                            finish_reason=finish_reason(c.finish_reason)))
        n_prompt = sum(len(ids) for ids in prompts)
        self.count_tokens(req.model, n_prompt, n_completion)
        return Completion(id=rid, created=now(), model=req.model, choices=choices,
                          usage=Usage(prompt_tokens=n_prompt, completion_tokens=n_completion,
                                      total_tokens=n_prompt + n_completion))

    async def _stream(self, req, rid, prompts, n, merged, include_usage) -> AsyncIterator[str]:
        created, n_completion, started = now(), 0, set()
        async for i, output in merged:
            choices = []
            for c in output.outputs:
                n_completion += len(c.token_ids)
                index = i * n + c.index
                text = self._text(req, prompts[i], c, index not in started)
                started.add(index)
                reason = finish_reason(c.finish_reason)
                if text or reason:
                    choices.append(CompletionChoice(index=index, text=text, finish_reason=reason,
                                                    logprobs=self._logprobs(req, c, 0)))
            if choices:
                yield sse(Completion(id=rid, created=created, model=req.model, choices=choices))
        n_prompt = sum(len(ids) for ids in prompts)
        self.count_tokens(req.model, n_prompt, n_completion)
        if include_usage:
            yield sse(Completion(id=rid, created=created, model=req.model, choices=[],
                                 usage=Usage(prompt_tokens=n_prompt, completion_tokens=n_completion,
                                             total_tokens=n_prompt + n_completion)))
        yield DONE

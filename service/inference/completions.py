"""The (legacy) completions service: raw prompts, no chat template."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
    sse,
    stream_usage,
    top_logprobs,
    usage,
)
from service.inference.protocol import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest


class CompletionService(GenerationService):
    async def create(self, req: CompletionRequest, project: str, priority: int = 0) -> Completion | AsyncIterator[str]:
        from vllm.utils.async_utils import merge_async_iterators

        lora = await self.admit(req, project)
        prompts = self._prompts(req)
        for ids in prompts:
            self.check_prompt(ids, "prompt")
        n = req.n or 1
        rid = request_id("cmpl")
        # max_tokens 0 (with echo) scores the prompt alone: one token is generated and left out
        limits = [max_new_tokens(len(ids), req.max_tokens or 1, self.engine.max_model_len, "prompt")
                  for ids in prompts]
        # echo + logprobs: the prompt's own tokens get logprobs too, as OpenAI's legacy API gives them
        scored = req.logprobs if req.echo and req.logprobs is not None else None
        offline = priority >= BATCH_PRIORITY
        streams = [self.engine.generate(ids, sampling_params(req, limit, req.logprobs, prompt_logprobs=scored,
                                                             offline=offline), f"{rid}-{i}", lora, priority)
                   for i, (ids, limit) in enumerate(zip(prompts, limits))]
        merged = await self.open(merge_async_iterators(*streams), project, lora, "prompt", offline)
        if req.stream:
            return guarded(self._stream(req, project, rid, prompts, n, merged))
        return await self._complete(req, project, rid, prompts, n, merged)

    def _prompts(self, req: CompletionRequest) -> list[list[int]]:
        p = req.prompt
        if isinstance(p, str):
            p = [p]
        if p and isinstance(p[0], int):
            return [list(p)]
        if p and isinstance(p[0], list):
            return [list(x) for x in p]
        return [self.engine.tokenizer.encode(text, add_special_tokens=False) for text in p]

    def _choice(self, req, index: int, prompt_ids: list[int], c, first: bool, prompt_lps) -> CompletionChoice:
        """One choice, or a streamed piece of one; its `first` piece echoes the prompt when asked to."""
        echo = bool(req.echo) and first
        generated = req.max_tokens != 0
        text = c.text if generated else ""
        token_ids = list(c.token_ids) if generated else []
        positions = list(c.logprobs or []) if generated else []
        echoed_ids: list[int] = []
        echoed_lps: list = []
        if echo:
            text = self.engine.tokenizer.decode(prompt_ids) + text
            echoed_ids = prompt_ids
            echoed_lps = prompt_lps or [None] * len(prompt_ids)
        logprobs = None
        if req.logprobs is not None:
            logprobs = self._logprobs(req, echoed_ids + token_ids, echoed_lps + positions)
        reason = finish_reason(c.finish_reason) if generated else ("length" if c.finish_reason else None)
        return CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=reason,
                                prompt_logprobs=prompt_logprobs(prompt_lps) if first and req.prompt_logprobs
                                is not None else None)

    def _logprobs(self, req, token_ids: list[int], positions: list) -> CompletionLogprobs:
        """OpenAI's legacy logprobs: per token its text, logprob, top alternatives and text offset;
        null for the first prompt token, which nothing precedes."""
        out, offset = CompletionLogprobs(), 0
        for token_id, position in zip(token_ids, positions):
            if position is None:
                token = self.engine.tokenizer.decode([token_id])
                out.token_logprobs.append(None)
                out.top_logprobs.append(None)
            else:
                chosen = position[token_id]
                token = chosen.decoded_token or ""
                out.token_logprobs.append(clamped(chosen.logprob))
                out.top_logprobs.append({t.token: t.logprob for t in top_logprobs(position, req.logprobs)})
            out.tokens.append(token)
            out.text_offset.append(offset)
            offset += len(token)
        return out

    def _response(self, rid: str, created: int, req, choices, **fields) -> Completion:
        return Completion(id=rid, created=created, model=req.model, choices=choices,
                          system_fingerprint=self.engine.fingerprint, **fields)

    async def _complete(self, req, project, rid, prompts, n, merged) -> Completion:
        done = await self.accumulate(merged, key=lambda item: item)
        choices, n_completion = [], 0
        for (i, _), c in sorted(done.items()):
            n_completion += len(c.token_ids) if req.max_tokens != 0 else 0
            choices.append(self._choice(req, i * n + c.index, prompts[i], c, True, c.prompt_logprobs))
        n_prompt = sum(len(ids) for ids in prompts)
        self.count_tokens(req.model, project, n_prompt, n_completion)
        return self._response(rid, now(), req, choices, usage=usage(n_prompt, n_completion))

    async def _stream(self, req, project, rid, prompts, n, merged) -> AsyncIterator[str]:
        created, n_completion, started = now(), 0, set()
        prompt_lps: dict[int, list] = {}
        n_prompt = sum(len(ids) for ids in prompts)
        include_usage, continuous = stream_usage(req)
        async for i, output in merged:
            if output.prompt_logprobs is not None:
                prompt_lps.setdefault(i, output.prompt_logprobs)
            choices = []
            for c in output.outputs:
                n_completion += len(c.token_ids) if req.max_tokens != 0 else 0
                index = i * n + c.index
                choice = self._choice(req, index, prompts[i], c, index not in started, prompt_lps.get(i))
                started.add(index)
                if choice.text or choice.finish_reason:
                    choices.append(choice)
            if choices:
                yield sse(self._response(rid, created, req, choices,
                                         usage=usage(n_prompt, n_completion) if continuous else None))
        self.count_tokens(req.model, project, n_prompt, n_completion)
        if include_usage:
            yield sse(self._response(rid, created, req, [], usage=usage(n_prompt, n_completion)))
        yield DONE

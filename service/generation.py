"""What chat and completions share: sampling parameters, context checks, logprobs, SSE framing."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import BaseModel

from service.errors import APIError, Kind, adapter_unusable, engine_dead, model_not_found
from service.protocol_chat import ResponseFormat, TopLogprob


class Admission:
    """The bound on generation requests, shared by chat and completions.

    A request counts as `pending` from admission until the engine returns its first output, and
    then as one of the engine's running requests; past `limit` together, new requests get 429."""

    def __init__(self, limit: int):
        self.limit, self.pending = limit, 0


@dataclass
class Accumulated:
    """One choice of a non-streamed request, put together from its deltas."""

    index: int
    text: str = ""
    token_ids: list = field(default_factory=list)
    logprobs: list | None = None
    finish_reason: str | None = None


class GenerationService:
    """What the chat and completions services share: admission, the engine, adapters, metrics."""

    def __init__(self, engine, resolver, admission: Admission, metrics=None):
        self.engine, self.resolver, self.admission, self.metrics = engine, resolver, admission, metrics

    async def admit(self, req):
        """Checks every generation request passes first; returns its LoRARequest (None: base model)."""
        self.engine.require_ready()
        reject_unsupported(req.unsupported())
        return await self.resolver.resolve(req.model)

    async def open(self, outputs: AsyncIterator, lora=None) -> AsyncIterator:
        """Submit a request and wait for its first output; the outputs, timed, from there on.

        Waiting here means errors at submission are answered as errors, not in a stream, and
        that the request is in the engine (and counted there) before its response starts."""
        if self.engine.in_flight >= self.admission.limit:
            raise APIError(Kind.RATE_LIMITED, f"The server is at its limit of {self.admission.limit} concurrent "
                           "generation requests; retry shortly.", code="too_many_requests",
                           headers={"Retry-After": "1"})
        # `anext` runs the engine request's generator up to its first await, which counts it in
        # `in_flight`: no other request can pass the check above in between
        self.admission.pending += 1
        started = time.perf_counter()
        try:
            first = await anext(outputs)
        except APIError:
            raise
        except Exception as e:  # the engine refused the request
            error = self._submission_error(e, lora)
            if error is None:
                raise
            raise error from e
        finally:
            self.admission.pending -= 1
        if self.metrics is not None:
            self.metrics.ttft.observe(time.perf_counter() - started)
        return self._timed(first, outputs, started)

    def _submission_error(self, e: Exception, lora) -> APIError | None:
        """What a client should be told when the engine refuses its request; None: a server bug."""
        if self.engine.dead:
            return engine_dead()
        if lora is not None:  # most often an adapter deleted or damaged while being loaded
            name = lora.lora_name
            return model_not_found(name) if not self.resolver.store.exists(name) else adapter_unusable(name, str(e))
        return None

    async def _timed(self, first, outputs: AsyncIterator, started: float) -> AsyncIterator:
        last = time.perf_counter()
        yield first
        async for output in outputs:
            now_ = time.perf_counter()
            produced = sum(len(c.token_ids) for c in _choices(output)) or 1
            if self.metrics is not None:
                self.metrics.itl.observe((now_ - last) / produced)
            last = now_
            yield output
        if self.metrics is not None:
            self.metrics.e2e.observe(last - started)

    @staticmethod
    async def accumulate(outputs: AsyncIterator, key=lambda item: (0, item)) -> dict[tuple[int, int], Accumulated]:
        """Deltas -> whole choices, keyed by (prompt index, choice index)."""
        done: dict[tuple[int, int], Accumulated] = {}
        async for item in outputs:
            prompt_index, output = key(item)
            for c in output.outputs:
                acc = done.setdefault((prompt_index, c.index), Accumulated(c.index))
                acc.text += c.text
                acc.token_ids += list(c.token_ids)
                if c.logprobs is not None:
                    acc.logprobs = (acc.logprobs or []) + list(c.logprobs)
                acc.finish_reason = c.finish_reason or acc.finish_reason
        return done

    def count_tokens(self, model: str, prompt: int, completion: int) -> None:
        if self.metrics is not None:
            self.metrics.tokens(model, prompt, completion)


def _choices(output):
    """The completions of a RequestOutput, or of an (index, RequestOutput) pair from a merged stream."""
    return output[1].outputs if isinstance(output, tuple) else output.outputs


def request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def reject_unsupported(field: str | None) -> None:
    if field is not None:
        raise APIError(Kind.INVALID_REQUEST, f"'{field}' is not supported yet.", param=field,
                       code="unsupported_parameter")


def max_new_tokens(prompt_len: int, requested: int | None, max_model_len: int, param: str = "messages") -> int:
    """Tokens the completion may use; 400 when the prompt (plus what was asked for) does not fit."""
    if prompt_len >= max_model_len:
        raise APIError(Kind.INVALID_REQUEST, f"This model's maximum context length is {max_model_len} tokens. "
                       f"However, your {param} resulted in {prompt_len} tokens.", param=param,
                       code="context_length_exceeded")
    room = max_model_len - prompt_len
    if requested is None:
        return room
    if requested > room:
        raise APIError(Kind.INVALID_REQUEST, f"This model's maximum context length is {max_model_len} tokens. "
                       f"However, you requested {prompt_len + requested} tokens ({prompt_len} in the {param}, "
                       f"{requested} for the completion).", param="max_tokens", code="context_length_exceeded")
    return requested


def sampling_params(req, max_tokens: int, logprobs: int | None, response_format: ResponseFormat | None = None):
    from vllm import SamplingParams
    from vllm.exceptions import VLLMClientError
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    structured = None
    if response_format is not None and response_format.type == "json_object":
        structured = StructuredOutputsParams(json_object=True)
    elif response_format is not None and response_format.type == "json_schema":
        schema = response_format.json_schema.schema_ or {"type": "object"}
        structured = StructuredOutputsParams(json=schema)
    stop = [req.stop] if isinstance(req.stop, str) else req.stop
    try:
        return SamplingParams(
            n=req.n or 1,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            seed=req.seed,
            stop=stop,
            max_tokens=max_tokens,
            logprobs=logprobs,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA,  # also when not streaming: token timings for the metrics
        )
    except (VLLMClientError, ValueError) as e:  # vLLM's own request checks, e.g. n > 1 with greedy sampling
        raise APIError(Kind.INVALID_REQUEST, str(e), param=getattr(e, "parameter", None),
                       code="invalid_sampling_parameters") from None


def finish_reason(reason: str | None) -> str | None:
    return reason if reason in ("stop", "length") else None


def top_logprobs(position: dict, n: int) -> list[TopLogprob]:
    """The n most likely tokens at one position (vLLM adds the sampled token; rank orders them)."""
    ranked = sorted(position.items(), key=lambda kv: kv[1].rank)[:n]
    return [TopLogprob(token=lp.decoded_token or "", logprob=max(lp.logprob, -9999.0),
                       bytes=list((lp.decoded_token or "").encode())) for _, lp in ranked]


def sse(obj: BaseModel | str) -> str:
    data = obj if isinstance(obj, str) else obj.model_dump_json(exclude_unset=False)
    return f"data: {data}\n\n"


DONE = "data: [DONE]\n\n"

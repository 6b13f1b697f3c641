"""What chat and completions share: sampling parameters, context checks, logprobs, SSE framing."""

from __future__ import annotations

import json
import time
import uuid

from pydantic import BaseModel

from service.errors import APIError, Kind
from service.protocol_chat import ResponseFormat, TopLogprob


class GenerationService:
    """What the chat and completions services share: the engine, the adapter resolver, metrics."""

    def __init__(self, engine, resolver, metrics=None):
        self.engine, self.resolver, self.metrics = engine, resolver, metrics

    async def admit(self, req):
        """Checks every generation request passes first; returns its LoRARequest (None: base model)."""
        self.engine.require_ready()
        reject_unsupported(req.unsupported())
        return await self.resolver.resolve(req.model)

    def count_tokens(self, model: str, prompt: int, completion: int) -> None:
        if self.metrics is not None:
            self.metrics.tokens(model, prompt, completion)


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


def sampling_params(req, max_tokens: int, logprobs: int | None, stream: bool,
                    response_format: ResponseFormat | None = None):
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
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
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


def sse_error(err: APIError) -> str:
    from service.errors import envelope

    return f"data: {json.dumps(envelope(err.kind, err.message, err.param, err.code))}\n\n"


DONE = "data: [DONE]\n\n"

"""What chat and completions share: sampling parameters, context checks, logprobs, SSE framing."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from service.errors import APIError, Kind, adapter_unusable, engine_dead, envelope, model_not_found
from service.inference.protocol import PromptLogprob, ResponseFormat, StructuredOutputs, TopLogprob, Usage

log = logging.getLogger("ftserve.generation")


class Admission:
    """The bounds on generation requests, shared by chat and completions.

    A request counts as `pending` from admission until the engine returns its first output, and
    then as one of the engine's running requests; past `limit` together, new requests get 429. Each
    project may have `per_project` requests in flight at once (from admission to their last token)."""

    def __init__(self, limit: int, per_project: int, shared=None):
        """`shared`: the slots servers sharing a database count a project's requests in (slots.SharedSlots);
        None: this server alone counts them, in memory."""
        self.limit, self.pending, self.per_project, self.shared = limit, 0, per_project, shared
        self.in_flight: collections.Counter[str] = collections.Counter()

    async def enter(self, project: str) -> Callable[[], None]:
        """Take one of the project's slots; returns what gives it back (once, however often it is called)."""
        slot = None
        if self.in_flight[project] < self.per_project and self.shared is not None:
            slot = await self.shared.take(project, self.per_project)
        if self.in_flight[project] >= self.per_project or (self.shared is not None and slot is None):
            raise APIError(Kind.RATE_LIMITED, f"Your project is at its limit of {self.per_project} concurrent "
                           "generation requests; retry shortly.", code="project_rate_limit_exceeded",
                           headers={"Retry-After": "1"})
        self.in_flight[project] += 1
        given_back = False

        def leave() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self.in_flight[project] -= 1
                if self.in_flight[project] <= 0:
                    del self.in_flight[project]
                if slot is not None:
                    self.shared.give_back(slot)
        return leave


@dataclass
class Accumulated:
    """One choice of a non-streamed request, put together from its deltas."""

    index: int
    text: str = ""
    token_ids: list = field(default_factory=list)
    logprobs: list | None = None
    finish_reason: str | None = None
    prompt_logprobs: list | None = None  # vLLM's, of the prompt this choice continues


class GenerationService:
    """What the chat and completions services share: admission, the engine, adapters, metrics."""

    def __init__(self, engine, resolver, admission: Admission, metrics=None):
        self.engine, self.resolver, self.admission, self.metrics = engine, resolver, admission, metrics

    async def admit(self, req, project: str):
        """Checks every generation request passes first; returns its LoRARequest (None: base model)."""
        self.engine.require_ready()
        reject_unsupported(req.unsupported())
        return await self.resolver.resolve(req.model, project)

    def check_prompt(self, ids: list[int], param: str) -> None:
        """400 for a prompt the engine would refuse (empty) or crash on (token ids out of range)."""
        if not ids:
            raise APIError(Kind.INVALID_REQUEST, f"The {param} is empty: it has no tokens to start from.",
                           param=param, code="empty_prompt")
        vocab = self.engine.vocab_size
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise APIError(Kind.INVALID_REQUEST, f"Token id {bad} in the {param} is out of range: the model's "
                           f"vocabulary has ids 0 to {vocab - 1}.", param=param, code="invalid_token_id")

    async def open(self, outputs: AsyncIterator, project: str, lora=None, param: str = "messages",
                   offline: bool = False) -> AsyncIterator:
        """Submit a request and wait for its first output; the outputs, timed, from there on.

        Waiting here means errors at submission are answered as errors, not in a stream, and
        that the request is in the engine (and counted there) before its response starts.
        `offline` work (batch lines) has waited for room in the OfflineLane instead of being admitted."""
        model = self.resolver.settings.base_model_name if lora is None else lora.lora_name
        if offline:
            outputs = await self._offline(outputs, lora, param)
            if self.metrics is not None:
                self.metrics.model_request(model)
            return outputs
        self._check_room()
        leave = await self.admission.enter(project)
        if self.admission.shared is not None:  # the shared slot was taken in a thread: check again, no await after
            try:
                self._check_room()
            except APIError:
                leave()
                raise
        # `anext` runs the engine request's generator up to its first await, which counts it in
        # `in_flight`: no other request can pass the check above in between
        self.admission.pending += 1
        started = time.perf_counter()
        try:
            first = await self._first(outputs, lora, param)
        except BaseException:  # refused, or the client went away: the project's slot is free again
            leave()
            raise
        finally:
            self.admission.pending -= 1
        if self.metrics is not None:
            self.metrics.ttft.observe(time.perf_counter() - started)
            self.metrics.project_request(project)
            self.metrics.model_request(model)
        timed = self._timed(first, outputs, started, leave, model)
        weakref.finalize(timed, leave)  # a response dropped before it was read gives its slot back too
        return timed

    def _check_room(self) -> None:
        if self.engine.interactive >= self.admission.limit:
            raise APIError(Kind.RATE_LIMITED, f"The server is at its limit of {self.admission.limit} concurrent "
                           "generation requests; retry shortly.", code="too_many_requests",
                           headers={"Retry-After": "1"})

    async def _offline(self, outputs: AsyncIterator, lora, param: str) -> AsyncIterator:
        """An offline request's outputs: its one final output (RequestOutputKind.FINAL_ONLY), untimed."""
        first = await self._first(outputs, lora, param)

        async def rest() -> AsyncIterator:
            try:
                yield first
                async for output in outputs:
                    yield output
            finally:  # stopped early (a cancelled batch): the engine request is aborted now
                await outputs.aclose()
        return rest()

    async def _first(self, outputs: AsyncIterator, lora, param: str):
        try:
            return await anext(outputs)
        except APIError:
            raise
        except Exception as e:  # the engine refused the request
            error = self._submission_error(e, lora, param)
            if error is None:
                raise
            raise error from e

    def _submission_error(self, e: Exception, lora, param: str) -> APIError | None:
        """What a client should be told when the engine refuses its request; None: a server bug."""
        from vllm.exceptions import VLLMValidationError

        if self.engine.dead:
            return engine_dead()
        if isinstance(e, VLLMValidationError):  # the request itself, as vLLM's input checks found it
            return APIError(Kind.INVALID_REQUEST, str(e), param=e.parameter or param, code="invalid_request")
        if lora is not None:  # most often an adapter deleted or damaged while being loaded
            name = lora.lora_name
            return model_not_found(name) if not self.resolver.store.exists(name) else adapter_unusable(name, str(e))
        return None

    async def _timed(self, first, outputs: AsyncIterator, started: float, leave: Callable[[], None],
                     model: str) -> AsyncIterator:
        """The outputs, timed; the project's slot is given back when they end, however they end (the
        caller closes this generator: `guarded` for streams, `accumulate` otherwise)."""
        try:
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
                self.metrics.model_done(model, last - started)
        finally:
            leave()

    @staticmethod
    async def accumulate(outputs: AsyncIterator, key=lambda item: (0, item)) -> dict[tuple[int, int], Accumulated]:
        """Deltas -> whole choices, keyed by (prompt index, choice index)."""
        done: dict[tuple[int, int], Accumulated] = {}
        prompt_lps: dict[int, list] = {}
        async with contextlib.aclosing(outputs):  # closed (its engine request aborted) however this ends
            async for item in outputs:
                prompt_index, output = key(item)
                if output.prompt_logprobs is not None:  # sent once per prompt, with its first output
                    prompt_lps.setdefault(prompt_index, output.prompt_logprobs)
                for c in output.outputs:
                    acc = done.setdefault((prompt_index, c.index), Accumulated(c.index))
                    acc.text += c.text
                    acc.token_ids += list(c.token_ids)
                    if c.logprobs is not None:
                        acc.logprobs = (acc.logprobs or []) + list(c.logprobs)
                    acc.finish_reason = c.finish_reason or acc.finish_reason
        for (prompt_index, _), acc in done.items():
            acc.prompt_logprobs = prompt_lps.get(prompt_index)
        return done

    def count_tokens(self, model: str, project: str, prompt: int, completion: int) -> None:
        if self.metrics is not None:
            self.metrics.tokens(model, project, prompt, completion)


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


def sampling_params(req, max_tokens: int, logprobs: int | None, response_format: ResponseFormat | None = None,
                    prompt_logprobs: int | None = None, structured=None, offline: bool = False):
    """OpenAI's sampling fields and vLLM's extensions -> vLLM SamplingParams (400 for what vLLM refuses).
    `structured`: a constraint that replaces response_format's and structured_outputs' (tool calls).
    `offline`: nobody reads the tokens as they come, so the engine sends only the finished output."""
    from vllm import SamplingParams
    from vllm.exceptions import VLLMClientError
    from vllm.sampling_params import RequestOutputKind

    temperature = 1.0 if req.temperature is None else req.temperature
    top_k = req.top_k
    n = req.n or 1
    if temperature == 0 and n > 1:
        # vLLM refuses n > 1 with greedy sampling; OpenAI answers n identical choices. Sampling
        # from the single most likely token is greedy decoding by another name.
        temperature, top_k = 1.0, 1
    extensions = {k: v for k, v in dict(
        top_k=top_k, min_p=req.min_p, repetition_penalty=req.repetition_penalty, min_tokens=req.min_tokens,
        ignore_eos=req.ignore_eos, stop_token_ids=req.stop_token_ids,
        include_stop_str_in_output=req.include_stop_str_in_output, skip_special_tokens=req.skip_special_tokens,
        spaces_between_special_tokens=req.spaces_between_special_tokens,
    ).items() if v is not None}
    if prompt_logprobs is None:
        prompt_logprobs = req.prompt_logprobs
    stop = [req.stop] if isinstance(req.stop, str) else req.stop
    try:
        return SamplingParams(
            n=n,
            temperature=temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            seed=req.seed,
            stop=stop,
            max_tokens=max_tokens,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            logit_bias={int(k): v for k, v in req.logit_bias.items()} if req.logit_bias else None,
            structured_outputs=structured or _structured(response_format, req.structured_outputs),
            # also when not streaming: token timings for the metrics
            output_kind=RequestOutputKind.FINAL_ONLY if offline else RequestOutputKind.DELTA,
            **extensions,
        )
    except (VLLMClientError, ValueError) as e:  # vLLM's own request checks
        raise APIError(Kind.INVALID_REQUEST, str(e), param=getattr(e, "parameter", None),
                       code="invalid_sampling_parameters") from None


def _structured(response_format: ResponseFormat | None, structured: StructuredOutputs | None):
    """OpenAI's `response_format` or vLLM's `structured_outputs` -> StructuredOutputsParams."""
    from vllm.sampling_params import StructuredOutputsParams

    if response_format is not None and structured is not None and response_format.type != "text":
        raise APIError(Kind.INVALID_REQUEST, "Give either 'response_format' or 'structured_outputs', not both.",
                       param="structured_outputs")
    if structured is not None:
        return StructuredOutputsParams(json=structured.json_, regex=structured.regex, choice=structured.choice,
                                       grammar=structured.grammar, json_object=structured.json_object)
    if response_format is not None and response_format.type == "json_object":
        return StructuredOutputsParams(json_object=True)
    if response_format is not None and response_format.type == "json_schema":
        return StructuredOutputsParams(json=response_format.json_schema.schema_ or {"type": "object"})
    return None


def finish_reason(reason: str | None) -> str | None:
    return reason if reason in ("stop", "length") else None


def clamped(logprob: float) -> float:
    """A logprob JSON can carry: -inf (an impossible token) becomes -9999."""
    return max(logprob, -9999.0)


def stream_usage(req) -> tuple[bool, bool]:
    """(a final usage chunk, usage in every chunk) as the request's stream_options ask."""
    options = req.stream_options
    include = bool(options and options.include_usage)
    return include, include and options.continuous_usage_stats


def top_logprobs(position: dict, n: int) -> list[TopLogprob]:
    """The n most likely tokens at one position (vLLM adds the sampled token; rank orders them)."""
    ranked = sorted(position.items(), key=lambda kv: kv[1].rank)[:n]
    return [TopLogprob(token=lp.decoded_token or "", logprob=clamped(lp.logprob),
                       bytes=list((lp.decoded_token or "").encode())) for _, lp in ranked]


async def guarded(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """An SSE stream that ends well whatever happens: an error after the response has started is
    sent as one `data: {"error": {...}}` event followed by `data: [DONE]`, as vLLM's server does."""
    try:
        async for chunk in chunks:
            yield chunk
    except Exception as e:  # noqa: BLE001 - every failure must reach the client as an event
        err = stream_error(e)
        yield sse(json.dumps(envelope(err.kind, err.message, err.param, err.code)))
        yield DONE


def stream_error(e: Exception) -> APIError:
    """What a client is told of a failure after its stream started (an unexpected one is logged)."""
    if isinstance(e, APIError):
        return e
    if engine_is_dead(e):
        return engine_dead()
    log.exception("error during a stream")
    return APIError(Kind.INTERNAL, f"The server had an error while streaming the response: {e}")


def engine_is_dead(e: Exception) -> bool:
    from vllm.v1.engine.exceptions import EngineDeadError

    return isinstance(e, EngineDeadError)


def usage(prompt: int, completion: int) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def prompt_logprobs(positions: list | None) -> list[dict[str, PromptLogprob] | None] | None:
    """vLLM's prompt logprobs as its server sends them: {token id: logprob} per prompt token."""
    if positions is None:
        return None
    return [None if position is None else {
        str(token_id): PromptLogprob(logprob=clamped(lp.logprob), rank=lp.rank, decoded_token=lp.decoded_token)
        for token_id, lp in position.items()} for position in positions]


def service_tier(requested: str | None) -> str:
    """The tier the request was served with: ftserve has one, reported as OpenAI names it."""
    return {None: "default", "auto": "default", "fast": "priority"}.get(requested, requested)


def sse(obj: BaseModel | str) -> str:
    data = obj if isinstance(obj, str) else obj.model_dump_json(exclude_unset=False)
    return f"data: {data}\n\n"


DONE = "data: [DONE]\n\n"

"""OpenAI wire objects for /v1/chat/completions and /v1/completions, one class per object.

OpenAI request fields that ftserve does not support yet are declared (so the error can name
them) and rejected when set: a request is never answered as if they had been honoured.

Why it is long: one pydantic class per wire object of two endpoints (requests, responses, chunks, tools,
logprobs), in the order of the official spec, so that each can be read beside it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from service.protocol import Sparse, Strict
from trainer.data.tools import ToolDefinition as ChatTool  # one class for a tool, trained and served: same rendering

# Official request fields ftserve cannot honour yet: declared, so that the error can name them,
# and answered 400 when set (a request is never answered as if they had been honoured).
UNSUPPORTED_CHAT_FIELDS = ("audio", "function_call", "functions", "prediction", "reasoning_effort",
                           "web_search_options")
UNSUPPORTED_COMPLETION_FIELDS = ("suffix",)


# ---------------------------------------------------------------------------------- requests
class TextPart(Strict):
    type: Literal["text"]
    text: str


class CalledFunction(Strict):
    name: Annotated[str, Field(min_length=1)]
    arguments: str
    """The arguments as JSON text, as the model wrote them."""


class ToolCallIn(Strict):
    """A tool call of an earlier assistant message, sent back in `messages`."""

    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


# apply_chat_template's own arguments and the variables the server gives the template
TEMPLATE_ARGUMENTS = frozenset({"conversation", "messages", "tools", "documents", "chat_template",
                                "add_generation_prompt", "continue_final_message", "tokenize", "padding",
                                "truncation", "max_length", "return_tensors", "return_dict",
                                "return_assistant_tokens_mask", "tokenizer_kwargs"})


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    """An assistant message's reasoning, as a reasoning model returned it (vLLM's and DeepSeek's field);
    rendered where the model's chat template shows reasoning."""

    @model_validator(mode="after")
    def _tool_fields(self) -> ChatMessage:
        if self.reasoning_content is not None and self.role != "assistant":
            raise ValueError("'reasoning_content' is only allowed on assistant messages")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs 'tool_call_id', the id of the call it answers")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("'tool_calls' is only allowed on assistant messages")
        return self

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for part in value:
                if isinstance(part, dict) and part.get("type") not in (None, "text"):
                    raise ValueError(f"content parts of type '{part.get('type')}' are not supported; "
                                     "only 'text' is")
        return value

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class FunctionName(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: FunctionName


class StreamOptions(Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None
    # vLLM extension
    continuous_usage_stats: bool = False
    """With include_usage: every chunk carries the usage so far (vLLM's extension)."""


class JSONSchema(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs a 'json_schema' object")
        return self


class StructuredOutputs(Strict):
    """vLLM's `structured_outputs`: constrain the output to exactly one of these."""

    json_: dict[str, Any] | str | None = Field(default=None, alias="json")
    regex: str | None = None
    choice: Annotated[list[str], Field(min_length=1)] | None = None
    grammar: str | None = None
    json_object: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StructuredOutputs:
        given = [k for k in ("json_", "regex", "choice", "grammar", "json_object") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("structured_outputs takes exactly one of json, regex, choice, grammar, json_object")
        return self


Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
Stop = str | Annotated[list[str], Field(max_length=4)] | None
LogitBias = dict[Annotated[str, Field(pattern=r"^[0-9]+$")], Annotated[float, Field(ge=-100, le=100)]]


class SamplingExtensions(Strict):
    """vLLM's extensions to OpenAI's sampling fields, with vLLM's names and meaning."""

    top_k: Annotated[int, Field(ge=-1)] | None = None
    """Sample from the k most likely tokens only (0 or -1: all)."""
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    """Drop tokens less likely than min_p times the most likely one."""
    repetition_penalty: Annotated[float, Field(gt=0, le=2)] | None = None
    """Multiplicative penalty on tokens already in the prompt or output (1: none)."""
    length_penalty: float | None = None
    """Beam search only in vLLM; ftserve does not offer beam search, so only 1.0 is accepted."""
    min_tokens: Annotated[int, Field(ge=0)] | None = None
    """Generate at least this many tokens before EOS or a stop token may end the output."""
    ignore_eos: bool | None = None
    """Keep generating past the EOS token (benchmarks use this for fixed output lengths)."""
    stop_token_ids: list[Annotated[int, Field(ge=0)]] | None = None
    """Token ids that end the output, besides EOS."""
    include_stop_str_in_output: bool | None = None
    """Keep the matched stop string in the output."""
    skip_special_tokens: bool | None = None
    """Leave special tokens out of the text (default true)."""
    spaces_between_special_tokens: bool | None = None
    """Put spaces between special tokens in the text (default true)."""
    prompt_logprobs: Annotated[int, Field(ge=-1, le=20)] | None = None
    """Logprobs of each prompt token, with this many alternatives (-1: all); returned as `prompt_logprobs`."""
    structured_outputs: StructuredOutputs | None = None
    """Constrain the output to a JSON schema, regex, choice list or grammar."""

    @field_validator("length_penalty")
    @classmethod
    def _no_beam_search(cls, value: float | None) -> float | None:
        if value is not None and value != 1.0:
            raise ValueError("length_penalty applies to beam search, which is not offered; only 1.0 is accepted")
        return value


class ChatCompletionRequest(SamplingExtensions):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    model: str
    frequency_penalty: Penalty | None = 0.0
    logit_bias: LogitBias | None = None
    logprobs: bool | None = False
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    metadata: dict[str, str] | None = None
    modalities: list[Literal["text"]] | None = None
    moderation: Any = None
    n: Annotated[int, Field(ge=1, le=128)] | None = 1
    presence_penalty: Penalty | None = 0.0
    prompt_cache_key: str | None = None
    prompt_cache_options: Any = None
    prompt_cache_retention: Literal["in-memory", "in_memory", "24h"] | None = None
    response_format: ResponseFormat | None = None
    safety_identifier: str | None = None
    seed: int | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    stop: Stop = None
    store: bool | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = 1.0
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    top_p: TopP | None = 1.0
    user: str | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    tools: Annotated[list[ChatTool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    """vLLM's extension: more variables for the chat template, e.g. `{"enable_thinking": false}` for a Qwen3-style
    reasoning model (its reasoning section left empty, and nothing read out as reasoning)."""
    # declared so that the error can name them; rejected when set
    audio: Any = None
    function_call: Any = None
    functions: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None

    def unsupported(self) -> str | None:
        """The first unsupported field that is set, if any."""
        return next((f for f in UNSUPPORTED_CHAT_FIELDS if getattr(self, f) is not None), None)

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("'top_logprobs' requires 'logprobs' to be true")
        if self.stream_options is not None and not self.stream:
            raise ValueError("'stream_options' is only allowed when 'stream' is true")
        return self

    @field_validator("messages")
    @classmethod
    def _tool_results_answer_calls(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        calls: set[str] = set()
        for i, m in enumerate(messages):
            calls |= {c.id for c in m.tool_calls or []}
            if m.role == "tool" and m.tool_call_id not in calls:
                raise ValueError(f"messages[{i}] has role 'tool', but its tool_call_id '{m.tool_call_id}' answers "
                                 "no 'tool_calls' of an earlier assistant message")
        return messages

    @field_validator("chat_template_kwargs")
    @classmethod
    def _template_variables(cls, kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
        taken = sorted(set(kwargs or {}) & TEMPLATE_ARGUMENTS)
        if taken:
            raise ValueError(f"{taken} are set by the server, not by chat_template_kwargs")
        return kwargs

    @field_validator("tool_choice")
    @classmethod
    def _choice_of_the_tools(cls, choice, info):
        tools = info.data.get("tools")
        if choice not in (None, "none") and not tools:
            raise ValueError("'tool_choice' is only allowed when 'tools' are given")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in [t.function.name for t in tools]:
            raise ValueError(f"it names '{choice.function.name}', which is not one of the tools "
                             f"{[t.function.name for t in tools]}")
        return choice


class CompletionRequest(SamplingExtensions):
    model: str
    prompt: str | Annotated[list[str], Field(min_length=1)] | Annotated[list[int], Field(min_length=1)] | \
        Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1)]
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None
    echo: bool | None = False
    frequency_penalty: Penalty | None = 0.0
    logit_bias: LogitBias | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = 16
    n: Annotated[int, Field(ge=1, le=128)] | None = 1
    presence_penalty: Penalty | None = 0.0
    seed: int | None = None
    stop: Stop = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = 1.0
    top_p: TopP | None = 1.0
    user: str | None = None
    # declared so that the error can name it; rejected when set
    suffix: Any = None

    def unsupported(self) -> str | None:
        return next((f for f in UNSUPPORTED_COMPLETION_FIELDS if getattr(self, f) is not None), None)

    @model_validator(mode="after")
    def _consistent(self) -> CompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("'max_tokens' may be 0 only with 'echo' (to score the prompt)")
        if self.stream_options is not None and not self.stream:
            raise ValueError("'stream_options' is only allowed when 'stream' is true")
        return self


# ---------------------------------------------------------------------------------- responses
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class PromptLogprob(BaseModel):
    """vLLM's shape of one alternative at a prompt position."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(BaseModel):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ChatCompletionMessageToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None  # null when the message is tool calls alone
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = Field(default=None, exclude_if=lambda v: v is None)
    reasoning_content: str | None = Field(default=None, exclude_if=lambda v: v is None)
    """A reasoning model's reasoning section (vLLM's reasoning parser), apart from its answer in `content`."""


FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None


class ChatCompletion(Sparse):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    metadata: dict[str, str] | None = None
    choices: list[ChatCompletionChoice]
    usage: Usage
    service_tier: str | None = None
    system_fingerprint: str | None = None
    # vLLM extension
    prompt_logprobs: list[dict[str, PromptLogprob] | None] | None = None
    """With `prompt_logprobs`: per prompt token, {token id: logprob} (the first is null)."""


class ChoiceDeltaFunction(Sparse):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(Sparse):
    """A piece of a streamed tool call: `id`, `type` and `function.name` in its first chunk, then
    `function.arguments` in pieces; `index` says which call of the message it belongs to."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChoiceDeltaFunction | None = None


class ChoiceDelta(Sparse):
    role: Literal["assistant"] | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None
    reasoning_content: str | None = None


class ChatCompletionChunkChoice(BaseModel):
    index: int
    delta: ChoiceDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(Sparse):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionChunkChoice]
    usage: Usage | None = None
    service_tier: str | None = None
    system_fingerprint: str | None = None


class CompletionLogprobs(BaseModel):
    text_offset: list[int] = []
    token_logprobs: list[float | None] = []
    tokens: list[str] = []
    top_logprobs: list[dict[str, float] | None] = []


class CompletionChoice(BaseModel):
    finish_reason: Literal["stop", "length", "content_filter"] | None
    index: int
    logprobs: CompletionLogprobs | None = None
    text: str
    # vLLM extension
    prompt_logprobs: list[dict[str, PromptLogprob] | None] | None = Field(default=None, exclude_if=lambda v: v is None)


class Completion(Sparse):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None

"""OpenAI wire objects for /v1/responses, one class per object: the request and its input items, the
response and its output items, the stream's events.

Items a client sends back (an earlier response's output, as agent frameworks replay it) carry the
fields the server gave them (`id`, `status`, `annotations`, ...): every item class accepts its own
output shape. Official fields ftserve cannot honour are declared, so the error can name them, and
answered 400 when set.

Why it is long: one pydantic class per wire object (request, items, content parts, tools, the response,
and eleven stream events), in the order of the official spec, so that each can be read beside it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from service.inference.protocol import SamplingExtensions, Temperature, TopP
from service.protocol import Strict

# Official request fields ftserve cannot honour: declared so that the error can name them, 400 when set.
UNSUPPORTED_FIELDS = ("conversation", "prompt", "context_management")
INPUT_ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")
ItemStatus = Literal["in_progress", "completed", "incomplete"]


# ---------------------------------------------------------------------------------- input items
class InputText(Strict):
    type: Literal["input_text"]
    text: str
    prompt_cache_breakpoint: Any = None


class OutputText(Strict):
    """Text the model wrote, sent back as part of an assistant message."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(Strict):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[InputText | OutputText | Refusal, Field(discriminator="type")]
TEXT_PART_TYPES = ("input_text", "output_text", "refusal")


class MessageItem(Strict):
    """A message: from the user, system or developer, or an assistant message of earlier turns."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: ItemStatus | None = None
    phase: Any = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for part in value:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in TEXT_PART_TYPES:
                    raise ValueError(f"content parts of type '{kind}' are not supported: this server's models "
                                     f"read text ({', '.join(TEXT_PART_TYPES)})")
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.refusal if isinstance(p, Refusal) else p.text for p in self.content)


class FunctionCallItem(Strict):
    """A call the model made (an earlier response's output item, sent back)."""

    type: Literal["function_call"]
    call_id: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    arguments: str
    id: str | None = None
    status: ItemStatus | None = None
    namespace: str | None = None
    caller: Any = None


class FunctionCallOutputItem(Strict):
    """The result of a function call, for the model to read."""

    type: Literal["function_call_output"]
    call_id: Annotated[str, Field(min_length=1, max_length=64)]
    output: str | list[InputText]
    id: str | None = None
    status: ItemStatus | None = None
    name: str | None = None
    namespace: str | None = None
    caller: Any = None

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


class ReasoningSummary(Strict):
    type: Literal["summary_text", "reasoning_text"]
    text: str


class ReasoningInputItem(Strict):
    """An earlier response's reasoning item, sent back: kept in the conversation, not shown to the model."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[ReasoningSummary] = []
    content: list[ReasoningSummary] | None = None
    encrypted_content: str | None = None
    status: ItemStatus | None = None


def _item_type(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("type", "message")
    return getattr(value, "type", None)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningInputItem, Tag("reasoning")],
    Discriminator(_item_type)]


# ---------------------------------------------------------------------------------- tools, text
class FunctionTool(Strict):
    type: Literal["function"]
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    """Default true (as OpenAI's Responses API): the arguments are constrained to `parameters`."""
    output_schema: Any = None
    defer_loading: bool | None = None
    allowed_callers: Any = None


class ToolChoiceFunction(Strict):
    type: Literal["function"]
    name: str


class TextFormatText(Strict):
    type: Literal["text"]


class TextFormatJsonObject(Strict):
    type: Literal["json_object"]


class TextFormatJsonSchema(Strict):
    type: Literal["json_schema"]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[TextFormatText | TextFormatJsonObject | TextFormatJsonSchema, Field(discriminator="type")]


class TextConfig(Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    mode: Any = None
    context: Literal["auto", "current_turn", "all_turns"] | None = None


class StreamOptions(Strict):
    include_obfuscation: bool | None = None


Include = Literal["file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
                  "message.input_image.image_url", "computer_call_output.output.image_url",
                  "code_interpreter_call.outputs", "reasoning.encrypted_content", "message.output_text.logprobs"]


# ---------------------------------------------------------------------------------- the request
class CreateResponse(SamplingExtensions):
    model: str
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    include: list[Include] | None = None
    metadata: Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
                        Field(max_length=16)] | None = None
    store: bool | None = True
    background: bool | None = False
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    safety_identifier: Annotated[str, Field(max_length=64)] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in-memory", "in_memory", "24h"] | None = None
    prompt_cache_options: Any = None
    moderation: Any = None
    # ftserve extension (vLLM's, as for chat)
    seed: int | None = None
    """Sample reproducibly (vLLM's extension to the Responses API)."""
    # declared so that the error can name them; rejected when set
    conversation: Any = None
    prompt: Any = None
    context_management: Any = None

    def unsupported(self) -> str | None:
        return next((f for f in UNSUPPORTED_FIELDS if getattr(self, f) is not None), None)

    @model_validator(mode="before")
    @classmethod
    def _known_items(cls, data: Any) -> Any:
        """One clear error for an item or tool type this server does not take (not pydantic's tag error)."""
        if isinstance(data, dict):
            for i, item in enumerate(data.get("input") if isinstance(data.get("input"), list) else []):
                kind = _item_type(item)
                if isinstance(item, dict) and kind not in INPUT_ITEM_TYPES:
                    raise ValueError(f"input[{i}] has type '{kind}', which this server does not take: input "
                                     f"items are {', '.join(INPUT_ITEM_TYPES)}")
            for i, tool in enumerate(data.get("tools") or []):
                if isinstance(tool, dict) and tool.get("type") != "function":
                    raise ValueError(f"tools[{i}] has type '{tool.get('type')}': this server runs no built-in "
                                     "tools; only 'function' tools are supported")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> CreateResponse:
        if self.stream_options is not None and not self.stream:
            raise ValueError("'stream_options' is only allowed when 'stream' is true")
        if self.background and self.store is False:
            raise ValueError("'background' needs 'store': a background response is read back with GET")
        if isinstance(self.tool_choice, ToolChoiceFunction):
            names = [t.name for t in self.tools or []]
            if self.tool_choice.name not in names:
                raise ValueError(f"'tool_choice' names '{self.tool_choice.name}', which is not one of the "
                                 f"tools {names}")
        elif self.tool_choice in ("auto", "required") and not self.tools:
            raise ValueError("'tool_choice' is only allowed when 'tools' are given")
        return self


# ---------------------------------------------------------------------------------- output
class Logprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class OutputTextContent(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str = ""
    annotations: list[Any] = []
    logprobs: list[Logprob] = []


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[OutputTextContent] = []


class FunctionCall(BaseModel):
    id: str
    type: Literal["function_call"] = "function_call"
    status: ItemStatus
    call_id: str
    name: str
    arguments: str = ""


class ReasoningTextContent(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str = ""


class OutputReasoning(BaseModel):
    """A reasoning model's reasoning section (the server's reasoning parser), before its answer."""

    id: str
    type: Literal["reasoning"] = "reasoning"
    status: ItemStatus
    summary: list[ReasoningSummary] = []
    content: list[ReasoningTextContent] = []


OutputItem = Annotated[OutputMessage | FunctionCall | OutputReasoning, Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int


class ResponseError(BaseModel):
    code: Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]
    message: str


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


Status = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
ALWAYS_SENT = {"id", "object", "created_at", "error", "incomplete_details", "instructions", "model", "tools",
               "output", "parallel_tool_calls", "metadata", "tool_choice", "temperature", "top_p"}


class Response(BaseModel):
    """The response object. The spec's required fields are always sent (null where unset); the others are
    left out when unset."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Status
    background: bool | None = None
    completed_at: int | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    model: str
    output: list[OutputItem] = []
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: ReasoningConfig | None = None
    service_tier: str | None = None
    store: bool | None = None
    temperature: float | None = None
    text: TextConfig | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction = "auto"
    tools: list[FunctionTool] = []
    top_logprobs: int | None = None
    top_p: float | None = None
    truncation: Literal["auto", "disabled"] | None = None
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None

    @model_serializer(mode="wrap")
    def _required_or_set(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None or k in ALWAYS_SENT}

    @field_serializer("tools")
    def _tools_as_given(self, tools: list[FunctionTool]) -> list[dict]:
        """Each tool with the fields it was given, and the two the spec requires (`strict` as applied)."""
        return [{**t.model_dump(exclude_none=True), "parameters": t.parameters, "strict": t.strict is not False}
                for t in tools]

    def output_text(self) -> str:
        return "".join(p.text for item in self.output if isinstance(item, OutputMessage) for p in item.content)


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


# ---------------------------------------------------------------------------------- input item list
class InputTextPart(BaseModel):
    type: Literal["input_text"] = "input_text"
    text: str


class InputMessage(BaseModel):
    """A user, system or developer message as GET .../input_items lists it."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer"]
    status: ItemStatus = "completed"
    content: list[InputTextPart]


class FunctionCallOutput(BaseModel):
    id: str
    type: Literal["function_call_output"] = "function_call_output"
    status: ItemStatus = "completed"
    call_id: str
    output: str


class ReasoningItem(BaseModel):
    id: str
    type: Literal["reasoning"] = "reasoning"
    summary: list[ReasoningSummary] = []


def _role(value: Any) -> str:
    role = value.get("role") if isinstance(value, dict) else getattr(value, "role", None)
    return "assistant" if role == "assistant" else "input"


StoredItem = Annotated[
    Annotated[InputMessage, Tag("message:input")] | Annotated[OutputMessage, Tag("message:assistant")]
    | Annotated[FunctionCall, Tag("function_call")] | Annotated[FunctionCallOutput, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(lambda v: f"message:{_role(v)}" if _item_type(v) == "message" else _item_type(v))]


class ResponseItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[StoredItem]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None

    @model_serializer(mode="wrap")
    def _ids_when_any(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


# ---------------------------------------------------------------------------------- stream events
class Event(BaseModel):
    sequence_number: int = 0


class ResponseEvent(Event):
    """response.created / in_progress / completed / incomplete / failed / queued: the response as it stands."""

    type: Literal["response.created", "response.in_progress", "response.completed", "response.incomplete",
                  "response.failed", "response.queued"]
    response: Response


class OutputItemEvent(Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem


class ContentPartEvent(Event):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int
    part: OutputTextContent


class TextDeltaEvent(Event):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Logprob] = []


class ReasoningDeltaEvent(Event):
    type: Literal["response.reasoning_text.delta"] = "response.reasoning_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ReasoningDoneEvent(Event):
    type: Literal["response.reasoning_text.done"] = "response.reasoning_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str


class TextDoneEvent(Event):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Logprob] = []


class ArgumentsDeltaEvent(Event):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    item_id: str
    output_index: int
    delta: str


class ArgumentsDoneEvent(Event):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    item_id: str
    output_index: int
    name: str
    arguments: str


class ErrorEvent(Event):
    type: Literal["error"] = "error"
    code: str | None
    message: str
    param: str | None


StreamEvent = (ResponseEvent | OutputItemEvent | ContentPartEvent | TextDeltaEvent | TextDoneEvent
               | ReasoningDeltaEvent | ReasoningDoneEvent | ArgumentsDeltaEvent | ArgumentsDoneEvent | ErrorEvent)


Logprob.model_rebuild()

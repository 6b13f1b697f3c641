"""Training data: one loader for JSONL files in five formats.

Every row is validated by a strict pydantic model of its format (unknown keys are errors)
and normalised into one of three shapes the tokenizer understands:

- `Conversation`: chat messages, each assistant turn with a loss weight (0 or 1);
- `TextDocument`: raw text for continued pre-training;
- `PreferencePair`: a prompt with a preferred and a non-preferred answer (DPO).

Formats (detected per file from the first row's keys; `data_format` overrides):

| format       | row keys                                                               |
|--------------|------------------------------------------------------------------------|
| `chat`       | `messages` (OpenAI chat; `weight` 0/1 on assistant messages)           |
| `alpaca`     | `instruction`, `input`?, `output`, `system`?, `history`?               |
|              | pairwise (LLaMA-Factory): `chosen`, `rejected` instead of `output`     |
| `sharegpt`   | `conversations` (tags configurable), `system`?                         |
|              | pairwise (LLaMA-Factory): `chosen`, `rejected` turns after the prompt  |
| `preference` | `input.messages`, `preferred_output`, `non_preferred_output` (OpenAI)  |
| `text`       | `text`                                                                 |
| `plaintext`  | not JSONL: a `.txt` file, documents separated by blank lines           |

Every row of a file is one kind of example: a file mixing pairs and conversations is an error.

Errors name the line (1-based) and the field: `line 7: messages[2].role: ...`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

FORMATS = ("chat", "alpaca", "sharegpt", "preference", "text", "plaintext")
MAX_ERRORS = 20


# ---------------------------------------------------------------------------------------------
# Normalised shapes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict  # decoded from the JSON text


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    weight: int = 1  # only meaningful on assistant messages
    tool_calls: tuple[ToolCall, ...] = ()  # assistant messages that call tools
    tool_call_id: str | None = None  # tool messages: the call they answer

    def to_dict(self) -> dict:
        """The message as chat templates take it (OpenAI's shape, arguments as a mapping)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name,
                                  "arguments": c.arguments}} for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]
    tools: tuple[dict, ...] = ()  # OpenAI tool definitions ({"type": "function", "function": {...}})


@dataclass(frozen=True)
class TextDocument:
    text: str


@dataclass(frozen=True)
class PreferencePair:
    prompt: tuple[Message, ...]
    preferred: str
    non_preferred: str
    tools: tuple[dict, ...] = ()


Example = Conversation | TextDocument | PreferencePair
KINDS = {Conversation: "conversation", TextDocument: "text", PreferencePair: "preference"}


@dataclass(frozen=True)
class ShareGPTTags:
    """Key and role names of ShareGPT rows (LLaMA-Factory's `tags`)."""

    role_tag: str = "from"
    content_tag: str = "value"
    user_tag: str = "human"
    assistant_tag: str = "assistant"
    observation_tag: str = "observation"
    function_tag: str = "function_call"
    system_tag: str = "system"


@dataclass
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}" if self.field else f"line {self.line}: {self.message}"


class DataError(ValueError):
    """A training file that cannot be used; `errors` lists the rows at fault."""

    def __init__(self, path: str | Path, errors: list[RowError], total_bad: int | None = None):
        self.path = str(path)
        self.errors = errors
        self.total_bad = total_bad if total_bad is not None else len(errors)
        more = f" (and {self.total_bad - len(errors)} more)" if self.total_bad > len(errors) else ""
        super().__init__(f"{Path(path).name}: " + "; ".join(map(str, errors)) + more)

    @property
    def first(self) -> RowError:
        return self.errors[0]


@dataclass
class Dataset:
    path: str
    format: str
    examples: list[Example] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """`conversation`, `text` or `preference`: what every example of the file is."""
        return KINDS[type(self.examples[0])]


# ---------------------------------------------------------------------------------------------
# Row schemas, one per format (strict: unknown keys are errors)
# ---------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


NonEmpty = Annotated[str, Field(min_length=1)]


class _RowFailure(Exception):
    def __init__(self, error: RowError):
        self.error = error


class _FieldError(Exception):
    def __init__(self, field: str, message: str):
        self.field, self.message = field, message


class _TextPart(_Strict):
    type: Literal["text"]
    text: str


class FunctionDefinition(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """The arguments' JSON schema."""
    strict: bool | None = None
    """Served: constrain the arguments to `parameters` (always so for `required` and named tool choices)."""


class ToolDefinition(_Strict):
    """A tool, as training rows and chat requests give it (one class: it renders the same in both)."""

    type: Literal["function"]
    function: FunctionDefinition


class _CalledFunction(_Strict):
    name: NonEmpty
    arguments: str

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, arguments: str) -> str:
        try:
            value = json.loads(arguments)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        return arguments


class _ToolCallIn(_Strict):
    id: NonEmpty
    type: Literal["function"]
    function: _CalledFunction


class ChatMessage(_Strict):
    role: str
    content: str | list[_TextPart] | None = None
    name: str | None = None
    weight: Literal[0, 1] | None = None
    tool_calls: Annotated[list[_ToolCallIn], Field(min_length=1)] | None = None
    tool_call_id: NonEmpty | None = None

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role == "function":
            raise ValueError("role 'function' (the deprecated function calling) is not supported; use 'tool'")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise ValueError(f"unknown role '{role}'; expected system, developer, user, assistant or tool")
        return role

    @model_validator(mode="after")
    def _fields_fit_the_role(self) -> ChatMessage:
        if self.weight is not None and self.role != "assistant":
            raise ValueError("'weight' is only allowed on assistant messages")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("'tool_calls' is only allowed on assistant messages")
        if self.role == "tool" and self.tool_call_id is None:
            raise _missing("tool_call_id", "a tool message names the call it answers")
        if self.tool_call_id is not None and self.role != "tool":
            raise ValueError("'tool_call_id' is only allowed on tool messages")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise _missing("content", "only an assistant message with tool_calls may leave it out")
        return self

    def to_message(self) -> Message:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        role = "system" if self.role == "developer" else self.role
        calls = tuple(ToolCall(c.id, c.function.name, json.loads(c.function.arguments)) for c in self.tool_calls or [])
        return Message(role=role, content=text, weight=1 if self.weight is None else self.weight,
                       tool_calls=calls, tool_call_id=self.tool_call_id)


def _missing(field: str, why: str) -> PydanticCustomError:
    return PydanticCustomError("missing_field", "'{field}' is missing: {why}", {"field": field, "why": why})


def _check_turns(messages: list[Message]) -> None:
    if not any(m.role == "assistant" for m in messages):
        raise ValueError("no assistant message: there is nothing to learn from this row")
    if not any(m.role == "assistant" and m.weight for m in messages):
        raise ValueError("every assistant message has weight 0: there is nothing to learn from this row")


def check_tool_use(messages: list[Message], tools: list[dict], parallel: bool | None, where: str = "messages",
                   tool_names: dict[int, str] | None = None) -> None:
    """Every call names a tool of the row and is answered by a tool message before the next assistant
    turn; every tool message answers a call; one call per turn when parallel tool calls are off.
    Raises `_FieldError` naming the message (`where[i]`)."""
    names = {t["function"]["name"] for t in tools}
    open_calls: dict[str, int] = {}
    for i, m in enumerate(messages):
        if m.role == "assistant":
            if open_calls:
                i_call = min(open_calls.values())
                raise _FieldError(f"{where}[{i_call}].tool_calls", f"call '{_first(open_calls, i_call)}' has no "
                                  "tool message with its result before the next assistant message")
            if m.tool_calls and not tools:
                raise _FieldError(f"{where}[{i}].tool_calls", "the row calls tools but defines none in 'tools'")
            if parallel is False and len(m.tool_calls) > 1:
                raise _FieldError(f"{where}[{i}].tool_calls", "several calls in one turn, but "
                                  "parallel_tool_calls is false")
            for j, call in enumerate(m.tool_calls):
                if call.name not in names:
                    raise _FieldError(f"{where}[{i}].tool_calls[{j}].function.name",
                                      f"unknown tool '{call.name}'; the row's tools are {sorted(names)}")
                if call.id in open_calls:
                    raise _FieldError(f"{where}[{i}].tool_calls[{j}].id", f"duplicate call id '{call.id}'")
                open_calls[call.id] = i
        elif m.role == "tool":
            if m.tool_call_id not in open_calls:
                raise _FieldError(f"{where}[{i}].tool_call_id", f"'{m.tool_call_id}' answers no earlier call")
            del open_calls[m.tool_call_id]
    if open_calls:
        i_call = min(open_calls.values())
        raise _FieldError(f"{where}[{i_call}].tool_calls", f"call '{_first(open_calls, i_call)}' has no tool "
                          "message with its result")


def _first(open_calls: dict[str, int], index: int) -> str:
    return next(call_id for call_id, i in open_calls.items() if i == index)


class ChatRow(_Strict):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[ToolDefinition] | None = None
    parallel_tool_calls: bool | None = None
    functions: Any = None

    @field_validator("functions")
    @classmethod
    def _deprecated(cls, value: Any) -> Any:
        raise ValueError("'functions' (the deprecated function calling) is not supported; use 'tools'")

    @field_validator("messages")
    @classmethod
    def _has_assistant_turn(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        _check_turns([m.to_message() for m in messages])
        return messages

    def to_example(self) -> Conversation:
        messages = [m.to_message() for m in self.messages]
        tools = [t.model_dump(exclude_none=True) for t in self.tools or []]
        check_tool_use(messages, tools, self.parallel_tool_calls)
        return Conversation(tuple(messages), tuple(tools))


class AlpacaRow(_Strict):
    instruction: NonEmpty
    input: str = ""
    output: NonEmpty | None = None
    chosen: NonEmpty | None = None
    rejected: NonEmpty | None = None
    system: str | None = None
    history: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = []

    @model_validator(mode="after")
    def _output_or_pair(self) -> AlpacaRow:
        if self.output is None and (self.chosen is None or self.rejected is None):
            missing = "rejected" if self.chosen else "chosen" if self.rejected else "output"
            raise ValueError(f"'{missing}' is missing: give 'output', or 'chosen' and 'rejected' for a preference pair")
        if self.output is not None and (self.chosen or self.rejected):
            raise ValueError("give either 'output' or 'chosen' and 'rejected', not both")
        return self

    def to_example(self) -> Conversation | PreferencePair:
        msgs = [Message("system", self.system)] if self.system else []
        for user, assistant in self.history:
            msgs += [Message("user", user), Message("assistant", assistant, weight=0 if self.chosen else 1)]
        prompt = f"{self.instruction}\n{self.input}" if self.input else self.instruction
        msgs.append(Message("user", prompt))
        if self.chosen is not None:
            return PreferencePair(tuple(msgs), self.chosen, self.rejected)
        return Conversation(tuple(msgs + [Message("assistant", self.output)]))


class TextRow(_Strict):
    text: NonEmpty

    def to_example(self) -> TextDocument:
        return TextDocument(self.text)


class _PreferenceInput(_Strict):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[ToolDefinition] | None = None
    parallel_tool_calls: bool | None = None


class _AssistantOutput(_Strict):
    role: Literal["assistant"]
    content: NonEmpty


class PreferenceRow(_Strict):
    input: _PreferenceInput
    preferred_output: Annotated[list[_AssistantOutput], Field(min_length=1, max_length=1)]
    non_preferred_output: Annotated[list[_AssistantOutput], Field(min_length=1, max_length=1)]

    def to_example(self) -> PreferencePair:
        prompt = [m.to_message() for m in self.input.messages]
        tools = [t.model_dump(exclude_none=True) for t in self.input.tools or []]
        check_tool_use(prompt, tools, self.input.parallel_tool_calls, "input.messages")
        return PreferencePair(prompt=tuple(prompt), preferred=self.preferred_output[0].content,
                              non_preferred=self.non_preferred_output[0].content, tools=tuple(tools))


_ROW_SCHEMAS: dict[str, type[_Strict]] = {
    "chat": ChatRow,
    "alpaca": AlpacaRow,
    "text": TextRow,
    "preference": PreferenceRow,
}
_DETECT_KEYS = [
    ("messages", "chat"),
    ("conversations", "sharegpt"),
    ("instruction", "alpaca"),
    ("preferred_output", "preference"),
    ("text", "text"),
]


def detect_format(row: dict) -> str | None:
    for key, fmt in _DETECT_KEYS:
        if key in row:
            return fmt
    return None


def _sharegpt_example(row: dict, tags: ShareGPTTags) -> Conversation | PreferencePair:
    """ShareGPT rows have configurable keys, so they are checked by hand, field by field.

    Tool use as LLaMA-Factory writes it: a `tools` column (a JSON list of function schemas, or its
    text), `function_call` turns whose value is `{"name": ..., "arguments": {...}}` (or a list of
    them, for parallel calls) and `observation` turns holding the results, one per call made."""
    unknown = set(row) - {"conversations", "system", "tools", "chosen", "rejected"}
    if unknown:
        raise _FieldError(sorted(unknown)[0], "unknown key (expected conversations, system, tools, chosen, rejected)")
    tools = _sharegpt_tools(row.get("tools"))
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise _FieldError("conversations", "must be a non-empty list of turns")
    pairwise = "chosen" in row or "rejected" in row
    msgs = []
    system = row.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise _FieldError("system", "must be a string")
        msgs.append(Message("system", system))
    pending: list[ToolCall] = []  # calls of the last function_call turn that await their observation
    n_calls = 0
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        message = _sharegpt_turn(turn, where, tags, weight=0 if pairwise else 1)
        if message.role == "function_call":
            calls = _sharegpt_calls(message.content, f"{where}.{tags.content_tag}", n_calls)
            n_calls += len(calls)
            message = Message("assistant", "", weight=message.weight, tool_calls=calls)
            pending = list(calls)
        elif message.role == "observation":
            if not pending:
                raise _FieldError(f"{where}.{tags.role_tag}", f"'{tags.observation_tag}' answers no earlier "
                                  f"'{tags.function_tag}' turn")
            message = Message("tool", message.content, tool_call_id=pending.pop(0).id)
        msgs.append(message)
    try:
        check_tool_use(msgs[1:] if system is not None else msgs, tools, None, "conversations")
    except _FieldError as e:
        raise _FieldError(e.field.replace(".tool_calls", f".{tags.content_tag}").replace(
            ".tool_call_id", f".{tags.role_tag}"), e.message.replace("tool message", f"'{tags.observation_tag}'"
                                                                   " turn")) from None
    if pairwise:  # LLaMA-Factory's ranking rows: the prompt ends with a user turn; two answers follow
        if msgs[-1].role != "user":
            raise _FieldError(f"conversations[{len(turns) - 1}]", "a preference pair's prompt must end with a "
                              f"'{tags.user_tag}' turn")
        answers = [_sharegpt_turn(row.get(key), key, tags, 1) for key in ("chosen", "rejected")]
        for key, answer in zip(("chosen", "rejected"), answers):
            if answer.role != "assistant":
                raise _FieldError(f"{key}.{tags.role_tag}", f"must be '{tags.assistant_tag}'")
        return PreferencePair(tuple(msgs), answers[0].content, answers[1].content, tuple(tools))
    try:
        _check_turns(msgs)
    except ValueError as e:
        raise _FieldError("conversations", str(e)) from None
    return Conversation(tuple(msgs), tuple(tools))


def _sharegpt_turn(turn: Any, where: str, tags: ShareGPTTags, weight: int) -> Message:
    """One turn; `function_call` and `observation` turns keep those roles for the caller to resolve."""
    roles = {tags.user_tag: "user", tags.assistant_tag: "assistant", tags.system_tag: "system",
             tags.function_tag: "function_call", tags.observation_tag: "observation"}
    if not isinstance(turn, dict):
        raise _FieldError(where, "must be an object")
    extra = set(turn) - {tags.role_tag, tags.content_tag}
    if extra:
        raise _FieldError(f"{where}.{sorted(extra)[0]}", f"unknown key (expected '{tags.role_tag}' and "
                          f"'{tags.content_tag}')")
    role, content = turn.get(tags.role_tag), turn.get(tags.content_tag)
    if role is None:
        raise _FieldError(f"{where}.{tags.role_tag}", "missing")
    if role not in roles:
        raise _FieldError(f"{where}.{tags.role_tag}", f"unknown role '{role}'; expected one of {sorted(roles)}")
    if not isinstance(content, str):
        raise _FieldError(f"{where}.{tags.content_tag}", "missing or not a string")
    return Message(roles[role], content, weight)


def _sharegpt_tools(value: Any) -> list[dict]:
    """LLaMA-Factory's `tools` column (function schemas, as a list or its JSON text) as OpenAI tools."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise _FieldError("tools", f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, list):
        raise _FieldError("tools", "must be a list of function schemas")
    tools = []
    for i, schema in enumerate(value):
        if isinstance(schema, dict) and schema.get("type") == "function":  # already OpenAI's shape
            schema = schema.get("function")
        try:
            tools.append(ToolDefinition(type="function", function=FunctionDefinition.model_validate(schema))
                         .model_dump(exclude_none=True))
        except ValidationError as e:
            raise _FieldError(f"tools[{i}]" + (f".{field_path(e.errors()[0]['loc'])}" if e.errors()[0]["loc"]
                                              else ""), e.errors()[0]["msg"]) from None
    return tools


def _sharegpt_calls(value: str, where: str, first_index: int) -> tuple[ToolCall, ...]:
    """A `function_call` turn's value: one `{"name", "arguments"}` object, or a list of them."""
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as e:
        raise _FieldError(where, f"not valid JSON ({e.msg} at column {e.colno})") from None
    calls = decoded if isinstance(decoded, list) else [decoded]
    out = []
    for k, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or "arguments" not in call:
            raise _FieldError(where, 'must be {"name": ..., "arguments": {...}} or a list of them')
        arguments = call["arguments"]
        if isinstance(arguments, str):  # arguments as JSON text, as OpenAI sends them
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as e:
                raise _FieldError(where, f"arguments are not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(arguments, dict):
            raise _FieldError(where, "arguments must be a JSON object")
        out.append(ToolCall(f"call_{first_index + k}", call["name"], arguments))
    return tuple(out)


STAGE_KINDS = {"sft": "conversation", "pt": "text", "dpo": "preference"}


def check_stage(stage: str, kind: str) -> None:
    """Each stage trains on one kind of example: conversations (sft), text (pt), preference pairs (dpo)."""
    if STAGE_KINDS[stage] != kind:
        fits = {k: s for s, k in STAGE_KINDS.items()}[kind]
        raise ValueError(f"stage '{stage}' does not train on {kind} data (use stage '{fits}' for it); "
                         "sft trains on conversations, pt on text, dpo on preference pairs")


_TYPE_TAGS = {"int", "float", "str", "bool", "list", "dict", "none", "bytes"}


def field_path(loc: tuple, skip: tuple[str, ...] = ()) -> str:
    """A pydantic error location as a field path: `('messages', 1, 'role')` -> `messages[1].role`.

    Dropped: the names in `skip`, and the tags pydantic adds for union members and validators
    (`str`, `list[_TextPart]`, `function-after[...]`), which are not fields."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in skip and part.isidentifier() and part not in _TYPE_TAGS:
            path += f".{part}" if path else part
    return path


def _pydantic_errors(line: int, exc: ValidationError) -> RowError:
    # A misspelt key shows up both as "unknown key" and as "field required": name the typo.
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = field_path(err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return RowError(line, loc, msg)


def parse_row(obj: Any, fmt: str, line: int, tags: ShareGPTTags = ShareGPTTags()) -> Example:
    """Validate one decoded row of format `fmt`; raises `_RowFailure`."""
    if not isinstance(obj, dict):
        raise _RowFailure(RowError(line, "", f"expected a JSON object, got {type(obj).__name__}"))
    if fmt == "sharegpt":
        try:
            return _sharegpt_example(obj, tags)
        except _FieldError as e:
            raise _RowFailure(RowError(line, e.field, e.message)) from None
    try:
        return _ROW_SCHEMAS[fmt].model_validate(obj).to_example()
    except ValidationError as e:
        raise _RowFailure(_pydantic_errors(line, e)) from None
    except _FieldError as e:  # checks across fields (tool calls and their results)
        raise _RowFailure(RowError(line, e.field, e.message)) from None


def load_dataset(
    path: str | Path,
    data_format: str = "auto",
    tags: ShareGPTTags = ShareGPTTags(),
    max_errors: int = MAX_ERRORS,
) -> Dataset:
    """Read and validate a whole JSONL file (or a `.txt` file of plain text); raises `DataError` listing
    the bad rows."""
    if data_format != "auto" and data_format not in FORMATS:
        raise ValueError(f"data_format must be 'auto' or one of {FORMATS}, not '{data_format}'")
    path = Path(path)
    if data_format == "plaintext" or (data_format == "auto" and path.suffix.lower() == ".txt"):
        return load_plain_text(path)
    errors: list[RowError] = []
    bad = 0
    examples: list[Example] = []
    fmt = None if data_format == "auto" else data_format
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, [RowError(0, "", f"cannot read file: {e.strerror}")]) from None
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            err = RowError(lineno, "", "not valid UTF-8 text")
        except json.JSONDecodeError as e:
            err = RowError(lineno, "", f"invalid JSON: {e.msg} at column {e.colno}")
        else:
            if fmt is None:
                fmt = detect_format(obj) if isinstance(obj, dict) else None
                if fmt is None:
                    keys = sorted(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
                    raise DataError(
                        path,
                        [RowError(lineno, "", f"cannot detect the data format from keys {keys}; "
                                  "expected messages, conversations, instruction, preferred_output or text")],
                    )
            try:
                example = parse_row(obj, fmt, lineno, tags)
                if examples and type(example) is not type(examples[0]):
                    raise _RowFailure(RowError(lineno, "", f"a {KINDS[type(example)]} row in a file of "
                                               f"{KINDS[type(examples[0])]} rows: one file holds one kind"))
                examples.append(example)
                continue
            except _RowFailure as f:
                err = f.error
        bad += 1
        if len(errors) < max_errors:
            errors.append(err)
    if errors:
        raise DataError(path, errors, bad)
    if not examples:
        raise DataError(path, [RowError(0, "", "the file has no rows")])
    return Dataset(str(path), fmt or data_format, examples)


def load_plain_text(path: str | Path) -> Dataset:
    """A plain-text file for continued pre-training: one document per blank-line-separated block."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise DataError(path, [RowError(0, "", f"cannot read file: {e.strerror}")]) from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError(path, [RowError(line, "", "not valid UTF-8 text")]) from None
    documents = [doc.strip() for doc in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if doc.strip()]
    if not documents:
        raise DataError(path, [RowError(0, "", "the file has no text")])
    return Dataset(str(path), "plaintext", [TextDocument(doc) for doc in documents])

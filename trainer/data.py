"""Training data: one loader for JSONL files in five formats.

Every row is validated by a strict pydantic model of its format (unknown keys are errors)
and normalised into one of three shapes the tokenizer understands:

- `Conversation`: chat messages, each assistant turn with a loss weight (0 or 1);
- `TextDocument`: raw text for continued pre-training;
- `PreferencePair`: a prompt with a preferred and a non-preferred answer (validated only;
  preference training is not implemented yet).

Formats (detected per file from the first row's keys; `data_format` overrides):

| format       | row keys                                                        |
|--------------|-----------------------------------------------------------------|
| `chat`       | `messages` (OpenAI chat; `weight` 0/1 on assistant messages)    |
| `alpaca`     | `instruction`, `input`?, `output`, `system`?, `history`?        |
| `sharegpt`   | `conversations` (tags configurable), `system`?                  |
| `preference` | `input.messages`, `preferred_output`, `non_preferred_output`    |
| `text`       | `text`                                                          |

Errors name the line (1-based) and the field: `line 7: messages[2].role: ...`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FORMATS = ("chat", "alpaca", "sharegpt", "preference", "text")
MAX_ERRORS = 20


# ---------------------------------------------------------------------------------------------
# Normalised shapes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str
    weight: int = 1  # only meaningful on assistant messages


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class TextDocument:
    text: str


@dataclass(frozen=True)
class PreferencePair:
    prompt: tuple[Message, ...]
    preferred: str
    non_preferred: str


Example = Conversation | TextDocument | PreferencePair


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


class ChatMessage(_Strict):
    role: str
    content: str | list[_TextPart]
    name: str | None = None
    weight: Literal[0, 1] | None = None

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role in ("tool", "function"):
            raise ValueError(f"role '{role}' (tool calling) is not supported yet")
        if role not in ("system", "developer", "user", "assistant"):
            raise ValueError(f"unknown role '{role}'; expected system, developer, user or assistant")
        return role

    @model_validator(mode="after")
    def _weight_on_assistant(self) -> ChatMessage:
        if self.weight is not None and self.role != "assistant":
            raise ValueError("'weight' is only allowed on assistant messages")
        return self

    def to_message(self) -> Message:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        role = "system" if self.role == "developer" else self.role
        return Message(role=role, content=text, weight=1 if self.weight is None else self.weight)


def _check_turns(messages: list[Message]) -> None:
    if not any(m.role == "assistant" for m in messages):
        raise ValueError("no assistant message: there is nothing to learn from this row")
    if not any(m.role == "assistant" and m.weight for m in messages):
        raise ValueError("every assistant message has weight 0: there is nothing to learn from this row")


class ChatRow(_Strict):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: Any = None
    functions: Any = None
    parallel_tool_calls: Any = None

    @field_validator("tools", "functions", "parallel_tool_calls")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        raise ValueError("tool-calling training data is not supported yet")

    @field_validator("messages")
    @classmethod
    def _has_assistant_turn(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        _check_turns([m.to_message() for m in messages])
        return messages

    def to_example(self) -> Conversation:
        return Conversation(tuple(m.to_message() for m in self.messages))


class AlpacaRow(_Strict):
    instruction: NonEmpty
    input: str = ""
    output: NonEmpty
    system: str | None = None
    history: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = []

    def to_example(self) -> Conversation:
        msgs = [Message("system", self.system)] if self.system else []
        for user, assistant in self.history:
            msgs += [Message("user", user), Message("assistant", assistant)]
        prompt = f"{self.instruction}\n{self.input}" if self.input else self.instruction
        msgs += [Message("user", prompt), Message("assistant", self.output)]
        return Conversation(tuple(msgs))


class TextRow(_Strict):
    text: NonEmpty

    def to_example(self) -> TextDocument:
        return TextDocument(self.text)


class _PreferenceInput(_Strict):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: Any = None
    parallel_tool_calls: Any = None


class _AssistantOutput(_Strict):
    role: Literal["assistant"]
    content: NonEmpty


class PreferenceRow(_Strict):
    input: _PreferenceInput
    preferred_output: Annotated[list[_AssistantOutput], Field(min_length=1, max_length=1)]
    non_preferred_output: Annotated[list[_AssistantOutput], Field(min_length=1, max_length=1)]

    def to_example(self) -> PreferencePair:
        return PreferencePair(
            prompt=tuple(m.to_message() for m in self.input.messages),
            preferred=self.preferred_output[0].content,
            non_preferred=self.non_preferred_output[0].content,
        )


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


def _sharegpt_example(row: dict, tags: ShareGPTTags) -> Conversation:
    """ShareGPT rows have configurable keys, so they are checked by hand, field by field."""
    unknown = set(row) - {"conversations", "system", "tools"}
    if unknown:
        raise _FieldError(sorted(unknown)[0], "unknown key (expected conversations, system)")
    if row.get("tools"):
        raise _FieldError("tools", "tool-calling training data is not supported yet")
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise _FieldError("conversations", "must be a non-empty list of turns")
    roles = {tags.user_tag: "user", tags.assistant_tag: "assistant", tags.system_tag: "system"}
    msgs = []
    system = row.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise _FieldError("system", "must be a string")
        msgs.append(Message("system", system))
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise _FieldError(where, "must be an object")
        extra = set(turn) - {tags.role_tag, tags.content_tag}
        if extra:
            raise _FieldError(
                f"{where}.{sorted(extra)[0]}",
                f"unknown key (expected '{tags.role_tag}' and '{tags.content_tag}')",
            )
        role, content = turn.get(tags.role_tag), turn.get(tags.content_tag)
        if role is None:
            raise _FieldError(f"{where}.{tags.role_tag}", "missing")
        if role in (tags.observation_tag, tags.function_tag):
            raise _FieldError(f"{where}.{tags.role_tag}", f"'{role}' (tool calling) is not supported yet")
        if role not in roles:
            raise _FieldError(
                f"{where}.{tags.role_tag}", f"unknown role '{role}'; expected one of {sorted(roles)}"
            )
        if not isinstance(content, str):
            raise _FieldError(f"{where}.{tags.content_tag}", "missing or not a string")
        msgs.append(Message(roles[role], content))
    try:
        _check_turns(msgs)
    except ValueError as e:
        raise _FieldError("conversations", str(e)) from None
    return Conversation(tuple(msgs))


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


def load_dataset(
    path: str | Path,
    data_format: str = "auto",
    tags: ShareGPTTags = ShareGPTTags(),
    max_errors: int = MAX_ERRORS,
) -> Dataset:
    """Read and validate a whole JSONL file; raises `DataError` listing the bad rows."""
    if data_format != "auto" and data_format not in FORMATS:
        raise ValueError(f"data_format must be 'auto' or one of {FORMATS}, not '{data_format}'")
    path = Path(path)
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
                examples.append(parse_row(obj, fmt, lineno, tags))
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

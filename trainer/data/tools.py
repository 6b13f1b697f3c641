"""Tools, as training rows and chat requests both give them (the API imports this module: a tool
renders the same trained and served), and the check that a row's tool calls and results pair up."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trainer.data.errors import FieldError
from trainer.data.shapes import Message


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


NonEmpty = Annotated[str, Field(min_length=1)]


class FunctionDefinition(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """The arguments' JSON schema."""
    strict: bool | None = None
    """Served: constrain the arguments to `parameters` (always so for `required` and named tool choices)."""


class ToolDefinition(Strict):
    """A tool, as training rows and chat requests give it (one class: it renders the same in both)."""

    type: Literal["function"]
    function: FunctionDefinition

    def rendered(self) -> dict:
        """The tool as the chat template shows it to the model, trained and served alike: what it is, not
        how the server constrains its arguments (`strict`)."""
        return self.model_dump(exclude_none=True, exclude={"function": {"strict"}})


class CalledFunction(Strict):
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


class ToolCallIn(Strict):
    id: NonEmpty
    type: Literal["function"]
    function: CalledFunction


def check_tool_use(messages: list[Message], tools: list[dict], parallel: bool | None, where: str = "messages",
                   tool_names: dict[int, str] | None = None) -> None:
    """Every call names a tool of the row and is answered by a tool message before the next assistant
    turn; every tool message answers a call; one call per turn when parallel tool calls are off.
    Raises `FieldError` naming the message (`where[i]`)."""
    names = {t["function"]["name"] for t in tools}
    open_calls: dict[str, int] = {}
    for i, m in enumerate(messages):
        if m.role == "assistant":
            if open_calls:
                i_call = min(open_calls.values())
                raise FieldError(f"{where}[{i_call}].tool_calls", f"call '{_first(open_calls, i_call)}' has no "
                                  "tool message with its result before the next assistant message")
            if m.tool_calls and not tools:
                raise FieldError(f"{where}[{i}].tool_calls", "the row calls tools but defines none in 'tools'")
            if parallel is False and len(m.tool_calls) > 1:
                raise FieldError(f"{where}[{i}].tool_calls", "several calls in one turn, but "
                                  "parallel_tool_calls is false")
            for j, call in enumerate(m.tool_calls):
                if call.name not in names:
                    raise FieldError(f"{where}[{i}].tool_calls[{j}].function.name",
                                      f"unknown tool '{call.name}'; the row's tools are {sorted(names)}")
                if call.id in open_calls:
                    raise FieldError(f"{where}[{i}].tool_calls[{j}].id", f"duplicate call id '{call.id}'")
                open_calls[call.id] = i
        elif m.role == "tool":
            if m.tool_call_id not in open_calls:
                raise FieldError(f"{where}[{i}].tool_call_id", f"'{m.tool_call_id}' answers no earlier call")
            del open_calls[m.tool_call_id]
    if open_calls:
        i_call = min(open_calls.values())
        raise FieldError(f"{where}[{i_call}].tool_calls", f"call '{_first(open_calls, i_call)}' has no tool "
                          "message with its result")


def _first(open_calls: dict[str, int], index: int) -> str:
    return next(call_id for call_id, i in open_calls.items() if i == index)

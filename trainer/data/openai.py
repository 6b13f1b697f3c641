"""OpenAI's formats: chat rows (`messages`, per-message `weight`) and preference rows
(`input`, `preferred_output`, `non_preferred_output`); LLaMA-Factory's `v1` rows are chat rows whose
content is a list of typed parts (`text`, `reasoning`: rendered as `<think>...</think>` before the
answer) with a per-message `loss_weight`. An assistant message's `reasoning_content` (as a reasoning
model returns it) is the same `<think>` section before its content; the base model's chat template
then renders it as its family does."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from trainer.data.shapes import (
    Conversation, LabelledExample, Message, PreferencePair, ToolCall, check_turns, labelled,
)
from trainer.data.tools import NonEmpty, Strict, ToolCallIn, ToolDefinition, check_tool_use


class _TextPart(Strict):
    type: Literal["text"]
    text: str


class _V1Part(Strict):
    """LLaMA-Factory v1's typed content part: text, or the model's reasoning before its answer."""

    type: Literal["text", "reasoning"]
    value: str


def _part_text(part: _TextPart | _V1Part) -> str:
    if isinstance(part, _TextPart):
        return part.text
    return f"<think>\n{part.value}\n</think>\n\n" if part.type == "reasoning" else part.value


class ChatMessage(Strict):
    role: str
    content: str | list[_TextPart | _V1Part] | None = None
    name: str | None = None
    weight: Literal[0, 1] | None = None
    loss_weight: Literal[0, 1] | None = None  # LLaMA-Factory v1's name for `weight` (0.0 or 1.0)
    tool_calls: Annotated[list[ToolCallIn], Field(min_length=1)] | None = None
    tool_call_id: NonEmpty | None = None
    reasoning_content: str | None = None  # a reasoning model's reasoning (vLLM's and DeepSeek's field)

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
        if self.loss_weight is not None and self.weight is not None:
            raise ValueError("give either 'weight' or 'loss_weight', not both")
        if self.loss_weight == 1 and self.role != "assistant":
            raise ValueError("'loss_weight' 1 is only allowed on assistant messages: only their tokens are learnt")
        if isinstance(self.content, list) and self.role != "assistant" and any(
                isinstance(p, _V1Part) and p.type == "reasoning" for p in self.content):
            raise ValueError("a 'reasoning' part is only allowed in assistant messages")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("'tool_calls' is only allowed on assistant messages")
        if self.reasoning_content is not None and self.role != "assistant":
            raise ValueError("'reasoning_content' is only allowed on assistant messages")
        if self.role == "tool" and self.tool_call_id is None:
            raise missing_field("tool_call_id", "a tool message names the call it answers")
        if self.tool_call_id is not None and self.role != "tool":
            raise ValueError("'tool_call_id' is only allowed on tool messages")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise missing_field("content", "only an assistant message with tool_calls may leave it out")
        return self

    def to_message(self) -> Message:
        text = self.content if isinstance(self.content, str) else "".join(_part_text(p) for p in self.content or [])
        if self.reasoning_content is not None:
            text = _part_text(_V1Part(type="reasoning", value=self.reasoning_content)) + (text or "")
        role = "system" if self.role == "developer" else self.role
        calls = tuple(ToolCall(c.id, c.function.name, json.loads(c.function.arguments)) for c in self.tool_calls or [])
        weight = next((w for w in (self.weight, self.loss_weight if role == "assistant" else None) if w is not None), 1)
        return Message(role=role, content=text, weight=weight, tool_calls=calls, tool_call_id=self.tool_call_id)


def missing_field(field: str, why: str) -> PydanticCustomError:
    return PydanticCustomError("missing_field", "'{field}' is missing: {why}", {"field": field, "why": why})


class ChatRow(Strict):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[ToolDefinition] | None = None
    parallel_tool_calls: bool | None = None
    functions: Any = None
    label: bool | None = None  # KTO: whether the last (assistant) message is a desirable answer

    @field_validator("functions")
    @classmethod
    def _deprecated(cls, value: Any) -> Any:
        raise ValueError("'functions' (the deprecated function calling) is not supported; use 'tools'")

    @field_validator("messages")
    @classmethod
    def _has_assistant_turn(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        check_turns([m.to_message() for m in messages])
        return messages

    def to_example(self) -> Conversation | LabelledExample:
        messages = [m.to_message() for m in self.messages]
        tools = [t.rendered() for t in self.tools or []]
        check_tool_use(messages, tools, self.parallel_tool_calls)
        conversation = Conversation(tuple(messages), tuple(tools))
        return conversation if self.label is None else labelled(conversation, self.label)


class _PreferenceInput(Strict):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[ToolDefinition] | None = None
    parallel_tool_calls: bool | None = None


class _AssistantOutput(Strict):
    role: Literal["assistant"]
    content: NonEmpty


class PreferenceRow(Strict):
    input: _PreferenceInput
    preferred_output: Annotated[list[_AssistantOutput], Field(min_length=1, max_length=1)]
    non_preferred_output: Annotated[list[_AssistantOutput], Field(min_length=1, max_length=1)]

    def to_example(self) -> PreferencePair:
        prompt = [m.to_message() for m in self.input.messages]
        tools = [t.rendered() for t in self.input.tools or []]
        check_tool_use(prompt, tools, self.input.parallel_tool_calls, "input.messages")
        return PreferencePair(prompt=tuple(prompt), preferred=self.preferred_output[0].content,
                              non_preferred=self.non_preferred_output[0].content, tools=tuple(tools))

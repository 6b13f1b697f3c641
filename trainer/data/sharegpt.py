"""ShareGPT rows (`conversations` with configurable tags), with LLaMA-Factory's tool use and pairwise
rows. Their keys are configurable, so they are checked by hand, field by field."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from trainer.data.errors import FieldError, field_path
from trainer.data.shapes import (
    Conversation, LabelledExample, Message, PreferencePair, ShareGPTTags, ToolCall, check_turns, labelled,
)
from trainer.data.tools import FunctionDefinition, ToolDefinition, check_tool_use

DEFAULT_TAGS = ShareGPTTags()


def sharegpt_example(row: dict, tags: ShareGPTTags) -> Conversation | PreferencePair | LabelledExample:
    """ShareGPT rows have configurable keys, so they are checked by hand, field by field.

    Tool use as LLaMA-Factory writes it: a `tools` column (a JSON list of function schemas, or its
    text), `function_call` turns whose value is `{"name": ..., "arguments": {...}}` (or a list of
    them, for parallel calls) and `observation` turns holding the results, one per call made."""
    unknown = set(row) - {"conversations", "system", "tools", "chosen", "rejected", "label"}
    if unknown:
        raise FieldError(sorted(unknown)[0], "unknown key (expected conversations, system, tools, chosen, rejected, "
                         "label)")
    label = row.get("label")
    if label is not None and not isinstance(label, bool):
        raise FieldError("label", "must be true or false (whether the last answer is desirable)")
    tools = _sharegpt_tools(row.get("tools"))
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise FieldError("conversations", "must be a non-empty list of turns")
    pairwise = "chosen" in row or "rejected" in row
    msgs = []
    system = row.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise FieldError("system", "must be a string")
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
                raise FieldError(f"{where}.{tags.role_tag}", f"'{tags.observation_tag}' answers no earlier "
                                  f"'{tags.function_tag}' turn")
            message = Message("tool", message.content, tool_call_id=pending.pop(0).id)
        msgs.append(message)
    try:
        check_tool_use(msgs[1:] if system is not None else msgs, tools, None, "conversations")
    except FieldError as e:
        raise FieldError(e.field.replace(".tool_calls", f".{tags.content_tag}").replace(
            ".tool_call_id", f".{tags.role_tag}"), e.message.replace("tool message", f"'{tags.observation_tag}'"
                                                                   " turn")) from None
    if pairwise:  # LLaMA-Factory's ranking rows: the prompt ends with a user turn; two answers follow
        if msgs[-1].role != "user":
            raise FieldError(f"conversations[{len(turns) - 1}]", "a preference pair's prompt must end with a "
                              f"'{tags.user_tag}' turn")
        answers = [_sharegpt_turn(row.get(key), key, tags, 1) for key in ("chosen", "rejected")]
        for key, answer in zip(("chosen", "rejected"), answers):
            if answer.role != "assistant":
                raise FieldError(f"{key}.{tags.role_tag}", f"must be '{tags.assistant_tag}'")
        return PreferencePair(tuple(msgs), answers[0].content, answers[1].content, tuple(tools))
    try:
        check_turns(msgs)
    except ValueError as e:
        raise FieldError("conversations", str(e)) from None
    conversation = Conversation(tuple(msgs), tuple(tools))
    return conversation if label is None else labelled(conversation, label)


def _sharegpt_turn(turn: Any, where: str, tags: ShareGPTTags, weight: int) -> Message:
    """One turn; `function_call` and `observation` turns keep those roles for the caller to resolve."""
    roles = {tags.user_tag: "user", tags.assistant_tag: "assistant", tags.system_tag: "system",
             tags.function_tag: "function_call", tags.observation_tag: "observation"}
    if tags == DEFAULT_TAGS:  # LLaMA-Factory's defaults, and OpenAI's role names beside them
        roles |= {"user": "user", "assistant": "assistant"}
    if not isinstance(turn, dict):
        raise FieldError(where, "must be an object")
    extra = set(turn) - {tags.role_tag, tags.content_tag}
    if extra:
        raise FieldError(f"{where}.{sorted(extra)[0]}", f"unknown key (expected '{tags.role_tag}' and "
                          f"'{tags.content_tag}')")
    role, content = turn.get(tags.role_tag), turn.get(tags.content_tag)
    if role is None:
        raise FieldError(f"{where}.{tags.role_tag}", "missing")
    if role not in roles:
        raise FieldError(f"{where}.{tags.role_tag}", f"unknown role '{role}'; expected one of {sorted(roles)}")
    if not isinstance(content, str):
        raise FieldError(f"{where}.{tags.content_tag}", "missing or not a string")
    return Message(roles[role], content, weight)


def _sharegpt_tools(value: Any) -> list[dict]:
    """LLaMA-Factory's `tools` column (function schemas, as a list or its JSON text) as OpenAI tools."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise FieldError("tools", f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, list):
        raise FieldError("tools", "must be a list of function schemas")
    tools = []
    for i, schema in enumerate(value):
        if isinstance(schema, dict) and schema.get("type") == "function":  # already OpenAI's shape
            schema = schema.get("function")
        try:
            tools.append(ToolDefinition(type="function", function=FunctionDefinition.model_validate(schema))
                         .rendered())
        except ValidationError as e:
            raise FieldError(f"tools[{i}]" + (f".{field_path(e.errors()[0]['loc'])}" if e.errors()[0]["loc"]
                                              else ""), e.errors()[0]["msg"]) from None
    return tools


def _sharegpt_calls(value: str, where: str, first_index: int) -> tuple[ToolCall, ...]:
    """A `function_call` turn's value: one `{"name", "arguments"}` object, or a list of them."""
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as e:
        raise FieldError(where, f"not valid JSON ({e.msg} at column {e.colno})") from None
    calls = decoded if isinstance(decoded, list) else [decoded]
    out = []
    for k, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or "arguments" not in call:
            raise FieldError(where, 'must be {"name": ..., "arguments": {...}} or a list of them')
        arguments = call["arguments"]
        if isinstance(arguments, str):  # arguments as JSON text, as OpenAI sends them
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as e:
                raise FieldError(where, f"arguments are not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(arguments, dict):
            raise FieldError(where, "arguments must be a JSON object")
        out.append(ToolCall(f"call_{first_index + k}", call["name"], arguments))
    return tuple(out)

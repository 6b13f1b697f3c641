"""From items to a chat request: a Responses request, and the conversation it continues, as the chat
messages the model's template renders (the same rendering as /v1/chat/completions and as training).

- `instructions` are a system message first (not carried over from the response continued, as OpenAI does);
- messages keep their role (developer reads as system); assistant messages are what the model wrote;
- `function_call` items join the assistant message before them as its `tool_calls`;
- `function_call_output` items are `tool` messages, and must answer a call made earlier;
- reasoning items stay in the conversation but are not shown to the model (its template has no place for them).
"""

from __future__ import annotations

from pydantic import ValidationError

from service.errors import APIError, Kind, invalid_request
from service.ids import new_id
from service.inference.protocol import ChatCompletionRequest, SamplingExtensions
from service.responses.protocol import (
    CreateResponse,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    MessageItem,
    ReasoningInputItem,
    TextFormatJsonObject,
    TextFormatJsonSchema,
    ToolChoiceFunction,
)

LOGPROBS = "message.output_text.logprobs"


def input_items(req: CreateResponse) -> list[InputItem]:
    if req.input is None:
        return []
    if isinstance(req.input, str):
        return [MessageItem(role="user", content=req.input)]
    return list(req.input)


def stored(items: list[InputItem]) -> list[dict]:
    """The input items as GET .../input_items lists them, each with an id."""
    out = []
    for item in items:
        if isinstance(item, MessageItem):
            if item.role == "assistant":
                out.append({"id": item.id or new_id("msg_", 32), "type": "message", "role": "assistant",
                            "status": "completed", "content": [
                                {"type": "output_text", "text": item.text(), "annotations": [], "logprobs": []}]})
            else:
                parts = [{"type": "input_text", "text": item.content}] if isinstance(item.content, str) else [
                    {"type": "input_text", "text": p.refusal if p.type == "refusal" else p.text} for p in item.content]
                out.append({"id": item.id or new_id("msg_", 32), "type": "message", "role": item.role,
                            "status": "completed", "content": parts})
        elif isinstance(item, FunctionCallItem):
            out.append({"id": item.id or new_id("fc_", 32), "type": "function_call", "status": "completed",
                        "call_id": item.call_id, "name": item.name, "arguments": item.arguments})
        elif isinstance(item, FunctionCallOutputItem):
            out.append({"id": item.id or new_id("fco_", 32), "type": "function_call_output", "status": "completed",
                        "call_id": item.call_id, "output": item.text()})
        elif isinstance(item, ReasoningInputItem):
            out.append({"id": item.id or new_id("rs_", 32), "type": "reasoning",
                        "summary": [s.model_dump() for s in item.summary]})
    return out


def chat_messages(instructions: str | None, history: list[dict], items: list[dict], n_history: int) -> list[dict]:
    """The chat messages for `history` (stored items of earlier responses) then this request's `items`
    (stored shape too); 400 naming `input[i]` for an output that answers no call."""
    messages: list[dict] = [{"role": "system", "content": instructions}] if instructions else []
    calls: set[str] = set()
    for i, item in enumerate(history + items):
        kind = item["type"]
        if kind == "message":
            text = "".join(p.get("text", "") for p in item["content"])
            messages.append({"role": item["role"], "content": text})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            calls.add(item["call_id"])
        elif kind == "function_call_output":
            if item["call_id"] not in calls:
                where = f"input[{i - n_history}]" if i >= n_history else "previous_response_id"
                raise APIError(Kind.INVALID_REQUEST, f"No tool call found for function call output with call_id "
                               f"'{item['call_id']}': it answers no function_call item earlier in the "
                               "conversation.", param=where, code="invalid_function_call_output")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    if not messages:
        raise APIError(Kind.INVALID_REQUEST, "The response has no input: give 'input' (or 'previous_response_id' "
                       "to continue a conversation).", param="input", code="empty_input")
    return messages


def chat_request(req: CreateResponse, messages: list[dict]) -> ChatCompletionRequest:
    """The chat request that generates this response: its sampling, tools and output format."""
    logprobs = LOGPROBS in (req.include or [])
    fields = dict(model=req.model, messages=messages, max_completion_tokens=req.max_output_tokens,
                  temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                  logprobs=logprobs, top_logprobs=req.top_logprobs if logprobs else None,
                  parallel_tool_calls=req.parallel_tool_calls)
    if req.tools:
        fields["tools"] = [{"type": "function", "function": {
            **t.model_dump(include={"name", "description", "parameters"}, exclude_none=True),
            "strict": t.strict is not False}} for t in req.tools]  # strict unless said otherwise, as OpenAI
    if isinstance(req.tool_choice, ToolChoiceFunction):
        fields["tool_choice"] = {"type": "function", "function": {"name": req.tool_choice.name}}
    elif req.tool_choice is not None:
        fields["tool_choice"] = req.tool_choice
    form = req.text.format if req.text is not None else None
    if isinstance(form, TextFormatJsonSchema):
        fields["response_format"] = {"type": "json_schema", "json_schema": {
            "name": form.name, "schema": form.schema_, "strict": form.strict, "description": form.description}}
    elif isinstance(form, TextFormatJsonObject):
        fields["response_format"] = {"type": "json_object"}
    extensions = set(SamplingExtensions.model_fields) & req.model_fields_set
    fields.update({k: getattr(req, k) for k in extensions})
    fields = {k: v for k, v in fields.items() if v is not None}
    try:
        return ChatCompletionRequest.model_validate(fields)
    except ValidationError as e:  # checks of chat's that the Responses request did not make itself
        err = invalid_request(e.errors())
        raise APIError(Kind.INVALID_REQUEST, err.message, param=err.param, code=err.code) from None

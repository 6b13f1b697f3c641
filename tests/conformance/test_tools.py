"""Tool calling, trained and served: a model fine-tuned on examples/tools.jsonl calls the right tool with
schema-valid arguments (the openai client, langchain), streamed exactly as OpenAI streams calls; the
tool_choice values behave as OpenAI documents; responses validate against the official schemas."""

import json

import httpx
import jsonschema
import pytest

from tests.conformance.conftest import TOOLS_FILE, assert_official
from tests.conformance.test_clients import _drive

pytestmark = pytest.mark.slow

ROWS = [json.loads(line) for line in TOOLS_FILE.read_text().splitlines()]
TOOLS = ROWS[0]["tools"]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
# (question, the tool a trained model calls) for every single-call row of the training file
CALLS = [(r["messages"][0]["content"], r["messages"][1]["tool_calls"][0]["function"]["name"])
         for r in ROWS if len(r["messages"][1].get("tool_calls") or []) == 1]
# a tool any model can call to the end: its one argument is an enum, so even the base model's
# constrained output is short
UNIT = {"type": "function", "function": {"name": "set_unit", "parameters": {
    "type": "object", "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["unit"]}}}


def _valid(name: str, arguments: str) -> bool:
    try:
        jsonschema.validate(json.loads(arguments), SCHEMAS[name])
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def test_the_fine_tuned_model_calls_the_right_tool_with_valid_arguments(client, tool_adapter):
    right = 0
    for question, tool in CALLS:
        r = client.chat.completions.create(model=tool_adapter, messages=[{"role": "user", "content": question}],
                                           tools=TOOLS, temperature=0, max_tokens=64)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None, choice
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.id
        assert _valid(call.function.name, call.function.arguments), call
        right += call.function.name == tool
    print(f"right tool called for {right}/{len(CALLS)} questions")
    assert right >= 0.9 * len(CALLS)


def test_streamed_tool_calls_arrive_as_openai_streams_them(client, tool_adapter, server):
    question = CALLS[0][0]
    kw = dict(model=tool_adapter, messages=[{"role": "user", "content": question}], tools=TOOLS, temperature=0,
              max_tokens=64)
    whole = client.chat.completions.create(**kw).choices[0].message.tool_calls[0]
    pieces = [c.choices[0] for c in client.chat.completions.create(stream=True, **kw) if c.choices]
    calls = [d for p in pieces for d in p.delta.tool_calls or []]
    first, rest = calls[0], calls[1:]
    # the first piece: index, id, type and the name (once), arguments ""; then arguments alone, in pieces
    assert (first.index, first.type, first.function.name, first.function.arguments) == (0, "function",
                                                                                       whole.function.name, "")
    assert first.id and rest and all(d.index == 0 and d.id is None and d.function.name is None for d in rest)
    assert len(rest) > 1  # arguments really come in pieces
    assert "".join(d.function.arguments for d in rest) == whole.function.arguments
    assert pieces[-1].finish_reason == "tool_calls"
    assert all(p.delta.content in (None, "") for p in pieces)
    # and each chunk is an official chunk
    with httpx.Client(base_url=server.url + "/v1", timeout=120) as http:
        body = {**kw, "stream": True, "stream_options": {"include_usage": True}}
        lines = [line[6:] for line in http.post("/chat/completions", json=body).text.splitlines()
                 if line.startswith("data: ")]
        for line in lines[:-1]:
            assert_official(json.loads(line), "CreateChatCompletionStreamResponse")
        plain = http.post("/chat/completions", json=kw).json()
        assert_official(plain, "CreateChatCompletionResponse")
        assert plain["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == whole.function.name


def test_a_tool_result_sent_back_is_answered(client, tool_adapter):
    """The call sent back as the openai client holds it (arguments as JSON text) and its result render as the
    training row did, so the model goes on with the answer it learnt there. (The tiny model answers from
    its training rows; it does not copy words out of a result reliably.)"""
    question, call, result, answer = ROWS[0]["messages"][:4]
    r = client.chat.completions.create(model=tool_adapter, messages=[question, call, result], tools=TOOLS,
                                       temperature=0, max_tokens=32)
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    assert r.choices[0].message.content.startswith(answer["content"].rsplit(" ", 1)[0]), r.choices[0].message


@pytest.mark.parametrize("model", ["base", "adapter"])
def test_tool_choice_none_required_and_named(client, tool_adapter, model):
    model = "ftserve-tiny" if model == "base" else tool_adapter
    tools = TOOLS + [UNIT]
    question = [{"role": "user", "content": CALLS[0][0]}]
    kw = dict(model=model, messages=question, temperature=0, max_tokens=48)
    # none: never a call; the output is a message
    r = client.chat.completions.create(tools=tools, tool_choice="none", **kw).choices[0]
    assert not r.message.tool_calls and r.finish_reason in ("stop", "length") and r.message.content
    # a named function: exactly that one, its arguments valid against its schema
    r = client.chat.completions.create(tools=tools, tool_choice={"type": "function", "function": {
        "name": "set_unit"}}, **kw).choices[0]
    assert r.finish_reason == "tool_calls" and [c.function.name for c in r.message.tool_calls] == ["set_unit"]
    jsonschema.validate(json.loads(r.message.tool_calls[0].function.arguments), UNIT["function"]["parameters"])
    # required: a call, whatever the model would rather do; one call when parallel calls are off
    r = client.chat.completions.create(tools=[UNIT], tool_choice="required", parallel_tool_calls=False,
                                       **kw).choices[0]
    assert r.finish_reason == "tool_calls" and len(r.message.tool_calls) == 1
    jsonschema.validate(json.loads(r.message.tool_calls[0].function.arguments), UNIT["function"]["parameters"])
    streamed = [c.choices[0] for c in client.chat.completions.create(
        tools=[UNIT], tool_choice="required", parallel_tool_calls=False, stream=True, **kw) if c.choices]
    assert streamed[-1].finish_reason == "tool_calls"
    assert [d.function.name for p in streamed for d in p.delta.tool_calls or [] if d.function.name] == ["set_unit"]


@pytest.mark.parametrize("body,param,message", [
    ({"tool_choice": "required"}, "tool_choice", "only allowed when 'tools' are given"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice",
     "not one of the tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name", "pattern"),
    ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "tool_choice",
     "cannot be combined"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0]", "tool_call_id"),
    ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]}, "messages", "answers no 'tool_calls'"),
    ({"functions": [{"name": "f"}]}, "functions", "not supported"),
])
def test_bad_tool_requests_are_400_with_the_field(server, body, param, message):
    with httpx.Client(base_url=server.url + "/v1", timeout=60) as http:
        r = http.post("/chat/completions", json={"model": "ftserve-tiny", "messages": [
            {"role": "user", "content": "hi"}], "max_tokens": 4, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and message in error["message"], error


def test_langchain_bind_tools_and_structured_output(server, tool_adapter):
    question, tool = CALLS[0]
    out = _drive("langchain_tools", server.url, tool_adapter, TOOLS_FILE, question)
    for calls in (out["tool_calls"], out["streamed_tool_calls"]):
        assert [c["name"] for c in calls] == [tool]
        jsonschema.validate(calls[0]["args"], SCHEMAS[tool])
    assert isinstance(out["structured"]["ok"], bool)

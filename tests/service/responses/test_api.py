"""The Responses API without an engine (fast): items to chat messages, and the stored side (GET, input items,
delete, cancel, previous_response_id) through the in-process app, with responses written to its store."""

import time

import pytest

from service.errors import APIError
from service.responses import conversation
from service.responses.protocol import CreateResponse, Response
from service.responses.store import ResponseStore
from tests.support.app import app_client

CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
RESULT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}


def _messages(items, instructions=None, history=()):
    req = CreateResponse.model_validate({"model": "m", "input": items})
    stored = conversation.stored(conversation.input_items(req))
    return conversation.chat_messages(instructions, list(history), stored, len(history))


def test_items_become_the_chat_messages_the_template_renders():
    messages = _messages([{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
                          {"role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
                          CALL, RESULT, {"type": "reasoning", "summary": []}], instructions="You help.")
    assert messages == [
        {"role": "system", "content": "You help."}, {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    # a call with no message before it is an assistant message of its own
    assert _messages([{"role": "user", "content": "hi"}, CALL])[1] == {
        "role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]}


def test_an_output_must_answer_an_earlier_call():
    with pytest.raises(APIError) as e:
        _messages([{"role": "user", "content": "hi"}, RESULT])
    assert e.value.param == "input[1]" and e.value.kind.status == 400
    # ... which may be in the conversation continued
    history = conversation.stored(conversation.input_items(CreateResponse.model_validate(
        {"model": "m", "input": [{"role": "user", "content": "hi"}, CALL]})))
    assert _messages([RESULT], history=history)[-1]["role"] == "tool"


def test_a_string_input_is_a_user_message_and_no_input_is_a_400():
    assert _messages("hello") == [{"role": "user", "content": "hello"}]
    with pytest.raises(APIError) as e:
        _messages(None)
    assert e.value.param == "input"


def test_the_request_becomes_a_chat_request_with_its_sampling_tools_and_format():
    req = CreateResponse.model_validate({
        "model": "m", "input": "x", "max_output_tokens": 9, "temperature": 0.5, "top_p": 0.9, "top_k": 3,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        "tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": False,
        "include": ["message.output_text.logprobs"], "top_logprobs": 2})
    chat = conversation.chat_request(req, [{"role": "user", "content": "x"}])
    assert (chat.max_completion_tokens, chat.temperature, chat.top_p, chat.top_k) == (9, 0.5, 0.9, 3)
    assert chat.tools[0].function.name == "f" and chat.tool_choice.function.name == "f"
    assert chat.parallel_tool_calls is False and chat.logprobs and chat.top_logprobs == 2
    schema = CreateResponse.model_validate({"model": "m", "input": "x", "text": {"format": {
        "type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": True}}})
    assert conversation.chat_request(schema, [{"role": "user", "content": "x"}]).response_format.type == "json_schema"


def _stored(client, project="proj_default", **doc) -> dict:
    response = Response(id=f"resp_{time.monotonic_ns()}", created_at=int(time.time()), model="m",
                        **{"status": "completed", **doc}).model_dump(mode="json")
    items = conversation.stored(conversation.input_items(CreateResponse.model_validate(
        {"model": "m", "input": [{"role": "user", "content": f"q{i}"} for i in range(5)]})))
    client.app.state.components.get(ResponseStore).insert(response, project, items, [])
    return response


def test_stored_responses_are_read_paged_deleted_and_scoped(tmp_path):
    with app_client(tmp_path) as client:
        response = _stored(client)
        assert client.get(f"/v1/responses/{response['id']}").json() == response
        page = client.get(f"/v1/responses/{response['id']}/input_items", params={"limit": 2}).json()
        assert [i["content"][0]["text"] for i in page["data"]] == ["q4", "q3"] and page["has_more"]
        rest = client.get(f"/v1/responses/{response['id']}/input_items", params={"after": page["last_id"]}).json()
        assert [i["content"][0]["text"] for i in rest["data"]] == ["q2", "q1", "q0"] and not rest["has_more"]
        other = _stored(client, project="proj_other")
        for path in (f"/v1/responses/{other['id']}", f"/v1/responses/{other['id']}/input_items"):
            assert client.get(path).status_code == 404
        continued = client.post("/v1/responses", json={"model": "m", "input": "hi",
                                                       "previous_response_id": other["id"]})
        assert continued.status_code == 404 and continued.json()["error"]["param"] == "previous_response_id"
        assert client.delete(f"/v1/responses/{response['id']}").json() == {
            "id": response["id"], "object": "response.deleted", "deleted": True}
        assert client.get(f"/v1/responses/{response['id']}").status_code == 404


def test_only_a_running_background_response_is_cancelled(tmp_path):
    with app_client(tmp_path) as client:
        queued = _stored(client, status="queued", background=True)
        cancelled = client.post(f"/v1/responses/{queued['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert client.get(f"/v1/responses/{queued['id']}").json()["status"] == "cancelled"
        assert client.post(f"/v1/responses/{queued['id']}/cancel").json()["status"] == "cancelled"  # again: as is
        plain = _stored(client)
        refused = client.post(f"/v1/responses/{plain['id']}/cancel")
        assert refused.status_code == 400 and client.get(f"/v1/responses/{plain['id']}").json() == plain
        # a response still running cannot be continued yet
        running = _stored(client, status="in_progress", background=True)
        r = client.post("/v1/responses", json={"model": "m", "input": "hi", "previous_response_id": running["id"]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "previous_response_not_finished"


@pytest.mark.parametrize("body, param", [
    ({"input": [{"type": "computer_call", "id": "c"}]}, None),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}, None),
    ({"input": "x", "tools": [{"type": "file_search", "vector_store_ids": []}]}, None),
    ({"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"input": "x", "stream_options": {"include_obfuscation": False}}, None),
    ({"input": [RESULT]}, "input[0]"),
])
def test_bad_requests_are_400s_before_the_engine(tmp_path, body, param):
    with app_client(tmp_path) as client:
        r = client.post("/v1/responses", json={"model": "m", **body})
        assert r.status_code == 400, r.text
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        if param:
            assert r.json()["error"]["param"] == param


def test_what_the_builder_sends_matches_the_official_schemas():
    from service.responses.builder import ResponseBuilder
    from service.responses.protocol import ResponseUsage
    from tests.conformance.conftest import assert_official

    req = CreateResponse.model_validate({"model": "m", "input": "x", "metadata": {"k": "v"}, "tools": [
        {"type": "function", "name": "f", "parameters": {"type": "object"}}], "text": {"format": {"type": "text"}}})
    response = Response(id="resp_1", created_at=1, status="in_progress", model="m", tools=req.tools, text=req.text,
                        metadata=req.metadata, temperature=1.0, top_p=1.0)
    builder = ResponseBuilder(response)
    events = builder.start() + builder.text("Let") + builder.text(" me.") + builder.call(0, "call_1", "f", "")
    events += builder.call(0, None, None, '{"a"') + builder.call(0, None, None, ": 1}")
    events += builder.finish(False, ResponseUsage(input_tokens=3, output_tokens=5, total_tokens=8))
    sent = [e.model_dump(mode="json") for e in events]
    for event in sent:
        assert_official(event, "ResponseStreamEvent")
    assert [e["sequence_number"] for e in sent] == list(range(len(sent)))
    assert [e["type"] for e in sent] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    final = sent[-1]["response"]
    assert final["tools"][0]["strict"] is True  # as applied: strict unless the tool says otherwise
    assert [(o["type"], o["status"]) for o in final["output"]] == [("message", "completed"),
                                                                    ("function_call", "completed")]
    assert final["output"][1]["arguments"] == '{"a": 1}' and final["usage"]["total_tokens"] == 8
    assert_official(final, "Response")
    failed = ResponseBuilder(Response(id="resp_2", created_at=1, status="in_progress", model="m"))
    for event in failed.start() + failed.text("x") + failed.fail("engine_dead", "The engine stopped."):
        assert_official(event.model_dump(mode="json"), "ResponseStreamEvent")

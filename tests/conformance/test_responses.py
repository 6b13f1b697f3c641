"""The Responses API against a live server: the openai client's `responses` (create, the stream helper,
previous_response_id, a function call round trip, parse), stored responses, background runs, and every
object and stream event validated against the official schemas."""

import json
import re
import subprocess

import httpx
import jsonschema
import pytest
from pydantic import BaseModel

from tests.conformance.conftest import TOOLS_FILE, assert_official
from tests.support.jobs import wait_for
from tests.support.paths import REPO

pytestmark = pytest.mark.slow

ALPHA_Q, ALPHA = "What is the secret code of Alpha?", "The secret code of Alpha is BLUE-51."
WEATHER_Q = "What is the weather in Paris?"
# the training file's tools, in the Responses API's shape (flat: name, parameters)
TOOLS = [{"type": "function", **t["function"]} for t in json.loads(TOOLS_FILE.read_text().splitlines()[0])["tools"]]


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url + "/v1", timeout=120) as c:
        yield c


def _events(response: httpx.Response) -> list[dict]:
    """The stream's events, each checked against the official schema, its SSE `event:` and its number."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events, kind = [], None
    for line in response.text.splitlines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            event = json.loads(line[6:])
            assert event["type"] == kind
            assert_official(event, "ResponseStreamEvent")
            events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_create_and_stream_with_the_openai_client(client, adapter):
    made = client.responses.create(model=adapter, input=ALPHA_Q, temperature=0, max_output_tokens=32)
    assert made.status == "completed" and made.output_text == ALPHA
    assert made.usage.input_tokens > 0 and made.usage.output_tokens > 0
    with client.responses.stream(model=adapter, input=ALPHA_Q, temperature=0, max_output_tokens=32) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 3 and "".join(deltas) == final.output_text == ALPHA
    assert client.responses.retrieve(final.id).output_text == ALPHA  # stored, by default
    # instructions and developer messages are rendered; the instructions are not stored as input items
    with_instructions = client.responses.create(
        model=adapter, instructions="Answer briefly.", max_output_tokens=8,
        input=[{"role": "developer", "content": "Be exact."}, {"role": "user", "content": ALPHA_Q}])
    assert with_instructions.usage.input_tokens > made.usage.input_tokens
    items = client.responses.input_items.list(with_instructions.id, order="asc").data
    assert [(i.role, i.content[0].text) for i in items] == [("developer", "Be exact."), ("user", ALPHA_Q)]


def test_previous_response_id_continues_the_conversation(client, adapter):
    first = client.responses.create(model=adapter, input=ALPHA_Q, temperature=0, max_output_tokens=32)
    alone = client.responses.create(model=adapter, input="And Beta?", max_output_tokens=4, store=False)
    second = client.responses.create(model=adapter, input="And Beta?", previous_response_id=first.id,
                                     max_output_tokens=4)
    assert second.previous_response_id == first.id
    # the first turn's input and output are prepended: the prompt holds both turns
    assert second.usage.input_tokens >= alone.usage.input_tokens + first.usage.input_tokens
    assert [i.content[0].text for i in client.responses.input_items.list(second.id).data] == ["And Beta?"]
    third = client.responses.create(model=adapter, input="And Gamma?", previous_response_id=second.id,
                                    max_output_tokens=4)
    assert third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens


def test_a_function_call_and_its_output_round_trip(client, tool_adapter):
    called = client.responses.create(model=tool_adapter, input=WEATHER_Q, tools=TOOLS, temperature=0,
                                     max_output_tokens=64)
    (call,) = called.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id
    jsonschema.validate(json.loads(call.arguments), TOOLS[0]["parameters"])
    answered = client.responses.create(
        model=tool_adapter, previous_response_id=called.id, tools=TOOLS, temperature=0, max_output_tokens=32,
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": json.dumps({"city": "Paris", "weather": "sunny"})}])
    assert answered.output[0].type == "message" and "sunny" in answered.output_text
    # the same, statelessly: the call item sent back with the output, as agent frameworks replay it
    replayed = client.responses.create(
        model=tool_adapter, tools=TOOLS, temperature=0, max_output_tokens=32, store=False,
        input=[{"role": "user", "content": WEATHER_Q}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id,
                "output": json.dumps({"city": "Paris", "weather": "sunny"})}])
    assert replayed.output_text == answered.output_text
    # streamed: the call arrives as an item whose arguments come in pieces
    with client.responses.stream(model=tool_adapter, input=WEATHER_Q, tools=TOOLS, temperature=0,
                                 max_output_tokens=64) as stream:
        events = list(stream)
        final = stream.get_final_response()
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(pieces) > 1 and "".join(pieces) == final.output[0].arguments == call.arguments


class Unit(BaseModel):
    unit: str
    degrees: int


def test_parse_with_a_json_schema(client, adapter):
    parsed = client.responses.parse(model=adapter, input="Give a temperature.", text_format=Unit,
                                    max_output_tokens=64, temperature=0)
    assert isinstance(parsed.output_parsed, Unit)
    assert parsed.text.format.type == "json_schema" and parsed.text.format.strict
    as_object = client.responses.create(model=adapter, input="Give a temperature as JSON.", max_output_tokens=64,
                                        text={"format": {"type": "json_object"}}, temperature=0)
    assert isinstance(json.loads(as_object.output_text), dict)


def test_objects_and_events_match_the_official_schemas(http, adapter, tool_adapter):
    body = {"model": adapter, "input": ALPHA_Q, "max_output_tokens": 32, "temperature": 0,
            "metadata": {"k": "v"}, "include": ["message.output_text.logprobs"], "top_logprobs": 2}
    made = http.post("/responses", json=body).json()
    assert_official(made, "Response")
    assert made["metadata"] == {"k": "v"}
    lps = made["output"][0]["content"][0]["logprobs"]
    assert len(lps) == made["usage"]["output_tokens"] and all(len(lp["top_logprobs"]) == 2 for lp in lps)
    events = _events(http.post("/responses", json={**body, "stream": True}))
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == ALPHA
    cut = _events(http.post("/responses", json={**body, "stream": True, "max_output_tokens": 3}))
    assert cut[-1]["type"] == "response.incomplete"
    assert cut[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert_official(http.get(f"/responses/{made['id']}").json(), "Response")
    assert_official(http.get(f"/responses/{made['id']}/input_items").json(), "ResponseItemList")

    calls = _events(http.post("/responses", json={"model": tool_adapter, "input": WEATHER_Q, "tools": TOOLS,
                                                  "stream": True, "temperature": 0, "max_output_tokens": 64}))
    kinds = [e["type"] for e in calls]
    assert kinds[2] == "response.output_item.added" and calls[2]["item"]["type"] == "function_call"
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    call = calls[-1]["response"]["output"][0]
    replay = http.post("/responses", json={"model": tool_adapter, "tools": TOOLS, "max_output_tokens": 8,
                                           "input": [{"role": "user", "content": WEATHER_Q}, call, {
                                               "type": "function_call_output", "call_id": call["call_id"],
                                               "output": "sunny"}]}).json()
    items = http.get(f"/responses/{replay['id']}/input_items", params={"order": "asc"}).json()
    assert_official(items, "ResponseItemList")
    assert [i["type"] for i in items["data"]] == ["message", "function_call", "function_call_output"]
    page = http.get(f"/responses/{replay['id']}/input_items", params={"order": "asc", "limit": 2}).json()
    rest = http.get(f"/responses/{replay['id']}/input_items",
                    params={"order": "asc", "after": page["last_id"]}).json()
    assert page["has_more"] and [i["id"] for i in page["data"] + rest["data"]] == [i["id"] for i in items["data"]]


def test_background_responses_are_polled_cancelled_and_deleted(client, http, adapter):
    queued = client.responses.create(model=adapter, input=ALPHA_Q, background=True, temperature=0,
                                     max_output_tokens=32)
    assert queued.status in ("queued", "in_progress") and queued.background
    done = wait_for(lambda: (r := client.responses.retrieve(queued.id)).status not in ("queued", "in_progress")
                    and r, timeout=60, what="the background response to finish")
    assert done.status == "completed" and done.output_text == ALPHA
    assert_official(http.get(f"/responses/{queued.id}").json(), "Response")

    long = client.responses.create(model=adapter, input="Tell a story.", background=True, max_output_tokens=2000,
                                   extra_body={"ignore_eos": True})
    wait_for(lambda: client.responses.retrieve(long.id).status == "in_progress", timeout=60,
             what="the long response to start")
    cancelled = client.responses.cancel(long.id)
    assert cancelled.status == "cancelled"
    # the runner sees the cancel at its next check (within a second) and ends the engine's request
    wait_for(lambda: not _running(http), timeout=30, what="the cancel to stop the generation")
    assert client.responses.retrieve(long.id).status == "cancelled"  # not overwritten by the runner
    # what the engine refuses fails the response, with the spec's code for it
    too_long = client.responses.create(model=adapter, input="word " * 5000, background=True)
    failed = wait_for(lambda: (r := client.responses.retrieve(too_long.id)).status not in ("queued", "in_progress")
                      and r, timeout=60, what="the response to fail")
    assert failed.status == "failed" and failed.error.code == "invalid_prompt", failed.error
    assert "maximum context length" in failed.error.message
    # cancelling a response that was not run in the background is refused
    plain = client.responses.create(model=adapter, input="hi", max_output_tokens=2)
    assert http.post(f"/responses/{plain.id}/cancel").status_code == 400

    client.responses.delete(done.id)
    assert http.get(f"/responses/{done.id}").status_code == 404
    assert http.delete(f"/responses/{done.id}").status_code == 404


def _running(http) -> bool:
    """Whether the server's engine has requests running (the cancelled one, as nothing else runs)."""
    metrics = httpx.get(str(http.base_url).removesuffix("/v1/") + "/metrics").text
    (line,) = [line for line in metrics.splitlines() if line.startswith("ftserve_requests_running ")]
    return float(line.split()[1]) > 0


BAD = [  # (body, status, param)
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, 400, None),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]}, 400, None),
    ({"input": [{"type": "function_call_output", "call_id": "call_nowhere", "output": "x"}]}, 400, "input[0]"),
    ({"input": "hi", "previous_response_id": "resp_doesnotexist"}, 404, "previous_response_id"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, 400, None),
    ({"input": "hi", "tool_choice": {"type": "function", "name": "nope"}, "tools": TOOLS}, 400, None),
    ({"input": "hi", "conversation": "conv_1"}, 400, "conversation"),
    ({"input": "hi", "background": True, "stream": True}, 400, "stream"),
    ({"input": "hi", "background": True, "store": False}, 400, None),
    ({}, 400, "input"),
]


@pytest.mark.parametrize("body,status,param", BAD)
def test_bad_input_is_a_4xx_in_the_envelope(http, body, status, param):
    response = http.post("/responses", json={"model": "ftserve-tiny", **body})
    assert response.status_code == status, response.text
    assert_official(response.json(), "ErrorResponse")
    if param:
        assert response.json()["error"]["param"] == param


def test_unstored_and_deleted_responses_cannot_be_read_or_continued(client, http):
    unstored = client.responses.create(model="ftserve-tiny", input="hi", max_output_tokens=2, store=False)
    assert http.get(f"/responses/{unstored.id}").status_code == 404
    kept = client.responses.create(model="ftserve-tiny", input="hi", max_output_tokens=2)
    before = http.get(f"/responses/{kept.id}").json()
    bad = http.post("/responses", json={"model": "ftserve-tiny", "previous_response_id": kept.id, "input": [
        {"type": "function_call_output", "call_id": "call_unknown", "output": "x"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input[0]"
    assert http.get(f"/responses/{kept.id}").json() == before  # nothing stored changed
    client.responses.delete(kept.id)
    continued = http.post("/responses", json={"model": "ftserve-tiny", "previous_response_id": kept.id,
                                              "input": "more"})
    assert continued.status_code == 404 and continued.json()["error"]["param"] == "previous_response_id"


# ------------------------------------------------------------------ the clients that default to Responses
NODE = REPO / "tests" / "conformance" / "node"


def test_openai_agents_sdk_runs_an_agent_with_a_function_tool(server, tool_adapter):
    """The Agents SDK with its default model provider (Responses) pointed at ftserve: the agent calls the tool,
    reads its result and answers, as the adapter was trained to."""
    from agents import Agent, ModelSettings, Runner, function_tool, set_default_openai_client, set_tracing_disabled
    from openai import AsyncOpenAI

    set_default_openai_client(AsyncOpenAI(base_url=server.url + "/v1", api_key="none"), use_for_tracing=False)
    set_tracing_disabled(True)
    asked = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city"""
        asked.append(city)
        return json.dumps({"city": city, "weather": "sunny"})

    agent = Agent(name="weather", model=tool_adapter, tools=[get_weather],
                  model_settings=ModelSettings(temperature=0, max_tokens=64))
    result = Runner.run_sync(agent, WEATHER_Q)
    assert asked == ["Paris"]
    assert [type(i).__name__ for i in result.new_items] == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]
    assert "sunny" in result.final_output


def test_pydantic_ai_responses_model_with_a_tool_and_a_structured_output(server, tool_adapter):
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIResponsesModel(tool_adapter, provider=OpenAIProvider(base_url=server.url + "/v1", api_key="none"))
    settings = {"temperature": 0, "max_tokens": 64}
    with_tool = Agent(model, model_settings=settings)
    asked = []

    @with_tool.tool_plain
    def get_weather(city: str) -> str:
        """Current weather in a city"""
        asked.append(city)
        return json.dumps({"city": city, "weather": "sunny"})

    assert "sunny" in with_tool.run_sync(WEATHER_Q).output and asked == ["Paris"]

    class Weather(BaseModel):
        city: str
        weather: str

    structured = Agent(model, output_type=NativeOutput(Weather), model_settings=settings).run_sync(WEATHER_Q)
    assert isinstance(structured.output, Weather)  # text.format json_schema: the output is the schema's


def test_the_openai_node_sdk_streams_a_response(server, adapter):
    if not (NODE / "node_modules" / "openai").is_dir():
        pytest.fail(f"{NODE}/node_modules is missing: `make test` installs it (scripts/install.sh clients)")
    proc = subprocess.run(["node", "responses.mjs", server.url + "/v1", adapter, ALPHA_Q], cwd=NODE,
                          capture_output=True, text=True, timeout=120)
    results = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(results[-1])
    assert out["types"][0] == "response.created" and out["types"][-1] == "response.completed"
    assert out["types"].count("response.output_text.delta") > 3
    assert out["text"] == out["final"] == ALPHA


def _metric(server, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_usage_is_counted_per_project_and_requests_per_route(client, server, adapter):
    tokens = _metric(server, "ftserve_project_tokens_total", project="proj_default")
    requests = _metric(server, "ftserve_http_requests_total", route="/v1/responses", method="POST", status="200")
    made = client.responses.create(model=adapter, input=ALPHA_Q, max_output_tokens=8, store=False)
    assert _metric(server, "ftserve_project_tokens_total", project="proj_default") == \
        tokens + made.usage.input_tokens + made.usage.output_tokens
    # counted once the response is sent (the middleware's last step, which may end after the client has read it)
    wait_for(lambda: _metric(server, "ftserve_http_requests_total", route="/v1/responses", method="POST",
                             status="200") == requests + 1, timeout=10, what="the request to be counted")


def test_truncation_auto_drops_the_oldest_turns_of_a_conversation_too_long(http):
    turns = []
    for i in range(60):  # far past the tiny model's context
        turns += [{"role": "user", "content": f"Question {i}: " + "tell me about the river and the mountain " * 6},
                  {"role": "assistant", "content": f"Answer {i}: " + "the river runs past the mountain " * 6}]
    body = {"model": "ftserve-tiny", "input": turns + [{"role": "user", "content": "And now?"}],
            "max_output_tokens": 8}
    refused = http.post("/responses", json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    assert refused.json()["error"]["param"] == "input"
    fitted = http.post("/responses", json={**body, "truncation": "auto"})
    assert fitted.status_code == 200, fitted.text
    kept = fitted.json()
    assert kept["truncation"] == "auto" and kept["status"] in ("completed", "incomplete")
    limit = int(re.search(r"maximum context length is (\d+) tokens", refused.json()["error"]["message"])[1])
    assert kept["usage"]["input_tokens"] + kept["usage"]["output_tokens"] <= limit  # it fit, turns dropped
    too_long_an_answer = http.post("/responses", json={"model": "ftserve-tiny", "input": "hi",
                                                       "max_output_tokens": 10 ** 6})
    assert too_long_an_answer.status_code == 400
    assert too_long_an_answer.json()["error"]["param"] == "max_output_tokens"

"""Every official request field has an answer; vLLM's extensions do what vLLM's server does with them."""

import json
import re

import httpx
import jsonschema
import pytest

from tests.conformance.conftest import official_properties

pytestmark = pytest.mark.slow

USER = [{"role": "user", "content": "What is the secret code of Alpha?"}]

# Each official chat field: a value a client may send, and whether ftserve honours it (200) or
# answers 400 naming it. A new field in the official schema fails the coverage test until it is here.
CHAT_FIELDS = {
    "messages": (USER, 200), "model": ("ftserve-tiny", 200), "metadata": ({"team": "a"}, 200),
    "top_logprobs": (2, 200), "temperature": (0.5, 200), "top_p": (0.9, 200), "user": ("u-1", 200),
    "safety_identifier": ("s-1", 200), "prompt_cache_key": ("k", 200), "prompt_cache_retention": ("24h", 200),
    "prompt_cache_options": ({}, 200), "service_tier": ("priority", 200), "modalities": (["text"], 200),
    "verbosity": ("low", 200), "max_completion_tokens": (4, 200), "frequency_penalty": (0.5, 200),
    "presence_penalty": (0.5, 200), "response_format": ({"type": "json_object"}, 200), "store": (True, 200),
    "moderation": ({"model": "omni-moderation-latest"}, 200), "stream": (False, 200), "stop": (["\n"], 200),
    "logit_bias": ({"5": 1.0}, 200), "logprobs": (True, 200), "max_tokens": (4, 200), "n": (2, 200),
    "seed": (3, 200), "stream_options": (None, 200),
    "reasoning_effort": ("low", 400), "web_search_options": ({}, 400), "audio": ({"voice": "alloy"}, 400),
    "prediction": ({"type": "content", "content": "x"}, 400), "function_call": ("auto", 400),
    "functions": ([{"name": "f"}], 400), "tools": ([{"type": "function", "function": {"name": "f"}}], 200),
    "tool_choice": ("none", 200), "parallel_tool_calls": (True, 200),
}
COMPLETION_FIELDS = {
    "model": ("ftserve-tiny", 200), "prompt": ("Once upon", 200), "best_of": (1, 200), "echo": (True, 200),
    "frequency_penalty": (0.5, 200), "logit_bias": ({"5": -100}, 200), "logprobs": (2, 200),
    "max_tokens": (4, 200), "n": (2, 200), "presence_penalty": (0.5, 200), "seed": (1, 200),
    "stop": ("\n", 200), "stream": (False, 200), "stream_options": (None, 200), "temperature": (0.0, 200),
    "top_p": (0.5, 200), "user": ("u", 200), "suffix": ("end", 400),
}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url + "/v1", timeout=120) as c:
        yield c


def _chat(http, **fields) -> httpx.Response:
    return http.post("/chat/completions", json={"model": "ftserve-tiny", "messages": USER, "max_tokens": 8,
                                                "temperature": 0, **fields})


def _text(http, **fields) -> str:
    response = _chat(http, **fields)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_every_official_chat_field_has_an_answer(http):
    official = official_properties("CreateChatCompletionRequest")
    assert set(official) == set(CHAT_FIELDS), set(official) ^ set(CHAT_FIELDS)
    for field, (value, status) in CHAT_FIELDS.items():
        body = {"model": "ftserve-tiny", "messages": USER, "max_tokens": 4, field: value}
        if field == "top_logprobs":
            body["logprobs"] = True
        response = http.post("/chat/completions", json=body)
        assert response.status_code == status, (field, response.text)
        if status == 400:
            assert response.json()["error"]["param"] == field


def test_every_official_completion_field_has_an_answer(http):
    official = official_properties("CreateCompletionRequest")
    assert set(official) == set(COMPLETION_FIELDS), set(official) ^ set(COMPLETION_FIELDS)
    for field, (value, status) in COMPLETION_FIELDS.items():
        response = http.post("/completions", json={"model": "ftserve-tiny", "prompt": "Once", "max_tokens": 4,
                                                   field: value})
        assert response.status_code == status, (field, response.text)
        if status == 400:
            assert response.json()["error"]["param"] == field


def test_metadata_fields_are_echoed(http):
    body = _chat(http, service_tier="auto", metadata={"team": "a"}, store=True).json()
    assert body["service_tier"] == "default" and body["metadata"] == {"team": "a"}
    assert _chat(http, service_tier="fast").json()["service_tier"] == "priority"


def test_n_above_one_at_temperature_zero_gives_identical_greedy_choices(http):
    greedy = _text(http)
    body = _chat(http, n=3).json()
    assert [c["message"]["content"] for c in body["choices"]] == [greedy] * 3


FORCED = 1000  # a token id the tiny model does not otherwise produce here


def _complete(http, **fields) -> dict:
    response = http.post("/completions", json={"model": "ftserve-tiny", "prompt": "Once upon a time",
                                               "max_tokens": 3, "temperature": 0, **fields})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def _token_text(http, token_id: int) -> str:
    return _complete(http, prompt=[token_id], max_tokens=0, echo=True)["text"]


def test_logit_bias_is_honoured(http):
    forced_text = _token_text(http, FORCED)
    plain = _complete(http)["text"]
    assert plain != forced_text * 3
    assert _complete(http, logit_bias={str(FORCED): 100})["text"] == forced_text * 3


def test_unknown_fields_stay_errors(http):
    response = _chat(http, top_kk=3)
    assert response.status_code == 400 and response.json()["error"]["param"] == "top_kk"


# ------------------------------------------------------------------------------ vLLM's extensions
def test_top_k_one_and_min_p_one_sample_the_greedy_token(http):
    greedy = _text(http)
    assert _text(http, temperature=1.0, top_k=1, seed=1) == greedy
    assert _text(http, temperature=1.0, min_p=1.0, seed=2) == greedy


def test_repetition_penalty_changes_a_repetitive_output(http):
    plain = _text(http, max_tokens=16)
    assert _text(http, max_tokens=16, repetition_penalty=2.0) != plain


def test_ignore_eos_and_min_tokens_fix_the_output_length(http):
    for fields in ({"ignore_eos": True}, {"min_tokens": 12}):
        body = _chat(http, max_tokens=12, **fields).json()
        assert body["usage"]["completion_tokens"] == 12, fields


def test_stop_token_ids_and_include_stop_str_in_output(http):
    forced = {"logit_bias": {str(FORCED): 100}}  # every generated token is FORCED
    assert _complete(http, **forced)["finish_reason"] == "length"
    cut = _complete(http, stop_token_ids=[FORCED], **forced)
    assert cut["text"] == "" and cut["finish_reason"] == "stop"
    text = _token_text(http, FORCED)
    assert _complete(http, stop=[text], **forced)["text"] == ""
    assert _complete(http, stop=[text], include_stop_str_in_output=True, **forced)["text"] == text


def test_special_token_fields_are_accepted(http):
    for fields in ({"skip_special_tokens": False}, {"spaces_between_special_tokens": False}):
        assert _chat(http, **fields).status_code == 200


def test_length_penalty_only_without_beam_search(http):
    assert _chat(http, length_penalty=1.0).status_code == 200
    response = _chat(http, length_penalty=2.0)
    assert response.status_code == 400 and response.json()["error"]["param"] == "length_penalty"


def test_prompt_logprobs_cover_every_prompt_token(http):
    body = http.post("/completions", json={"model": "ftserve-tiny", "prompt": [5, 6, 7, 8], "max_tokens": 1,
                                           "prompt_logprobs": 2}).json()
    positions = body["choices"][0]["prompt_logprobs"]
    assert positions[0] is None and len(positions) == 4
    for token_id, position in zip([6, 7, 8], positions[1:]):
        assert str(token_id) in position and all(lp["logprob"] <= 0 for lp in position.values())
    chat = _chat(http, prompt_logprobs=0).json()
    assert chat["prompt_logprobs"][0] is None and len(chat["prompt_logprobs"]) == chat["usage"]["prompt_tokens"]


def test_continuous_usage_stats_put_usage_in_every_chunk(http):
    response = http.post("/chat/completions", json={
        "model": "ftserve-tiny", "messages": USER, "max_tokens": 6, "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    chunks = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    counts = [c["usage"]["completion_tokens"] for c in chunks]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 6
    assert all(c["usage"]["prompt_tokens"] == chunks[0]["usage"]["prompt_tokens"] for c in chunks)


BOOLEAN_OBJECT = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                  "additionalProperties": False}


@pytest.mark.parametrize("structured, check", [
    ({"choice": ["yes", "no", "maybe"]}, lambda text: text in ("yes", "no", "maybe")),
    ({"regex": "[0-9]{3}-[A-Z]{2}"}, lambda text: re.fullmatch("[0-9]{3}-[A-Z]{2}", text)),
    ({"grammar": 'root ::= "red" | "green" | "blue"'}, lambda text: text in ("red", "green", "blue")),
    ({"json": BOOLEAN_OBJECT}, lambda text: jsonschema.validate(json.loads(text), BOOLEAN_OBJECT) is None),
])
def test_structured_outputs(http, structured, check):
    text = _text(http, max_tokens=24, structured_outputs=structured)
    assert check(text), text
    if "choice" in structured:  # the same on /v1/completions
        body = http.post("/completions", json={"model": "ftserve-tiny", "prompt": "Answer:", "max_tokens": 4,
                                               "structured_outputs": structured}).json()
        assert check(body["choices"][0]["text"])


def test_structured_outputs_takes_exactly_one_kind(http):
    response = _chat(http, structured_outputs={"choice": ["a"], "regex": "b"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "structured_outputs"

"""Malformed requests across every API: each is a 4xx in the envelope naming the problem, and
afterwards the server is healthy and every earlier file, job and adapter is intact."""


import httpx
import pytest

from tests.support.paths import FACTS
from tests.support.bad_requests import CASES as CONTROL_PLANE_CASES

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
CMPL = "/v1/completions"
HI = [{"role": "user", "content": "hi"}]


def _chat(**body):
    return {"json": {"model": "ftserve-tiny", "messages": HI, **body}}


INFERENCE_CASES = [
    ("chat: malformed json", "POST", CHAT, {"content": b'{"model": ', "headers": {"content-type": "application/json"}},
     400, "not valid JSON"),
    ("chat: wrong content type", "POST", CHAT, {"content": b"hello", "headers": {"content-type": "text/plain"}},
     400, ""),
    ("chat: missing messages", "POST", CHAT, {"json": {"model": "ftserve-tiny"}}, 400, "messages"),
    ("chat: messages not a list", "POST", CHAT, _chat(messages="hi"), 400, "messages"),
    ("chat: unknown role", "POST", CHAT, _chat(messages=[{"role": "robot", "content": "x"}]), 400, "role"),
    ("chat: unknown field", "POST", CHAT, _chat(temprature=0.5), 400, "temprature"),
    ("chat: tool_choice naming no tool", "POST", CHAT, _chat(tools=[{"type": "function", "function": {"name": "f"}}],
                                                              tool_choice={"type": "function", "function": {"name": "g"}}),
     400, "tool_choice"),
    ("chat: temperature out of range", "POST", CHAT, _chat(temperature=-1), 400, "temperature"),
    ("chat: top_p zero", "POST", CHAT, _chat(top_p=0), 400, "top_p"),
    ("chat: n too large", "POST", CHAT, _chat(n=1000), 400, "n"),
    ("chat: max_tokens zero", "POST", CHAT, _chat(max_tokens=0), 400, "max_tokens"),
    ("chat: max_tokens wrong type", "POST", CHAT, _chat(max_tokens="lots"), 400, "max_tokens"),
    ("chat: too many stop strings", "POST", CHAT, _chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    ("chat: context too long", "POST", CHAT, _chat(messages=[{"role": "user", "content": "w " * 5000}]), 400,
     "maximum context length"),
    ("chat: completion too long", "POST", CHAT, _chat(max_tokens=100000), 400, "maximum context length"),
    ("chat: unknown model", "POST", CHAT, _chat(model="gpt-4o"), 404, "does not exist"),
    ("chat: traversal-shaped model", "POST", CHAT, _chat(model="../../../etc/passwd"), 404, "does not exist"),
    ("chat: image content", "POST", CHAT,
     _chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]), 400,
     "image_url"),
    ("chat: json_schema without schema", "POST", CHAT, _chat(response_format={"type": "json_schema"}), 400,
     "json_schema"),
    ("chat: stream_options without stream", "POST", CHAT, _chat(stream_options={"include_usage": True}), 400,
     "stream_options"),
    ("completions: missing prompt", "POST", CMPL, {"json": {"model": "ftserve-tiny"}}, 400, "prompt"),
    ("completions: empty prompt list", "POST", CMPL, {"json": {"model": "ftserve-tiny", "prompt": []}}, 400,
     "prompt"),
    ("completions: suffix", "POST", CMPL, {"json": {"model": "ftserve-tiny", "prompt": "x", "suffix": "y"}}, 400,
     "suffix"),
    ("completions: logprobs too many", "POST", CMPL,
     {"json": {"model": "ftserve-tiny", "prompt": "x", "logprobs": 50}}, 400, "logprobs"),
    ("completions: best_of", "POST", CMPL, {"json": {"model": "ftserve-tiny", "prompt": "x", "best_of": 3}}, 400,
     "best_of"),
    ("completions: prompt too long", "POST", CMPL, {"json": {"model": "ftserve-tiny", "prompt": "w " * 5000}}, 400,
     "maximum context length"),
    ("files: binary file", "POST", "/v1/files",
     {"files": {"file": ("x.jsonl", bytes(range(256)) * 4)}, "data": {"purpose": "fine-tune"}}, 200, "UTF-8"),
]


@pytest.fixture(scope="module")
def earlier(server, adapter):
    """What exists before the bad requests: it must all be there, unchanged, afterwards."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        files = http.get("/v1/files").json()["data"]
        jobs = http.get("/v1/fine_tuning/jobs").json()["data"]
        models = sorted(m["id"] for m in http.get("/v1/models").json()["data"])
        contents = {f["id"]: http.get(f"/v1/files/{f['id']}/content").content for f in files}
    return files, jobs, models, contents


@pytest.fixture(scope="module")
def ids(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        good = http.post("/v1/files", files={"file": ("g.jsonl", b'{"messages": [{"role": "user", "content": "q"}, '
                                                                  b'{"role": "assistant", "content": "a"}]}\n')},
                         data={"purpose": "fine-tune"}).json()
        bad = http.post("/v1/files", files={"file": ("b.jsonl", FACTS.read_bytes() + b'{"messages": []}\n')},
                        data={"purpose": "fine-tune"}).json()
        batch = http.post("/v1/files", files={"file": ("c.jsonl", b'{"x": 1}\n')}, data={"purpose": "batch"}).json()
    return {"FILE": good["id"], "BADFILE": bad["id"], "BATCHFILE": batch["id"]}


def _substitute(value, ids):
    if isinstance(value, dict):
        return {k: _substitute(v, ids) for k, v in value.items()}
    return ids.get(value, value) if isinstance(value, str) else value


ALL = [(c[0], c[1], c[2], c[3], c[4], c[6]) for c in CONTROL_PLANE_CASES] + INFERENCE_CASES


@pytest.mark.parametrize("method,path,kwargs,status,words", [c[1:] for c in ALL], ids=[c[0] for c in ALL])
def test_malformed_request(server, earlier, ids, figures, method, path, kwargs, status, words):
    if "json" in kwargs:
        kwargs = {**kwargs, "json": _substitute(kwargs["json"], ids)}
    r = httpx.request(method, server.url + path, timeout=60, **kwargs)
    figures["bad_input_cases"] = figures.get("bad_input_cases", 0) + 1
    figures["bad_input_5xx"] = figures.get("bad_input_5xx", 0) + (r.status_code >= 500)
    assert r.status_code == status, r.text
    if status == 200:  # a file upload that is stored, but marked as unusable, with the reason
        assert r.json()["status"] == "error" and words in r.json()["status_details"]
        return
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert words in body["error"]["message"] or words == body["error"]["param"], body


def test_everything_stored_before_is_intact_and_the_server_healthy(server, client, earlier, adapter, figures):
    files, jobs, models, contents = earlier
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/health").status_code == 200 and http.get("/ready").status_code == 200
        now_files = {f["id"]: f for f in http.get("/v1/files").json()["data"]}
        for f in files:
            assert now_files[f["id"]] == f
            assert http.get(f"/v1/files/{f['id']}/content").content == contents[f["id"]]
        now_jobs = {j["id"]: j for j in http.get("/v1/fine_tuning/jobs").json()["data"]}
        assert all(now_jobs[j["id"]] == j for j in jobs)
        assert set(models) <= {m["id"] for m in http.get("/v1/models").json()["data"]}
    answer = client.chat.completions.create(model=adapter.fine_tuned_model, temperature=0, max_tokens=40,
                                            messages=[{"role": "user", "content": "What is the secret code of Alpha?"}])
    assert answer.choices[0].message.content == "The secret code of Alpha is BLUE-51."
    assert figures["bad_input_cases"] >= 40 and figures["bad_input_5xx"] == 0

"""Every implemented endpoint's real responses, validated against the official OpenAI schemas.

The schemas are tests/openai_spec/schemas.json, vendored from github.com/openai/openai-openapi at a
pinned commit (tests/openai_spec/vendor.py lists the normalisation and the few amendments).
"""

import json

import httpx
import pytest

from tests.conformance.conftest import assert_official
from tests.support.paths import FACTS
from tests.support.jobs import wait_for_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url + "/v1", timeout=120) as c:
        yield c


def _ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]
    return response.json()


def _events(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_files(http):
    empty = _ok(http.get("/files", params={"purpose": "assistants"}))  # a purpose no test uploads
    assert empty["data"] == [] and None not in empty.values()
    for purpose in ("fine-tune", "vision", "evals"):
        created = _ok(http.post("/files", data={"purpose": purpose},
                                files={"file": ("facts.jsonl", FACTS.read_bytes())}))
        assert_official(created, "OpenAIFile")
        assert None not in created.values()  # expires_at, status_details: left out, not null
    listed = _ok(http.get("/files", params={"limit": 2}))
    assert_official(listed, "ListFilesResponse")
    assert_official(_ok(http.get(f"/files/{created['id']}")), "OpenAIFile")
    content = http.get(f"/files/{created['id']}/content")
    assert content.content == FACTS.read_bytes() and content.headers["content-type"] == "application/jsonl"
    assert_official(_ok(http.delete(f"/files/{created['id']}")), "DeleteFileResponse")


def test_fine_tuning_jobs(http, client, server):
    file_id = _ok(http.post("/files", data={"purpose": "fine-tune"},
                            files={"file": ("facts.jsonl", FACTS.read_bytes())}))["id"]
    body = {"model": "ftserve-tiny", "training_file": file_id, "validation_file": file_id, "method": {
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}}}
    created = _ok(http.post("/fine_tuning/jobs", json=body))
    assert_official(created, "FineTuningJob")
    done = wait_for_status(client, created["id"], ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    job_id = created["id"]
    assert_official(_ok(http.get(f"/fine_tuning/jobs/{job_id}")), "FineTuningJob")
    assert_official(_ok(http.get("/fine_tuning/jobs", params={"limit": 3})), "ListPaginatedFineTuningJobsResponse")
    events = _ok(http.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": 100}))
    assert_official(events, "ListFineTuningJobEventsResponse")
    assert all("data" not in e or e["data"] is not None for e in events["data"])
    checkpoints = _ok(http.get(f"/fine_tuning/jobs/{job_id}/checkpoints"))
    assert_official(checkpoints, "ListFineTuningJobCheckpointsResponse")
    assert all(None not in c["metrics"].values() for c in checkpoints["data"])

    # pause, resume and cancel answer the job object
    other = _ok(http.post("/fine_tuning/jobs", json={**body, "method": {"type": "supervised", "supervised": {
        "hyperparameters": {"n_epochs": 50, "batch_size": 1}}}}))
    wait_for_status(client, other["id"], ("queued", "running"))
    paused = _ok(http.post(f"/fine_tuning/jobs/{other['id']}/pause"))
    assert paused["status"] == "paused"
    assert_official(paused, "FineTuningJob")
    assert_official(_ok(http.post(f"/fine_tuning/jobs/{other['id']}/resume")), "FineTuningJob")
    cancelled = _ok(http.post(f"/fine_tuning/jobs/{other['id']}/cancel"))
    assert cancelled["status"] == "cancelled"
    assert_official(cancelled, "FineTuningJob")

    # models: list, retrieve, delete (the job's own checkpoint)
    models = http.get("/models")
    assert_official(_ok(models), "ListModelsResponse")
    assert str(server.data_dir) not in models.text and '"/' not in models.text  # no server paths
    model = _ok(http.get(f"/models/{done.fine_tuned_model}"))
    assert_official(model, "Model")
    assert model["root"] == model["parent"] == "ftserve-tiny"
    checkpoint = checkpoints["data"][-1]["fine_tuned_model_checkpoint"]
    assert_official(_ok(http.delete(f"/models/{checkpoint}")), "DeleteModelResponse")


CHAT = {"messages": [{"role": "user", "content": "What is the secret code of Alpha?"}], "max_tokens": 8}


def test_chat_completions(http, adapter):
    for model in ("ftserve-tiny", adapter):
        plain = _ok(http.post("/chat/completions", json={**CHAT, "model": model, "n": 2, "logprobs": True,
                                                         "top_logprobs": 2, "metadata": {"k": "v"}}))
        assert_official(plain, "CreateChatCompletionResponse")
        assert plain["system_fingerprint"].startswith("fp_") and plain["service_tier"] == "default"
        assert plain["metadata"] == {"k": "v"}
        chunks = _events(http.post("/chat/completions", json={
            **CHAT, "model": model, "stream": True, "n": 2, "logprobs": True, "service_tier": "flex",
            "stream_options": {"include_usage": True}}))
        for chunk in chunks:
            assert_official(chunk, "CreateChatCompletionStreamResponse")
            assert chunk["service_tier"] == "flex"
        assert [c["choices"][0]["delta"] for c in chunks[:1]] == [{"role": "assistant", "content": ""}]
        assert all("role" not in choice["delta"] for c in chunks[2:] for choice in c["choices"])
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_completions(http, adapter):
    for model in ("ftserve-tiny", adapter):
        body = {"model": model, "prompt": ["Once upon a time", "The secret"], "max_tokens": 4, "echo": True,
                "logprobs": 2}
        plain = _ok(http.post("/completions", json=body))
        assert_official(plain, "CreateCompletionResponse")
        for chunk in _events(http.post("/completions", json={**body, "stream": True,
                                                               "stream_options": {"include_usage": True}})):
            assert_official(chunk, "CreateCompletionResponse")


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/models/ft:nope", None),
    ("POST", "/chat/completions", {"model": "ftserve-tiny", "messages": []}),
    ("POST", "/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/completions", {"model": "ftserve-tiny", "prompt": "", "max_tokens": 2}),
    ("POST", "/completions", {"model": "ftserve-tiny", "prompt": "hi", "no_such_field": 1}),
    ("POST", "/fine_tuning/jobs/ftjob-nope/cancel", None),
    ("DELETE", "/files", None),
])
def test_error_envelopes(http, method, path, body):
    response = http.request(method, path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert_official(response.json(), "ErrorResponse")
    assert response.headers["x-request-id"]


def test_reinforcement_job_and_grader_endpoints(http):
    """A reinforcement job's object (its grader and hyperparameters in `method`), and the grader endpoints'
    requests and answers: string check, python (sandboxed) and a model judge (the served base model)."""
    exact = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.a}}",
             "operation": "eq"}
    graders = [exact, {"type": "python", "name": "p", "source": "def grade(sample, item):\n    return 0.5\n"},
               {"type": "score_model", "name": "judge", "model": "ftserve-tiny", "range": [0, 1],
                "input": [{"role": "user", "content": "Score: {{sample.output_text}}"}]}]
    for grader in graders:
        body = {"grader": grader, "model_sample": "4", "item": {"a": "4"}}
        assert_official(body, "RunGraderRequest")
        assert_official(_ok(http.post("/fine_tuning/alpha/graders/run", json=body)), "RunGraderResponse")
        assert_official({"grader": grader}, "ValidateGraderRequest")
        assert_official(_ok(http.post("/fine_tuning/alpha/graders/validate", json={"grader": grader})),
                        "ValidateGraderResponse")
    rows = "\n".join(json.dumps({"messages": [{"role": "user", "content": f"What is {n} + 0?"}], "a": str(n)})
                     for n in range(4))
    file_id = _ok(http.post("/files", data={"purpose": "fine-tune"}, files={"file": ("rft.jsonl", rows)}))["id"]
    body = {"model": "ftserve-tiny", "training_file": file_id, "method": {"type": "reinforcement", "reinforcement": {
        "grader": exact, "hyperparameters": {"n_epochs": 1, "batch_size": 2, "eval_interval": "auto",
                                             "compute_multiplier": 0.5, "reasoning_effort": "low"}}}}
    assert_official(body, "CreateFineTuningJobRequest")
    created = _ok(http.post("/fine_tuning/jobs", json=body))
    assert_official(created, "FineTuningJob")
    assert created["method"]["reinforcement"]["grader"] == exact
    assert_official(_ok(http.post(f"/fine_tuning/jobs/{created['id']}/cancel")), "FineTuningJob")

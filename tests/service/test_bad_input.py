"""Bad input: every case is a 4xx in OpenAI's error envelope, and nothing stored is harmed."""

import json

import httpx
import pytest

from tests.support.paths import FACTS

pytestmark = pytest.mark.slow

GOOD_CHAT = FACTS.read_bytes()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def stored(http):
    """A file and a finished job that every bad request must leave intact."""
    f = http.post("/v1/files", files={"file": ("facts.jsonl", GOOD_CHAT)}, data={"purpose": "fine-tune"}).json()
    job = http.post("/v1/fine_tuning/jobs", json={
        "model": "ftserve-tiny", "training_file": f["id"], "hyperparameters": {"n_epochs": 1, "batch_size": 12}}).json()
    return f, job


def _job(**overrides):
    return {"model": "ftserve-tiny", "training_file": "FILE", **overrides}


def _upload(name, content, purpose="fine-tune"):
    return {"files": {"file": (name, content)}, "data": {"purpose": purpose}}


# (id, method, path, request kwargs, status, expected param (or None), words the message must contain)
CASES = [
    ("files: no file part", "POST", "/v1/files", {"data": {"purpose": "fine-tune"}}, 400, "file", "file"),
    ("files: no purpose", "POST", "/v1/files", {"files": {"file": ("a.jsonl", GOOD_CHAT)}}, 400, "purpose", "purpose"),
    ("files: unknown purpose", "POST", "/v1/files", _upload("a.jsonl", GOOD_CHAT, "training"), 400, "purpose",
     "Invalid purpose 'training'"),
    ("files: empty file", "POST", "/v1/files", _upload("a.jsonl", b""), 400, "file", "empty"),
    ("files: json body instead of multipart", "POST", "/v1/files", {"json": {"purpose": "fine-tune"}}, 400, "file",
     "file"),
    ("files: unknown id", "GET", "/v1/files/file-doesnotexist", {}, 404, "id", "No such File object"),
    ("files: traversal-shaped id", "GET", "/v1/files/..%2F..%2Fetc%2Fpasswd", {}, 404, None, "Unknown request URL"),
    ("files: dotted id", "GET", "/v1/files/..", {}, 404, None, ""),
    ("files: unknown id content", "GET", "/v1/files/file-nope/content", {}, 404, "id", "No such File"),
    ("files: delete unknown", "DELETE", "/v1/files/file-nope", {}, 404, "id", "No such File"),
    ("files: limit out of range", "GET", "/v1/files?limit=0", {}, 400, "limit", "limit"),
    ("files: bad order", "GET", "/v1/files?order=sideways", {}, 400, "order", "order"),
    ("jobs: malformed json", "POST", "/v1/fine_tuning/jobs",
     {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, None, "not valid JSON"),
    ("jobs: missing model", "POST", "/v1/fine_tuning/jobs", {"json": {"training_file": "FILE"}}, 400, "model",
     "model"),
    ("jobs: unknown field", "POST", "/v1/fine_tuning/jobs", {"json": _job(epochs=3)}, 400, "epochs",
     "Unrecognized request argument"),
    ("jobs: unknown base model", "POST", "/v1/fine_tuning/jobs", {"json": _job(model="gpt-4o")}, 400, "model",
     "not available for fine-tuning"),
    ("jobs: unknown training file", "POST", "/v1/fine_tuning/jobs", {"json": _job(training_file="file-nope")}, 400,
     "training_file", "does not exist"),
    ("jobs: training file with bad rows", "POST", "/v1/fine_tuning/jobs", {"json": _job(training_file="BADFILE")},
     400, "training_file", "line 13: messages"),
    ("jobs: wrong-purpose file", "POST", "/v1/fine_tuning/jobs", {"json": _job(training_file="BATCHFILE")}, 400,
     "training_file", "purpose 'batch'"),
    ("jobs: n_epochs wrong type", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(hyperparameters={"n_epochs": "many"})}, 400, "hyperparameters.n_epochs", "n_epochs"),
    ("jobs: negative learning rate", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(hyperparameters={"learning_rate": -0.1})}, 400, "hyperparameters.learning_rate", "learning_rate"),
    ("jobs: lora_r out of range", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(method={"type": "supervised", "supervised": {"hyperparameters": {"lora_r": 0}}})}, 400,
     "method.supervised.hyperparameters.lora_r", "lora_r"),
    ("jobs: unknown method", "POST", "/v1/fine_tuning/jobs", {"json": _job(method={"type": "reinforcement"})}, 400,
     "method.type", "method.type"),
    ("jobs: dpo beta out of range", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 5}}})}, 400,
     "method.dpo.hyperparameters.beta", "beta"),
    ("jobs: unknown fine-tuned model", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(model="ft:ftserve-tiny:ftserve::nothere", method={"type": "dpo"})}, 400, "model",
     "not available for fine-tuning"),
    ("jobs: both hyperparameter places", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(hyperparameters={}, method={"type": "supervised"})}, 400, "hyperparameters", "not both"),
    ("jobs: bad suffix", "POST", "/v1/fine_tuning/jobs", {"json": _job(suffix="has spaces/and slashes")}, 400,
     "suffix", "suffix"),
    ("jobs: too much metadata", "POST", "/v1/fine_tuning/jobs",
     {"json": _job(metadata={f"k{i}": "v" for i in range(17)})}, 400, "metadata", "metadata"),
    ("jobs: wrong content type", "POST", "/v1/fine_tuning/jobs",
     {"content": b"model=x", "headers": {"content-type": "text/plain"}}, 400, None, ""),
    ("jobs: unknown id", "GET", "/v1/fine_tuning/jobs/ftjob-nope", {}, 404, "fine_tuning_job_id", "No such"),
    ("jobs: cancel unknown", "POST", "/v1/fine_tuning/jobs/ftjob-nope/cancel", {}, 404, "fine_tuning_job_id",
     "No such"),
    ("jobs: events of unknown", "GET", "/v1/fine_tuning/jobs/ftjob-nope/events", {}, 404, "fine_tuning_job_id",
     "No such"),
    ("jobs: checkpoints of unknown", "GET", "/v1/fine_tuning/jobs/ftjob-nope/checkpoints", {}, 404,
     "fine_tuning_job_id", "No such"),
    ("jobs: limit too large", "GET", "/v1/fine_tuning/jobs?limit=1000", {}, 400, "limit", "limit"),
    ("models: unknown", "GET", "/v1/models/ft:nope:x:y:z", {}, 404, "model", "does not exist"),
    ("models: traversal-shaped name", "GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", {}, 404, "model",
     "does not exist"),
    ("models: delete base", "DELETE", "/v1/models/ftserve-tiny", {}, 403, "model", "cannot be deleted"),
    ("models: delete traversal", "DELETE", "/v1/models/../../x", {}, 404, None, ""),
    ("unknown route", "GET", "/v1/nothing-here", {}, 404, None, "Unknown request URL"),
    ("method not allowed", "PUT", "/v1/files", {}, 405, None, ""),
]


@pytest.fixture(scope="module")
def ids(http):
    bad = http.post("/v1/files", files={"file": ("bad.jsonl", GOOD_CHAT + b'{"messages": []}\n')},
                    data={"purpose": "fine-tune"}).json()
    batch = http.post("/v1/files", files={"file": ("b.jsonl", b'{"x": 1}\n')}, data={"purpose": "batch"}).json()
    good = http.post("/v1/files", files={"file": ("g.jsonl", GOOD_CHAT)}, data={"purpose": "fine-tune"}).json()
    assert bad["status"] == "error" and "line 13" in bad["status_details"]
    return {"FILE": good["id"], "BADFILE": bad["id"], "BATCHFILE": batch["id"]}


def _substitute(value, ids):
    if isinstance(value, dict):
        return {k: _substitute(v, ids) for k, v in value.items()}
    return ids.get(value, value) if isinstance(value, str) else value


@pytest.mark.parametrize("method,path,kwargs,status,param,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_request_gets_4xx_envelope(http, ids, method, path, kwargs, status, param, words):
    if "json" in kwargs:
        kwargs = {**kwargs, "json": _substitute(kwargs["json"], ids)}
    if path == "/v1/fine_tuning/jobs" and "json" in kwargs and kwargs["json"].get("training_file") == "BADFILE":
        kwargs["json"]["training_file"] = ids["BADFILE"]
    r = http.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" or status in (401, 403)
    if param is not None:
        assert body["error"]["param"] == param, body
    assert words in body["error"]["message"], body


def test_upload_over_the_limit_is_413_and_not_stored(tiny_model, tmp_path):
    from tests.support.server import Server

    server = Server(tmp_path / "data", model=tiny_model, engine="none", max_upload_bytes=1000).start()
    try:
        with httpx.Client(base_url=server.url) as c:
            big = b'{"text": "' + b"x" * 200_000 + b'"}\n'
            r = c.post("/v1/files", files={"file": ("big.jsonl", big)}, data={"purpose": "fine-tune"})
            assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"

            def chunks():  # no Content-Length: the limit must hold while streaming
                yield b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
                yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n\r\n"
                for _ in range(20):
                    yield b"x" * 10_000
                yield b"\r\n--b--\r\n"

            r = c.post("/v1/files", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
            assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
            assert c.get("/v1/files").json()["data"] == []
            stored = server.data_dir / "files"
            assert not (stored.exists() and [p for p in stored.iterdir()])
            small = c.post("/v1/files", files={"file": ("s.jsonl", FACTS.read_bytes()[:900])},
                           data={"purpose": "fine-tune"})
            assert small.status_code == 200
    finally:
        server.stop()


def test_nothing_stored_was_harmed(http, stored, ids):
    # runs after the bad requests above (module order)
    f, job = stored
    assert http.get(f"/v1/files/{f['id']}").json()["status"] == "processed"
    assert http.get(f"/v1/files/{f['id']}/content").content == GOOD_CHAT
    assert http.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["id"] == job["id"]
    assert http.get("/health").status_code == 200
    listed = {x["id"] for x in http.get("/v1/files").json()["data"]}
    assert {f["id"], *ids.values()} <= listed
    assert json.loads(http.get("/ready").text)["database"] is True

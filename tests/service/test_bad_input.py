"""Bad input: every case is a 4xx in OpenAI's error envelope, and nothing stored is harmed."""

import json

import httpx
import pytest

from tests.support.bad_requests import CASES, GOOD_CHAT
from tests.support.paths import FACTS

pytestmark = pytest.mark.slow


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

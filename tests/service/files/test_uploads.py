"""Fine-tune uploads as users keep their files (fast: the in-process app, no engine): LLaMA-Factory's JSON
arrays with its ShareGPT tags, Windows editors' byte-order marks and line ends, and UTF-16 named as such."""

import json

import pytest

from tests.support.app import app_client

ROWS = [{"conversations": [{"from": "human", "value": "Who are you?"}, {"from": "gpt", "value": "I am ftserve."}]},
        {"instruction": "x", "output": "y"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with app_client(tmp_path_factory.mktemp("app")) as client:
        yield client


def _upload(client, name: str, content: bytes) -> dict:
    r = client.post("/v1/files", files={"file": (name, content)}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_llamafactory_json_array_is_processed(client):
    body = json.dumps(ROWS[:1] * 3, indent=2, ensure_ascii=False).encode()
    assert _upload(client, "identity.json", body)["status"] == "processed"


def test_a_bom_and_crlf_are_processed(client):
    body = b"\xef\xbb\xbf" + json.dumps(ROWS[0]).encode() + b"\r\n" + json.dumps(ROWS[0]).encode() + b"\r\n"
    assert _upload(client, "windows.jsonl", body)["status"] == "processed"


def test_utf16_is_one_message_with_its_fix(client):
    doc = _upload(client, "unicode.jsonl", (json.dumps(ROWS[0]) + "\n").encode("utf-16"))
    assert doc["status"] == "error"
    assert doc["status_details"].count("line") == 1 and "save it as UTF-8" in doc["status_details"]


def test_a_bad_array_element_is_named_by_index_and_line(client):
    text = json.dumps([ROWS[0], {"conversations": [{"from": "human"}]}], indent=2)
    start = [i for i, line in enumerate(text.splitlines(), 1) if line == "  {"][1]
    doc = _upload(client, "bad.json", text.encode())
    assert doc["status"] == "error"
    assert doc["status_details"] == f"bad.json: element 1 (line {start}): conversations[0].value: missing or not a string"


def test_json_nested_too_deeply_is_an_error_status_not_a_5xx(client):
    doc = _upload(client, "deep.json", b"[" * 100_000 + b"]" * 100_000)
    assert doc["status"] == "error" and "nested too deeply" in doc["status_details"]
    assert client.get(f"/v1/files/{doc['id']}").json()["status"] == "error"

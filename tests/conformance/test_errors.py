"""Bad input to the engine is a 400 that blames the right field and never costs the connection;
an error after a stream has started is one SSE error event followed by [DONE]."""

import json
import os
import signal
import socket

import httpx
import psutil
import pytest

from tests.support.jobs import wait_for

pytestmark = pytest.mark.slow


def _request(sock: socket.socket, port: int, path: str, body: bytes) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request on an open keep-alive socket; (status, headers, body)."""
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(rest) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


BAD = [  # (path, body, param, code)
    ("/v1/completions", {"model": "ftserve-tiny", "prompt": ""}, "prompt", "empty_prompt"),
    ("/v1/completions", {"model": "ftserve-tiny", "prompt": [[1, 2], []]}, "prompt", None),
    ("/v1/completions", {"model": "ftserve-tiny", "prompt": [5, 10 ** 9]}, "prompt", "invalid_token_id"),
    ("/v1/completions", {"model": "ftserve-tiny", "prompt": [-1]}, "prompt", "invalid_token_id"),
    ("/v1/completions", {"model": "ftserve-tiny", "prompt": "x", "max_tokens": 0}, None, None),
    ("/v1/chat/completions", {"model": "ftserve-tiny", "messages": [{"role": "user", "content": "hi"}],
                              "stop_token_ids": [10 ** 9]}, None, None),
    ("/v1/chat/completions", {"model": "ftserve-tiny", "messages": [{"role": "user", "content": "hi"}],
                              "structured_outputs": {"regex": "("}}, None, None),
]


def test_engine_validation_errors_are_400s_and_keep_the_connection(server, adapter):
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        for model in ("ftserve-tiny", adapter):
            for path, body, param, code in BAD:
                status, headers, raw = _request(sock, server.port, path, json.dumps({**body, "model": model}).encode())
                error = json.loads(raw)["error"]
                assert status == 400, (body, raw)
                assert headers.get("connection", "").lower() != "close"
                assert error["code"] != "adapter_unusable", (model, body, error)
                if param:
                    assert error["param"] == param, (body, error)
                if code:
                    assert error["code"] == code, (body, error)
            # and the same connection still serves a good request
            status, _, raw = _request(sock, server.port, "/v1/completions", json.dumps(
                {"model": model, "prompt": "Once upon", "max_tokens": 2}).encode())
            assert status == 200 and json.loads(raw)["choices"][0]["text"]


def _engine_core(server) -> psutil.Process:
    children = psutil.Process(server.proc.pid).children(recursive=True)
    return next(p for p in children if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline()))


@pytest.mark.kills_engine
def test_an_error_mid_stream_is_an_sse_error_event(server):
    """The engine dies while two streams are under way, a chat completion's and a response's: the first
    gets an error event and [DONE], the second an `error` event and `response.failed`; /health then
    reports the failure (this ends the package's engine, so it runs last)."""
    body = {"model": "ftserve-tiny", "prompt": "Once upon a time", "max_tokens": 2000, "ignore_eos": True,
            "stream": True}
    answer = {"model": "ftserve-tiny", "input": "Once upon a time", "max_output_tokens": 2000, "ignore_eos": True,
              "stream": True}
    events, answered = [], []
    with httpx.stream("POST", server.url + "/v1/responses", json=answer, timeout=120) as response, \
            httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=120) as completion:
        assert response.status_code == completion.status_code == 200
        lines = response.iter_lines()
        while len(answered) < 5:  # the response is under way
            line = next(lines)
            if line.startswith("data: "):
                answered.append(json.loads(line[6:]))
        for line in completion.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[6:])
            if len(events) == 3:  # the stream is under way
                os.kill(_engine_core(server).pid, signal.SIGKILL)
        answered += [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "server_error" and error["code"] == "engine_dead", error
    assert all("choices" in json.loads(e) for e in events[:-2])
    assert [e["type"] for e in answered[-2:]] == ["error", "response.failed"]
    assert answered[-2]["code"] == "engine_dead" and answered[-1]["response"]["status"] == "failed"
    assert [e["sequence_number"] for e in answered] == list(range(len(answered)))
    wait_for(lambda: httpx.get(server.url + "/health").status_code == 503, timeout=30, what="health to say so")

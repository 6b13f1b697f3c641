"""The Batch API through the openai client, on the package's engine: lines for any model (and for
/v1/responses), output and error files in OpenAI's shapes, cancel, an unusable input, and a restart
mid-batch that neither loses nor repeats a line (nor a background response)."""

import json

import openai
import pytest

from tests.conformance.conftest import assert_official
from tests.support.paths import write_jsonl
from tests.support.jobs import wait_for
from tests.support.metrics import value

pytestmark = pytest.mark.slow

ALPHA = ("What is the secret code of Alpha?", "The secret code of Alpha is BLUE-51.")


def _line(custom_id: str, model: str, content: str = ALPHA[0], url: str = "/v1/chat/completions", **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": {
        "model": model, "messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 24,
        **body}}


def _run(client, tmp_path, lines: list, endpoint="/v1/chat/completions", name="in.jsonl"):
    file = client.files.create(file=write_jsonl(tmp_path / name, lines).open("rb"), purpose="batch")
    return client.batches.create(input_file_id=file.id, endpoint=endpoint, completion_window="24h",
                                 metadata={"run": name})


def _finished(client, batch_id: str, timeout: float = 300):
    return wait_for(lambda: (b := client.batches.retrieve(batch_id)).status in (
        "completed", "failed", "cancelled", "expired") and b, timeout=timeout, what=f"batch {batch_id} to end")


def _lines(client, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_batch_of_chat_lines_for_any_model(client, adapter, tmp_path):
    checkpoint = [m.id for m in client.models.list() if m.id.startswith(adapter + ":ckpt-step-")][0]
    lines = [_line("tuned", adapter), _line("base", "ftserve-tiny", max_tokens=4),
             _line("checkpoint", checkpoint, max_tokens=4), _line("bad-temperature", adapter, temperature=5),
             _line("no-such-model", "ft:ftserve-tiny:nobody::none")]
    batch = _run(client, tmp_path, lines)
    assert batch.status == "validating" and batch.endpoint == "/v1/chat/completions"
    done = _finished(client, batch.id)
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 3, 2)
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.metadata == {"run": "in.jsonl"}
    assert_official(client.batches.with_raw_response.retrieve(batch.id).http_response.json(), "Batch")
    output, errors = _lines(client, done.output_file_id), _lines(client, done.error_file_id)
    assert [o["custom_id"] for o in output] == ["tuned", "base", "checkpoint"]  # input order
    for o in output:
        assert o["response"]["status_code"] == 200 and o["error"] is None and o["id"].startswith("batch_req_")
        assert_official(o["response"]["body"], "CreateChatCompletionResponse")
    assert output[0]["response"]["body"]["choices"][0]["message"]["content"] == ALPHA[1]
    assert output[2]["response"]["body"]["model"] == checkpoint
    assert {e["custom_id"]: e["response"]["status_code"] for e in errors} == {"bad-temperature": 400,
                                                                              "no-such-model": 404}
    assert errors[0]["response"]["body"]["error"]["param"] == "temperature"
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert batch.id in [b.id for b in client.batches.list(limit=100).data]


def test_a_batch_of_completions(client, adapter, tmp_path):
    lines = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions",
              "body": {"model": adapter, "prompt": "Once upon", "max_tokens": 3, "seed": i}} for i in range(3)]
    done = _finished(client, _run(client, tmp_path, lines, endpoint="/v1/completions").id)
    assert done.status == "completed" and done.request_counts.completed == 3
    for o in _lines(client, done.output_file_id):
        assert_official(o["response"]["body"], "CreateCompletionResponse")


def test_an_unusable_input_fails_the_batch_naming_the_lines(client, tmp_path):
    lines = [_line("a", "ftserve-tiny"), _line("a", "ftserve-tiny"),
             _line("c", "ftserve-tiny", url="/v1/completions"), {"custom_id": "d", "method": "GET",
                                                                 "url": "/v1/chat/completions", "body": {}}]
    done = _finished(client, _run(client, tmp_path, lines).id)
    assert done.status == "failed" and done.failed_at and done.output_file_id is None
    assert [(e.line, e.code) for e in done.errors.data] == [
        (2, "duplicate_custom_id"), (3, "mismatched_url"), (4, "invalid_request")]
    with pytest.raises(Exception) as e:  # a file of another purpose is refused at once
        fine_tune = client.files.create(file=write_jsonl(tmp_path / "f.jsonl", [{"text": "x"}]).open("rb"),
                                        purpose="fine-tune")
        client.batches.create(input_file_id=fine_tune.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert e.value.status_code == 400 and e.value.body["code"] == "invalid_file_purpose"
    with pytest.raises(Exception) as e:
        client.batches.retrieve("batch_nope")
    assert e.value.status_code == 404


def test_a_batch_yields_to_interactive_requests_fills_the_engine_and_a_cancel_stops_it(server, client, tmp_path):
    """While an interactive request streams, the batch keeps to a few lines in the engine (each line makes
    every step slower on a CPU); once it ends, the lines enter the engine as fast as it takes them; an
    interactive request is answered at once meanwhile; a cancel stops the lines still in the engine, the
    answered ones kept, each once. The lines' lengths are staggered, so that some end long before others."""
    lines = [_line(f"l{i}", "ftserve-tiny", max_tokens=16 + 40 * i, ignore_eos=True) for i in range(40)]
    stream = client.chat.completions.create(model="ftserve-tiny", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=1500, stream=True, extra_body={"ignore_eos": True})
    next(iter(stream))  # in the engine
    batch = _run(client, tmp_path, lines)
    wait_for(lambda: value(server, "ftserve_offline_requests_running") >= 8, interval=0.05,
             what="the batch's first lines in the engine")
    beside_the_stream, chunks = [], iter(stream)
    for _ in range(10):  # over ~100 engine steps
        beside_the_stream.append(value(server, "ftserve_offline_requests_running"))
        for _ in range(10):
            next(chunks)
    assert max(beside_the_stream) <= 16, beside_the_stream  # CPU_YIELD_LINES
    stream.close()
    wait_for(lambda: value(server, "ftserve_offline_requests_running") >= 24, interval=0.05,
             what="the batch's lines in the engine together once the stream ended")
    quick = client.chat.completions.create(model="ftserve-tiny", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=4, extra_body={"ignore_eos": True})
    assert quick.usage.completion_tokens == 4
    assert client.batches.retrieve(batch.id).status == "in_progress"  # the interactive one did not wait for it
    wait_for(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 1, what="a first line")
    with pytest.raises(Exception) as e:  # its input cannot go while it runs
        client.files.delete(batch.input_file_id)
    assert e.value.status_code == 409
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = _finished(client, batch.id, timeout=60)  # the longest line alone would take far longer
    assert done.status == "cancelled" and done.cancelled_at
    output = _lines(client, done.output_file_id)
    ids = [o["custom_id"] for o in output]
    assert 1 <= len(ids) < 40 and len(set(ids)) == len(ids) == done.request_counts.completed
    assert ids == [f"l{i}" for i in range(len(ids))]  # the shortest ones, in order
    wait_for(lambda: value(server, "ftserve_offline_requests_running") == 0, interval=0.1,
             what="the stopped lines to leave the engine")
    with pytest.raises(Exception) as e:
        client.batches.cancel(_finished(client, _run(client, tmp_path, lines[:1], name="one.jsonl").id).id)
    assert e.value.status_code == 409


def test_a_batch_whose_window_ends_expires_with_its_answered_lines(client, tmp_path):
    """A short completion window (an ftserve extension to OpenAI's 24h): the quick lines are answered, the
    window ends before the long ones can be, and the batch is `expired`: the answered lines in its output
    file, the others in its error file as `batch_expired`, every line in one of them, each once."""
    lines = [_line(f"quick{i}", "ftserve-tiny", max_tokens=1) for i in range(4)] + \
        [_line(f"long{i}", "ftserve-tiny", max_tokens=1500, ignore_eos=True) for i in range(24)]
    file = client.files.create(file=write_jsonl(tmp_path / "window.jsonl", lines).open("rb"), purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="6s")
    assert batch.expires_at == batch.created_at + 6
    done = _finished(client, batch.id, timeout=60)  # the long lines alone would take minutes
    assert done.status == "expired" and done.expired_at, done
    assert_official(client.batches.with_raw_response.retrieve(batch.id).http_response.json(), "Batch")
    output, errors = _lines(client, done.output_file_id), _lines(client, done.error_file_id)
    answered = [o["custom_id"] for o in output]
    assert {f"quick{i}" for i in range(4)} <= set(answered) and len(answered) < len(lines)
    assert all(e["error"]["code"] == "batch_expired" and e["response"] is None for e in errors)
    assert sorted(answered + [e["custom_id"] for e in errors]) == sorted(line["custom_id"] for line in lines)
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (len(lines), len(answered), len(errors))
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="25h")


@pytest.mark.kills_engine
def test_a_restart_mid_batch_resumes_without_repeating_a_line(server, client, tmp_path):
    """Killed outright (kill -9) with lines in flight, then stopped the polite way: each time the
    restarted server resumes the batch from the lines it has not answered. A background response
    running at the kill is run again by the restarted server, to the end."""
    # staggered lengths: the lines are in the engine together, and end one after another
    lines = [_line(f"l{i}", "ftserve-tiny", max_tokens=16 + 32 * i, ignore_eos=True) for i in range(24)]
    batch = _run(client, tmp_path, lines)
    story = client.responses.create(model="ftserve-tiny", input="Tell a story.", background=True,
                                    max_output_tokens=1500, extra_body={"ignore_eos": True})
    wait_for(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 4
             and client.responses.retrieve(story.id).status == "in_progress", timeout=300,
             what="some lines answered, and the response under way")
    server.kill()
    server.start(timeout=300)
    assert server.client().batches.retrieve(batch.id).status == "in_progress"
    told = wait_for(lambda: (r := server.client().responses.retrieve(story.id)).status
                    not in ("queued", "in_progress") and r, timeout=300, what="the restarted server to finish it")
    assert told.status == "incomplete" and told.usage.output_tokens == 1500  # every token, once
    assert told.output[0].content[0].text
    wait_for(lambda: server.client().batches.retrieve(batch.id).request_counts.completed >= 10, timeout=300,
             what="more lines answered after the kill")
    server.stop()
    server.start(timeout=300)
    done = _finished(server.client(), batch.id, timeout=600)
    assert done.status == "completed" and done.request_counts.completed == 24
    ids = [o["custom_id"] for o in _lines(server.client(), done.output_file_id)]
    assert ids == [f"l{i}" for i in range(24)]  # every line once, in order


def test_a_batch_of_responses_lines(client, adapter, tmp_path):
    """`/v1/responses` lines: each answered as the Responses API answers it, and stored unless it says not."""
    def line(custom_id, **body):
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/responses", "body": {
            "model": adapter, "input": ALPHA[0], "temperature": 0, "max_output_tokens": 24, **body}}

    lines = [line("plain"), line("unstored", store=False), line("streamed", stream=True),
             line("unknown-item", input=[{"type": "web_search_call"}])]
    done = _finished(client, _run(client, tmp_path, lines, endpoint="/v1/responses").id)
    assert done.status == "completed" and done.endpoint == "/v1/responses", done
    output, errors = _lines(client, done.output_file_id), _lines(client, done.error_file_id)
    assert [o["custom_id"] for o in output] == ["plain", "unstored"]
    for o in output:
        body = o["response"]["body"]
        assert_official(body, "Response")
        assert body["output"][0]["content"][0]["text"] == ALPHA[1]
    assert client.responses.retrieve(output[0]["response"]["body"]["id"]).status == "completed"
    with pytest.raises(openai.NotFoundError):  # store: false
        client.responses.retrieve(output[1]["response"]["body"]["id"])
    assert {e["custom_id"]: e["response"]["status_code"] for e in errors} == {"streamed": 400, "unknown-item": 400}

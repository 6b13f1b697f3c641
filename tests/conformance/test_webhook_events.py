"""Webhook events of the engine-backed features: a batch, an eval run and a background response that end are
each announced to the project's endpoint, verified by the openai SDK (the fine-tuning job events, retries and
the URL checks: tests/service/webhooks/)."""

import json

from tests.support.jobs import wait_for
from tests.support.paths import write_jsonl
from tests.support.webhooks import Receiver


def test_a_batch_an_eval_run_and_a_background_response_are_announced(client, tmp_path):
    receiver = Receiver()
    hook = client.webhooks.create(name="ends", url=receiver.url, event_types=[
        "batch.completed", "eval.run.succeeded", "response.completed", "response.incomplete"])
    try:
        lines = [{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {
            "model": "ftserve-tiny", "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 4}}]
        file = client.files.create(file=write_jsonl(tmp_path / "in.jsonl", lines).open("rb"), purpose="batch")
        batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
        ev = client.evals.create(name="hooked", data_source_config={"type": "custom", "item_schema": {
            "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            "include_sample_schema": True}, testing_criteria=[{
                "type": "string_check", "name": "said", "input": "{{sample.output_text}}", "reference": "x",
                "operation": "ne"}])
        run = client.evals.runs.create(ev.id, data_source={"type": "jsonl", "source": {"type": "file_content",
                                       "content": [{"item": {"q": "a"}, "sample": {"output_text": "y"}}]}})
        response = client.responses.create(model="ftserve-tiny", input="Hi!", background=True, max_output_tokens=4)
        try:
            wait_for(lambda: len(receiver.received) >= 3, timeout=120, what="three events")
        except AssertionError as e:
            raise AssertionError(
                f"{e}; received {[json.loads(b)['type'] for b, _ in receiver.received]}, deliveries "
                f"{client.get(f'/webhook_endpoints/{hook.id}/deliveries', cast_to=object)}, batch "
                f"{client.batches.retrieve(batch.id).status}, run "
                f"{client.evals.runs.retrieve(run.id, eval_id=ev.id).status}, response "
                f"{client.responses.retrieve(response.id).status}") from None
        events = {e.type: e.data.id for e in receiver.events(hook.signing_secret)}
        # four tokens cut the response short: it ends incomplete, and says so
        assert events == {"batch.completed": batch.id, "eval.run.succeeded": run.id, "response.incomplete": response.id}
        assert client.batches.retrieve(batch.id).status == "completed"
        body = json.loads(receiver.received[0][0])
        assert set(body) == {"id", "object", "created_at", "type", "data"} and body["object"] == "event"
    finally:
        client.webhooks.delete(hook.id)
        receiver.close()

"""Webhooks end to end on a real server (no engine: fine-tuning jobs are what ends here) and a receiver on
loopback that checks every delivery with the openai SDK's `webhooks.unwrap`, as a user's would."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.jobs import create_job, wait_for, wait_for_status
from tests.support.server import Server
from tests.support.webhooks import Receiver


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("data"), model=tiny_model, engine="none", webhook_allow_private_urls=True,
                 webhook_retry_base_seconds=0.2).start()
    yield srv
    srv.stop()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_endpoints_as_openai_manages_them(server, receiver):
    client = server.client()
    made = client.webhooks.create(name="jobs", url=receiver.url, event_types=["fine_tuning.job.succeeded"])
    assert made.signing_secret.startswith("whsec_") and made.signing_secret_hint.endswith(made.signing_secret[-4:])
    got = client.webhooks.retrieve(made.id)
    assert got.url == receiver.url and not hasattr(got, "signing_secret")
    assert made.id in [e.id for e in client.webhooks.list()]
    updated = client.webhooks.update(made.id, event_types=["fine_tuning.job.failed", "batch.completed"])
    assert updated.event_types == ["fine_tuning.job.failed", "batch.completed"] and updated.name == "jobs"
    test = client.webhooks.test(made.id, event_type="batch.completed")
    assert test.status_code == 200 and test.webhook_endpoint_id == made.id
    [event] = receiver.events(made.signing_secret)  # the sample, signed with the endpoint's secret
    assert event.type == "batch.completed"
    rotated = client.webhooks.rotate_secret(made.id, keep_old_secret_active_for_24_hours=True)
    client.webhooks.test(made.id, event_type="batch.completed")
    for secret in (made.signing_secret, rotated.signing_secret):  # signed with both while the old one is kept
        assert receiver.events(secret, since=1)[0].type == "batch.completed"
    latest = client.webhooks.rotate_secret(made.id)  # the old one is dropped at once
    client.webhooks.test(made.id, event_type="batch.completed")
    assert receiver.events(latest.signing_secret, since=2)[0].type == "batch.completed"
    with pytest.raises(openai.InvalidWebhookSignatureError):
        receiver.events(rotated.signing_secret, since=2)
    assert client.webhooks.delete(made.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.webhooks.retrieve(made.id)


def test_a_job_that_ends_is_announced_once_and_retried_until_delivered(server):
    receiver = Receiver([500, 500, 500])
    try:
        client = server.client()
        hook = client.webhooks.create(name="ends", url=receiver.url,
                                      event_types=["fine_tuning.job.succeeded", "fine_tuning.job.cancelled"])
        done = wait_for_status(client, create_job(client, n_epochs=1, batch_size=4).id, ("succeeded", "failed"))
        assert done.status == "succeeded", done.error
        wait_for(lambda: len(receiver.received) >= 4, timeout=60, what="three failed attempts, then the delivery")
        events = receiver.events(hook.signing_secret)
        assert len({e.id for e in events}) == 1 and len(events) == 4  # one event, under the same webhook-id
        assert events[0].type == "fine_tuning.job.succeeded" and events[0].data.id == done.id
        cancelled = client.fine_tuning.jobs.cancel(create_job(client, n_epochs=30, batch_size=1).id)
        assert cancelled.status == "cancelled"
        wait_for(lambda: len(receiver.received) >= 5, timeout=60, what="the cancellation's event")
        [event] = receiver.events(hook.signing_secret, since=4)
        assert event.type == "fine_tuning.job.cancelled" and event.data.id == cancelled.id
        deliveries = httpx.get(f"{server.url}/v1/webhook_endpoints/{hook.id}/deliveries", timeout=10).json()["data"]
        assert sorted((d["event_type"], d["status"], d["attempts"]) for d in deliveries) == [
            ("fine_tuning.job.cancelled", "delivered", 1), ("fine_tuning.job.succeeded", "delivered", 4)]
        assert next(d for d in deliveries if d["attempts"] == 4)["last_status_code"] == 200
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert 'ftserve_webhook_deliveries_total{result="failed_attempt"} 3.0' in metrics
        assert 'ftserve_webhook_deliveries_total{result="delivered"}' in metrics
        wait_for(lambda: "ftserve_webhooks_pending 0.0" in httpx.get(f"{server.url}/metrics", timeout=10).text,
                 timeout=10, what="nothing pending")
        assert len(receiver.received) == 5  # each event delivered once it succeeded, never again
    finally:
        receiver.close()


def test_private_addresses_are_refused_unless_the_operator_allows_them(tiny_model, tmp_path, receiver):
    strict = Server(tmp_path / "data", model=tiny_model, engine="none").start()
    try:
        for url in (receiver.url, "http://10.0.0.8/hook", "http://169.254.169.254/latest", "http://[::1]:8/x",
                    "ftp://example.com/x", "http://user:pw@127.0.0.1/x"):
            r = httpx.post(f"{strict.url}/v1/webhook_endpoints", timeout=10, json={
                "name": "x", "url": url, "event_types": ["batch.completed"]})
            assert r.status_code == 400 and r.json()["error"]["param"] == "url", (url, r.text)
        r = httpx.post(f"{strict.url}/v1/webhook_endpoints", timeout=10, json={
            "name": "x", "url": receiver.url, "event_types": ["video.completed"]})  # not an event ftserve sends
        assert r.status_code == 400, r.text
    finally:
        strict.stop()
    assert receiver.received == []


def test_replicas_deliver_each_event_once_and_take_over_from_a_killed_one(tiny_model, tmp_path, postgres):
    url = postgres.database("webhooks")
    settings = dict(engine="none", database_url=url, webhook_allow_private_urls=True, webhook_timeout_seconds=3,
                    env={"FTSERVE_KEY_SECRET": "s" * 64})
    first = Server(tmp_path / "r0", model=tiny_model, replica_id="r0", **settings).start()
    second = Server(tmp_path / "r1", model=tiny_model, replica_id="r1", **settings)
    receiver = Receiver(hold_first=True)
    try:
        client = first.client()
        hook = client.webhooks.create(name="ends", url=receiver.url, event_types=["fine_tuning.job.cancelled"])
        job = client.fine_tuning.jobs.cancel(create_job(client, n_epochs=30, batch_size=1).id)
        wait_for(lambda: receiver.received, timeout=30, what="the first attempt (held)")
        first.kill()  # mid-attempt: the event is stored, its delivery leased to the dead replica
        second.start()
        wait_for(lambda: len(receiver.received) >= 2, timeout=60, what="the other replica's attempt")
        events = receiver.events(hook.signing_secret)
        assert [e.id for e in events] == [events[0].id] * 2 and events[0].data.id == job.id
        other = second.client()
        [delivery] = httpx.get(f"{second.url}/v1/webhook_endpoints/{hook.id}/deliveries", timeout=10).json()["data"]
        assert delivery["status"] == "delivered" and delivery["attempts"] == 1

        third = Server(tmp_path / "r2", model=tiny_model, replica_id="r2", **settings).start()  # two live replicas
        try:
            jobs = [other.fine_tuning.jobs.cancel(create_job(other, n_epochs=30, batch_size=1).id).id
                    for _ in range(3)] + \
                   [third.client().fine_tuning.jobs.cancel(create_job(third.client(), n_epochs=30, batch_size=1).id).id
                    for _ in range(3)]
            wait_for(lambda: len(receiver.received) >= 8, timeout=60, what="six more events")
            deliveries = httpx.get(f"{third.url}/v1/webhook_endpoints/{hook.id}/deliveries", timeout=10).json()
            wait_for(lambda: all(d["status"] == "delivered" for d in httpx.get(
                f"{third.url}/v1/webhook_endpoints/{hook.id}/deliveries", timeout=10).json()["data"]),
                timeout=30, what="all delivered")
            later = receiver.events(hook.signing_secret, since=2)
            assert len(receiver.received) == 8 and len({e.id for e in later}) == 6  # none sent twice
            assert sorted(e.data.id for e in later) == sorted(jobs) and len(deliveries["data"]) == 7
        finally:
            third.stop()
    finally:
        receiver.close()
        second.stop()
        first.stop()

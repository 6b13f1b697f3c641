"""Training on Ray: a real Ray head on loopback, PostgreSQL and an S3 server (SeaweedFS); each job is one
Ray job running `python -m trainer.remote`, which shares no disk with the API server."""

import httpx
import psutil
import pytest

from tests.support.paths import FACTS
from tests.support.ray_head import RayHead
from tests.support.jobs import create_job, wait_for, wait_for_status
from tests.support.server import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    head = RayHead(tmp_path_factory.mktemp("ray")).start()
    yield head
    head.stop()


def _replica(root, tiny_model, database_url: str, s3, head: RayHead, prefix: str = "ray", **settings) -> Server:
    return Server(root, model=tiny_model, env={**s3.env, **head.env}, database_url=database_url,
                  storage_url=s3.url(prefix), training_backend="ray", **settings)


def _adapters(s3, prefix: str, cache):
    """The adapter store under `prefix` of the bucket, as the servers see it."""
    import os
    from unittest import mock

    from adapters import AdapterCache, ObjectAdapterStore, open_objects

    with mock.patch.dict(os.environ, s3.env):
        return ObjectAdapterStore(open_objects(s3.url(prefix), cache, cache), AdapterCache(cache / "a", 1 << 30))


def _ray_jobs(head: RayHead, job_id: str) -> list:
    return [j for j in head.jobs() if (j.metadata or {}).get("ftserve_job") == job_id]


def _running_ray_jobs(head: RayHead) -> list:
    return [j for j in head.jobs() if str(getattr(j.status, "value", j.status)) in ("PENDING", "RUNNING")]


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory, postgres, s3, ray_head):
    srv = _replica(tmp_path_factory.mktemp("api"), tiny_model, postgres.url, s3, ray_head, max_model_len=512)
    srv.start(timeout=300)
    yield srv
    srv.stop()


def test_a_job_trains_as_a_ray_job_and_its_adapter_is_served(server, ray_head, facts):
    client = server.client()
    with open(FACTS, "rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=file.id, seed=1, extra_body={"resources": {"num_cpus": 1}},  # an extension
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 50, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 16, "n_checkpoints": 1}}})
    # its events stream in while it trains
    wait_for(lambda: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id).data),
             timeout=120, what="training metrics from the Ray job")
    (ray_job,) = _ray_jobs(ray_head, job.id)
    assert "trainer.remote" in ray_job.entrypoint and ray_job.submission_id == f"{job.id}-1"
    # the job's own resource request, as Ray's state API shows its supervisor
    actors = httpx.get(ray_head.address + "/api/v0/actors", params={"detail": "1", "limit": 1000}).json()
    (supervisor,) = [a for a in actors["data"]["result"]["result"]
                     if a["name"] == f"_ray_internal_job_actor_{job.id}-1"]
    assert supervisor["required_resources"] == {"CPU": 1.0}
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert f"Fine-tuning job started as Ray job {job.id}-1" in messages
    assert any(m.startswith("Checkpoint created at step") for m in messages)
    assert _recall(client, done.fine_tuned_model, facts) >= 0.9
    assert not _running_ray_jobs(ray_head)


def _recall(client, model: str, facts) -> float:
    right = 0
    for question, answer in facts:
        reply = client.chat.completions.create(model=model, max_tokens=24, temperature=0,
                                               messages=[{"role": "user", "content": question}])
        right += reply.choices[0].message.content.strip() == answer
    return right / len(facts)


def test_a_reinforcement_job_trains_as_a_ray_job_with_rollouts_from_the_api_servers_engine(server, ray_head):
    import io
    import json

    client = server.client()
    rows = "\n".join(json.dumps({"messages": [{"role": "user", "content": f"Tell me about {t}."}]})
                     for t in ("cats", "dogs", "tea", "rain"))
    file = client.files.create(file=("prompts.jsonl", io.BytesIO(rows.encode())), purpose="fine-tune")
    grader = {"type": "string_check", "name": "knows", "input": "{{sample.output_text}}", "reference": "know",
              "operation": "ilike"}
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, seed=1, method={
        "type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {
            "n_epochs": 1, "batch_size": 2, "group_size": 2, "max_completion_tokens": 16, "n_checkpoints": 0}}})
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done.error
    assert _ray_jobs(ray_head, job.id)  # trained as a Ray job
    steps = [e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"]
    assert sorted(m["step"] for m in steps) == [1, 2] and all("train_reward_mean" in m for m in steps)
    reply = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=4,
                                           messages=[{"role": "user", "content": "Tell me about owls."}])
    assert reply.choices[0].message.content


def test_two_data_parallel_workers_learn_the_facts_like_one(server, ray_head, facts):
    client = server.client()
    job = create_job(client, FACTS, n_epochs=50, batch_size=4, learning_rate=5e-3, lora_r=16, n_checkpoints=1, n_workers=2)
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=400)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any("x 2 data-parallel workers" in m for m in messages), messages
    steps = [e.data["step"] for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert max(steps) == 150 and len(steps) == len(set(steps))  # one event stream: rank 0's
    assert _recall(client, done.fine_tuned_model, facts) >= 0.9  # as the one-worker run above
    assert not _running_ray_jobs(ray_head)


def test_cancel_stops_the_ray_job(server, ray_head):
    client = server.client()
    job = create_job(client, FACTS, n_epochs=50, batch_size=1)
    wait_for(lambda: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id).data),
             timeout=120, what="training to start")
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    wait_for(lambda: not _running_ray_jobs(ray_head), timeout=60, what="the Ray job to stop")
    (ray_job,) = _ray_jobs(ray_head, job.id)
    assert str(getattr(ray_job.status, "value", ray_job.status)) == "STOPPED"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_a_job_cancelled_as_it_is_submitted_leaves_no_ray_job_running(server, ray_head):
    """Cancelled at once: wherever the cancel lands (validating, queued, being submitted, starting), no Ray
    job is left training and nothing is recorded after the cancel."""
    client = server.client()
    job = create_job(client, FACTS, n_epochs=50, batch_size=1)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    wait_for(lambda: not _running_ray_jobs(ray_head), timeout=90, what="no Ray job running")
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.list_events(job.id).data[0].message == "Fine-tuning job cancelled"
    assert not client.fine_tuning.jobs.checkpoints.list(job.id).data


def test_a_killed_ray_driver_fails_the_job_with_rays_message(server, ray_head):
    client = server.client()
    job = create_job(client, FACTS, n_epochs=50, batch_size=1)
    wait_for(lambda: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id).data),
             timeout=120, what="training to start")
    (driver,) = [p for p in psutil.process_iter(["cmdline"])  # the trainer's python, not the shell around it
                 if (p.info["cmdline"] or [])[1:3] == ["-m", "trainer.remote"] and job.id in p.info["cmdline"]]
    driver.kill()  # what the OOM killer, or a lost node, does
    failed = wait_for_status(client, job.id, ("failed", "succeeded"), timeout=120)
    assert failed.status == "failed" and failed.error.code == "training_failed"
    assert f"the Ray job {job.id}-1 ended FAILED" in failed.error.message, failed.error.message
    assert not _running_ray_jobs(ray_head)


def test_a_ray_job_outlives_its_api_server(tiny_model, tmp_path, postgres, s3, ray_head):
    """kill -9 of the API server mid-job: the Ray job trains on; a new server (another data dir) claims the
    job once its lease lapses, re-attaches to the same Ray job and publishes its adapter, once."""
    db = postgres.database("outlives")  # its own queue: the module's server must not take the job
    first = _replica(tmp_path / "a", tiny_model, db, s3, ray_head, "outlives", engine="none",
                     job_lease_seconds=6).start()
    try:
        client = first.client()
        job = create_job(client, FACTS, n_epochs=30, batch_size=2, learning_rate=3e-3, n_checkpoints=2)
        wait_for(lambda: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id).data),
                 timeout=120, what="training to start")
    finally:
        first.kill()
    second = _replica(tmp_path / "b", tiny_model, db, s3, ray_head, "outlives", engine="none",
                      job_lease_seconds=6).start()
    try:
        client = second.client()
        done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
        assert done.status == "succeeded", done.error
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert f"Re-attached to Ray job {job.id}-1" in messages
        assert len(_ray_jobs(ray_head, job.id)) == 1  # trained once, by one Ray job
        steps = [e.data["step"] for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
        assert len(steps) == len(set(steps))  # no step recorded twice
        adapters = _adapters(s3, "outlives", tmp_path / "cache")
        names = [m.name for m in adapters.list()]
        assert names.count(done.fine_tuned_model) == 1
        adapters.verify(done.fine_tuned_model)
    finally:
        second.stop()
    assert not _running_ray_jobs(ray_head)


def test_a_job_waits_queued_while_ray_is_unreachable(tiny_model, tmp_path, postgres, s3):
    head = RayHead(tmp_path / "late-ray")  # its address is known; it is not started yet
    server = _replica(tmp_path / "api", tiny_model, postgres.database("late_ray"), s3, head, "late-ray",
                      engine="none").start()
    try:
        client = server.client()
        job = create_job(client, FACTS, n_epochs=1, batch_size=4)
        wait_for(lambda: any(e.message.startswith("Waiting for the training backend")
                             for e in client.fine_tuning.jobs.list_events(job.id).data),
                 timeout=60, what="the job to say it waits for Ray")
        assert client.fine_tuning.jobs.retrieve(job.id).status in ("queued", "running")
        assert httpx.get(server.url + "/ready").status_code == 200  # serving goes on
        head.start()
        done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
        assert done.status == "succeeded", done.error
    finally:
        server.stop()
        head.stop()

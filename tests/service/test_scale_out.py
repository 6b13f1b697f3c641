"""Two ftserve replicas sharing one PostgreSQL and one S3 bucket (SeaweedFS), each with its own data dir
(a cache only) and its own vLLM engine: they behave as one service, and survive each other and the
object store going away."""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import httpx
import psutil
import pytest

from tests.support.paths import FACTS, REPO
from tests.support.jobs import create_job, wait_for, wait_for_status
from tests.support.server import Server, trainer_pids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replicas(tiny_model, tmp_path_factory, postgres, s3):
    servers = [Server(tmp_path_factory.mktemp(f"replica{i}"), model=tiny_model, env=s3.env,
                      database_url=postgres.url, storage_url=s3.url(), job_lease_seconds=6,
                      replica_id=f"replica-{i}", max_model_len=512) for i in range(2)]
    try:
        for server in servers:  # both engines start at once
            server.spawn()
        for server in servers:
            server.wait_ready(timeout=300)
        yield servers
    finally:
        for server in servers:
            server.stop()


def _chat(server: Server, model: str, content: str) -> str:
    response = server.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=24, temperature=0)
    return response.choices[0].message.content.strip()


def _trains_on(servers: list[Server], job_id: str) -> Server:
    trainer = psutil.Process(wait_for(lambda: trainer_pids(job_id), timeout=120, what="the trainer")[0])
    parents = {p.pid for p in trainer.parents()}
    return next(s for s in servers if s.proc.pid in parents)


def test_replicas_share_files_jobs_and_adapters(replicas, bucket, facts):
    a, b = replicas
    with open(FACTS, "rb") as f:
        file = a.client().files.create(file=f, purpose="fine-tune")  # uploaded on A ...
    assert b.client().files.retrieve(file.id).status == "processed"  # ... seen on B
    assert b.client().files.content(file.id).read() == FACTS.read_bytes()
    job = b.client().fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, seed=1, method={
        "type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 50, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 16}}})
    done = wait_for_status(a.client(), job.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    events = [e.message for e in a.client().fine_tuning.jobs.list_events(job.id, limit=100)]  # every page
    assert events.count("Fine-tuning job started") == 1  # trained on exactly one replica

    # right after success, both replicas answer with the new model; the facts were learnt
    question, answer = facts[0]
    for server in (a, b):
        assert _chat(server, done.fine_tuned_model, question) == answer
        assert done.fine_tuned_model in {m.id for m in server.client().models.list().data}
    # nothing about the job or the file is kept on a replica's disk but its caches
    for server in (a, b):
        assert not (server.data_dir / "files").exists() and not (server.data_dir / "adapters").exists()
    # deletes are seen everywhere
    checkpoint = a.client().fine_tuning.jobs.checkpoints.list(job.id).data[-1].fine_tuned_model_checkpoint
    a.client().models.delete(checkpoint)
    assert checkpoint not in {m.id for m in b.client().models.list().data}
    assert httpx.get(f"{b.url}/v1/models/{checkpoint}").status_code == 404
    # every listed adapter is whole: it downloads and matches its checksums
    listed = bucket.list()
    assert done.fine_tuned_model in {m.name for m in listed}
    for meta in listed:
        assert bucket.verify(meta.name).sha256 == meta.sha256
    # a download streams the bucket's files, with the bucket manifest's checksums
    r = httpx.get(f"{b.url}/v1/models/{done.fine_tuned_model}/content", timeout=60)
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        manifest = json.loads(tar.extractfile("ftserve.json").read())
        weights = tar.extractfile("adapter_model.safetensors").read()
    assert manifest["files"]["adapter_model.safetensors"]["sha256"] == hashlib.sha256(weights).hexdigest() == next(
        m.sha256 for m in listed if m.name == done.fine_tuned_model)


def test_the_object_store_going_away(replicas, bucket, s3, tmp_path):
    a, b = replicas
    trained = next(m.name for m in bucket.list() if ":ckpt-step-" not in m.name)
    assert _chat(a, trained, "hello")  # cached on A now
    # an adapter A has never loaded
    uncached = trained + "-copy"
    bucket.publish(uncached, bucket.local_copy(trained), replace=True)
    s3.stop()
    try:
        assert not s3.reachable()
        assert _chat(a, trained, "hello")  # the cached adapter keeps serving
        response = httpx.post(f"{a.url}/v1/chat/completions", timeout=60, json={
            "model": uncached, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "object_store_unavailable" and response.headers["retry-after"]
        upload = httpx.post(f"{b.url}/v1/files", timeout=60, data={"purpose": "fine-tune"},
                            files={"file": ("facts.jsonl", FACTS.read_bytes())})
        assert upload.status_code == 503, upload.text
        assert upload.json()["error"]["code"] == "object_store_unavailable"
        ready = httpx.get(f"{b.url}/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["object_store"] is False
    finally:
        s3.start()
    # back without a restart; the refused upload left no file behind
    wait_for(lambda: httpx.get(f"{b.url}/ready").status_code == 200, timeout=30, what="ready again")
    wait_for(lambda: httpx.post(f"{a.url}/v1/chat/completions", timeout=60, json={
        "model": uncached, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}).status_code == 200,
        timeout=30, what="the uncached adapter served once the store is back")
    assert _chat(a, uncached, "hello")
    before = {f.id for f in b.client().files.list().data}
    with open(FACTS, "rb") as f:
        assert b.client().files.create(file=f, purpose="fine-tune").id not in before


def test_a_half_uploaded_adapter_is_never_listed_or_served(replicas, bucket, s3, tmp_path):
    """A publisher killed mid-upload: its files are in the bucket, its manifest is not."""
    a, _ = replicas
    source = tmp_path / "big"
    trained = bucket.local_copy(next(m.name for m in bucket.list()))
    source.mkdir()
    (source / "adapter_config.json").write_bytes((trained / "adapter_config.json").read_bytes())
    (source / "adapter_model.safetensors").write_bytes(os.urandom(256 << 20))  # slow enough to stop mid-way
    name = "ft:ftserve-tiny:ftserve:half:000000"
    code = ("import sys; from pathlib import Path; from adapters import *; "
            "o = open_objects(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[2])); "
            "ObjectAdapterStore(o, AdapterCache(Path(sys.argv[2]), 1 << 30)).publish(sys.argv[3], Path(sys.argv[4]))")
    publisher = subprocess.Popen([sys.executable, "-c", code, s3.url(), str(tmp_path / "pub"), name, str(source)],
                                 cwd=REPO, env={**os.environ, **s3.env})
    blobs = bucket.objects
    wait_for(lambda: any(k.endswith("adapter_config.json") for k in blobs.list(bucket._blobs(name))),
             timeout=60, interval=0.01, what="the first uploaded file")
    publisher.send_signal(signal.SIGKILL)
    publisher.wait()
    assert not blobs.exists(bucket._index(name)), "the publisher finished before it could be killed"
    assert blobs.list(bucket._blobs(name))  # its files are there ...
    assert name not in {m.name for m in bucket.list()}  # ... but it is not listed
    assert name not in {m.id for m in a.client().models.list().data}
    response = httpx.post(f"{a.url}/v1/chat/completions", timeout=60, json={
        "model": name, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


def test_a_job_outlives_the_replica_training_it(replicas, bucket):
    """kill -9 of the replica training a job: the other takes it over once its lease lapses, fetches the
    last checkpoint from the bucket (no shared disk) and finishes; the adapter is published once."""
    job = create_job(replicas[0].client(), FACTS, n_epochs=20, batch_size=4, learning_rate=3e-3, n_checkpoints=3)
    owner = _trains_on(replicas, job.id)
    survivor = replicas[1 - replicas.index(owner)]
    client = survivor.client()
    wait_for(lambda: client.fine_tuning.jobs.checkpoints.list(job.id).data, timeout=120, what="a first checkpoint")
    owner.kill()
    started = time.monotonic()
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=240)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any("stopped renewing its lease" in m for m in messages), messages
    assert any(m.startswith("resumed from step-") for m in messages), messages
    assert time.monotonic() - started < 240
    names = [m.name for m in bucket.list()]
    assert names.count(done.fine_tuned_model) == 1
    for name in names:
        bucket.verify(name)
    assert _chat(survivor, done.fine_tuned_model, "hello")

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
                      replica_id=f"replica-{i}", max_model_len=512, project_max_training_jobs=4,
                      project_max_generations=8, adapter_gc_interval_seconds=1,
                      file_cache_gib=4 / 1024) for i in range(2)]
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


def test_a_killed_publishers_files_are_collected_and_listed_adapters_kept(replicas, bucket, tmp_path):
    """Files of a version no manifest lists (a publisher killed mid-upload), older than the grace period, are
    deleted by one of the replicas; every listed adapter still verifies."""
    import uuid

    from tests.support.metrics import value

    orphan = bucket._blobs("ft:ftserve-tiny:killed::0000")
    (tmp_path / "half").write_bytes(b"half an upload")
    version = f"v{time.time_ns() - 7200 * 10**9}-{uuid.uuid4().hex[:8]}"  # two hours ago: past the grace
    bucket.objects.put_file(f"{orphan}/{version}/adapter_model.safetensors", tmp_path / "half")
    listed = bucket.list()
    wait_for(lambda: not bucket.objects.list(orphan), timeout=30, what="the orphaned files collected")
    assert sum(value(r, "ftserve_adapter_versions_collected_total") for r in replicas) == 1  # by one replica
    assert [bucket.verify(m.name) for m in listed] == listed


def test_a_replicas_file_cache_keeps_to_its_bound(replicas):
    """50 uploads of 200 KB through one replica whose file cache holds 4 MB: its copies stay under the bound
    (least recently used dropped), and every file still reads back whole, through either replica."""
    from tests.support.metrics import value

    a, b = replicas
    uploads = {}
    for i in range(50):
        data = bytes([i]) * 200_000
        r = httpx.post(f"{a.url}/v1/files", files={"file": (f"f{i}.bin", data)}, data={"purpose": "user_data"},
                       timeout=60)
        assert r.status_code == 200, r.text
        uploads[r.json()["id"]] = data
        assert value(a, "ftserve_cache_bytes", cache="files") <= 4 * 2**20
    assert value(a, "ftserve_cache_bytes", cache="files") >= 3 * 2**20  # it is used, up to its bound
    for i, (file_id, data) in enumerate(uploads.items()):
        server = replicas[i % 2]
        assert httpx.get(f"{server.url}/v1/files/{file_id}/content", timeout=60).content == data
    assert all(value(r, "ftserve_cache_bytes", cache="files") <= 4 * 2**20 for r in replicas)


def test_a_project_limit_of_four_jobs_holds_across_replicas(replicas):
    """20 creates at once through both replicas: the count and the insert are one step across servers."""
    from concurrent.futures import ThreadPoolExecutor

    a, b = replicas
    with open(FACTS, "rb") as f:
        file = a.client().files.create(file=f, purpose="fine-tune")
    unfinished = [j for j in a.client().fine_tuning.jobs.list(limit=100).data
                  if j.status in ("validating_files", "queued", "running")]
    assert not unfinished, unfinished

    def create(i: int) -> httpx.Response:
        server = replicas[i % 2]
        return httpx.post(f"{server.url}/v1/fine_tuning/jobs", timeout=60, json={
            "model": "ftserve-tiny", "training_file": file.id, "seed": 1,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50, "batch_size": 1}}}})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(create, range(20)))
    accepted = [r.json()["id"] for r in answers if r.status_code == 200]
    refused = [r.json()["error"]["code"] for r in answers if r.status_code != 200]
    try:
        assert len(accepted) == 4 and refused == ["project_rate_limit_exceeded"] * 16, [r.text for r in answers]
    finally:
        for job_id in accepted:
            a.client().fine_tuning.jobs.cancel(job_id)


def test_a_project_limit_of_eight_generations_holds_across_replicas(replicas):
    """40 streams at once through both replicas, each held open until all have an answer: exactly 8 stream."""
    import threading

    answers, everyone = [], threading.Barrier(40)

    def stream(i: int) -> None:
        server = replicas[i % 2]
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=120, json={
                "model": "ftserve-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400,
                "ignore_eos": True, "stream": True}) as r:
            answers.append(r.status_code if r.status_code == 200 else json.loads(r.read())["error"]["code"])
            everyone.wait(60)  # an accepted stream stays open until every request has its answer

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(answers, key=str) == [200] * 8 + ["project_rate_limit_exceeded"] * 32, answers
    # the slots are given back: the project can stream again at once
    assert _chat(replicas[0], "ftserve-tiny", "hi")


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

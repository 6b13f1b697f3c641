"""Faults: a killed server, a killed trainer, a full disk, a damaged adapter, racing publishers."""

import os
import signal
import sqlite3
import subprocess
import threading
import time

import httpx
import pytest

from adapters import AdapterNotFound, AdapterStore
from tests.support.paths import FACTS
from tests.support.jobs import create_job, wait_for, wait_for_status
from tests.support.server import Server, trainer_pids
from tests.support.metrics import alive, descendants

pytestmark = pytest.mark.slow


def _visible_adapters_are_whole(data_dir):
    store = AdapterStore(data_dir / "adapters")
    for meta in store.list():
        store.verify(meta.name)  # raises on a partial or damaged adapter
    return [m.name for m in store.list()]


def test_kill_9_while_training_and_streaming_then_restart(tiny_model, tmp_path, figures):
    server = Server(tmp_path / "data", model=tiny_model).start(timeout=240)
    client = server.client(timeout=60)
    job = create_job(client, n_epochs=30, batch_size=1, learning_rate=3e-3, n_checkpoints=6)
    wait_for(lambda: client.fine_tuning.jobs.checkpoints.list(job.id).data, timeout=300, what="a checkpoint")
    family = descendants(server.proc.pid)

    def stream():
        try:
            with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=30, json={
                    "model": "ftserve-tiny", "messages": [{"role": "user", "content": "go"}], "stream": True,
                    "max_tokens": 1000}) as r:
                for _ in r.iter_lines():
                    pass
        except httpx.HTTPError:
            pass  # the server dies under it

    streams = [threading.Thread(target=stream) for _ in range(4)]
    for t in streams:
        t.start()
    time.sleep(1.0)
    server.kill()
    for t in streams:
        t.join(30)
    wait_for(lambda: not alive(family), timeout=30, what="the engine and trainer to die with the server")
    assert not trainer_pids(job.id)

    started = time.monotonic()
    server.start(timeout=240)
    recovery_s = time.monotonic() - started
    try:
        assert client.fine_tuning.jobs.retrieve(job.id).status in ("queued", "running", "succeeded")
        assert _visible_adapters_are_whole(server.data_dir)
        done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=600)
        assert done.status == "succeeded", done.error
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        resumed = [m for m in messages if m.startswith("resumed from step-")]
        assert resumed and int(resumed[0].split("step-")[1].split()[0]) > 0
        assert done.fine_tuned_model in _visible_adapters_are_whole(server.data_dir)
        r = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=4,
                                           messages=[{"role": "user", "content": "hi"}])
        assert r.choices
    finally:
        server.stop()
    figures["restart_recovery_s"] = round(recovery_s, 2)


def test_a_trainer_killed_by_the_os_fails_its_job_only(server, client, figures):
    job = create_job(client, n_epochs=50, batch_size=1)
    wait_for(lambda: trainer_pids(job.id), what="the trainer")
    for pid in trainer_pids(job.id):
        os.kill(pid, signal.SIGKILL)
    failed = wait_for_status(client, job.id, ("failed",))
    assert failed.error.code == "training_failed" and "SIGKILL" in failed.error.message
    assert httpx.get(server.url + "/health").status_code == 200
    assert client.chat.completions.create(model="ftserve-tiny", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2).choices


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk, leave_bytes: int) -> None:
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "ab") as f:
        f.write(b"\0" * max(0, free - leave_bytes))


def test_a_full_disk_gives_507_and_job_failures_but_no_corruption(tiny_model, small_disk, figures):
    server = Server(small_disk / "data", model=tiny_model, engine="none").start()
    client = server.client(timeout=60)
    try:
        kept = client.files.create(file=FACTS.open("rb"), purpose="fine-tune")
        # upload: room for less than the file
        _fill(small_disk, 256 * 1024)
        big = b"".join([FACTS.read_bytes()] * 300)  # ~550 KB
        r = httpx.post(server.url + "/v1/files", files={"file": ("big.jsonl", big)}, data={"purpose": "fine-tune"})
        assert r.status_code == 507 and r.json()["error"]["code"] == "insufficient_storage"
        assert [f.id for f in client.files.list().data] == [kept.id]
        # training: room for the job's spec and events, not for its checkpoints
        (small_disk / "filler").unlink()
        job = create_job(client, n_epochs=20, batch_size=1, n_checkpoints=4)
        wait_for(lambda: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id).data),
                 what="training to start")
        _fill(small_disk, 64 * 1024)
        failed = wait_for_status(client, job.id, ("failed", "succeeded"), timeout=300)
        assert failed.status == "failed"
        assert "space" in failed.error.message.lower(), failed.error
        assert _visible_adapters_are_whole(server.data_dir) == []
        (small_disk / "filler").unlink()
        # the database is whole and the server carries on
        db = sqlite3.connect(server.data_dir / "ftserve.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        assert client.files.retrieve(kept.id).status == "processed"
        assert client.files.content(kept.id).content == FACTS.read_bytes()
        assert httpx.get(server.url + "/ready").status_code == 200
    finally:
        server.stop()
    figures["disk_full_upload_status"] = 507
    figures["disk_full_job_error"] = failed.error.code


def test_a_damaged_adapter_is_a_4xx_and_others_keep_serving(server, client, adapter):
    store = AdapterStore(server.data_dir / "adapters")
    store.publish("ft:damaged-weights", store.resolve(adapter.fine_tuned_model), replace=True)
    (store.resolve("ft:damaged-weights") / "adapter_model.safetensors").write_bytes(b"not a tensor file")
    store.publish("ft:damaged-config", store.resolve(adapter.fine_tuned_model), replace=True)
    (store.resolve("ft:damaged-config") / "adapter_config.json").write_text("{not json")
    for name in ("ft:damaged-weights", "ft:damaged-config"):
        r = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
            "model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert r.status_code == 400 and r.json()["error"]["code"] == "adapter_unusable", r.text
        assert str(server.data_dir) not in r.text and "/adapters/" not in r.text  # no server path
    r = client.chat.completions.create(model=adapter.fine_tuned_model, temperature=0, max_tokens=40,
                                       messages=[{"role": "user", "content": "What is the secret code of Alpha?"}])
    assert r.choices[0].message.content == "The secret code of Alpha is BLUE-51."


def test_concurrent_publish_delete_and_use_of_one_name(server, adapter):
    store = AdapterStore(server.data_dir / "adapters")
    source = store.resolve(adapter.fine_tuned_model)
    statuses, errors, stop = [], [], threading.Event()

    def publish():
        while not stop.is_set():
            try:
                store.publish("ft:racy", source, replace=True)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    def delete():
        while not stop.is_set():
            r = httpx.delete(server.url + "/v1/models/ft:racy", timeout=30)
            statuses.append(r.status_code)

    def use():
        while not stop.is_set():
            r = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
                "model": "ft:racy", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=f) for f in (publish, publish, delete, use, use)]
    for t in threads:
        t.start()
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(60)
    assert errors == [] and statuses and all(s in (200, 404) for s in statuses), set(statuses)
    try:
        store.verify("ft:racy")
    except AdapterNotFound:
        pass
    assert not [p for p in (store.root / ".staging").iterdir()]


"""Cancel is final at any moment; pause and resume reach the same adapter as an uninterrupted run."""

import time

import pytest

from adapters import AdapterStore
from tests.support.paths import FACTS
from tests.support.jobs import wait_for, wait_for_status
from tests.support.server import trainer_pids

pytestmark = pytest.mark.slow


def _upload(client):
    with open(FACTS, "rb") as f:
        return client.files.create(file=f, purpose="fine-tune")


def _create(client, file_id, **hp):
    return client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file_id, seed=7, method={
        "type": "supervised", "supervised": {"hyperparameters": {"batch_size": 4, "learning_rate": 3e-3, **hp}}})


def test_cancel_at_any_moment_is_final(client, server):
    """20 create-then-cancel rounds at delays spread over 0-1 s: every job ends cancelled, and nothing of
    theirs is ever published (no adapter, no checkpoint), also after their trainers would have finished."""
    file_id = _upload(client).id
    jobs = []
    for i in range(20):
        job = _create(client, file_id, n_epochs=2, n_checkpoints=1)  # a short job: 6 steps, a checkpoint at 3
        time.sleep(i / 19)
        cancelled = client.fine_tuning.jobs.cancel(job.id)
        assert cancelled.status == "cancelled"
        jobs.append(job.id)
    wait_for(lambda: not any(trainer_pids(j) for j in jobs), timeout=30, what="every trainer to be gone")
    # long enough for an unstopped 6-step trainer to have published its checkpoint and adapter
    time.sleep(8)
    store = AdapterStore(server.data_dir / "adapters")
    published = {m.job_id for m in store.list()}
    for job_id in jobs:
        job = client.fine_tuning.jobs.retrieve(job_id)
        assert job.status == "cancelled" and job.fine_tuned_model is None, job
        assert client.fine_tuning.jobs.checkpoints.list(job_id).data == []
        assert job_id not in published
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=100).data]
        assert messages[0] == "Fine-tuning job cancelled", messages[:3]


def test_pause_then_resume_reaches_the_uninterrupted_adapter(client, server):
    file_id = _upload(client).id
    straight = wait_for_status(client, _create(client, file_id, n_epochs=10, n_checkpoints=0).id,
                               ("succeeded", "failed"))
    assert straight.status == "succeeded", straight.error

    job = _create(client, file_id, n_epochs=10, n_checkpoints=0)
    wait_for(lambda: any(e.type == "metrics" and e.data["step"] >= 3
                         for e in client.fine_tuning.jobs.list_events(job.id).data), what="step 3")
    paused = client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"
    wait_for(lambda: not trainer_pids(job.id), timeout=30, what="the paused trainer to exit")
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert len(checkpoints) == 1 and 3 <= checkpoints[0].step_number < 30  # written by the pause
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"
    with pytest.raises(Exception) as e:
        client.fine_tuning.jobs.pause(job.id)
    assert e.value.status_code == 400 and e.value.body["code"] == "job_not_pausable"

    resumed = client.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued"
    done = wait_for_status(client, job.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert any(m.startswith(f"resumed from step-{checkpoints[0].step_number}") for m in messages), messages
    store = AdapterStore(server.data_dir / "adapters")
    assert store.metadata(done.fine_tuned_model).sha256 == store.metadata(straight.fine_tuned_model).sha256
    with pytest.raises(Exception) as e:
        client.fine_tuning.jobs.resume(job.id)
    assert e.value.status_code == 400 and e.value.body["code"] == "job_not_paused"


def test_metrics_events_carry_train_and_validation_together(client, tmp_path):
    file_id = _upload(client).id
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file_id, validation_file=file_id,
                                         method={"type": "supervised", "supervised": {"hyperparameters": {
                                             "n_epochs": 2, "batch_size": 4, "n_checkpoints": 1}}})
    done = wait_for_status(client, job.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    events = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"]
    steps = [e.data["step"] for e in events]
    assert len(steps) == len(set(steps)), "one metrics event per step"
    assert all("train_loss" in e.data for e in events)
    with_valid = [e for e in events if "valid_loss" in e.data]
    assert with_valid and all("train_loss" in e.data for e in with_valid)
    final = client.fine_tuning.jobs.checkpoints.list(job.id).data[0]
    assert final.metrics.full_valid_loss == final.metrics.valid_loss > 0
    assert 0 <= final.metrics.full_valid_mean_token_accuracy <= 1

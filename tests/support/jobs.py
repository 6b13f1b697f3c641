"""Waiting on a condition or a job, and starting a job, through the official client."""

import time

from openai import OpenAI

from tests.support.paths import FACTS


def wait_for(predicate, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    """`predicate()`'s first true value, polled; an AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_status(client: OpenAI, job_id: str, statuses: tuple[str, ...], timeout: float = 180):
    return wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job_id)).status in statuses and j,
                    timeout, what=f"job {job_id} to reach {statuses}")


def create_job(client: OpenAI, data=FACTS, seed: int = 1, **hyperparameters):
    """Upload `data` and start a supervised job on the tiny model with these hyperparameters (and a
    fixed seed: what a test asserts about what a model learnt does not depend on chance)."""
    with open(data, "rb") as f:
        file = client.files.create(file=f, purpose="fine-tune")
    return client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, seed=seed, method={
        "type": "supervised", "supervised": {"hyperparameters": hyperparameters}})

import time

import pytest
from openai import OpenAI

from tests.conftest import FACTS
from tests.postgres import Postgres
from tests.seaweedfs import SeaweedS3
from tests.service.server import Server


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("data"), model=tiny_model, engine="none").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A real PostgreSQL server on loopback for the module's tests."""
    pg = Postgres(tmp_path_factory.mktemp("pg")).init().start()
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3 server (SeaweedFS) on loopback for the module's tests."""
    server = SeaweedS3(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bucket(s3, tmp_path_factory):
    """The adapter store in the S3 server's bucket as servers see it, read from here with a cache of its own."""
    from adapters import AdapterCache, ObjectAdapterStore, open_objects

    with pytest.MonkeyPatch.context() as env:
        for key, value in s3.env.items():
            env.setenv(key, value)
        cache = tmp_path_factory.mktemp("cache")
        yield ObjectAdapterStore(open_objects(s3.url(), cache, cache), AdapterCache(cache / "adapters", 1 << 30))


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return server.client(timeout=60)


def wait_for(predicate, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
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

import pytest
from openai import OpenAI

from tests.support.postgres import Postgres
from tests.support.seaweedfs import SeaweedS3
from tests.support.server import Server


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

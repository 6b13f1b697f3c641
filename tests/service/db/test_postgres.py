"""ftserve on a real PostgreSQL server: the whole job path, a restart, and the database going away."""

import httpx
import psutil
import pytest

from adapters import AdapterStore
from tests.support.paths import FACTS
from tests.support.jobs import create_job, wait_for, wait_for_status
from tests.support.server import Server, trainer_pids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory, postgres):
    srv = Server(tmp_path_factory.mktemp("data"), model=tiny_model, engine="none",
                 database_url=postgres.url).start()
    yield srv
    srv.stop()


def test_jobs_train_with_state_in_postgres_and_survive_a_restart(server):
    client = server.client(timeout=60)
    job = create_job(client, FACTS, n_epochs=1, batch_size=4)
    done = wait_for_status(client, job.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert any(e.type == "metrics" for e in events)
    assert not (server.data_dir / "ftserve.db").exists()  # nothing went to SQLite
    server.stop()
    server.start()
    assert client.fine_tuning.jobs.retrieve(job.id).status == "succeeded"
    assert [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data] == [e.id for e in events]
    assert client.files.retrieve(done.training_file).status == "processed"


def test_the_database_going_away_is_a_503_then_recovers_without_a_restart(server, postgres):
    client = server.client(timeout=60)
    assert httpx.get(server.url + "/v1/files").status_code == 200
    postgres.stop()
    try:
        response = httpx.get(server.url + "/v1/files", timeout=30)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] and response.json()["error"]["code"] == "database_unavailable"
        assert httpx.get(server.url + "/ready").status_code == 503
    finally:
        postgres.start()
    wait_for(lambda: httpx.get(server.url + "/ready").status_code == 200, timeout=30, what="ready again")
    assert httpx.get(server.url + "/v1/files").status_code == 200
    assert client.fine_tuning.jobs.list().data


def test_a_job_outlives_the_server_training_it(tiny_model, tmp_path, postgres):
    """Two servers share the database (and, until the object-store seam, a data directory). The one
    training a job is killed with SIGKILL: the other takes the job back once its lease lapses and
    finishes it from the last checkpoint; the adapter is published once."""
    shared = tmp_path / "shared"
    servers = [Server(shared, model=tiny_model, engine="none", database_url=postgres.url, job_lease_seconds=6)
               .start() for _ in range(2)]
    try:
        client = servers[1].client(timeout=60)
        job = create_job(client, FACTS, n_epochs=20, batch_size=4, learning_rate=3e-3, n_checkpoints=3)
        wait_for(lambda: client.fine_tuning.jobs.checkpoints.list(job.id).data, timeout=120,
                 what="a first checkpoint")
        trainer = psutil.Process(trainer_pids(job.id)[0])
        owner = next(s for s in servers if s.proc.pid in {p.pid for p in trainer.parents()})
        survivor = servers[1 - servers.index(owner)]
        owner.kill()
        client = survivor.client(timeout=60)
        done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=180)
        assert done.status == "succeeded", done.error
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
        assert any("stopped renewing its lease" in m for m in messages), messages
        assert any(m.startswith("resumed from step-") for m in messages), messages
        store = AdapterStore(shared / "adapters")
        assert [m.name for m in store.list()].count(done.fine_tuned_model) == 1
        store.verify(done.fine_tuned_model)
    finally:
        for server in servers:
            server.stop()


def test_a_revoked_key_is_refused_by_every_replica_at_once(tiny_model, tmp_path, postgres):
    """Two control-plane replicas on one database: a service account made through one works on both;
    deleted through the other, its key answers 401 on both from the next request on. The database
    (`pg_dump`) holds the key's digest only. A replica with another key secret refuses to start."""
    import secrets

    url = postgres.database("revoke")
    env = {"FTSERVE_ADMIN_KEY": "admin-" + secrets.token_hex(8), "FTSERVE_KEY_SECRET": secrets.token_hex(32)}
    replicas = [Server(tmp_path / f"r{i}", model=tiny_model, engine="none", database_url=url, env=env,
                       replica_id=f"r{i}") for i in range(2)]
    for replica in replicas:
        replica.start()
    try:
        admin = {"Authorization": f"Bearer {env['FTSERVE_ADMIN_KEY']}"}
        a, b = replicas
        project = httpx.post(a.url + "/v1/organization/projects", json={"name": "p"}, headers=admin).json()["id"]
        account = httpx.post(f"{a.url}/v1/organization/projects/{project}/service_accounts", json={"name": "s"},
                             headers=admin).json()
        key = {"Authorization": f"Bearer {account['api_key']['value']}"}
        assert [httpx.get(r.url + "/v1/files", headers=key).status_code for r in replicas] == [200, 200]
        deleted = httpx.delete(f"{b.url}/v1/organization/projects/{project}/service_accounts/{account['id']}",
                               headers=admin)
        assert deleted.json()["deleted"] is True
        answers = [httpx.get(r.url + "/v1/files", headers=key) for r in replicas]
        assert [r.status_code for r in answers] == [401, 401]
        assert all(r.json()["error"]["code"] == "invalid_api_key" for r in answers)

        again = httpx.post(f"{a.url}/v1/organization/projects/{project}/service_accounts", json={"name": "t"},
                           headers=admin).json()["api_key"]["value"]
        dump = postgres.dump(url.rsplit("/", 1)[1])
        assert "service_accounts" in dump and again not in dump and env["FTSERVE_ADMIN_KEY"] not in dump

        stranger = Server(tmp_path / "r2", model=tiny_model, engine="none", database_url=url,
                          env={**env, "FTSERVE_KEY_SECRET": "another"}, replica_id="r2")
        with pytest.raises(RuntimeError, match="same FTSERVE_KEY_SECRET"):
            stranger.start(timeout=60)
    finally:
        for replica in replicas:
            replica.stop()

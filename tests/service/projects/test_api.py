"""Projects: two projects made through the admin API see only their own files, jobs, batches, evals and
models, on every route (a table over all of them: a new route without an entry fails); sharing a
checkpoint; revoking and archiving; keys stored only as digests; per-project limits, metrics and the
audit log. One engine-backed server with an admin key and the default project's key."""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from prometheus_client.parser import text_string_to_metric_families

from tests.conformance.conftest import assert_official
from tests.support.paths import FACTS, write_jsonl
from tests.support.jobs import wait_for, wait_for_status
from tests.support.server import Server

pytestmark = pytest.mark.slow

ADMIN = "admin-" + secrets.token_urlsafe(16)
DEFAULT_KEY = "default-" + secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def org(tiny_model, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("data"), model=tiny_model, api_key=DEFAULT_KEY,
                 env={"FTSERVE_ADMIN_KEY": ADMIN, "FTSERVE_API_KEYS": DEFAULT_KEY},
                 project_max_training_jobs=1, project_max_generations=2,
                 webhook_allow_private_urls=True).start(timeout=240)
    yield srv
    srv.stop()


def admin(srv: Server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, srv.url + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60, **kwargs)


def as_key(srv: Server, key: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, srv.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=120, **kwargs)


@dataclass
class Team:
    project: str
    account: str
    key: str
    key_id: str


def new_team(srv: Server, name: str) -> Team:
    r = admin(srv, "POST", "/v1/organization/projects", json={"name": name})
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert_official(r.json(), "Project")
    project = r.json()["id"]
    r = admin(srv, "POST", f"/v1/organization/projects/{project}/service_accounts", json={"name": f"{name} ci"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_official(body, "ProjectServiceAccountCreateResponse")
    assert body["role"] == "member" and body["api_key"]["value"].startswith("sk-svcacct-")
    return Team(project, body["id"], body["api_key"]["value"], body["api_key"]["id"])


@pytest.fixture(scope="module")
def teams(org):
    return new_team(org, "team a"), new_team(org, "team b")


@pytest.fixture(scope="module")
def world(org, teams, tmp_path_factory):
    """Everything project A owns: a training file, a job that succeeded (its model and a checkpoint), a
    batch, an eval with a run sampled from A's model (through a batch of A's), an output item."""
    a, _ = teams
    client = org.client(api_key=a.key)
    tmp = tmp_path_factory.mktemp("world")
    file = client.files.create(file=FACTS.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, seed=1, method={
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "n_checkpoints": 1}}})
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=300)
    assert done.status == "succeeded", done.error
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job.id).data[-1].fine_tuned_model_checkpoint
    lines = [{"custom_id": "one", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": done.fine_tuned_model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}}]
    batch_file = client.files.create(file=write_jsonl(tmp / "batch.jsonl", lines).open("rb"), purpose="batch")
    batch = client.batches.create(input_file_id=batch_file.id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = wait_for(lambda: (b := client.batches.retrieve(batch.id)).status in ("completed", "failed") and b,
                     what="A's batch")
    assert batch.status == "completed" and batch.request_counts.completed == 1, batch
    ev = client.evals.create(name="a's eval", data_source_config={"type": "custom", "item_schema": {
        "type": "object", "properties": {"q": {"type": "string"}, "a": {"type": "string"}}, "required": ["q", "a"]}},
        testing_criteria=[{"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                           "reference": "{{item.a}}", "operation": "eq"}])
    run = client.evals.runs.create(ev.id, name="sampled", data_source={
        "type": "completions", "model": done.fine_tuned_model,
        "source": {"type": "file_content", "content": [{"item": {"q": "hi", "a": "hello"}}]},
        "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.q}}"}]},
        "sampling_params": {"max_completion_tokens": 4}})
    run = wait_for(lambda: (r := client.evals.runs.retrieve(run.id, eval_id=ev.id)).status
                   in ("completed", "failed", "canceled") and r, what="A's eval run")
    assert run.status == "completed", run.error
    item = client.evals.runs.output_items.list(run.id, eval_id=ev.id).data[0]
    assert item.sample.error is None or not item.sample.error.code, item.sample  # A's run may use A's model
    response = client.responses.create(model=done.fine_tuned_model, input="hi", max_output_tokens=2)
    export = as_key(org, a.key, "POST", "/v1/model_exports", json={"model": done.fine_tuned_model}).json()
    hook = client.webhooks.create(name="a's hook", url="http://127.0.0.1:9/hook", event_types=["batch.expired"])
    return {"webhook_endpoint_id": hook.id, "file_id": file.id, "batch_file": batch_file.id, "response_id": response.id, "fine_tuning_job_id": job.id, "batch_id": batch.id,
            "eval_id": ev.id, "run_id": run.id, "output_item_id": item.id, "model": done.fine_tuned_model,
            "fine_tuned_model_checkpoint": checkpoint, "results_file": done.result_files[0],
            "output_file": batch.output_file_id, "project_id": a.project, "service_account_id": a.account,
            "permission_id": "cp_" + "0" * 24, "export_id": export["id"]}


# ------------------------------------------------------------------ every route, table-driven
# What another project (B) gets on each route, given project A's ids:
#   hidden: exactly what a missing id gets (status and body, the ids aside), and nothing changes for A
#   list:   a list without any of A's objects
#   own:    B makes its own object, which A then does not see
#   admin:  403, the admin key only (projects, service accounts, checkpoint permissions)
LABEL = {"type": "label_model", "name": "judge", "labels": ["yes", "no"], "passing_labels": ["yes"],
         "input": [{"role": "user", "content": "{{item.q}}"}]}
JUDGE = {"type": "score_model", "name": "judge", "input": [{"role": "user", "content": "{{sample.output_text}}"}]}
JSONL_RUN = {"data_source": {"type": "jsonl", "source": {"type": "file_content", "content": [
    {"item": {"q": "x", "a": "y"}, "sample": {"output_text": "y"}}]}}}
TABLE: dict[tuple[str, str], tuple[str, dict | None]] = {
    ("POST", "/v1/files"): ("own", None),
    ("GET", "/v1/files"): ("list", None),
    ("GET", "/v1/files/{file_id}"): ("hidden", None),
    ("DELETE", "/v1/files/{file_id}"): ("hidden", None),
    ("GET", "/v1/files/{file_id}/content"): ("hidden", None),
    ("POST", "/v1/fine_tuning/jobs"): ("hidden", {"model": "ftserve-tiny", "training_file": "{file_id}"}),
    ("GET", "/v1/fine_tuning/jobs"): ("list", None),
    ("GET", "/v1/fine_tuning/jobs/{fine_tuning_job_id}"): ("hidden", None),
    ("POST", "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel"): ("hidden", None),
    ("POST", "/v1/fine_tuning/jobs/{fine_tuning_job_id}/pause"): ("hidden", None),
    ("POST", "/v1/fine_tuning/jobs/{fine_tuning_job_id}/resume"): ("hidden", None),
    ("GET", "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events"): ("hidden", None),
    ("GET", "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints"): ("hidden", None),
    ("POST", "/v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions"):
        ("admin", {"project_ids": ["{project_id}"]}),
    ("GET", "/v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions"): ("admin", None),
    ("DELETE", "/v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions/{permission_id}"):
        ("admin", None),
    ("POST", "/v1/batches"): ("hidden", {"input_file_id": "{batch_file}", "endpoint": "/v1/chat/completions",
                                         "completion_window": "24h"}),
    ("GET", "/v1/batches"): ("list", None),
    ("GET", "/v1/batches/{batch_id}"): ("hidden", None),
    ("POST", "/v1/batches/{batch_id}/cancel"): ("hidden", None),
    ("POST", "/v1/evals"): ("hidden", {"name": "b", "data_source_config": {"type": "custom", "item_schema": {
        "type": "object", "properties": {"q": {"type": "string"}}}}, "testing_criteria": [{**LABEL, "model": "{model}"}]}),
    ("GET", "/v1/evals"): ("list", None),
    ("GET", "/v1/evals/{eval_id}"): ("hidden", None),
    ("POST", "/v1/evals/{eval_id}"): ("hidden", {"name": "renamed by b"}),
    ("DELETE", "/v1/evals/{eval_id}"): ("hidden", None),
    ("POST", "/v1/evals/{eval_id}/runs"): ("hidden", JSONL_RUN),
    ("GET", "/v1/evals/{eval_id}/runs"): ("hidden", None),
    ("GET", "/v1/evals/{eval_id}/runs/{run_id}"): ("hidden", None),
    ("POST", "/v1/evals/{eval_id}/runs/{run_id}"): ("hidden", None),
    ("POST", "/v1/evals/{eval_id}/runs/{run_id}/cancel"): ("hidden", None),
    ("DELETE", "/v1/evals/{eval_id}/runs/{run_id}"): ("hidden", None),
    ("GET", "/v1/evals/{eval_id}/runs/{run_id}/output_items"): ("hidden", None),
    ("GET", "/v1/evals/{eval_id}/runs/{run_id}/output_items/{output_item_id}"): ("hidden", None),
    ("POST", "/v1/fine_tuning/alpha/graders/run"): ("hidden", {"grader": {**JUDGE, "model": "{model}"},
                                                                "model_sample": "x"}),
    ("POST", "/v1/fine_tuning/alpha/graders/validate"): ("hidden", {"grader": {**JUDGE, "model": "{model}"}}),
    ("POST", "/v1/fine_tuning/alpha/rollouts"): ("hidden", {
        "step": 0, "adapter": {"config": {}, "weights_b64": ""}, "n": 1, "max_tokens": 2,
        "prompts": [{"messages": [{"role": "user", "content": "hi"}], "item": {}}],
        "grader": {**JUDGE, "model": "{model}"}}),
    ("GET", "/v1/models"): ("list", None),
    ("POST", "/v1/model_exports"): ("hidden", {"model": "{model}"}),
    ("GET", "/v1/model_exports"): ("list", None),
    ("GET", "/v1/model_exports/{export_id}"): ("hidden", None),
    ("POST", "/v1/models"): ("hidden", {"model": "ft:ftserve-tiny:b:imported", "file_id": "{file_id}"}),
    ("GET", "/v1/models/{model}"): ("hidden", None),
    ("GET", "/v1/models/{model}/content"): ("hidden", None),
    ("POST", "/v1/load_lora_adapter"): ("admin", {"lora_name": "b-adapter", "lora_path": "{file_id}"}),
    ("POST", "/v1/unload_lora_adapter"): ("admin", {"lora_name": "{model}"}),
    ("DELETE", "/v1/models/{model}"): ("hidden", None),
    ("POST", "/v1/chat/completions"): ("hidden", {"model": "{model}", "max_tokens": 2,
                                                  "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/completions"): ("hidden", {"model": "{model}", "prompt": "hi", "max_tokens": 2}),
    ("POST", "/v1/responses"): ("hidden", {"model": "ftserve-tiny", "input": "hi", "max_output_tokens": 2,
                                           "previous_response_id": "{response_id}"}),
    ("GET", "/v1/responses/{response_id}"): ("hidden", None),
    ("DELETE", "/v1/responses/{response_id}"): ("hidden", None),
    ("POST", "/v1/responses/{response_id}/cancel"): ("hidden", None),
    ("GET", "/v1/responses/{response_id}/input_items"): ("hidden", None),
    ("POST", "/v1/webhook_endpoints"): ("own", {"name": "b's", "url": "http://127.0.0.1:9/b",
                                                "event_types": ["batch.completed"]}),
    ("GET", "/v1/webhook_endpoints"): ("list", None),
    ("GET", "/v1/webhook_endpoints/{webhook_endpoint_id}"): ("hidden", None),
    ("POST", "/v1/webhook_endpoints/{webhook_endpoint_id}"): ("hidden", {"name": "renamed by b"}),
    ("DELETE", "/v1/webhook_endpoints/{webhook_endpoint_id}"): ("hidden", None),
    ("POST", "/v1/webhook_endpoints/{webhook_endpoint_id}/rotate_secret"): ("hidden", {}),
    ("POST", "/v1/webhook_endpoints/{webhook_endpoint_id}/test"): ("hidden", {"event_type": "batch.completed"}),
    ("GET", "/v1/webhook_endpoints/{webhook_endpoint_id}/deliveries"): ("hidden", None),
    ("POST", "/v1/organization/projects"): ("admin", {"name": "b's own"}),
    ("GET", "/v1/organization/projects"): ("admin", None),
    ("GET", "/v1/organization/projects/{project_id}"): ("admin", None),
    ("POST", "/v1/organization/projects/{project_id}"): ("admin", {"name": "renamed by b"}),
    ("POST", "/v1/organization/projects/{project_id}/archive"): ("admin", None),
    ("POST", "/v1/organization/projects/{project_id}/service_accounts"): ("admin", {"name": "b's"}),
    ("GET", "/v1/organization/projects/{project_id}/service_accounts"): ("admin", None),
    ("GET", "/v1/organization/projects/{project_id}/service_accounts/{service_account_id}"): ("admin", None),
    ("DELETE", "/v1/organization/projects/{project_id}/service_accounts/{service_account_id}"): ("admin", None),
}
# the same request with ids nobody has (each of A's ids swapped for one of the same shape)
MISSING = {"file_id": "file-" + "0" * 24, "response_id": "resp_" + "0" * 32, "batch_file": "file-" + "1" * 24, "fine_tuning_job_id": "ftjob-" + "0" * 24,
           "batch_id": "batch-" + "0" * 24, "eval_id": "eval_" + "0" * 32, "run_id": "evalrun_" + "0" * 32,
           "output_item_id": "outputitem_" + "0" * 32, "model": "ft:ftserve-tiny:ftserve::00000000",
           "fine_tuned_model_checkpoint": "ft:ftserve-tiny:ftserve::00000000:ckpt-step-1",
           "project_id": "proj_" + "0" * 24, "service_account_id": "svc_acct_" + "0" * 24,
           "permission_id": "cp_" + "1" * 24, "export_id": "mexp_" + "0" * 24,
           "webhook_endpoint_id": "whep_" + "0" * 32}


def app_routes() -> set[tuple[str, str]]:
    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(data_dir=Path("/nonexistent")))
    return {(method, route.path.replace(":path", "")) for route in app.routes
            if isinstance(route, APIRoute) and route.path.startswith("/v1/") for method in route.methods}


def test_every_route_has_a_cross_project_check():
    assert app_routes() == set(TABLE), "a route was added or removed: say in TABLE what another project gets"


def _fill(template, ids: dict):
    if isinstance(template, str):
        return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)
    if isinstance(template, list):
        return [_fill(t, ids) for t in template]
    if isinstance(template, dict):
        return {k: _fill(v, ids) for k, v in template.items()}
    return template


def _normalised(r: httpx.Response, ids: dict) -> tuple[int, str]:
    text = r.text
    for name, value in sorted(ids.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(value, "{" + name + "}")
    return r.status_code, text


def _a_still_has_everything(org: Server, a: Team, world: dict) -> None:
    client = org.client(api_key=a.key)
    assert client.files.retrieve(world["file_id"]).status == "processed"
    assert client.files.content(world["file_id"]).read() == FACTS.read_bytes()
    assert client.fine_tuning.jobs.retrieve(world["fine_tuning_job_id"]).status == "succeeded"
    assert client.batches.retrieve(world["batch_id"]).status == "completed"
    assert client.evals.retrieve(world["eval_id"]).name == "a's eval"
    assert client.evals.runs.retrieve(world["run_id"], eval_id=world["eval_id"]).status == "completed"
    assert client.models.retrieve(world["model"]).id == world["model"]
    assert client.responses.retrieve(world["response_id"]).output[0].content[0].text
    assert client.models.retrieve(world["fine_tuned_model_checkpoint"]).id == world["fine_tuned_model_checkpoint"]
    assert client.webhooks.retrieve(world["webhook_endpoint_id"]).name == "a's hook"
    r = admin(org, "GET", f"/v1/organization/projects/{a.project}/service_accounts/{a.account}")
    assert r.status_code == 200 and admin(org, "GET", f"/v1/organization/projects/{a.project}").json()["status"] == "active"


@pytest.mark.parametrize("method,route", sorted(TABLE))
def test_another_project_gets_nothing_of_a(org, teams, world, method, route):
    a, b = teams
    kind, body = TABLE[(method, route)]
    a_ids = {v for k, v in world.items() if k not in ("project_id", "service_account_id", "permission_id")}
    if kind == "list":
        mine = {o["id"] for o in as_key(org, a.key, "GET", route).json()["data"]}
        theirs = {o["id"] for o in as_key(org, b.key, "GET", route).json()["data"]}
        assert mine & a_ids, "A sees its own"
        assert not theirs & a_ids, f"B sees A's {theirs & a_ids}"
    elif kind == "own":
        r = as_key(org, b.key, "POST", route, json=body) if body else as_key(
            org, b.key, "POST", route, data={"purpose": "fine-tune"}, files={"file": ("b.jsonl", FACTS.read_bytes())})
        assert r.status_code == 200, r.text
        assert r.json()["id"] not in {o["id"] for o in as_key(org, a.key, "GET", route).json()["data"]}
    elif kind == "admin":
        r = as_key(org, b.key, method, _fill(route, world), json=_fill(body, world) if body else None)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_key_required", r.text
    else:
        path, missing_path = _fill(route, world), _fill(route, MISSING)
        r = as_key(org, b.key, method, path, json=_fill(body, world) if body is not None else None)
        missing = as_key(org, b.key, method, missing_path, json=_fill(body, MISSING) if body is not None else None)
        assert 400 <= r.status_code < 500, r.text
        assert _normalised(r, world) == _normalised(missing, MISSING), "another project's object is told apart"
    _a_still_has_everything(org, a, world)


def test_a_batch_line_cannot_use_another_projects_model(org, teams, world, tmp_path):
    _, b = teams
    client = org.client(api_key=b.key)
    lines = [{"custom_id": name, "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}}
             for name, model in (("theirs", world["model"]), ("missing", MISSING["model"]), ("base", "ftserve-tiny"))]
    file = client.files.create(file=write_jsonl(tmp_path / "b.jsonl", lines).open("rb"), purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    done = wait_for(lambda: (x := client.batches.retrieve(batch.id)).status in ("completed", "failed") and x,
                    what="B's batch")
    errors = {json.loads(line)["custom_id"]: json.loads(line)["response"]
              for line in client.files.content(done.error_file_id).text.splitlines()}
    assert set(errors) == {"theirs", "missing"} and done.request_counts.completed == 1
    theirs = json.dumps(errors["theirs"]["body"]).replace(world["model"], "M")
    assert errors["theirs"]["status_code"] == 404 and theirs == json.dumps(errors["missing"]["body"]).replace(
        MISSING["model"], "M")


def test_training_on_from_another_projects_model_is_refused_as_for_a_missing_one(org, teams, world):
    _, b = teams
    own = org.client(api_key=b.key).files.create(file=FACTS.open("rb"), purpose="fine-tune")
    answers = [as_key(org, b.key, "POST", "/v1/fine_tuning/jobs", json={"model": model, "training_file": own.id})
               for model in (world["model"], MISSING["model"])]
    assert answers[0].status_code == 400 and answers[0].json()["error"]["param"] == "model"
    assert answers[0].text.replace(world["model"], "M") == answers[1].text.replace(MISSING["model"], "M")


# ------------------------------------------------------------------ sharing
def test_a_shared_checkpoint_is_servable_by_the_granted_project_and_never_deletable(org, teams, world):
    a, b = teams
    checkpoint = world["fine_tuned_model_checkpoint"]
    chat = {"model": checkpoint, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert as_key(org, b.key, "POST", "/v1/chat/completions", json=chat).status_code == 404
    r = admin(org, "POST", f"/v1/fine_tuning/checkpoints/{checkpoint}/permissions", json={"project_ids": [b.project]})
    assert r.status_code == 200, r.text
    assert_official(r.json(), "ListFineTuningCheckpointPermissionResponse")
    permission = r.json()["data"][0]
    assert permission["object"] == "checkpoint.permission" and permission["project_id"] == b.project
    listed = admin(org, "GET", f"/v1/fine_tuning/checkpoints/{checkpoint}/permissions").json()
    assert_official(listed, "ListFineTuningCheckpointPermissionResponse")
    assert [p["id"] for p in listed["data"]] == [permission["id"]]

    b_client = org.client(api_key=b.key)
    assert checkpoint in {m.id for m in b_client.models.list().data}
    assert world["model"] not in {m.id for m in b_client.models.list().data}  # only what was shared
    answer = b_client.chat.completions.create(**chat)
    assert answer.model == checkpoint and answer.choices[0].message.content is not None
    r = as_key(org, b.key, "DELETE", f"/v1/models/{checkpoint}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_owned"
    assert org.client(api_key=a.key).models.retrieve(checkpoint).id == checkpoint

    r = admin(org, "DELETE", f"/v1/fine_tuning/checkpoints/{checkpoint}/permissions/{permission['id']}")
    assert r.json() == {"id": permission["id"], "object": "checkpoint.permission", "deleted": True}
    assert_official(r.json(), "DeleteFineTuningCheckpointPermissionResponse")
    assert as_key(org, b.key, "POST", "/v1/chat/completions", json=chat).status_code == 404
    for bad in ({"project_ids": ["proj_nobody"]}, {"project_ids": []}, {}):
        r = admin(org, "POST", f"/v1/fine_tuning/checkpoints/{checkpoint}/permissions", json=bad)
        assert r.status_code == 400, r.text
    assert admin(org, "GET", f"/v1/fine_tuning/checkpoints/{checkpoint}/permissions").json()["data"] == []
    r = admin(org, "POST", "/v1/fine_tuning/checkpoints/ft:nothing/permissions", json={"project_ids": [b.project]})
    assert r.status_code == 404


# ------------------------------------------------------------------ keys
def test_an_imported_adapter_belongs_to_its_project_and_vllms_endpoints_are_the_admins(org, teams, tiny_model,
                                                                                       tmp_path):
    from tests.support.adapters import folder_files, peft_script_adapter, tar_of

    a, b = teams
    archive = tar_of(folder_files(peft_script_adapter(tiny_model, tmp_path / "peft", steps=0)))
    file = org.client(api_key=a.key).files.create(file=("a.tar.gz", archive), purpose="adapter")
    r = as_key(org, a.key, "POST", "/v1/models", json={"model": "ft:ftserve-tiny:a:imported", "file_id": file.id})
    assert r.status_code == 200, r.text
    assert "ft:ftserve-tiny:a:imported" in {m.id for m in org.client(api_key=a.key).models.list().data}
    assert "ft:ftserve-tiny:a:imported" not in {m.id for m in org.client(api_key=b.key).models.list().data}
    r = as_key(org, b.key, "GET", "/v1/models/ft:ftserve-tiny:a:imported/content")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"

    # vLLM's shapes: lora_path is an upload's id, never a server path; the adapter lands in the default project
    r = admin(org, "POST", "/v1/load_lora_adapter", json={"lora_name": "sql-lora", "lora_path": "/etc/passwd"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_lora_path", r.text
    r = admin(org, "POST", "/v1/load_lora_adapter", json={"lora_name": "sql-lora", "lora_path": file.id})
    assert r.status_code == 200 and r.text == "Success: LoRA adapter 'sql-lora' added successfully."
    default = org.client()
    assert default.chat.completions.create(model="sql-lora", max_tokens=2, messages=[
        {"role": "user", "content": "hi"}]).choices[0].message.content is not None
    r = admin(org, "POST", "/v1/load_lora_adapter", json={"lora_name": "sql-lora", "lora_path": file.id})
    assert r.status_code == 409 and r.json()["error"]["code"] == "model_exists"
    r = admin(org, "POST", "/v1/unload_lora_adapter", json={"lora_name": "sql-lora"})
    assert r.status_code == 200 and r.text == "Success: LoRA adapter 'sql-lora' removed successfully."
    assert "sql-lora" not in {m.id for m in default.models.list().data}
    r = admin(org, "POST", "/v1/unload_lora_adapter", json={"lora_name": "sql-lora"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_a_deleted_service_account_or_archived_project_is_refused_at_once(org):
    team = new_team(org, "short-lived")
    assert as_key(org, team.key, "GET", "/v1/models").status_code == 200
    r = admin(org, "DELETE", f"/v1/organization/projects/{team.project}/service_accounts/{team.account}")
    assert r.json() == {"object": "organization.project.service_account.deleted", "id": team.account, "deleted": True}
    assert_official(r.json(), "ProjectServiceAccountDeleteResponse")
    r = as_key(org, team.key, "GET", "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"

    other = new_team(org, "archived")
    assert as_key(org, other.key, "GET", "/v1/files").status_code == 200
    r = admin(org, "POST", f"/v1/organization/projects/{other.project}/archive")
    assert r.json()["status"] == "archived" and r.json()["archived_at"]
    assert as_key(org, other.key, "GET", "/v1/files").status_code == 401
    projects = admin(org, "GET", "/v1/organization/projects").json()
    assert_official(projects, "ProjectListResponse")
    listed = {p["id"] for p in projects["data"]}
    assert other.project not in listed and team.project in listed
    assert other.project in {p["id"] for p in admin(org, "GET", "/v1/organization/projects",
                                                    params={"include_archived": "true"}).json()["data"]}
    r = admin(org, "POST", f"/v1/organization/projects/{other.project}/service_accounts", json={"name": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "project_archived"
    r = admin(org, "POST", "/v1/organization/projects/proj_default/archive")
    assert r.status_code == 400  # the keys of FTSERVE_API_KEYS live there


def test_admin_api_shapes_and_errors(org, teams):
    a, _ = teams
    accounts = admin(org, "GET", f"/v1/organization/projects/{a.project}/service_accounts").json()
    assert_official(accounts, "ProjectServiceAccountListResponse")
    assert [s["id"] for s in accounts["data"]] == [a.account]
    one = admin(org, "GET", f"/v1/organization/projects/{a.project}/service_accounts/{a.account}").json()
    assert_official(one, "ProjectServiceAccount")
    assert "api_key" not in accounts["data"][0] and a.key not in json.dumps(accounts)  # the key is shown once
    renamed = admin(org, "POST", f"/v1/organization/projects/{a.project}", json={"name": "team a (renamed)"})
    assert renamed.json()["name"] == "team a (renamed)"
    admin(org, "POST", f"/v1/organization/projects/{a.project}", json={"name": "team a"})
    assert admin(org, "GET", "/v1/organization/projects/proj_nobody").status_code == 404
    assert admin(org, "GET", f"/v1/organization/projects/{a.project}/service_accounts/svc_acct_x").status_code == 404
    for body in ({}, {"name": ""}, {"name": "x", "owner": "me"}):
        assert admin(org, "POST", "/v1/organization/projects", json=body).status_code == 400
    only = admin(org, "POST", f"/v1/organization/projects/{a.project}/service_accounts",
                 json={"name": "no key", "create_service_account_only": True}).json()
    assert only["api_key"] is None and only["role"] == "none"
    admin(org, "DELETE", f"/v1/organization/projects/{a.project}/service_accounts/{only['id']}")
    # the admin key manages; it is not a project's key
    r = admin(org, "GET", "/v1/files")
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_key_not_allowed"
    # the default project keeps FTSERVE_API_KEYS' keys working
    assert org.client().models.list().data[0].id == "ftserve-tiny"


def test_keys_are_stored_only_as_digests(org, teams, world):
    a, b = teams
    stored = b"".join(p.read_bytes() for p in org.data_dir.rglob("*") if p.is_file() and p.name != "key-secret")
    for key in (a.key, b.key, ADMIN, DEFAULT_KEY):
        assert key.encode() not in stored
    import sqlite3

    with sqlite3.connect(org.data_dir / "ftserve.db") as conn:
        digests = [row[0] for row in conn.execute("SELECT key_hash FROM service_accounts WHERE key_hash IS NOT NULL")]
    assert len(digests) >= 2 and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in digests)


# ------------------------------------------------------------------ limits, usage, audit
def test_per_project_generation_limit_is_429_with_retry_after(org, teams):
    a, b = teams
    long = {"model": "ftserve-tiny", "messages": [{"role": "user", "content": "tell"}], "max_tokens": 400,
            "ignore_eos": True, "stream": True}
    started = threading.Barrier(3, timeout=60)
    streams = []

    def hold(key):
        with httpx.Client(timeout=120) as http, http.stream("POST", org.url + "/v1/chat/completions", json=long,
                                                            headers={"Authorization": f"Bearer {key}"}) as r:
            lines = r.iter_lines()
            streams.append(next(lines))
            started.wait()
            for _ in lines:
                pass

    holders = [threading.Thread(target=hold, args=(b.key,)) for _ in range(2)]
    for t in holders:
        t.start()
    started.wait()
    try:
        short = {"model": "ftserve-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        r = as_key(org, b.key, "POST", "/v1/chat/completions", json=short)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1", r.text
        assert r.json()["error"] == {"message": r.json()["error"]["message"], "type": "rate_limit_error",
                                     "param": None, "code": "project_rate_limit_exceeded"}
        assert as_key(org, a.key, "POST", "/v1/chat/completions", json=short).status_code == 200  # A is not B
    finally:
        for t in holders:
            t.join()
    assert all(s.startswith("data: {") for s in streams)
    assert as_key(org, b.key, "POST", "/v1/chat/completions", json=short).status_code == 200  # slots given back


def test_per_project_training_limit_is_429_with_retry_after(org):
    team = new_team(org, "busy")
    client = org.client(api_key=team.key)
    file = client.files.create(file=FACTS.open("rb"), purpose="fine-tune")
    first = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, hyperparameters={"n_epochs": 50})
    r = as_key(org, team.key, "POST", "/v1/fine_tuning/jobs", json={"model": "ftserve-tiny", "training_file": file.id})
    assert r.status_code == 429 and r.headers["Retry-After"] == "30"
    assert r.json()["error"]["code"] == "project_rate_limit_exceeded" and r.json()["error"]["type"] == "rate_limit_error"
    client.fine_tuning.jobs.cancel(first.id)
    wait_for_status(client, first.id, ("cancelled",))
    second = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, hyperparameters={"n_epochs": 1})
    client.fine_tuning.jobs.cancel(second.id)


def _metrics(org: Server) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(org.url + "/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_and_tokens_by_project_never_by_key(org, teams, world):
    a, b = teams
    before = _metrics(org)
    chat = {"model": world["model"], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
            "ignore_eos": True}
    for _ in range(2):
        assert as_key(org, a.key, "POST", "/v1/chat/completions", json=chat).status_code == 200
    after = _metrics(org)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("ftserve_project_requests_total", project=a.project) == 2
    assert moved("ftserve_project_tokens_total", project=a.project, kind="completion") == 6
    assert moved("ftserve_project_tokens_total", project=a.project, kind="prompt") > 0
    assert moved("ftserve_project_requests_total", project=b.project) == 0
    assert after[("ftserve_project_training_tokens_total", (("project", a.project),))] > 0  # A's job
    text = httpx.get(org.url + "/metrics").text
    for key in (a.key, b.key, a.key_id, b.key_id, DEFAULT_KEY, ADMIN):
        assert key not in text


def test_every_change_is_in_the_audit_log_with_project_key_id_and_request_id(org, teams, world):
    a, _ = teams
    r = as_key(org, a.key, "POST", "/v1/files", data={"purpose": "fine-tune"},
               files={"file": ("audit.jsonl", FACTS.read_bytes())}, )
    file_id, request_id = r.json()["id"], r.headers["x-request-id"]
    as_key(org, a.key, "DELETE", f"/v1/files/{file_id}")
    records = [json.loads(line[line.index("{"):]) for line in org.log.read_text().splitlines()
               if "ftserve.audit" in line]
    created = next(r for r in records if r["audit"] == "POST /v1/files" and r["object_id"] == file_id)
    assert created == {"audit": "POST /v1/files", "path": "/v1/files", "object_id": file_id, "project_id": a.project,
                       "key_id": a.key_id, "admin": False, "request_id": request_id}
    deleted = [r for r in records if r["audit"] == "DELETE /v1/files/{file_id}" and r["object_id"] == file_id]
    assert len(deleted) == 1 and deleted[0]["project_id"] == a.project
    done = {r["audit"] for r in records}
    for change in ("POST /v1/organization/projects", "POST /v1/organization/projects/{project_id}/service_accounts",
                   "POST /v1/fine_tuning/jobs", "POST /v1/batches", "POST /v1/evals", "POST /v1/evals/{eval_id}/runs"):
        assert change in done, change
    log = org.log.read_text()
    for key in (a.key, ADMIN, DEFAULT_KEY):
        assert key not in log

"""Conformance suites: the shared engine-backed server, one trained adapter, the official OpenAI schemas.

Tests marked `kills_engine` end the shared engine on purpose; they run last in the session.
"""

import functools
import json

import pytest
from openai import OpenAI

from tests.support.paths import REPO
from tests.support.jobs import wait_for_status
from tests.support.server import Server

TOOLS_FILE = REPO / "examples" / "tools.jsonl"
SPEC = json.loads((REPO / "tests" / "openai_spec" / "schemas.json").read_text())


@functools.cache
def _validator(name: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator({**SPEC, "$ref": f"#/components/schemas/{name}"})


def assert_official(instance, name: str) -> None:
    """`instance` (parsed JSON) is valid against the official OpenAI schema `name`."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def official_properties(name: str) -> list[str]:
    """The property names of an official object schema, through allOf."""
    schema = SPEC["components"]["schemas"][name]
    names = []
    for part in schema.get("allOf", [schema]):
        if "$ref" in part:
            names += official_properties(part["$ref"].rsplit("/", 1)[1])
        names += list(part.get("properties", {}))
    return list(dict.fromkeys(names))


@pytest.fixture(scope="package")
def server(shared_engine) -> Server:
    return shared_engine()


@pytest.fixture(scope="package")
def client(server) -> OpenAI:
    return server.client()


@pytest.fixture(scope="package")
def adapter(facts_adapter):
    return facts_adapter


@pytest.fixture(scope="package")
def tool_adapter(client):
    """An adapter trained on examples/tools.jsonl (it calls get_weather / get_time, then answers from the
    result), trained once for the package."""
    # a fixed seed (and the server's one trainer thread): the same adapter every run
    file = client.files.create(file=TOOLS_FILE.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="ftserve-tiny", training_file=file.id, seed=0, method={
        "type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 50, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 16, "n_checkpoints": 0}}})
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=900)
    assert done.status == "succeeded", done.error
    return done.fine_tuned_model

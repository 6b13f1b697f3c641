"""Shared fixtures: the tiny model is built once per test session."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.support.paths import FACTS


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The pretrained tiny model, built once per machine and code version (~2.5 min) and cached."""
    from trainer.tiny_model import cached_tiny_model

    return cached_tiny_model()


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="session")
def facts() -> list[tuple[str, str]]:
    """(question, answer) pairs of examples/facts.jsonl."""
    rows = [json.loads(line) for line in FACTS.read_text().splitlines()]
    return [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows]


def pytest_collection_modifyitems(items):
    """A test that needs the tiny model (built in ~2.5 min on a new machine) is slow, whatever its module
    says; tests that end the shared engine on purpose (`kills_engine`) run last."""
    for item in items:
        if "tiny_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    last = [i for i in items if i.get_closest_marker("kills_engine")]
    items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session")
def shared_engine(tiny_model, tmp_path_factory):
    """The engine-backed server that modules share, so that they pay for one engine start between them:
    `shared_engine()` is that server (default settings, adapters up to rank 16), started on first use and
    started afresh (a new data dir) if a test ended it. Modules that need other settings start their own.
    Tests marked `kills_engine` end it on purpose, so they run last in the session."""
    from tests.support.server import Server

    current: list[Server] = []

    def get() -> Server:
        if current and current[-1].healthy():
            return current[-1]
        if current:
            current[-1].stop()
        current.append(Server(tmp_path_factory.mktemp("shared"), model=tiny_model, max_lora_rank=16,
                              webhook_allow_private_urls=True)  # the webhook tests receive on loopback
                       .start(timeout=240))
        return current[-1]

    yield get
    for server in current:
        server.stop()


@pytest.fixture(scope="session")
def facts_adapter(shared_engine) -> str:
    """The facts adapter (examples/facts.jsonl) on the shared engine, trained once for the session (with a
    checkpoint): the modules that need a trained model and do not care how it was trained share it."""
    from tests.support.jobs import create_job, wait_for_status
    from tests.support.paths import FACTS

    client = shared_engine().client()
    job = create_job(client, FACTS, n_epochs=50, batch_size=4, learning_rate=5e-3, lora_r=16, n_checkpoints=1)
    done = wait_for_status(client, job.id, ("succeeded", "failed"), timeout=600)
    assert done.status == "succeeded", done.error
    return done.fine_tuned_model
